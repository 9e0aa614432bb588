//! The locking shard's own column families, their records, and the overlay through which
//! one `apply` call reads what it staged.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `shard_dtxs` | [`DtxKey`] bytes | [`DtxRecord`]: locked (slice + results), applied, or a tombstone |
//! | `shard_dtx_order` | tombstone number `u64 BE` | [`DtxKey`] bytes |
//! | `shard_outcomes` | `TxId` | [`OutcomeRecord`]: committed or rejected, and its number |
//! | `shard_outcome_order` | outcome number `u64 BE` | `TxId` |
//! | `shard_meta` | `dtx_tombstones`, `outcomes` | [`Window`] of live numbers |
//!
//! Tombstones and outcomes are numbered in the order they are written; the order tables
//! let the oldest be pruned first without a scan, and the windows say which numbers may
//! still be live. Values are bincode; [`DtxRecord`], [`StoredOutcome`] and the command
//! types they embed are therefore a format (append variants, never reorder).
//!
//! A Raft state machine stages a whole run of commands into one write batch, which cannot
//! be read back, so [`Tables`] keeps every key it changed in an overlay consulted before
//! the database — as [`crate::StagedBatch`] does for the UHS — for as long as one `apply`
//! call lasts. The overlay goes into the write batch at the end, each table in key order
//! (see [`Tables::finish`]).
//!
//! A transaction settling in a locked dtx is **pending**, and that lives only in memory
//! ([`PendingTable`]): the `Locked` dtx records are its durable copy, from which the
//! machine rebuilds it when it starts or installs a snapshot, as it does the locks. An
//! outcome record is written once, when the transaction commits or is rejected. (Builds
//! before this one also wrote a pending record at `Lock`; such records are still read.)

use std::collections::HashMap;
use std::sync::Arc;

use cbdc_core::{IdMap, TxId, UhsId};
use rocksdb::{ColumnFamily, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::command::{DtxKey, LockResult};
use super::error::LockingError;
use super::outcome::{RejectCode, TxOutcome};
use crate::lock::LockOwner;
use crate::staged::stage_in_key_order;

/// Column family of the dtx records and tombstones.
pub const CF_DTXS: &str = "shard_dtxs";
/// Column family of the tombstones' order (oldest first).
pub const CF_DTX_ORDER: &str = "shard_dtx_order";
/// Column family of the transaction outcomes, by tx id.
pub const CF_OUTCOMES: &str = "shard_outcomes";
/// Column family of the outcomes' order (oldest first).
pub const CF_OUTCOME_ORDER: &str = "shard_outcome_order";
/// Column family of the two windows of live numbers.
pub const CF_SHARD_META: &str = "shard_meta";

const META_TOMBSTONES: &[u8] = b"dtx_tombstones";
const META_OUTCOMES: &[u8] = b"outcomes";

/// The machine's own tables (one column family each), in snapshot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Dtxs,
    DtxOrder,
    Outcomes,
    OutcomeOrder,
    Meta,
}

impl Table {
    pub(crate) const ALL: [Table; 5] = [
        Table::Dtxs,
        Table::DtxOrder,
        Table::Outcomes,
        Table::OutcomeOrder,
        Table::Meta,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Dtxs => CF_DTXS,
            Table::DtxOrder => CF_DTX_ORDER,
            Table::Outcomes => CF_OUTCOMES,
            Table::OutcomeOrder => CF_OUTCOME_ORDER,
            Table::Meta => CF_SHARD_META,
        }
    }

    /// Checks that `key → value` is a record this code writes in this table.
    pub(crate) fn validate(self, key: &[u8], value: &[u8]) -> Result<(), LockingError> {
        let bad = |reason: &str| LockingError::Corrupt {
            table: self.name(),
            reason: reason.to_string(),
        };
        match self {
            Table::Dtxs => {
                DtxKey::from_bytes(key).ok_or_else(|| bad("key is not a dtx id"))?;
                decode::<DtxRecord>(self.name(), value)?;
            }
            Table::DtxOrder => {
                seq_from_key(self.name(), key)?;
                DtxKey::from_bytes(value).ok_or_else(|| bad("value is not a dtx id"))?;
            }
            Table::Outcomes => {
                TxId::from_slice(key).ok_or_else(|| bad("key is not a tx id"))?;
                decode::<OutcomeRecord>(self.name(), value)?;
            }
            Table::OutcomeOrder => {
                seq_from_key(self.name(), key)?;
                TxId::from_slice(value).ok_or_else(|| bad("value is not a tx id"))?;
            }
            Table::Meta => {
                if key != META_TOMBSTONES && key != META_OUTCOMES {
                    return Err(bad("unknown metadata key"));
                }
                Window::from_bytes(value)?;
            }
        }
        Ok(())
    }
}

