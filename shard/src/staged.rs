//! [`StagedBatch`]: changes to the store staged into a caller's RocksDB write batch.
//!
//! A Raft state machine applies a run of log entries in one write batch together with its
//! last-applied log id, so the store cannot write anything itself. A write batch cannot be
//! read, though, and operations later in the run must see earlier ones: two transactions
//! locking the same input in one `Lock` command (the second must fail), an output created
//! by one block and spent in the next. So a staged batch keeps an in-memory overlay of
//! every key it changed, consulted before the database, for as long as the batch lives.
//!
//! Every operation first checks everything against the staged view and only then stages
//! its changes, with steps that cannot fail: a rejected transaction stages nothing. The
//! overlay's outputs, the counters and the height go into the write batch once, by
//! [`StagedBatch::finish`]: the outputs in key order. The keys are random hashes, and a
//! skip-list insert in arrival order walks nodes no recent insert touched, mostly
//! missing the cache; in key order each insert walks much the same path as the one
//! before (see `StateMachine::random_key_column_families`).
//!
//! Locks on outputs are not written ([`crate::lock`]): a batch collects what it takes and
//! releases, and [`StagedBatch::finish`] hands those changes back, to be committed with
//! [`UhsStore::commit_locks`] once the batch is written. The same goes for the outputs a
//! prepare found absent ([`StagedBatch::prepare`] reserves them), which spares the
//! commit a read of each.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::RwLockReadGuard;

use cbdc_core::{Amount, CompactTransaction, IdMap, ShardRange, TxId, UhsId};
use rocksdb::{ColumnFamily, ReadOptions, WriteBatch};

use crate::columns::{META_HEIGHT, META_SUPPLY};
use crate::error::StoreError;
use crate::lock::{encode_value, HeldLock, LockChanges, LockOwner, LockTable, MintState, UhsEntry};
use crate::rejection::Rejection;
use crate::store::{read_height, read_supply, UhsStore};
use crate::supply::Supply;

/// Stages `changes` (`None`: a deletion) into `batch`'s column family `cf` sorted by key:
/// see the module docs for why the order matters.
pub(crate) fn stage_in_key_order<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    batch: &mut WriteBatch,
    cf: &ColumnFamily,
    mut changes: Vec<(K, Option<V>)>,
) {
    changes.sort_unstable_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    for (key, value) in changes {
        match value {
            Some(value) => batch.put_cf(cf, key, value),
            None => batch.delete_cf(cf, key),
        }
    }
}

/// What [`StagedBatch::apply_block`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    /// The block's changes and its height were staged.
    Applied,
    /// The store is already at or past this height; nothing was staged.
    AlreadyApplied,
}

/// Store changes staged into a caller's write batch, readable before the batch is written.
///
/// Create one with [`UhsStore::stage`], run operations, call [`StagedBatch::finish`],
/// write the batch, and commit the lock changes `finish` returned. Only one staged batch
/// per store may be in flight at a time: it reads the counters when it starts and writes
/// them back when it finishes. It holds the store's lock table for reading while it lives,
/// so commit only after `finish`. If an operation returns an error the batch may hold
/// part of its change: discard the batch ([`StagedBatch::finish`] then refuses with
/// [`StoreError::Poisoned`]).
#[must_use = "call finish() and write the batch, or the counters are lost"]
pub struct StagedBatch<'a> {
    store: &'a UhsStore,
    batch: &'a mut WriteBatch,
    uhs_cf: &'a ColumnFamily,
    minted_cf: &'a ColumnFamily,
    meta_cf: &'a ColumnFamily,
    /// Outputs created (`Some`, the value) or spent (`None`) in this batch, written to
    /// the batch by [`StagedBatch::finish`].
    uhs: IdMap<UhsId, Option<Amount>>,
    /// Outputs read from the database in this batch and not changed since (the database
    /// does not change while the batch is staged): a 2PC `Apply` checks every output
    /// before it changes any, then reads them again as it stages.
    read: RefCell<IdMap<UhsId, Option<Amount>>>,
    /// The locks held when the batch started.
    committed_locks: RwLockReadGuard<'a, LockTable>,
    /// Locks taken (`Some`) or released or spent (`None`) in this batch.
    locks: IdMap<UhsId, Option<HeldLock>>,
    /// Outputs reserved (`Some`) or created or released (`None`) in this batch.
    reserved: IdMap<UhsId, Option<LockOwner>>,
    /// Mint ids changed in this batch: `None` released.
    minted: IdMap<TxId, Option<MintState>>,
    supply: Supply,
    supply_dirty: bool,
    height: u64,
    height_dirty: bool,
    poisoned: bool,
}

