//! [`UhsStore`]: the unspent hash set of one shard, `UhsId → value`, in RocksDB column
//! families of a database the node shares with its other roles.
//!
//! Reads here see what is committed to the database. Changes go through a
//! [`StagedBatch`], which stages them into the caller's write batch (so that a Raft state
//! machine can write a whole run of log entries, and its last-applied id, atomically) and
//! lets later operations of the same batch see earlier ones.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use cbdc_consensus::storage::scan_options;
use cbdc_core::{Amount, IdMap, ShardRange, TxId, UhsId};
use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, DB};

use crate::columns::{ColumnFamilyNames, META_HEIGHT, META_SUPPLY};
use crate::error::StoreError;
use crate::iter::UhsRangeIter;
use crate::lock::{decode_value, HeldLock, LockChanges, LockOwner, LockTable, MintState, UhsEntry};
use crate::options::StoreOptions;
use crate::rejection::OutputStatus;
use crate::staged::StagedBatch;
use crate::supply::{decode_height, Supply};

/// The unspent hash set of one shard over a shared RocksDB instance.
///
/// Cheap to clone: it holds the database handle, the names of its column families and
/// the in-memory table of the locks prepared 2PC transactions hold (shared by clones; see
/// [`crate::lock`] for why locks are not written). Any number of threads may read
/// concurrently; changes are staged by one writer at a time (the shard's state machine),
/// since a [`StagedBatch`] reads the counters when it starts.
#[derive(Clone)]
pub struct UhsStore {
    db: Arc<DB>,
    names: ColumnFamilyNames,
    locks: Arc<RwLock<LockTable>>,
}

/// The result of [`UhsStore::audit`]: the supply recomputed by a full scan next to the
/// incrementally maintained counters, and the locks held, all read from one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    /// Count and total value from scanning every unspent output.
    pub scanned: Supply,
    /// The counters the store maintains.
    pub recorded: Supply,
    /// Locks held by prepared transactions, on outputs and on mint ids.
    pub locks_held: u64,
}

impl Audit {
    /// Whether the counters match the unspent set.
    pub fn is_consistent(&self) -> bool {
        self.scanned == self.recorded
    }
}

impl UhsStore {
    /// A store over `db`, which must have been opened with the column families `names`
    /// (see [`StoreOptions::column_families`]).
    pub fn new(db: Arc<DB>, names: ColumnFamilyNames) -> Result<Self, StoreError> {
        for name in names.all() {
            if db.cf_handle(name).is_none() {
                return Err(StoreError::MissingColumnFamily {
                    name: name.to_string(),
                });
            }
        }
        Ok(UhsStore {
            db,
            names,
            locks: Arc::default(),
        })
    }