/// What the shard keeps of one transaction of a locked dtx: only the parts it owns, so
/// that `Apply` does not depend on the range it is configured with later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlicedTx {
    /// The transaction's id.
    pub id: TxId,
    /// Whether this shard owns the id (and so records the outcome).
    pub owns_id: bool,
    /// Owned inputs, locked for the dtx (empty when the lock was refused).
    pub inputs: Vec<UhsId>,
    /// Owned outputs and their values in cents (empty when the lock was refused).
    pub outputs: Vec<(UhsId, u64)>,
    /// Whether this shard locked the id as a mint.
    pub mint: bool,
}

impl SlicedTx {
    /// A transaction that locked nothing here: abort has nothing to release.
    pub(crate) fn unlocked(id: TxId, owns_id: bool) -> Self {
        SlicedTx {
            id,
            owns_id,
            inputs: Vec::new(),
            outputs: Vec::new(),
            mint: false,
        }
    }
}

/// The shard's record of one dtx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum DtxRecord {
    /// Locked, waiting for `Apply`. (A newtype variant of a struct is encoded as the
    /// struct variant `Locked { txs, results }` of earlier builds was: same bytes.)
    Locked(Arc<LockedDtx>),
    /// Applied, waiting for `Discard`.
    Applied,
    /// Discarded; `seq` is its place in the tombstone order.
    Discarded { seq: u64 },
}

/// What the shard keeps of a dtx it locked, until `Apply`: its slice of each transaction
/// and the answer it gave. Shared between the dtx's record and [`LockedTable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockedDtx {
    pub txs: Vec<SlicedTx>,
    pub results: Vec<LockResult>,
}

/// The `Locked` dtx records as the last written batch left them, kept in memory so that
/// `Apply` finds its dtx without reading and decoding the record (a few hundred
/// transactions' slices; about 1 % of a 2PC run's CPU went to that). Few: only the dtxs
/// between `Lock` and `Apply`. The machine rebuilds it from the records when it starts
/// and after it installs a snapshot, as it does the locks.
pub(crate) type LockedTable = HashMap<DtxKey, Arc<LockedDtx>>;

/// The entries one `apply` call changed in the [`LockedTable`]: `None` no longer locked.
pub(crate) type LockedChanges = HashMap<DtxKey, Option<Arc<LockedDtx>>>;

/// A recorded outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredOutcome {
    /// Locked by this owner, not applied yet: written only by earlier builds (pending
    /// transactions are now in memory, see the module docs); read as pending until the
    /// transaction's outcome replaces it.
    Pending {
        coordinator: u32,
        dtx: u64,
        tx_index: u32,
    },
    Committed,
    Rejected(RejectCode),
}

impl StoredOutcome {
    pub(crate) fn to_outcome(self) -> TxOutcome {
        match self {
            StoredOutcome::Pending { .. } => TxOutcome::Pending,
            StoredOutcome::Committed => TxOutcome::Committed,
            StoredOutcome::Rejected(code) => TxOutcome::Rejected(code),
        }
    }
}

/// An outcome and its place in the outcome order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutcomeRecord {
    pub seq: u64,
    pub state: StoredOutcome,
}

