//! The state machine trait of cbdc and its openraft wrapper.
//!
//! A role (2PC shard, coordinator, atomizer) implements [`StateMachine`]: plain,
//! synchronous, deterministic functions over its own column families, testable without a
//! runtime. [`StateMachineStore`] adapts it to openraft: it decodes a run of committed
//! entries, hands all their commands to [`StateMachine::apply`] at once, writes the staged
//! changes together with the last applied log id and membership in ONE RocksDB write batch,
//! and answers only after that batch is written. It also records snapshot points and
//! exports and installs snapshots.
//!
//! # Durability: every command is written to disk once
//!
//! The Raft log already holds every committed command durably (its appends sync the
//! WAL), so the state machine's batches are written **without** RocksDB's WAL: a command
//! is not written to the WAL a second time in another shape. What a crash loses of the
//! state machine (its unflushed memtables) is rebuilt on restart from the log: openraft
//! re-applies the committed entries after the durable last-applied id, and commands are
//! deterministic, so the replay reaches the same state and the same answers. Two rules
//! keep that true:
//!
//! - the database uses RocksDB's *atomic flush* ([`crate::storage::open_db`]): every
//!   column family is flushed at the same point, so the durable state is always the state
//!   after some whole batch, with that batch's last-applied id beside it;
//! - the log store's purges are written without the WAL as well ([`crate::log_store`]),
//!   so no purge of an entry reaches disk without the effects of that entry.
//!
//! Measured with `cbdc bench` (2PC, 60 s, 2 cores): +2–7 % throughput with 1 replica per
//! group, +6 % with 3 (BENCHMARKS.md).
//!
//! # Snapshots are points; a copy is made when one is sent
//!
//! The state machine's column families already hold its whole state at its last applied
//! log id. So building a snapshot (which openraft asks for every
//! [`RaftTuning::snapshot_every`](crate::RaftTuning) entries, to purge the log behind it)
//! records only that point (log id and membership, a few bytes) and copies nothing. The
//! copy ([`StateMachine::snapshot`]) is made when a snapshot is read: when a lagging or
//! new replica needs one, or once when a replica that has recorded a point starts. It is
//! taken from the state as it is then, at or past every point recorded, so it covers
//! whatever the log no longer holds. A full copy on every build had held the state
//! machine's lock for as long as it took to serialize millions of outputs, stalling every
//! apply behind it, and had written the copy into the database.

use std::fmt::Debug;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
};
use rocksdb::{WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{decode, encode, ConsensusError};
use crate::storage::{cf, unlogged, CF_SM_META};
use crate::types::{typ, CommandBytes, NodeId, ResponseBytes, TypeConfig};

const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
/// The last snapshot point (a [`typ::SnapshotMeta`]).
const KEY_SNAPSHOT_POINT: &[u8] = b"snapshot_point";
/// Where builds before snapshot points kept a whole copy of the state: removed at open.
const KEY_LEGACY_SNAPSHOT: &[u8] = b"snapshot";

/// A replicated, deterministic state machine (the business logic of one Raft group).
///
/// Rules:
/// - `apply` must be deterministic: the same commands on the same state give the same
///   responses and the same staged writes on every replica.
/// - Business rejections (double spend, missing input, replayed mint) are `Response`s.
///   An `Err` means the replica cannot go on (a disk failure, corrupt data): it stops the
///   Raft state machine of this replica.
/// - All durable changes are staged into the given `WriteBatch`; the wrapper adds the last
///   applied log id and membership and writes the batch once. Reads of the DB inside one
///   `apply` call do **not** see what that same call staged: a state machine that reads its
///   own column families must keep an overlay of the changes made earlier in the call
///   (e.g. an output created and spent in the same run of entries).
/// - In-memory caches may be updated in `apply`, or, to be exact on a failed write, only
///   in [`StateMachine::on_written`].
pub trait StateMachine: Send + Sync + 'static {
    /// One command (what a client asks for). A command may itself be a batch.
    type Command: Serialize + DeserializeOwned + Send + Sync + Debug + 'static;
    /// The answer to one command.
    type Response: Serialize + DeserializeOwned + Send + Sync + Debug + 'static;

    /// The column families this state machine keeps its data in (created on open, in the
    /// replica's one RocksDB instance; names must not clash with [`crate::storage::CONSENSUS_CFS`]).
    fn column_families() -> &'static [&'static str];

    /// Those of [`StateMachine::column_families`] whose keys are uniformly random ids
    /// (such as hashes), read by point lookups on the hot path: they get a small memtable
    /// and no compression (see `storage::random_key_tuning`). Stage their writes in key
    /// order: each skip-list insert then walks much the same path as the one before, in
    /// cache. None by default.
    fn random_key_column_families() -> &'static [&'static str] {
        &[]
    }

    /// Apply `commands` in order, staging every change into `batch`; return exactly one
    /// response per command, in order.
    fn apply(
        &mut self,
        batch: &mut WriteBatch,
        commands: Vec<Self::Command>,
    ) -> Result<Vec<Self::Response>, ConsensusError>;

    /// Serialize the whole current state (as of the last written batch). Called only when
    /// a snapshot is read (see the module docs), under the state machine's lock.
    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError>;

    /// Replace the whole state by the one in `data` (made by [`StateMachine::snapshot`]),
    /// staging the changes into `batch` (see [`crate::storage::clear_cf`]).
    fn install_snapshot(
        &mut self,
        batch: &mut WriteBatch,
        data: &[u8],
    ) -> Result<(), ConsensusError>;

    /// Called after a batch staged by `apply` or `install_snapshot` has been written, to
    /// bring in-memory state in line with it. An `Err` stops the replica, as in `apply`.
    fn on_written(&mut self) -> Result<(), ConsensusError> {
        Ok(())
    }
}

