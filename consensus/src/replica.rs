//! One replica of a Raft group: storage, Raft, the peer service, bootstrap, and the
//! handle through which the role writes commands and reads its state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use rocksdb::DB;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{decode, encode, ConsensusError};
use crate::log_store::LogStore;
use crate::network::{Network, RaftPeerService};
use crate::state_machine::{SmShared, StateMachine, StateMachineStore};
use crate::storage::{open_db_with, StorageTuning};
use crate::types::{typ, CommandBytes, NodeId, ReplicaNode};

/// Raft timing and log-compaction parameters of a group (the same on every replica).
#[derive(Debug, Clone)]
pub struct RaftTuning {
    /// How often the leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in
    /// `[election_timeout_min, election_timeout_max)` starts an election.
    pub election_timeout_min: Duration,
    /// Upper end of the election timeout range.
    pub election_timeout_max: Duration,
    /// Record a snapshot point after this many log entries were applied since the last
    /// one; the log is purged behind it. A point copies nothing (see
    /// [`crate::StateMachineStore`]), so it can come often: log entries purged before the
    /// next flush of the memtables are never written to disk but once, in the WAL.
    pub snapshot_every: u64,
    /// Log entries kept below the last snapshot point, so that a replica that lags by
    /// fewer catches up by log rather than by a copy of the whole state. Entries kept
    /// are flushed with the memtables like any data: more of them is more to write.
    pub keep_logs_after_snapshot: u64,
    /// Most log entries in one AppendEntries message. openraft has no byte cap, so this
    /// bounds the message: with entries of up to ~10 MiB (a full coordinator dtx) it must
    /// stay well under [`crate::network::MAX_MESSAGE_SIZE`] / 10 MiB.
    pub max_payload_entries: u64,
    /// Size of one snapshot chunk, in bytes.
    pub snapshot_chunk_size: u64,
    /// How long a snapshot chunk may take to be installed.
    pub install_snapshot_timeout: Duration,
    /// RocksDB tuning of the replica's database.
    pub storage: StorageTuning,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(800),
            // A 2PC group under `cbdc bench` appends about 90 entries a second and
            // flushes every 4–5 s: points every 64 entries with 64 kept leave 29 % of a
            // shard's log and 16 % of a coordinator's to be flushed (BENCHMARKS.md).
            snapshot_every: 64,
            keep_logs_after_snapshot: 64,
            max_payload_entries: 16,
            snapshot_chunk_size: 3 * 1024 * 1024,
            install_snapshot_timeout: Duration::from_secs(10),
            storage: StorageTuning::default(),
        }
    }
}

impl RaftTuning {
    /// openraft's configuration, validated.
    pub fn to_openraft(&self, cluster_name: &str) -> Result<openraft::Config, ConsensusError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: cluster_name.to_string(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.install_snapshot_timeout),
            max_payload_entries: self.max_payload_entries,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            snapshot_max_chunk_size: self.snapshot_chunk_size,
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ConsensusError::Config(e.to_string()))
    }
}

/// Everything one replica needs to start.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This replica's id; must be a key of `members`.
    pub id: NodeId,
    /// Name of the group (for logs), e.g. `"shard-0"`.
    pub group: String,
    /// Directory of this replica's RocksDB (created if missing).
    pub data_dir: PathBuf,
    /// Every member of the group with its endpoints (1, 3 or 5 replicas). The replica
    /// with the lowest id initializes the group once a majority answers.
    pub members: BTreeMap<NodeId, ReplicaNode>,
    /// Raft timings and compaction.
    pub tuning: RaftTuning,
}

impl ReplicaConfig {
    /// Check the member list.
    pub fn validate(&self) -> Result<(), ConsensusError> {
        if !self.members.contains_key(&self.id) {
            return Err(ConsensusError::Config(format!(
                "replica {} is not in the member list",
                self.id
            )));
        }
        Ok(())
    }
}

/// A running replica. Dropping it without [`Replica::shutdown`] leaves tasks running.
pub struct Replica<S: StateMachine> {
    handle: ReplicaHandle<S>,
    shutdown_tx: watch::Sender<bool>,
    server: JoinHandle<()>,
    bootstrap: JoinHandle<()>,
    /// Our own reference to the database, dropped last by [`Replica::shutdown`] so that
    /// RocksDB closes on a thread we wait for: a close left to whichever task dropped the
    /// last reference could still run when the process exits, and RocksDB then aborts
    /// ("pthread lock: Invalid argument") — or a restart in the same process finds the
    /// directory still locked.
    db: Arc<DB>,
}

