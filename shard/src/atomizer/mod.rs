//! The atomizer-mode shard (DESIGN.md, "Atomizer settlement"): the unspent hash set of
//! one [`ShardRange`] in its own RocksDB, at a block height `h`.
//!
//! It is not Raft-replicated: redundancy comes from several independent shards owning
//! the same range, each following the same chain of blocks.
//!
//! ```text
//!  sentinel ── AtomizerShard.SubmitTransactions ──▶ AtomizerShardService
//!                                                    │ decode, check attestations,
//!                                                    │ read owned inputs (one snapshot, height h)
//!            all found ──▶ Atomizer.Notify { tx, owned positions, h } (leader, LeaderClient)
//!            one missing ─▶ recheck list ── after each block: found → Notify
//!                                          └─ grace over → Watchtower.ReportErrors (INPUTS_NOT_FOUND)
//!
//!  atomizer replicas / archiver ── follow() ──▶ follower: apply_block, one write batch
//!                                                 per block ──▶ RocksDB (uhs · uhs_meta ...)
//!  sentinel / auditor ── ShardQuery ──▶ AtomizerShardQueryService (reads at the current h)
//! ```
//!
//! At start the shard asks the atomizer its height `H` and attests nothing (answering
//! `UNAVAILABLE` "catching up: at h of H") until it has applied every block up to `H`:
//! a shard that attested from an old state could vouch for outputs already spent.
//!
//! ```text
//!  let shard = AtomizerShard::start(params).await?;
//!  Server::builder()
//!      .add_service(shard.submit_service())
//!      .add_service(shard.query_service())
//!      .serve_with_shutdown(addr, signal).await?;
//!  shard.shutdown().await?;   // after the server stopped: closes RocksDB
//! ```
//!
//! Genesis: [`seed_atomizer_shard`] bulk-loads outputs into a shard's directory before it
//! starts (the locking shard's `seed_genesis` writes a Raft replica's database, which
//! this shard cannot open).
//!
//! Layout:
//! - [`check`]: which inputs this shard owns and what the values read mean (pure);
//! - [`recheck`]: the recheck list and its grace rule (pure);
//! - [`service`]: `cbdc.v1.AtomizerShard`, [`AtomizerShardService`];
//! - [`query`]: `cbdc.v1.ShardQuery`, [`AtomizerShardQueryService`];
//! - `follower`: the background tasks (apply blocks, learn the target height, recheck);
//! - `shared`: the state those share, and the calls to the atomizer and the watchtower;
//! - [`error`]: this module's one error type, [`AtomizerShardError`].

pub mod check;
pub mod error;
mod follower;
pub mod query;
pub mod recheck;
pub mod service;
mod shared;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cbdc_atomizer::BlockSources;
use cbdc_consensus::network::lazy_channel;
use cbdc_consensus::LeaderClient;
use cbdc_core::{Amount, AttestationVerifier, ShardRange, UhsId};
use cbdc_proto::v1::atomizer_shard_server::AtomizerShardServer;
use cbdc_proto::v1::shard_query_server::ShardQueryServer;
use rocksdb::DB;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::AtomizerShardError;
pub use query::AtomizerShardQueryService;
pub use recheck::{GraceRule, RecheckList, RECHECK_CAPACITY};
pub use service::AtomizerShardService;

use crate::store::UhsStore;
use crate::supply::Supply;
use shared::{watchtower_client, Shared};

/// How long [`AtomizerShard::shutdown`] waits for each background task, then for the
/// last other reference to the database to go.
const TASK_STOP_WAIT: Duration = Duration::from_secs(5);

/// Recheck entries are reported no sooner than this many `retry` periods after their
/// first check (see [`GraceRule`]).
const MIN_WAIT_RETRIES: u32 = 5;