impl<'a> StagedBatch<'a> {
    pub(crate) fn new(store: &'a UhsStore, batch: &'a mut WriteBatch) -> Result<Self, StoreError> {
        let meta_cf = store.cf_meta()?;
        let db = store.db();
        Ok(StagedBatch {
            store,
            batch,
            uhs_cf: store.cf_uhs()?,
            minted_cf: store.cf_minted()?,
            meta_cf,
            uhs: IdMap::default(),
            read: RefCell::new(IdMap::default()),
            committed_locks: store.locks(),
            locks: IdMap::default(),
            reserved: IdMap::default(),
            minted: IdMap::default(),
            supply: read_supply(db, meta_cf)?,
            supply_dirty: false,
            height: read_height(db, meta_cf)?,
            height_dirty: false,
            poisoned: false,
        })
    }

    /// The write batch, for the caller's own records (its last-applied log id, dtx
    /// records, outcomes) next to the store's.
    pub fn batch(&mut self) -> &mut WriteBatch {
        self.batch
    }

    /// Stages the outputs (in key order), the counters and the height into the batch and
    /// returns the lock changes.
    /// Call it once, last; then write the batch and commit the changes
    /// ([`UhsStore::commit_locks`]).
    pub fn finish(self) -> Result<LockChanges, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let outputs = self.uhs.iter();
        let changes = outputs.map(|(id, value)| (id.as_bytes(), value.map(encode_value)));
        stage_in_key_order(self.batch, self.uhs_cf, changes.collect());
        if self.supply_dirty {
            self.batch
                .put_cf(self.meta_cf, META_SUPPLY, self.supply.to_bytes());
        }
        if self.height_dirty {
            self.batch
                .put_cf(self.meta_cf, META_HEIGHT, self.height.to_le_bytes());
        }
        Ok(LockChanges {
            held: self.locks,
            reserved: self.reserved,
        })
    }

    /// The value of `id` as this batch would leave it.
    pub fn get(&self, id: &UhsId) -> Result<Option<Amount>, StoreError> {
        Ok(self.entry(id)?.map(|entry| entry.value))
    }

    /// The owner of `id`'s lock as this batch would leave it.
    pub fn lock_owner(&self, id: &UhsId) -> Result<Option<LockOwner>, StoreError> {
        Ok(self.entry(id)?.and_then(|entry| entry.lock))
    }

    /// The output `id` (value and lock) as this batch would leave it. A locked output
    /// is answered from the lock, without a read.
    pub(crate) fn entry(&self, id: &UhsId) -> Result<Option<UhsEntry>, StoreError> {
        if let Some(staged) = self.uhs.get(id) {
            return Ok(staged.map(|value| UhsEntry {
                value,
                lock: self.held_lock(id).map(|held| held.owner),
            }));
        }
        if let Some(held) = self.held_lock(id) {
            return Ok(Some(UhsEntry {
                value: held.value,
                lock: Some(held.owner),
            }));
        }
        if self.reservation(id).is_some() {
            return Ok(None);
        }
        if let Some(read) = self.read.borrow().get(id) {
            return Ok(read.map(|value| UhsEntry { value, lock: None }));
        }
        let value = self.store.get(id)?;
        self.read.borrow_mut().insert(*id, value);
        Ok(value.map(|value| UhsEntry { value, lock: None }))
    }

    /// The lock on `id` as this batch would leave it.
    fn held_lock(&self, id: &UhsId) -> Option<HeldLock> {
        match self.locks.get(id) {
            Some(change) => *change,
            None => self.committed_locks.get(id),
        }
    }

    /// The prepared transaction that reserved output `id`, as this batch would leave it:
    /// if any, the output is absent ([`crate::lock::LockTable`]).
    fn reservation(&self, id: &UhsId) -> Option<LockOwner> {
        match self.reserved.get(id) {
            Some(change) => *change,
            None => self.committed_locks.reservation(id),
        }
    }

    /// Reads the records of those of `ids` this batch has neither changed nor read yet,
    /// in one batched RocksDB lookup, so that the checks that follow find them in memory.
    ///
    /// One `MultiGet` of a whole Raft batch's keys costs much less per key than a point
    /// read each: RocksDB takes its read view once, probes the filters of each file for
    /// all keys together and reads each data block once. Point reads of inputs and new
    /// outputs were a fifth of all CPU time in a 3-replica `cbdc bench` run.
    pub fn prefetch<'i>(&self, ids: impl IntoIterator<Item = &'i UhsId>) -> Result<(), StoreError> {
        let mut read = self.read.borrow_mut();
        let mut wanted: Vec<UhsId> = ids
            .into_iter()
            .filter(|id| {
                !self.uhs.contains_key(*id)
                    && !read.contains_key(*id)
                    && self.held_lock(id).is_none()
                    && self.reservation(id).is_none()
            })
            .copied()
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let values = self.store.multi_value(&wanted, &ReadOptions::default())?;
        read.extend(wanted.into_iter().zip(values));
        Ok(())
    }

    /// The state of mint `tx_id` as this batch would leave it.
    pub fn mint_state(&self, tx_id: &TxId) -> Result<Option<MintState>, StoreError> {
        if let Some(staged) = self.minted.get(tx_id) {
            return Ok(*staged);
        }
        let db = self.store.db();
        match db.get_pinned_cf(self.minted_cf, tx_id.as_bytes())? {
            Some(bytes) => MintState::decode(tx_id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The counters as this batch would leave them.
    pub fn supply(&self) -> Supply {
        self.supply
    }

    /// The block height as this batch would leave it.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Runs `op`, poisoning the batch if it fails (it may have staged part of a change).
    fn guarded<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let out = op(self);
        if out.is_err() {
            self.poisoned = true;
        }
        out
    }

    /// 2PC prepare of one transaction on this shard: locks every input (and the mint id,
    /// for a mint whose tx id this shard owns) for `owner`, or nothing.
    ///
    /// Every input must be unspent and unlocked, and the mint id neither recorded nor
    /// locked; otherwise the first reason found is returned and nothing is staged.
    /// Idempotent: locks `owner` already holds count as free, so repeating the call
    /// changes nothing and succeeds again.
    pub fn check_and_lock(
        &mut self,
        owner: LockOwner,
        inputs: &[UhsId],
        mint: Option<&TxId>,
    ) -> Result<Result<(), Rejection>, StoreError> {
        self.prepare(owner, inputs, &[], mint)
    }

    /// [`StagedBatch::check_and_lock`] for a transaction that also creates `outputs` on
    /// this shard: they are checked first (none may exist or repeat), and once everything
    /// passed they are reserved for `owner`, so that its [`StagedBatch::apply`] knows them
    /// absent without reading them again. [`StagedBatch::release`] drops the
    /// reservations with the locks.
    pub fn prepare(
        &mut self,
        owner: LockOwner,
        inputs: &[UhsId],
        outputs: &[UhsId],
        mint: Option<&TxId>,
    ) -> Result<Result<(), Rejection>, StoreError> {
        self.guarded(|s| {
            if let Some(index) = first_duplicate(outputs.iter()) {
                let id = outputs[index];
                return Ok(Err(Rejection::DuplicateOutput { index, id }));
            }
            for (index, id) in outputs.iter().enumerate() {
                if s.get(id)?.is_some() {
                    return Ok(Err(Rejection::OutputExists { index, id: *id }));
                }
            }
            if let Some(rejection) = duplicate_input(inputs) {
                return Ok(Err(rejection));
            }
            let mut values = Vec::with_capacity(inputs.len());
            for (index, id) in inputs.iter().enumerate() {
                match s.spendable(index, id, owner)? {
                    Ok(value) => values.push(value),
                    Err(rejection) => return Ok(Err(rejection)),
                }
            }
            if let Some(tx_id) = mint {
                if let Some(rejection) = s.check_mint(owner, tx_id)? {
                    return Ok(Err(rejection));
                }
            }
            // Checked: stage, with steps that cannot fail.
            for (id, value) in inputs.iter().zip(values) {
                s.locks.insert(*id, Some(HeldLock { owner, value }));
            }
            for id in outputs {
                s.reserved.insert(*id, Some(owner));
            }
            if let Some(tx_id) = mint {
                s.stage_mint(tx_id, Some(MintState::Locked(owner)));
            }
            Ok(Ok(()))
        })
    }

    /// 2PC abort of one transaction: releases the locks `owner` holds on `inputs` (and on
    /// the mint id), and its reservations of `outputs`. Locks held by anyone else, and
    /// inputs not locked, are left alone, so the call is idempotent. Returns how many
    /// locks were released (reservations are not counted).
    pub fn release(
        &mut self,
        owner: LockOwner,
        inputs: &[UhsId],
        outputs: &[UhsId],
        mint: Option<&TxId>,
    ) -> Result<usize, StoreError> {
        self.guarded(|s| {
            for id in outputs {
                if s.reservation(id) == Some(owner) {
                    s.reserved.insert(*id, None);
                }
            }
            let mut released = 0;
            for id in inputs {
                if s.entry(id)?.is_some_and(|e| e.lock == Some(owner)) {
                    s.locks.insert(*id, None);
                    released += 1;
                }
            }
            if let Some(tx_id) = mint {
                if s.mint_state(tx_id)? == Some(MintState::Locked(owner)) {
                    s.stage_mint(tx_id, None);
                    released += 1;
                }
            }
            Ok(released)
        })
    }

    /// 2PC commit of one transaction on this shard: spends `inputs` (removing their locks),
    /// creates `outputs`, and records the mint id for good. All or nothing.
    ///
    /// Every input must be unspent and either locked by `owner` or unlocked; no output may
    /// exist already (the store never overwrites an output); the mint id must not be
    /// recorded or locked by another owner. Otherwise the first reason found is returned
    /// and nothing is staged. Not idempotent by itself (a repeat finds its inputs spent):
    /// the shard's state machine deduplicates commands by dtx id.
    /// Outputs `owner`'s prepare reserved are known absent without a read.
    pub fn apply(
        &mut self,
        owner: LockOwner,
        inputs: &[UhsId],
        outputs: &[(UhsId, Amount)],
        mint: Option<&TxId>,
    ) -> Result<Result<(), Rejection>, StoreError> {
        self.guarded(|s| {
            if let Some(rejection) = duplicate_input(inputs) {
                return Ok(Err(rejection));
            }
            if let Some(rejection) = duplicate_output(outputs) {
                return Ok(Err(rejection));
            }
            let mut supply = s.supply;
            for (index, id) in inputs.iter().enumerate() {
                match s.spendable(index, id, owner)? {
                    Ok(value) => supply = supply.without_output(value)?,
                    Err(rejection) => return Ok(Err(rejection)),
                }
            }
            for (index, (id, value)) in outputs.iter().enumerate() {
                if s.get(id)?.is_some() {
                    return Ok(Err(Rejection::OutputExists { index, id: *id }));
                }
                supply = supply.with_output(*value)?;
            }
            if let Some(tx_id) = mint {
                if let Some(rejection) = s.check_mint(owner, tx_id)? {
                    return Ok(Err(rejection));
                }
            }
            // Checked: stage, with steps that cannot fail.
            for id in inputs {
                if s.held_lock(id).is_some() {
                    s.locks.insert(*id, None);
                }
                s.stage_spend(id);
            }
            for (id, value) in outputs {
                s.stage_create(id, *value);
            }
            if let Some(tx_id) = mint {
                s.stage_mint(tx_id, Some(MintState::Recorded));
            }
            s.set_supply(supply);
            Ok(Ok(()))
        })
    }

    /// Atomizer mode: applies block `height` — spends the inputs and creates the outputs
    /// of `txs` that `range` owns, in block order, and advances the height — or fails
    /// without a partial effect worth keeping (the batch is then poisoned).
    ///
    /// Blocks are numbered from 1 (height 0 is the empty genesis state). A block at or
    /// below the current height was applied already: nothing is staged, so replaying a
    /// block is harmless. A block further ahead is [`StoreError::HeightGap`]: the shard
    /// must catch up first. The atomizer has already decided that every transaction in the
    /// block is valid, so an owned input that is not unspent, or an owned output that
    /// already exists, means this shard's state diverged:
    /// [`StoreError::BlockInconsistent`].
    pub fn apply_block(
        &mut self,
        height: u64,
        range: ShardRange,
        txs: &[CompactTransaction],
    ) -> Result<BlockOutcome, StoreError> {
        self.guarded(|s| {
            if height <= s.height {
                return Ok(BlockOutcome::AlreadyApplied);
            }
            if Some(height) != s.height.checked_add(1) {
                return Err(StoreError::HeightGap {
                    current: s.height,
                    got: height,
                });
            }
            s.prefetch(txs.iter().flat_map(|tx| {
                let outputs = tx.outputs.iter().map(|(id, _)| id);
                tx.inputs.iter().chain(outputs).filter(|id| range.owns(id))
            }))?;
            let mut supply = s.supply;
            for tx in txs {
                for id in tx.inputs.iter().filter(|id| range.owns(id)) {
                    let Some(value) = s.get(id)? else {
                        return Err(StoreError::BlockInconsistent {
                            height,
                            id: *id,
                            reason: "input missing",
                        });
                    };
                    supply = supply.without_output(value)?;
                    s.stage_spend(id);
                }
                for (id, value) in tx.outputs.iter().filter(|(id, _)| range.owns(id)) {
                    if s.get(id)?.is_some() {
                        return Err(StoreError::BlockInconsistent {
                            height,
                            id: *id,
                            reason: "output exists",
                        });
                    }
                    supply = supply.with_output(*value)?;
                    s.stage_create(id, *value);
                }
            }
            s.set_supply(supply);
            s.height = height;
            s.height_dirty = true;
            Ok(BlockOutcome::Applied)
        })
    }

    /// The value of input `id` (at `index` in its transaction) if `owner` may lock or
    /// spend it: it is unspent, and unlocked or locked by `owner` already.
    fn spendable(
        &self,
        index: usize,
        id: &UhsId,
        owner: LockOwner,
    ) -> Result<Result<Amount, Rejection>, StoreError> {
        Ok(match self.entry(id)? {
            None => Err(Rejection::InputMissing { index, id: *id }),
            Some(UhsEntry {
                lock: Some(held), ..
            }) if held != owner => Err(Rejection::InputLocked {
                index,
                id: *id,
                owner: held,
            }),
            Some(entry) => Ok(entry.value),
        })
    }

    /// Why `owner` may not take or record mint `tx_id`, if it may not.
    fn check_mint(&self, owner: LockOwner, tx_id: &TxId) -> Result<Option<Rejection>, StoreError> {
        Ok(match self.mint_state(tx_id)? {
            Some(MintState::Recorded) => Some(Rejection::MintReplayed { tx_id: *tx_id }),
            Some(MintState::Locked(held)) if held != owner => Some(Rejection::MintLocked {
                tx_id: *tx_id,
                owner: held,
            }),
            _ => None,
        })
    }

    fn stage_spend(&mut self, id: &UhsId) {
        self.uhs.insert(*id, None);
    }

    fn stage_create(&mut self, id: &UhsId, value: Amount) {
        self.uhs.insert(*id, Some(value));
        // Whoever reserved it: it exists now.
        if self.reservation(id).is_some() {
            self.reserved.insert(*id, None);
        }
    }

    fn stage_mint(&mut self, tx_id: &TxId, state: Option<MintState>) {
        match state {
            Some(state) => self
                .batch
                .put_cf(self.minted_cf, tx_id.as_bytes(), state.encode()),
            None => self.batch.delete_cf(self.minted_cf, tx_id.as_bytes()),
        }
        self.minted.insert(*tx_id, state);
    }

    fn set_supply(&mut self, supply: Supply) {
        if supply != self.supply {
            self.supply = supply;
            self.supply_dirty = true;
        }
    }
}

/// Above this many items a transaction's duplicate check uses a hash set instead of
/// comparing every pair (which is faster for the usual handful and allocates nothing).
const PAIRWISE_LIMIT: usize = 16;

fn first_duplicate<'i, T: Eq + std::hash::Hash + 'i>(
    items: impl ExactSizeIterator<Item = &'i T> + Clone,
) -> Option<usize> {
    let len = items.len();
    if len <= PAIRWISE_LIMIT {
        for (i, a) in items.clone().enumerate() {
            if items.clone().take(i).any(|b| b == a) {
                return Some(i);
            }
        }
        None
    } else {
        let mut seen = HashSet::with_capacity(len);
        items
            .enumerate()
            .find(|(_, a)| !seen.insert(*a))
            .map(|(i, _)| i)
    }
}

fn duplicate_input(inputs: &[UhsId]) -> Option<Rejection> {
    first_duplicate(inputs.iter()).map(|index| Rejection::DuplicateInput {
        index,
        id: inputs[index],
    })
}

fn duplicate_output(outputs: &[(UhsId, Amount)]) -> Option<Rejection> {
    first_duplicate(outputs.iter().map(|(id, _)| id)).map(|index| Rejection::DuplicateOutput {
        index,
        id: outputs[index].0,
    })
}