impl<S: StateMachine> Replica<S> {
    /// Open the replica's storage, start Raft, serve `RaftPeer` on `peer_listener`, and
    /// (on the lowest-id member of a group that is not initialized yet) initialize the
    /// group once a majority of members accepts connections.
    ///
    /// `make_sm` builds the state machine over the replica's RocksDB (whose column
    /// families include [`StateMachine::column_families`]).
    pub async fn start(
        config: ReplicaConfig,
        peer_listener: TcpListener,
        make_sm: impl FnOnce(Arc<DB>) -> Result<S, ConsensusError>,
    ) -> Result<Self, ConsensusError> {
        config.validate()?;
        let raft_config = Arc::new(config.tuning.to_openraft(&config.group)?);
        let db = open_db_with::<S>(&config.data_dir, &config.tuning.storage)?;
        let own_db = db.clone();
        let sm = make_sm(db.clone())?;
        let sm_store = StateMachineStore::new(db.clone(), sm)?;
        let shared = sm_store.shared();
        let log_store = LogStore::new(db)?;
        let network = Network::new(config.id);
        let raft = typ::Raft::new(config.id, raft_config, network, log_store, sm_store)
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let server = {
            let mut rx = shutdown_rx.clone();
            let service = RaftPeerService::new(raft.clone()).into_server();
            let incoming = cbdc_proto::incoming(peer_listener);
            let id = config.id;
            tokio::spawn(async move {
                let result = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!(replica = id, error = %e, "Raft peer server failed");
                }
            })
        };
        let bootstrap = tokio::spawn(bootstrap(raft.clone(), config.clone(), shutdown_rx));
        tracing::info!(replica = config.id, group = %config.group, "replica started");
        Ok(Self {
            handle: ReplicaHandle {
                id: config.id,
                raft,
                sm: Arc::downgrade(&shared),
            },
            shutdown_tx,
            server,
            bootstrap,
            db: own_db,
        })
    }

    /// A handle for writes, reads and metrics (cheap to clone).
    pub fn handle(&self) -> ReplicaHandle<S> {
        self.handle.clone()
    }

    /// Stop Raft and the peer server, and wait (up to 10 s) until the RocksDB instance is
    /// closed, so that the same data directory can be opened again. Every
    /// [`ReplicaHandle`] of this replica must be dropped for the DB to close.
    pub async fn shutdown(self) -> Result<(), ConsensusError> {
        let id = self.handle.id;
        let _ = self.shutdown_tx.send(true);
        let raft_result = self.handle.raft.shutdown().await;
        let _ = self.bootstrap.await;
        let server = self.server;
        let abort = server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .is_err()
        {
            tracing::warn!(
                replica = id,
                "peer server did not stop in time; aborting it"
            );
            abort.abort();
        }
        drop(self.handle);
        crate::storage::close_db(self.db, &format!("replica {id}")).await;
        tracing::info!(replica = id, "replica stopped");
        raft_result.map_err(|e| ConsensusError::Raft(format!("shutdown: {e}")))
    }
}

/// Initialize the group from the lowest-id replica once a majority of the members accepts
/// TCP connections; never on a replica that has a log or a vote already.
async fn bootstrap(raft: typ::Raft, config: ReplicaConfig, mut shutdown: watch::Receiver<bool>) {
    let lowest = config.members.keys().next().copied();
    if lowest != Some(config.id) {
        return;
    }
    let quorum = config.members.len() / 2 + 1;
    loop {
        match raft.is_initialized().await {
            Ok(true) => {
                tracing::debug!(replica = config.id, "group already initialized");
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "bootstrap: raft stopped");
                return;
            }
        }
        let mut reachable = 1;
        for (id, node) in &config.members {
            if *id != config.id && peer_answers(&node.peer_addr).await {
                reachable += 1;
            }
        }
        if reachable >= quorum {
            match raft.initialize(config.members.clone()).await {
                Ok(()) => {
                    tracing::info!(replica = config.id, members = ?config.members.keys().collect::<Vec<_>>(), "initialized the group");
                    return;
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
                Err(e) => tracing::warn!(error = %e, "bootstrap: initialize failed; retrying"),
            }
        } else {
            tracing::debug!(reachable, quorum, "bootstrap: waiting for peers");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn peer_answers(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// What a role uses to talk to its replica: replicated writes, local reads, metrics.
///
/// A handle does not keep the replica's storage alive: once the replica is shut down,
/// its calls fail with [`ConsensusError::ShuttingDown`] and the RocksDB instance closes
/// even while handles remain.
pub struct ReplicaHandle<S: StateMachine> {
    id: NodeId,
    raft: typ::Raft,
    /// Weak: the state machine belongs to openraft's storage task.
    sm: Weak<SmShared<S>>,
}

impl<S: StateMachine> Clone for ReplicaHandle<S> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            raft: self.raft.clone(),
            sm: self.sm.clone(),
        }
    }
}

/// Map openraft's write error to ours.
fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, ReplicaNode>>) -> ConsensusError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ConsensusError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.client_addr),
        },
        RaftError::APIError(e) => ConsensusError::Raft(e.to_string()),
        RaftError::Fatal(f) => fatal(f),
    }
}