/// What an atomizer-mode shard needs to run.
#[derive(Debug, Clone)]
pub struct AtomizerShardParams {
    /// Directory of the shard's own RocksDB (created if missing).
    pub data_dir: PathBuf,
    /// The UHS id prefixes this shard owns.
    pub range: ShardRange,
    /// Atomizer replica client endpoints (`host:port`). Notify and GetHeight go to the
    /// leader via a [`LeaderClient`]; blocks are followed from any replica.
    pub atomizer: Vec<String>,
    /// The archiver's endpoint (`host:port`), for blocks the atomizer has pruned.
    pub archiver: String,
    /// The watchtower's endpoint (`host:port`), for `INPUTS_NOT_FOUND` reports.
    pub watchtower: String,
    /// The cluster's sentinel keys and attestation threshold (0 turns checking off).
    pub verifier: Arc<AttestationVerifier>,
    /// Longest wait for one call to the atomizer (including leader changes) or the
    /// watchtower.
    pub request_timeout: Duration,
    /// Blocks applied after which a transaction whose owned inputs are still missing is
    /// reported INPUTS_NOT_FOUND (default 2); see [`GraceRule`] for the whole rule.
    pub missing_grace_blocks: u64,
    /// Pause before trying a block source or the atomizer again, and the period of the
    /// recheck list's timer; missing inputs wait at least 5 × this before a report.
    pub retry: Duration,
}

impl AtomizerShardParams {
    /// Parameters with the defaults: 10 s request timeout, 2 grace blocks, 500 ms retry.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        range: ShardRange,
        atomizer: Vec<String>,
        archiver: impl Into<String>,
        watchtower: impl Into<String>,
        verifier: Arc<AttestationVerifier>,
    ) -> Self {
        AtomizerShardParams {
            data_dir: data_dir.into(),
            range,
            atomizer,
            archiver: archiver.into(),
            watchtower: watchtower.into(),
            verifier,
            request_timeout: Duration::from_secs(10),
            missing_grace_blocks: 2,
            retry: Duration::from_millis(500),
        }
    }

    /// Checks that the parameters can work.
    pub fn validate(&self) -> Result<(), AtomizerShardError> {
        let invalid = |m: &str| Err(AtomizerShardError::InvalidParams(m.to_string()));
        if self.atomizer.is_empty() {
            return invalid("no atomizer endpoints");
        }
        if self.range.start > self.range.end {
            return invalid("the shard range starts after it ends");
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be positive");
        }
        if self.retry.is_zero() {
            return invalid("retry must be positive");
        }
        for endpoint in self
            .atomizer
            .iter()
            .chain([&self.archiver, &self.watchtower])
        {
            if endpoint.trim().is_empty() {
                return invalid("an endpoint is empty");
            }
        }
        Ok(())
    }

    /// The rule for reporting missing inputs: `missing_grace_blocks` blocks and at least
    /// 5 × `retry`.
    pub fn grace_rule(&self) -> GraceRule {
        GraceRule {
            blocks: self.missing_grace_blocks,
            min_wait: self.retry.saturating_mul(MIN_WAIT_RETRIES),
        }
    }
}