/// The state of the wrapper, behind one mutex shared with the snapshot builder and with
/// local readers ([`crate::ReplicaHandle::read`]).
pub(crate) struct SmState<S> {
    pub(crate) sm: S,
    pub(crate) last_applied: Option<typ::LogId>,
    pub(crate) membership: typ::StoredMembership,
}

/// What the wrapper shares.
pub(crate) struct SmShared<S> {
    db: Arc<DB>,
    // A std mutex: it is never held across an `.await`, and local reads are synchronous.
    state: Mutex<SmState<S>>,
    snapshot_seq: AtomicU64,
}

impl<S> SmShared<S> {
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, SmState<S>>, ConsensusError> {
        self.state.lock().map_err(|_| {
            ConsensusError::StateMachine("state machine lock poisoned by a panic".into())
        })
    }

    /// The snapshot metadata of the state as it is (the caller holds the lock).
    fn point(&self, state: &SmState<S>) -> typ::SnapshotMeta {
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &state.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        typ::SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        }
    }
}

impl<S: StateMachine> SmShared<S> {
    /// Records a snapshot point at the state as it is (see the module docs).
    fn build_point(&self) -> Result<typ::SnapshotMeta, ConsensusError> {
        let meta = self.point(&*self.lock()?);
        let db = &self.db;
        db.put_cf(cf(db, CF_SM_META)?, KEY_SNAPSHOT_POINT, encode(&meta)?)?;
        tracing::debug!(snapshot = %meta.snapshot_id, "recorded snapshot point");
        Ok(meta)
    }

