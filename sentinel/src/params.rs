//! What a sentinel needs to know: its key, the cluster's validation rules and topology,
//! and how it batches.

use std::time::Duration;

use cbdc_core::{SecretKey, ShardMap, Validator};

/// How long a sentinel's batcher waits by default for a batch to fill: 10 ms.
///
/// A batch is the unit of everything downstream: one signature batch per 32 of its
/// transactions, one `ExecuteBatch` call, one coordinator dtx or part of one, each with
/// a fixed cost. Under moderate load a short wait cuts many small batches: at 15,200 tx/s
/// on the 2-core machine (80 % of the 2PC bar) a transaction cost 124–128 ms of CPU per
/// 1,000 with 2 ms, 110–114 with 10 ms, and p99 fell from 199–817 ms to 189–191 ms;
/// at saturation, run side by side, 97–98 against 102–103 ms (BENCHMARKS.md, session
/// 22). The price is up to 10 ms more latency for a lone transaction on an idle system.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_millis(10);

/// Parameters of one sentinel. Built by the `cbdc` binary from the cluster file; tests
/// build it directly.
#[derive(Clone)]
pub struct SentinelParams {
    /// This sentinel's attestation key: it signs the Merkle root of every batch it
    /// forwards, and coordinators and shards check that signature.
    pub key: SecretKey,
    /// The cluster's stateless rules: size limits and the issuer key (the only key whose
    /// mints are accepted).
    pub validator: Validator,
    /// The shard ranges: which shard group answers status queries for a tx id or UHS id.
    pub shard_map: ShardMap,
    /// Client endpoints (`host:port`) of each coordinator group's replicas, one list per
    /// group. A transaction goes to group `ShardMap::even(groups).shard_for_tx(tx_id)`
    /// (see [`crate::TwoPhaseBackend`]).
    pub coordinator_groups: Vec<Vec<String>>,
    /// `ShardQuery` endpoints (`host:port`) of each shard group's replicas, indexed like
    /// the ranges of [`SentinelParams::shard_map`].
    pub shard_groups: Vec<Vec<String>>,
    /// Distinct sentinel attestations the back ends require (reported by `GetInfo`; this
    /// sentinel always adds its own).
    pub attestation_threshold: u32,
    /// Most transactions validated, attested and forwarded as one batch.
    pub max_batch_size: usize,
    /// Longest a transaction waits in the batcher for the batch to fill
    /// ([`DEFAULT_BATCH_DELAY`] unless set).
    pub max_batch_delay: Duration,
    /// Longest the sentinel waits for the back end to answer one batch or query; after
    /// it the caller gets `UNAVAILABLE` (the transaction may still settle: ask
    /// `GetTransactionStatus`, or submit it again, which is safe).
    pub request_timeout: Duration,
    /// Most transactions one `SubmitTransactions` stream may have in flight; the sentinel
    /// stops reading the stream while it is at the limit (back pressure).
    pub max_stream_in_flight: usize,
}

/// Why a [`SentinelParams`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A field that must be positive is zero (or empty).
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// The shard endpoints do not match the shard map.
    #[error("{groups} shard groups of endpoints for {shards} shard ranges")]
    ShardCount {
        /// Endpoint lists given.
        groups: usize,
        /// Ranges in the shard map.
        shards: usize,
    },
    /// An endpoint that is not `host:port` or a URL.
    #[error("bad endpoint {0:?}")]
    BadEndpoint(String),
    /// A group with no replica endpoint.
    #[error("{kind} group {group} has no endpoints")]
    EmptyGroup {
        /// `"coordinator"` or `"shard"`.
        kind: &'static str,
        /// The group's index.
        group: usize,
    },
}

impl SentinelParams {
    /// Parameters with the given key, validator and shard map, no back-end endpoints,
    /// and default batching: 512 transactions or [`DEFAULT_BATCH_DELAY`], a 10 s request
    /// timeout, 1024 transactions in flight per stream, attestation threshold 1.
    pub fn new(key: SecretKey, validator: Validator, shard_map: ShardMap) -> Self {
        SentinelParams {
            key,
            validator,
            shard_map,
            coordinator_groups: Vec::new(),
            shard_groups: Vec::new(),
            attestation_threshold: 1,
            max_batch_size: 512,
            max_batch_delay: DEFAULT_BATCH_DELAY,
            request_timeout: Duration::from_secs(10),
            max_stream_in_flight: 1024,
        }
    }

    /// Checks the batching parameters (always) and the back-end topology (what
    /// [`crate::TwoPhaseBackend`] needs).
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.max_batch_size == 0 {
            return Err(ParamsError::Zero("max_batch_size"));
        }
        if self.max_stream_in_flight == 0 {
            return Err(ParamsError::Zero("max_stream_in_flight"));
        }
        if self.request_timeout.is_zero() {
            return Err(ParamsError::Zero("request_timeout"));
        }
        Ok(())
    }

    /// Checks the endpoints a [`crate::TwoPhaseBackend`] is built from.
    pub fn validate_topology(&self) -> Result<(), ParamsError> {
        if self.coordinator_groups.is_empty() {
            return Err(ParamsError::Zero("coordinator_groups"));
        }
        if let Some(group) = self.coordinator_groups.iter().position(Vec::is_empty) {
            return Err(ParamsError::EmptyGroup {
                kind: "coordinator",
                group,
            });
        }
        self.validate_shard_groups()
    }

    /// Checks that there is one non-empty list of shard endpoints per shard range (what
    /// both back ends need).
    pub fn validate_shard_groups(&self) -> Result<(), ParamsError> {
        if self.shard_groups.len() != self.shard_map.len() {
            return Err(ParamsError::ShardCount {
                groups: self.shard_groups.len(),
                shards: self.shard_map.len(),
            });
        }
        match self.shard_groups.iter().position(Vec::is_empty) {
            Some(group) => Err(ParamsError::EmptyGroup {
                kind: "shard",
                group,
            }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for SentinelParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelParams")
            .field("sentinel", &self.key.public_key())
            .field("validator", &self.validator)
            .field("shards", &self.shard_map.len())
            .field("coordinator_groups", &self.coordinator_groups)
            .field("shard_groups", &self.shard_groups)
            .field("attestation_threshold", &self.attestation_threshold)
            .field("max_batch_size", &self.max_batch_size)
            .field("max_batch_delay", &self.max_batch_delay)
            .field("request_timeout", &self.request_timeout)
            .field("max_stream_in_flight", &self.max_stream_in_flight)
            .finish()
    }
}
