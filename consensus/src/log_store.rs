//! The Raft log and Raft metadata in RocksDB.
//!
//! Layout (column families of the replica's one RocksDB instance, see [`crate::storage`]):
//! - `raft_log`: key = log index as big-endian `u64` (so byte order is index order),
//!   value = bincode of the [`Entry`](crate::typ::Entry);
//! - `raft_meta`: `vote`, `committed` and `last_purged` (bincode).
//!
//! Durability: the vote is written with a synced WAL before `save_vote` returns. Appended
//! entries are written at once (so they are readable as soon as `append` returns) and a
//! dedicated flusher thread then syncs the WAL — one `fsync` for every append queued
//! meanwhile (group commit) — and only then fires openraft's callbacks, in order. One
//! RocksDB instance has one WAL, so syncing it also makes every earlier write durable.
//!
//! The state machine writes without the WAL and relies on this log to replay what a crash
//! lost of it (see [`crate::state_machine`]), so a purge is written without the WAL too:
//! it reaches disk only with the next flush, which is atomic across every column family
//! and so also carries the state machine's writes of the purged entries (they were
//! written before it). A crash before that flush loses the purge and those writes
//! together, and the log replays them. Nothing is flushed on purpose: entries purged
//! while still in the memtable are dropped by the flush and never written to an SST
//! (a 2PC shard's log was two thirds of the bytes it flushed when a purge forced one).