    /// Opens (or creates) a standalone database at `path` holding only this store, with
    /// default options and column family names. For tests, tools and seeding; a node
    /// opens its shared instance itself and calls [`UhsStore::new`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &StoreOptions::default(), ColumnFamilyNames::default())
    }

    /// [`UhsStore::open`] with explicit options and names.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &StoreOptions,
        names: ColumnFamilyNames,
    ) -> Result<Self, StoreError> {
        let cache = options.new_block_cache();
        let db = DB::open_cf_descriptors(
            &options.db_options(),
            path,
            options.column_families(&names, &cache),
        )?;
        Self::new(Arc::new(db), names)
    }

    /// The shared database handle.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The store's column family names.
    pub fn names(&self) -> &ColumnFamilyNames {
        &self.names
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::MissingColumnFamily {
                name: name.to_string(),
            })
    }

    pub(crate) fn cf_uhs(&self) -> Result<&ColumnFamily, StoreError> {
        self.cf(&self.names.uhs)
    }

    pub(crate) fn cf_minted(&self) -> Result<&ColumnFamily, StoreError> {
        self.cf(&self.names.minted)
    }

    pub(crate) fn cf_meta(&self) -> Result<&ColumnFamily, StoreError> {
        self.cf(&self.names.meta)
    }

    /// The locks held now. (A poisoned lock is still whole: every change to the table is
    /// one insert or removal.)
    pub(crate) fn locks(&self) -> RwLockReadGuard<'_, LockTable> {
        self.locks.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the lock changes of a written batch ([`StagedBatch::finish`]) take effect.
    pub fn commit_locks(&self, changes: LockChanges) {
        if !changes.is_empty() {
            let mut locks = self.locks.write().unwrap_or_else(PoisonError::into_inner);
            locks.commit(changes);
        }
    }

    /// Replaces every lock on an output by `held` (input → owner): what the owner of the
    /// store's locks (the locking shard) knows to be held, from its durable records of
    /// prepared transactions, when it starts or has installed a snapshot. Each output
    /// must be unspent; one that is not means the records disagree with the store.
    pub fn restore_locks(
        &self,
        held: impl IntoIterator<Item = (UhsId, LockOwner)>,
    ) -> Result<(), StoreError> {
        let (ids, owners): (Vec<UhsId>, Vec<LockOwner>) = held.into_iter().unzip();
        let values = self.multi_get(&ids)?;
        let mut table = IdMap::with_capacity_and_hasher(ids.len(), Default::default());
        for ((id, owner), value) in ids.into_iter().zip(owners).zip(values) {
            let value = value.ok_or_else(|| {
                StoreError::corrupt(
                    "uhs",
                    id.as_bytes(),
                    "a prepared transaction holds a lock on an output that is not unspent",
                )
            })?;
            table.insert(id, HeldLock { owner, value });
        }
        let mut locks = self.locks.write().unwrap_or_else(PoisonError::into_inner);
        locks.replace(table);
        Ok(())
    }

    /// The value of unspent output `id`, or `None` if it is not unspent.
    pub fn get(&self, id: &UhsId) -> Result<Option<Amount>, StoreError> {
        match self.db.get_pinned_cf(self.cf_uhs()?, id.as_bytes())? {
            Some(bytes) => decode_value(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `id` is unspent.
    pub fn contains(&self, id: &UhsId) -> Result<bool, StoreError> {
        Ok(self.get(id)?.is_some())
    }

    /// [`UhsStore::get`] for many ids in one batched RocksDB lookup; values in the order
    /// of `ids`.
    pub fn multi_get(&self, ids: &[UhsId]) -> Result<Vec<Option<Amount>>, StoreError> {
        self.multi_value(ids, &ReadOptions::default())
    }

    /// [`UhsStore::status`] for many ids in one batched RocksDB lookup, in the order of
    /// `ids`.
    pub fn multi_status(&self, ids: &[UhsId]) -> Result<Vec<OutputStatus>, StoreError> {
        let values = self.multi_get(ids)?;
        let locks = self.locks();
        Ok(ids
            .iter()
            .zip(values)
            .map(|(id, value)| {
                output_status(value.map(|value| UhsEntry {
                    value,
                    lock: locks.get(id).map(|held| held.owner),
                }))
            })
            .collect())
    }

    /// The values of `ids` (locked or not) in one batched lookup, read with `opts` (a
    /// snapshot, say).
    pub(crate) fn multi_value(
        &self,
        ids: &[UhsId],
        opts: &ReadOptions,
    ) -> Result<Vec<Option<Amount>>, StoreError> {
        let cf = self.cf_uhs()?;
        let keys = ids.iter().map(|id| id.as_bytes());
        // RocksDB sorts the keys of a batched lookup unless told they are sorted; the
        // state machine's prefetch already sorts them (the sort was 0.4 % of a 2PC run's
        // CPU).
        let sorted = ids.windows(2).all(|pair| pair[0] < pair[1]);
        self.db
            .batched_multi_get_cf_opt(cf, keys, sorted, opts)
            .into_iter()
            .zip(ids)
            .map(|(found, id)| match found? {
                Some(bytes) => decode_value(id.as_bytes(), &bytes).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// Which prepared transaction holds `id` locked, if any.
    pub fn lock_owner(&self, id: &UhsId) -> Result<Option<LockOwner>, StoreError> {
        Ok(self.locks().get(id).map(|held| held.owner))
    }

    /// Unspent, locked or absent: what a status query about `id` answers.
    pub fn status(&self, id: &UhsId) -> Result<OutputStatus, StoreError> {
        Ok(self.multi_status(std::slice::from_ref(id))?.remove(0))
    }

    /// Whether the mint `tx_id` is recorded (settled) or locked by a prepared transaction.
    pub fn mint_state(&self, tx_id: &TxId) -> Result<Option<MintState>, StoreError> {
        match self.db.get_pinned_cf(self.cf_minted()?, tx_id.as_bytes())? {
            Some(bytes) => MintState::decode(tx_id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Number of locks held (on inputs and on mint ids); zero once every prepared
    /// transaction was applied or released. Scans the mint records (a full
    /// [`UhsStore::audit`]): for audits and tests.
    pub fn lock_count(&self) -> Result<u64, StoreError> {
        Ok(self.audit()?.locks_held)
    }

    /// The incrementally maintained count and total value of unspent outputs.
    pub fn supply(&self) -> Result<Supply, StoreError> {
        read_supply(&self.db, self.cf_meta()?)
    }

    /// The height of the last block applied (atomizer mode); 0 before the first block.
    pub fn height(&self) -> Result<u64, StoreError> {
        read_height(&self.db, self.cf_meta()?)
    }

    /// The values of `ids` and the block height, read from one snapshot, so that an
    /// atomizer-mode shard attests inputs "unspent at height h" truthfully.
    pub fn check_inputs(&self, ids: &[UhsId]) -> Result<(u64, Vec<Option<Amount>>), StoreError> {
        let snapshot = self.db.snapshot();
        let meta = self.cf_meta()?;
        let height = match snapshot.get_pinned_cf(meta, META_HEIGHT)? {
            Some(bytes) => decode_height(&bytes)?,
            None => 0,
        };
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snapshot);
        Ok((height, self.multi_value(ids, &opts)?))
    }

    /// Unspent outputs whose routing prefix lies in `range`, in id order, read from an
    /// implicit snapshot taken now.
    pub fn iter_range(&self, range: ShardRange) -> Result<UhsRangeIter<'_>, StoreError> {
        UhsRangeIter::new(&self.db, self.cf_uhs()?, range)
    }

    /// Recomputes the supply by scanning every unspent output, counts the locks (those on
    /// outputs in memory, those on mint ids by scanning the mint records), and reads the
    /// counters from the same snapshot. Reads the whole set (without filling the block
    /// cache): for audits and tests, not for the hot path.
    pub fn audit(&self) -> Result<Audit, StoreError> {
        let snapshot = self.db.snapshot();
        let recorded = match snapshot.get_pinned_cf(self.cf_meta()?, META_SUPPLY)? {
            Some(bytes) => Supply::from_bytes(&bytes)?,
            None => Supply::default(),
        };
        let mut it = snapshot.raw_iterator_cf_opt(self.cf_uhs()?, scan_options());
        it.seek_to_first();
        let mut scanned = Supply::default();
        let mut locks_held = self.locks().len() as u64;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if key.len() != crate::columns::ID_LEN {
                return Err(StoreError::corrupt("uhs", key, "key is not 32 bytes"));
            }
            scanned = scanned.with_output(decode_value(key, value)?)?;
            it.next();
        }
        it.status()?;
        let mut it = snapshot.raw_iterator_cf_opt(self.cf_minted()?, scan_options());
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if let MintState::Locked(_) = MintState::decode(key, value)? {
                locks_held += 1;
            }
            it.next();
        }
        it.status()?;
        Ok(Audit {
            scanned,
            recorded,
            locks_held,
        })
    }

    /// Starts staging changes into `batch`. Call [`StagedBatch::finish`] before writing
    /// the batch: it adds the updated counters and height.
    pub fn stage<'a>(&'a self, batch: &'a mut WriteBatch) -> Result<StagedBatch<'a>, StoreError> {
        StagedBatch::new(self, batch)
    }

    /// Stages what `f` does into a fresh batch, writes it (WAL on, not synced) and
    /// commits its lock changes. For tests, tools and single-node use; a Raft state
    /// machine stages into its own batch.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut StagedBatch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut batch = WriteBatch::default();
        let mut staged = self.stage(&mut batch)?;
        let out = f(&mut staged)?;
        let locks = staged.finish()?;
        self.db.write(batch)?;
        self.commit_locks(locks);
        Ok(out)
    }
}

/// What a status query answers about an output with record `entry`.
fn output_status(entry: Option<UhsEntry>) -> OutputStatus {
    match entry {
        None => OutputStatus::Absent,
        Some(UhsEntry {
            value,
            lock: Some(owner),
        }) => OutputStatus::Locked(value, owner),
        Some(UhsEntry { value, lock: None }) => OutputStatus::Unspent(value),
    }
}

pub(crate) fn read_supply(db: &DB, meta: &ColumnFamily) -> Result<Supply, StoreError> {
    match db.get_pinned_cf(meta, META_SUPPLY)? {
        Some(bytes) => Supply::from_bytes(&bytes),
        None => Ok(Supply::default()),
    }
}

pub(crate) fn read_height(db: &DB, meta: &ColumnFamily) -> Result<u64, StoreError> {
    match db.get_pinned_cf(meta, META_HEIGHT)? {
        Some(bytes) => decode_height(&bytes),
        None => Ok(0),
    }
}