    /// A copy of the whole state as it is, or `None` while no snapshot point was ever
    /// recorded or installed (nothing purged: openraft then has no use for one).
    fn export(&self) -> Result<Option<typ::Snapshot>, ConsensusError> {
        let Some(recorded) = get_meta::<typ::SnapshotMeta>(&self.db, KEY_SNAPSHOT_POINT)? else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let (meta, data) = {
            let state = self.lock()?;
            // Still at the recorded point: the same snapshot, under the same id.
            let meta = if recorded.last_log_id == state.last_applied {
                recorded
            } else {
                self.point(&state)
            };
            (meta, state.sm.snapshot()?)
        };
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = data.len(),
            elapsed = ?started.elapsed(),
            "exported snapshot"
        );
        Ok(Some(typ::Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// [`RaftStateMachine`] over a [`StateMachine`] and the replica's RocksDB.
pub struct StateMachineStore<S: StateMachine> {
    shared: Arc<SmShared<S>>,
}

/// Records snapshot points (see the module docs).
pub struct SnapshotBuilder<S: StateMachine> {
    shared: Arc<SmShared<S>>,
}

fn any(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn get_meta<T: DeserializeOwned>(db: &DB, key: &[u8]) -> Result<Option<T>, ConsensusError> {
    let handle = cf(db, CF_SM_META)?;
    match db.get_cf(handle, key)? {
        None => Ok(None),
        Some(bytes) => {
            bincode::deserialize(&bytes)
                .map(Some)
                .map_err(|e| ConsensusError::Corrupt {
                    what: "state machine metadata",
                    reason: e.to_string(),
                })
        }
    }
}

impl<S: StateMachine> StateMachineStore<S> {
    /// Wrap `sm`, whose data lives in `db`, loading the last applied log id and membership.
    pub fn new(db: Arc<DB>, sm: S) -> Result<Self, ConsensusError> {
        // Stored as an `Option<LogId>` (see `apply_entries`).
        let last_applied: Option<Option<typ::LogId>> = get_meta(&db, KEY_LAST_APPLIED)?;
        let last_applied = last_applied.flatten();
        let membership: typ::StoredMembership = get_meta(&db, KEY_MEMBERSHIP)?.unwrap_or_default();
        db.delete_cf(cf(&db, CF_SM_META)?, KEY_LEGACY_SNAPSHOT)?;
        Ok(Self {
            shared: Arc::new(SmShared {
                db,
                state: Mutex::new(SmState {
                    sm,
                    last_applied,
                    membership,
                }),
                snapshot_seq: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn shared(&self) -> Arc<SmShared<S>> {
        self.shared.clone()
    }

    fn apply_entries(
        &self,
        entries: Vec<typ::Entry>,
    ) -> Result<Vec<ResponseBytes>, ConsensusError> {
        let db = &self.shared.db;
        let meta_cf = cf(db, CF_SM_META)?;
        let mut state = self.shared.lock()?;
        let mut last_applied = state.last_applied;
        let mut membership = None;
        // For each entry: how many commands it carried (None: blank or membership).
        let mut counts: Vec<usize> = Vec::with_capacity(entries.len());
        let mut commands: Vec<S::Command> = Vec::new();
        for entry in entries {
            last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => counts.push(0),
                EntryPayload::Normal(CommandBytes(bytes)) => {
                    let batch: Vec<S::Command> =
                        decode(&bytes).map_err(|e| ConsensusError::Corrupt {
                            what: "log entry",
                            reason: format!("entry {}: {e}", entry.log_id),
                        })?;
                    counts.push(batch.len());
                    commands.extend(batch);
                }
                EntryPayload::Membership(m) => {
                    membership = Some(typ::StoredMembership::new(Some(entry.log_id), m));
                    counts.push(0);
                }
            }
        }
        let mut batch = WriteBatch::default();
        let expected = commands.len();
        let responses = if commands.is_empty() {
            Vec::new()
        } else {
            state.sm.apply(&mut batch, commands)?
        };
        if responses.len() != expected {
            return Err(ConsensusError::StateMachine(format!(
                "apply returned {} responses for {expected} commands",
                responses.len()
            )));
        }
        batch.put_cf(meta_cf, KEY_LAST_APPLIED, encode(&last_applied)?);
        if let Some(m) = &membership {
            batch.put_cf(meta_cf, KEY_MEMBERSHIP, encode(m)?);
        }
        // No WAL: the Raft log holds these commands (see the module docs).
        db.write_opt(batch, &unlogged())?;
        state.last_applied = last_applied;
        if let Some(m) = membership {
            state.membership = m;
        }
        state.sm.on_written()?;
        drop(state);

        let mut out = Vec::with_capacity(counts.len());
        let mut responses = responses.into_iter();
        for n in counts {
            let chunk: Vec<S::Response> = responses.by_ref().take(n).collect();
            out.push(ResponseBytes(encode(&chunk)?));
        }
        Ok(out)
    }

    fn install(&self, meta: &typ::SnapshotMeta, data: Vec<u8>) -> Result<(), ConsensusError> {
        let db = &self.shared.db;
        let meta_cf = cf(db, CF_SM_META)?;
        let mut state = self.shared.lock()?;
        let mut batch = WriteBatch::default();
        state.sm.install_snapshot(&mut batch, &data)?;
        batch.put_cf(meta_cf, KEY_LAST_APPLIED, encode(&meta.last_log_id)?);
        batch.put_cf(meta_cf, KEY_MEMBERSHIP, encode(&meta.last_membership)?);
        batch.put_cf(meta_cf, KEY_SNAPSHOT_POINT, encode(meta)?);
        db.write(batch)?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.sm.on_written()?;
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    /// openraft keeps only the metadata of a snapshot it has built (it reads the data
    /// through `get_current_snapshot` when it sends one), so the point goes with no data.
    async fn build_snapshot(&mut self) -> Result<typ::Snapshot, StorageError<NodeId>> {
        let meta = self
            .shared
            .build_point()
            .map_err(|e| StorageIOError::write_snapshot(None, any(e)))?;
        Ok(typ::Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<typ::LogId>, typ::StoredMembership), StorageError<NodeId>> {
        let state = self
            .shared
            .lock()
            .map_err(|e| StorageIOError::read_state_machine(any(e)))?;
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ResponseBytes>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<typ::Entry> = entries.into_iter().collect();
        self.apply_entries(entries).map_err(|e| {
            tracing::error!(error = %e, "state machine apply failed; this replica stops");
            StorageIOError::write_state_machine(any(e)).into()
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &typ::SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.install(meta, snapshot.into_inner())
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<typ::Snapshot>, StorageError<NodeId>> {
        // Serializing the whole state is long, blocking work: off the async threads.
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.export())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)).into())
    }
}