/// A running atomizer-mode shard: its store, its background tasks (following blocks,
/// learning the atomizer's height, rechecking missing inputs) and the state its two gRPC
/// services share.
pub struct AtomizerShard {
    shared: Arc<Shared>,
    /// Our own handle on the database, so that [`AtomizerShard::shutdown`] can wait to
    /// hold the last reference and close it (as `cbdc_consensus::Replica` does).
    db: Arc<DB>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl AtomizerShard {
    /// Opens (or creates) the store in `params.data_dir` and starts following blocks from
    /// its height. Returns at once: the shard attests nothing until it has learnt the
    /// atomizer's height and applied the blocks up to it ([`AtomizerShard::is_caught_up`]).
    pub async fn start(params: AtomizerShardParams) -> Result<AtomizerShard, AtomizerShardError> {
        params.validate()?;
        let endpoint_error =
            |endpoint: &str, e: cbdc_consensus::ConsensusError| AtomizerShardError::Endpoint {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            };
        // Every endpoint is checked now, so that a typo fails the start, not a later call.
        for endpoint in params.atomizer.iter().chain([&params.archiver]) {
            lazy_channel(endpoint).map_err(|e| endpoint_error(endpoint, e))?;
        }
        let watchtower =
            lazy_channel(&params.watchtower).map_err(|e| endpoint_error(&params.watchtower, e))?;

        let dir = params.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| {
                AtomizerShardError::InvalidParams(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
            Ok::<_, AtomizerShardError>(UhsStore::open(&dir)?)
        })
        .await
        .map_err(|e| AtomizerShardError::task("opening the store", e))??;
        let height = store.height()?;
        let db = store.db().clone();

        let shared = Arc::new(Shared {
            store,
            range: params.range,
            verifier: params.verifier.clone(),
            atomizer: LeaderClient::new(params.atomizer.clone())
                .with_timeout(params.request_timeout),
            watchtower: watchtower_client(watchtower),
            request_timeout: params.request_timeout,
            height: watch::Sender::new(height),
            target: OnceLock::new(),
            unhealthy: OnceLock::new(),
            rechecks: Mutex::new(RecheckList::default()),
            grace: params.grace_rule(),
        });
        let (shutdown, stop) = watch::channel(false);
        let sources = BlockSources {
            atomizer: params.atomizer.clone(),
            archiver: Some(params.archiver.clone()),
            retry: params.retry,
        };
        let tasks = vec![
            (
                "block follower",
                tokio::spawn(follower::follow_blocks(
                    shared.clone(),
                    sources,
                    stop.clone(),
                )),
            ),
            (
                "atomizer height",
                tokio::spawn(follower::learn_target(
                    shared.clone(),
                    params.retry,
                    stop.clone(),
                )),
            ),
            (
                "recheck",
                tokio::spawn(follower::run_rechecks(shared.clone(), params.retry, stop)),
            ),
        ];
        tracing::info!(
            dir = %params.data_dir.display(),
            range = ?params.range,
            height,
            "atomizer shard started"
        );
        Ok(AtomizerShard {
            shared,
            db,
            shutdown,
            tasks,
        })
    }

    /// The `cbdc.v1.AtomizerShard` service (internal message size limits).
    pub fn submit_service(&self) -> AtomizerShardServer<AtomizerShardService> {
        AtomizerShardService::new(self.shared.clone()).into_server()
    }

    /// The `cbdc.v1.ShardQuery` service (internal message size limits).
    pub fn query_service(&self) -> ShardQueryServer<AtomizerShardQueryService> {
        AtomizerShardQueryService::new(self.shared.clone()).into_server()
    }

    /// The height of the last block applied (0 before the first).
    pub fn height(&self) -> u64 {
        self.shared.height()
    }

    /// Whether the shard knows the atomizer's height at start and has applied every block
    /// up to it, so that it attests inputs.
    pub fn is_caught_up(&self) -> bool {
        self.shared.is_caught_up()
    }

    /// Whether the shard still applies blocks: `false` once a block did not fit the store
    /// (it diverged) or the store failed; it then refuses submissions and queries with
    /// `UNAVAILABLE` until it is rebuilt.
    pub fn is_healthy(&self) -> bool {
        self.shared.unhealthy.get().is_none()
    }

    /// Stops the background tasks and closes RocksDB, waiting (up to 10 s) to hold the
    /// last reference to it, so that the same directory can be opened again. Stop the
    /// gRPC server first: its services share the store.
    pub async fn shutdown(self) -> Result<(), AtomizerShardError> {
        let _ = self.shutdown.send(true);
        let mut result = Ok(());
        for (what, task) in self.tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout(TASK_STOP_WAIT, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(task = what, error = %e, "atomizer shard task failed");
                    if result.is_ok() {
                        result = Err(AtomizerShardError::task(what, e));
                    }
                }
                Err(_) => {
                    tracing::warn!(task = what, "task did not stop in time; aborting it");
                    abort.abort();
                }
            }
        }
        drop(self.shared);
        cbdc_consensus::storage::close_db(self.db, "atomizer shard").await;
        tracing::info!("atomizer shard stopped");
        result
    }
}

/// Bulk-loads genesis `outputs` into the store of an atomizer-mode shard that has never
/// run (at `data_dir`, created if missing), at height 0, and closes it again; returns the
/// supply seeded. Seed every shard owning a range with that range's outputs before the
/// cluster starts. Refuses a store that holds outputs or blocks already.
///
/// (This is [`UhsStore::seed`] on the shard's plain store: the locking shard's
/// `seed_genesis` writes a Raft replica's database, with column families this shard does
/// not open.)
pub fn seed_atomizer_shard(
    data_dir: &Path,
    outputs: impl IntoIterator<Item = (UhsId, Amount)>,
) -> Result<Supply, AtomizerShardError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        AtomizerShardError::InvalidParams(format!(
            "cannot create data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let store = UhsStore::open(data_dir)?;
    let height = store.height()?;
    if height > 0 || store.supply()?.count > 0 {
        return Err(AtomizerShardError::InvalidParams(format!(
            "{} already holds outputs or blocks (height {height}); genesis seeds only a \
             fresh shard",
            data_dir.display()
        )));
    }
    Ok(store.seed(outputs)?)
}