fn fatal(f: Fatal<NodeId>) -> ConsensusError {
    match f {
        Fatal::Stopped => ConsensusError::ShuttingDown,
        f => ConsensusError::Raft(f.to_string()),
    }
}

impl<S: StateMachine> ReplicaHandle<S> {
    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The openraft handle (for metrics, triggers and tests).
    pub fn raft(&self) -> &typ::Raft {
        &self.raft
    }

    /// Replicate one command and return its response once it is committed and applied.
    /// On a follower: [`ConsensusError::NotLeader`] with the leader's client endpoint.
    pub async fn write(&self, command: S::Command) -> Result<S::Response, ConsensusError> {
        let mut responses = self.write_batch(vec![command]).await?;
        responses
            .pop()
            .ok_or_else(|| ConsensusError::StateMachine("no response for the command".into()))
    }

    /// Replicate `commands` in ONE log entry (applied in order) and return one response
    /// per command. Callers may keep many batches in flight at once.
    pub async fn write_batch(
        &self,
        commands: Vec<S::Command>,
    ) -> Result<Vec<S::Response>, ConsensusError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.write_batch_at(commands).await?.0)
    }

    /// Like [`ReplicaHandle::write_batch`], also returning the index of the entry.
    pub async fn write_batch_at(
        &self,
        commands: Vec<S::Command>,
    ) -> Result<(Vec<S::Response>, u64), ConsensusError> {
        let n = commands.len();
        let bytes = encode(&commands)?;
        let reply = self
            .raft
            .client_write(CommandBytes(bytes))
            .await
            .map_err(write_error)?;
        let responses: Vec<S::Response> = decode(&reply.data.0)?;
        if responses.len() != n {
            return Err(ConsensusError::StateMachine(format!(
                "{} responses for {n} commands",
                responses.len()
            )));
        }
        Ok((responses, reply.log_id.index))
    }

    /// Read the local state machine. On a follower this may lag behind the leader; call
    /// [`ReplicaHandle::ensure_linearizable`] first for a linearizable read on the leader.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> Result<T, ConsensusError> {
        let shared = self.sm.upgrade().ok_or(ConsensusError::ShuttingDown)?;
        let state = shared.lock()?;
        Ok(f(&state.sm))
    }

    /// Confirm leadership with a quorum and wait until everything committed before this
    /// call is applied locally. Fails with `NotLeader` on a follower.
    pub async fn ensure_linearizable(&self) -> Result<(), ConsensusError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ConsensusError::NotLeader {
                    leader_id: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.client_addr),
                })
            }
            Err(RaftError::APIError(e)) => Err(ConsensusError::Raft(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(fatal(f)),
        }
    }

    /// The latest metrics.
    pub fn metrics(&self) -> typ::RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// The leader as this replica knows it: id and endpoints.
    pub fn leader(&self) -> Option<(NodeId, ReplicaNode)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        let node = m
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()?;
        Some((leader, node))
    }

    /// `Ok` if this replica believes it leads, else [`ConsensusError::NotLeader`] naming
    /// the leader it knows (for a service that answers on the leader only).
    pub fn require_leader(&self) -> Result<(), ConsensusError> {
        if self.is_leader() {
            return Ok(());
        }
        let leader = self.leader();
        Err(ConsensusError::NotLeader {
            leader_id: leader.as_ref().map(|(id, _)| *id),
            leader_addr: leader.map(|(_, node)| node.client_addr),
        })
    }

    /// Whether this replica currently believes it is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Index of the last applied entry (0 when none).
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Wait until the applied index reaches `index`, at most `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ConsensusError> {
        let mut rx = self.raft.metrics();
        let wait = rx.wait_for(|m| m.last_applied.map(|l| l.index).unwrap_or(0) >= index);
        let result = match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ConsensusError::ShuttingDown),
            Err(_) => Err(ConsensusError::Timeout(timeout)),
        };
        result
    }
}