/// The dtxs holding each pending transaction this shard owns: every locked dtx whose
/// `Lock` of it succeeded here. Usually one; a retry carried by a second dtx adds a
/// second. Being the set of such dtxs, it is exactly what the `Locked` dtx records say,
/// so a restarted replica rebuilds the same table as one that kept running.
pub(crate) type PendingTable = IdMap<TxId, Vec<LockOwner>>;

/// The entries one `apply` call changed in the [`PendingTable`], as it leaves them (an
/// empty list: no longer pending), to take effect once its batch is written.
pub(crate) type PendingChanges = IdMap<TxId, Vec<LockOwner>>;

/// The numbers `first..next` that may still have a live record; `next - first` is what
/// counts against a retention bound (stale order entries included, see
/// [`Tables::prune`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    pub first: u64,
    pub next: u64,
}

impl Window {
    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.first.to_le_bytes());
        out[8..].copy_from_slice(&self.next.to_le_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, LockingError> {
        let bad = || LockingError::Corrupt {
            table: CF_SHARD_META,
            reason: "window is not 16 bytes of two ordered counters".into(),
        };
        let bytes: &[u8; 16] = bytes.try_into().map_err(|_| bad())?;
        let (first, next) = bytes.split_at(8);
        let window = Window {
            first: u64::from_le_bytes(first.try_into().map_err(|_| bad())?),
            next: u64::from_le_bytes(next.try_into().map_err(|_| bad())?),
        };
        if window.first > window.next {
            return Err(bad());
        }
        Ok(window)
    }

    fn len(self) -> u64 {
        self.next - self.first
    }
}

pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, LockingError> {
    cbdc_consensus::to_bincode(value).map_err(|e| LockingError::Encode {
        what,
        reason: e.to_string(),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, LockingError> {
    bincode::deserialize(bytes).map_err(|e| LockingError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_from_key(table: &'static str, key: &[u8]) -> Result<u64, LockingError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| LockingError::Corrupt {
        table,
        reason: "order key is not 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// The machine's tables as one `apply` call leaves them: the database plus an overlay of
/// what the call staged. Also used, with an empty overlay, for plain reads.
pub(crate) struct Tables<'a> {
    db: &'a DB,
    cfs: [&'a ColumnFamily; 5],
    /// The pending transactions as the last written batch left them.
    pending: &'a PendingTable,
    /// Pending transactions held or settled by this call.
    pending_changes: PendingChanges,
    /// The locked dtxs as the last written batch left them (this call's own changes are
    /// in the overlay, read first).
    locked: &'a LockedTable,
    /// Dtxs locked or moved on by this call.
    locked_changes: LockedChanges,
    /// Keys changed by this call, per table (indexed by [`Table`]): `Some(value)`
    /// written, `None` deleted.
    overlay: [HashMap<Vec<u8>, Option<Vec<u8>>>; 5],
    /// Outcome records read ahead by [`Tables::prefetch_outcomes`] (`None`: absent), as
    /// the database holds them; the overlay is still read first.
    fetched_outcomes: IdMap<TxId, Option<Vec<u8>>>,
    tombstones: Window,
    outcomes: Window,
    windows_dirty: bool,
}

impl<'a> Tables<'a> {
    /// The tables of `db`, the `pending` transactions and the `locked` dtxs, with the
    /// windows as last written.
    pub(crate) fn new(
        db: &'a DB,
        pending: &'a PendingTable,
        locked: &'a LockedTable,
    ) -> Result<Self, LockingError> {
        let cf = |t: Table| {
            db.cf_handle(t.name())
                .ok_or(LockingError::MissingColumnFamily(t.name()))
        };
        let cfs = [
            cf(Table::Dtxs)?,
            cf(Table::DtxOrder)?,
            cf(Table::Outcomes)?,
            cf(Table::OutcomeOrder)?,
            cf(Table::Meta)?,
        ];
        let read_window = |key: &[u8]| -> Result<Window, LockingError> {
            match db.get_pinned_cf(cfs[Table::Meta as usize], key)? {
                Some(bytes) => Window::from_bytes(&bytes),
                None => Ok(Window::default()),
            }
        };
        let tombstones = read_window(META_TOMBSTONES)?;
        let outcomes = read_window(META_OUTCOMES)?;
        Ok(Tables {
            db,
            cfs,
            pending,
            pending_changes: PendingChanges::default(),
            locked,
            locked_changes: LockedChanges::default(),
            overlay: Default::default(),
            fetched_outcomes: IdMap::default(),
            tombstones,
            outcomes,
            windows_dirty: false,
        })
    }

    pub(crate) fn cf(&self, table: Table) -> &'a ColumnFamily {
        self.cfs[table as usize]
    }

    /// The value of `key` in `table` as this call would leave it, read by `read` (from
    /// the overlay or straight from RocksDB's pinned buffer, without a copy).
    fn get<T>(
        &self,
        table: Table,
        key: &[u8],
        read: impl FnOnce(&[u8]) -> Result<T, LockingError>,
    ) -> Result<Option<T>, LockingError> {
        if let Some(staged) = self.overlay[table as usize].get(key) {
            return staged.as_deref().map(read).transpose();
        }
        match self.db.get_pinned_cf(self.cf(table), key)? {
            Some(bytes) => read(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>) {
        self.overlay[table as usize].insert(key.to_vec(), Some(value));
    }

    fn delete(&mut self, table: Table, key: &[u8]) {
        self.overlay[table as usize].insert(key.to_vec(), None);
    }

    /// The record of `dtx`, if any.
    pub(crate) fn dtx(&self, dtx: &DtxKey) -> Result<Option<DtxRecord>, LockingError> {
        let key = dtx.to_bytes();
        if !self.overlay[Table::Dtxs as usize].contains_key(key.as_slice()) {
            if let Some(locked) = self.locked.get(dtx) {
                return Ok(Some(DtxRecord::Locked(locked.clone())));
            }
        }
        self.get(Table::Dtxs, &key, |bytes| decode(CF_DTXS, bytes))
    }

    /// Stages `record` as the record of `dtx`.
    pub(crate) fn put_dtx(&mut self, dtx: &DtxKey, record: &DtxRecord) -> Result<(), LockingError> {
        let value = encode("dtx", record)?;
        self.put(Table::Dtxs, &dtx.to_bytes(), value);
        let locked = match record {
            DtxRecord::Locked(locked) => Some(locked.clone()),
            DtxRecord::Applied | DtxRecord::Discarded { .. } => None,
        };
        self.locked_changes.insert(*dtx, locked);
        Ok(())
    }

    /// Replaces the record of `dtx` by a tombstone, the newest in the tombstone order.
    pub(crate) fn put_tombstone(&mut self, dtx: &DtxKey) -> Result<(), LockingError> {
        let seq = self.append_order(Table::DtxOrder, dtx.to_bytes().to_vec());
        self.put_dtx(dtx, &DtxRecord::Discarded { seq })
    }

    /// Stages `key` as the newest entry of the order table `order` (`DtxOrder` or
    /// `OutcomeOrder`) and returns its number.
    fn append_order(&mut self, order: Table, key: Vec<u8>) -> u64 {
        let window = if order == Table::DtxOrder {
            &mut self.tombstones
        } else {
            &mut self.outcomes
        };
        let seq = window.next;
        window.next = seq + 1;
        self.windows_dirty = true;
        self.put(order, &seq_key(seq), key);
        seq
    }

    /// The recorded outcome of `tx`, if any.
    pub(crate) fn outcome(&self, tx: &TxId) -> Result<Option<OutcomeRecord>, LockingError> {
        let read = |bytes: &[u8]| decode(CF_OUTCOMES, bytes);
        if !self.overlay[Table::Outcomes as usize].contains_key(tx.as_bytes().as_slice()) {
            if let Some(fetched) = self.fetched_outcomes.get(tx) {
                return fetched.as_deref().map(read).transpose();
            }
        }
        self.get(Table::Outcomes, tx.as_bytes(), read)
    }

    /// Reads the outcome records of `txs` in one batched lookup, so that
    /// [`Tables::outcome`] finds them without a read each. A `Lock` checks the outcome of
    /// every transaction whose id the shard owns, and almost all are absent: one sorted
    /// `MultiGet` probes each file's filter for all of them together, where a point read
    /// per transaction cost about 2 % of a 2PC run's CPU. (The database does not change
    /// during the call, and [`Tables::outcome`] reads the overlay first, so nothing read
    /// here can go stale.)
    pub(crate) fn prefetch_outcomes<'i>(
        &mut self,
        txs: impl IntoIterator<Item = &'i TxId>,
    ) -> Result<(), LockingError> {
        let mut wanted: Vec<TxId> = txs.into_iter().copied().collect();
        if wanted.is_empty() {
            return Ok(());
        }
        wanted.sort_unstable();
        wanted.dedup();
        let keys = wanted.iter().map(|tx| tx.as_bytes());
        let found = self
            .db
            .batched_multi_get_cf(self.cf(Table::Outcomes), keys, true);
        for (tx, value) in wanted.into_iter().zip(found) {
            self.fetched_outcomes
                .insert(tx, value?.map(|bytes| bytes.to_vec()));
        }
        Ok(())
    }

    /// The dtxs holding `tx` pending (none: not pending).
    pub(crate) fn pending(&self, tx: &TxId) -> &[LockOwner] {
        match self.pending_changes.get(tx) {
            Some(holders) => holders,
            None => self.pending.get(tx).map_or(&[], Vec::as_slice),
        }
    }

    /// Stages `owner` as holding `tx` pending.
    pub(crate) fn hold_pending(&mut self, tx: &TxId, owner: LockOwner) {
        let mut holders = self.pending(tx).to_vec();
        holders.push(owner);
        self.pending_changes.insert(*tx, holders);
    }

    /// Stages `owner` as no longer holding `tx` pending; returns whether another dtx
    /// still does.
    pub(crate) fn settle_pending(&mut self, tx: &TxId, owner: LockOwner) -> bool {
        let holders = self.pending(tx);
        if !holders.contains(&owner) {
            return !holders.is_empty();
        }
        let rest: Vec<LockOwner> = holders.iter().copied().filter(|h| *h != owner).collect();
        let others = !rest.is_empty();
        self.pending_changes.insert(*tx, rest);
        others
    }

    /// Stages `state` as the outcome of `tx`, the newest in the outcome order.
    pub(crate) fn put_outcome(
        &mut self,
        tx: &TxId,
        state: StoredOutcome,
    ) -> Result<(), LockingError> {
        let seq = self.append_order(Table::OutcomeOrder, tx.as_bytes().to_vec());
        let value = encode("outcome", &OutcomeRecord { seq, state })?;
        self.put(Table::Outcomes, tx.as_bytes(), value);
        Ok(())
    }

    /// Deletes the oldest tombstones and outcomes until at most `max_tombstones` and
    /// `max_outcomes` numbers are live.
    ///
    /// An order entry whose record has moved on (an outcome re-numbered when its
    /// transaction was settled again by a later dtx) is stale: it still counts until it is
    /// pruned, but pruning it deletes only the order entry. So the bound holds for the
    /// records, and a retried transaction uses one number per outcome it was given.
    pub(crate) fn prune(
        &mut self,
        max_tombstones: u64,
        max_outcomes: u64,
    ) -> Result<(), LockingError> {
        while self.tombstones.len() > max_tombstones {
            let seq = self.tombstones.first;
            let key = seq_key(seq);
            if let Some(dtx_bytes) = self.get(Table::DtxOrder, &key, |b| Ok(b.to_vec()))? {
                let dtx = DtxKey::from_bytes(&dtx_bytes).ok_or_else(|| LockingError::Corrupt {
                    table: CF_DTX_ORDER,
                    reason: "value is not a dtx id".into(),
                })?;
                if self.dtx(&dtx)? == Some(DtxRecord::Discarded { seq }) {
                    self.delete(Table::Dtxs, &dtx_bytes);
                }
                self.delete(Table::DtxOrder, &key);
            }
            self.tombstones.first = seq + 1;
            self.windows_dirty = true;
        }
        while self.outcomes.len() > max_outcomes {
            let seq = self.outcomes.first;
            let key = seq_key(seq);
            if let Some(tx_bytes) = self.get(Table::OutcomeOrder, &key, |b| Ok(b.to_vec()))? {
                let tx = TxId::from_slice(&tx_bytes).ok_or_else(|| LockingError::Corrupt {
                    table: CF_OUTCOME_ORDER,
                    reason: "value is not a tx id".into(),
                })?;
                if self.outcome(&tx)?.is_some_and(|r| r.seq == seq) {
                    self.delete(Table::Outcomes, &tx_bytes);
                }
                self.delete(Table::OutcomeOrder, &key);
            }
            self.outcomes.first = seq + 1;
            self.windows_dirty = true;
        }
        Ok(())
    }

    /// Stages the windows, if they changed, and returns the changes to the pending
    /// transactions and the locked dtxs, to commit once the batch is written. Call once,
    /// at the end of the `apply` call.
    ///
    /// Each table's keys go in sorted, so that each memtable insert walks much the same
    /// skip-list path as the one before (outcomes are keyed by random tx ids: see
    /// `StateMachine::random_key_column_families`), and a key changed twice is written
    /// once.
    pub(crate) fn finish(self, batch: &mut WriteBatch) -> (PendingChanges, LockedChanges) {
        for table in Table::ALL {
            let overlay = self.overlay[table as usize].iter();
            let changes = overlay.map(|(key, value)| (key.as_slice(), value.as_deref()));
            stage_in_key_order(batch, self.cf(table), changes.collect());
        }
        if self.windows_dirty {
            let meta = self.cf(Table::Meta);
            batch.put_cf(meta, META_TOMBSTONES, self.tombstones.to_bytes());
            batch.put_cf(meta, META_OUTCOMES, self.outcomes.to_bytes());
        }
        (self.pending_changes, self.locked_changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`DtxRecord`] as builds before [`LockedDtx`] declared it.
    #[derive(Serialize)]
    enum EarlierDtxRecord {
        Locked {
            txs: Vec<SlicedTx>,
            results: Vec<LockResult>,
        },
        Applied,
        Discarded {
            seq: u64,
        },
    }

    #[test]
    fn test_dtx_records_keep_the_bytes_of_earlier_builds() {
        let txs = vec![
            SlicedTx {
                id: TxId::from([1; 32]),
                owns_id: true,
                inputs: vec![UhsId::from([2; 32]), UhsId::from([3; 32])],
                outputs: vec![(UhsId::from([4; 32]), 500)],
                mint: false,
            },
            SlicedTx::unlocked(TxId::from([5; 32]), false),
        ];
        let results = vec![
            LockResult::locked(),
            LockResult::refused(RejectCode::InputsSpent, Some(1)),
        ];
        let pairs = [
            (
                DtxRecord::Locked(Arc::new(LockedDtx {
                    txs: txs.clone(),
                    results: results.clone(),
                })),
                EarlierDtxRecord::Locked { txs, results },
            ),
            (DtxRecord::Applied, EarlierDtxRecord::Applied),
            (
                DtxRecord::Discarded { seq: 9 },
                EarlierDtxRecord::Discarded { seq: 9 },
            ),
        ];
        for (record, earlier) in pairs {
            let bytes = encode("dtx", &record).unwrap();
            assert_eq!(bytes, bincode::serialize(&earlier).unwrap());
            assert_eq!(decode::<DtxRecord>(CF_DTXS, &bytes).unwrap(), record);
        }
    }
}