// `StorageError` is openraft's own error type, imposed by its storage traits; the private
// helpers below return it too rather than converting back and forth.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::storage::{cf, unlogged, CF_RAFT_LOG, CF_RAFT_META};
use crate::types::{typ, NodeId, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Big-endian key of a log index: byte order is index order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, StorageError<NodeId>> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        StorageIOError::read_logs(AnyError::error(format!(
            "bad log key of {} bytes",
            key.len()
        )))
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn sto_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

/// Reads the Raft log; cheap to clone (shares the DB).
#[derive(Clone)]
pub struct LogReader {
    db: Arc<DB>,
}

impl LogReader {
    fn entries(
        &self,
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<typ::Entry>, StorageError<NodeId>> {
        let cf = cf(&self.db, CF_RAFT_LOG).map_err(|e| StorageIOError::read_logs(sto_err(e)))?;
        let mut out = Vec::new();
        let start_key = index_key(start);
        let iter = self
            .db
            .iterator_cf(&cf, IteratorMode::From(&start_key, Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(sto_err(e)))?;
            let index = key_index(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry: typ::Entry = bincode::deserialize(&value)
                .map_err(|e| StorageIOError::read_log_at_index(index, sto_err(e)))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<typ::Entry>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e.saturating_add(1)),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        self.entries(start, end)
    }
}

/// The Raft log store of one replica ([`RaftLogStorage`] over RocksDB).
pub struct LogStore {
    reader: LogReader,
    flusher: Flusher,
}

/// The WAL flusher thread and its queue of callbacks to fire once the WAL is synced.
///
/// Dropping it closes the queue and joins the thread, so the thread's reference to the
/// DB is gone when the store is: otherwise the thread could be the last holder and close
/// RocksDB while the process exits, which aborts it ("pthread lock: Invalid argument").
struct Flusher {
    tx: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(db: Arc<DB>) -> Result<Self, crate::ConsensusError> {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let thread = std::thread::Builder::new()
            .name("raft-wal-flush".into())
            .spawn(move || flusher(db, rx))
            .map_err(|e| crate::ConsensusError::Raft(format!("spawn WAL flusher: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `callback`; gives it back if the thread is gone.
    fn send(&self, callback: LogFlushed<TypeConfig>) -> Result<(), LogFlushed<TypeConfig>> {
        match &self.tx {
            Some(tx) => tx.send(callback).map_err(|mpsc::SendError(c)| c),
            None => Err(callback),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the WAL flusher thread panicked");
            }
        }
    }
}

impl LogStore {
    /// A log store over the replica's DB (which must have the [`crate::storage`] column
    /// families). Starts the WAL flusher thread, which is joined when the store is dropped.
    pub fn new(db: Arc<DB>) -> Result<Self, crate::ConsensusError> {
        let flusher = Flusher::start(db.clone())?;
        Ok(Self {
            reader: LogReader { db },
            flusher,
        })
    }

    fn db(&self) -> &DB {
        &self.reader.db
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        let cf = cf(self.db(), CF_RAFT_META).map_err(sto_err)?;
        match self.db().get_cf(&cf, key).map_err(sto_err)? {
            None => Ok(None),
            Some(bytes) => bincode::deserialize(&bytes).map(Some).map_err(sto_err),
        }
    }

    fn last_log_id(&self) -> Result<Option<typ::LogId>, StorageError<NodeId>> {
        let cf = cf(self.db(), CF_RAFT_LOG).map_err(|e| StorageIOError::read_logs(sto_err(e)))?;
        let mut iter = self.db().iterator_cf(&cf, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item.map_err(|e| StorageIOError::read_logs(sto_err(e)))?;
                let index = key_index(&key)?;
                let entry: typ::Entry = bincode::deserialize(&value)
                    .map_err(|e| StorageIOError::read_log_at_index(index, sto_err(e)))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

/// Syncs the WAL for every batch of queued appends, then fires their callbacks in order.
fn flusher(db: Arc<DB>, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        pending.extend(rx.try_iter());
        let result = db.flush_wal(true);
        if let Err(e) = &result {
            tracing::error!(error = %e, "syncing the Raft WAL failed");
        }
        for callback in pending {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            callback.log_io_completed(r);
        }
    }
    tracing::debug!("WAL flusher stopped");
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<typ::Entry>, StorageError<NodeId>> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<typ::LogId> = self
            .get_meta(KEY_LAST_PURGED)
            .map_err(StorageIOError::read_logs)?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let cf = cf(self.db(), CF_RAFT_META).map_err(|e| StorageIOError::write_vote(sto_err(e)))?;
        let bytes = bincode::serialize(vote).map_err(|e| StorageIOError::write_vote(sto_err(e)))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, KEY_VOTE, bytes);
        self.db()
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_vote(sto_err(e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta(KEY_VOTE).map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let cf = cf(self.db(), CF_RAFT_META).map_err(|e| StorageIOError::write(sto_err(e)))?;
        let bytes =
            bincode::serialize(&committed).map_err(|e| StorageIOError::write(sto_err(e)))?;
        // Not synced: losing it only means re-applying less on restart.
        self.db()
            .put_cf(&cf, KEY_COMMITTED, bytes)
            .map_err(|e| StorageIOError::write(sto_err(e)))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed: Option<Option<typ::LogId>> =
            self.get_meta(KEY_COMMITTED).map_err(StorageIOError::read)?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = cf(self.db(), CF_RAFT_LOG).map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = bincode::serialize(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, sto_err(e)))?;
            batch.put_cf(&cf, index_key(entry.log_id.index), bytes);
        }
        // Written now (readable at once), made durable by the flusher before the callback.
        self.db()
            .write(batch)
            .map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        if let Err(callback) = self.flusher.send(callback) {
            // The flusher is gone (it never exits while we hold the sender); sync inline.
            let r = self
                .db()
                .flush_wal(true)
                .map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(r);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "truncate log since");
        let cf = cf(self.db(), CF_RAFT_LOG).map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(&cf, index_key(u64::MAX));
        self.db()
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "purge log upto");
        let log_cf =
            cf(self.db(), CF_RAFT_LOG).map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        let meta_cf =
            cf(self.db(), CF_RAFT_META).map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        let bytes =
            bincode::serialize(&log_id).map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&meta_cf, KEY_LAST_PURGED, bytes);
        batch.delete_range_cf(
            &log_cf,
            index_key(0),
            index_key(log_id.index.saturating_add(1)),
        );
        // Without the WAL: durable only with the state it depends on (see the module docs).
        self.db()
            .write_opt(batch, &unlogged())
            .map_err(|e| StorageIOError::write_logs(sto_err(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;
    use crate::testkit::KvStateMachine;

    /// The point of purging without a flush: entries purged while still in the memtable
    /// are dropped by the next flush instead of being written to an SST.
    #[tokio::test]
    async fn test_purged_entries_are_not_written_by_the_next_flush() -> anyhow::Result<()> {
        let dir = tempfile::TempDir::new()?;
        let db = crate::storage::open_db::<KvStateMachine>(dir.path())?;
        let log_cf = cf(&db, CF_RAFT_LOG)?;
        let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        // Written as appends are (with the WAL).
        for index in 1..=1_000u64 {
            let entry = typ::Entry {
                log_id: log_id(index),
                payload: openraft::EntryPayload::Normal(crate::CommandBytes(vec![7; 512])),
            };
            db.put_cf(log_cf, index_key(index), bincode::serialize(&entry)?)?;
        }
        let mut store = LogStore::new(db.clone())?;
        let purged = log_id(900);
        store.purge(purged).await?;
        assert_eq!(
            store.get_log_state().await?.last_purged_log_id,
            Some(purged)
        );

        db.flush_cf(log_cf)?;
        let (entries, deletions) = db
            .live_files()?
            .iter()
            .filter(|f| f.column_family_name == CF_RAFT_LOG)
            .fold((0, 0), |(e, d), f| (e + f.num_entries, d + f.num_deletions));
        assert_eq!(
            entries - deletions,
            100,
            "only entries 901..=1000 are written"
        );
        let mut left = db.iterator_cf(log_cf, IteratorMode::Start);
        let (first, _) = left.next().ok_or_else(|| anyhow::anyhow!("empty log"))??;
        assert_eq!(key_index(&first)?, 901);
        Ok(())
    }
}
