//! [`LockingShardMachine`]: the 2PC locking shard as a deterministic Raft state machine
//! over the UHS store.
//!
//! Every command runs against a [`StagedBatch`] (the UHS, its locks and mint records)
//! and the machine's `Tables` (dtx records, outcomes, tombstones), both staging into
//! the one write batch the Raft wrapper writes with the last applied log id, and both
//! keeping an overlay so that later commands of a run see earlier ones.
//!
//! Each command first checks, then stages with steps that cannot fail, so a refused
//! command (a [`CommandRefusal`]) changes nothing. Business outcomes are values; only a
//! failing disk or corrupt data is an `Err`, which stops the replica.
//!
//! The locks on inputs live in the store's memory ([`crate::lock`]), and which dtxs hold
//! each pending transaction and the locked dtxs themselves in the machine's
//! (`PendingTable`, `LockedTable`); their durable copy is the `Locked` dtx records. The
//! changes of an applied run take effect once its batch is written (`on_written`), and
//! the machine rebuilds all three from the dtx records when it starts and after it
//! installs a snapshot.

use std::sync::Arc;

use cbdc_consensus::storage::scan_options;
use cbdc_consensus::{ConsensusError, StateMachine};
use cbdc_core::{Amount, CompactTransaction, IdSet, ShardRange, TxId, UhsId};
use rocksdb::{WriteBatch, DB};

use super::command::{
    ApplyOutcome, CommandRefusal, DiscardOutcome, DtxKey, LockResult, LockSlot, ShardCommand,
    ShardResponse,
};
use super::error::LockingError;
use super::outcome::{RejectCode, TxOutcome};
use super::params::LockingShardParams;
use super::tables::{
    DtxRecord, LockedChanges, LockedDtx, LockedTable, PendingChanges, PendingTable, SlicedTx,
    StoredOutcome, Table, Tables, CF_DTXS, CF_DTX_ORDER, CF_OUTCOMES, CF_OUTCOME_ORDER,
    CF_SHARD_META,
};
use crate::columns::ColumnFamilyNames;
use crate::lock::{LockChanges, LockOwner, MintState};
use crate::rejection::{OutputStatus, Rejection};
use crate::staged::StagedBatch;
use crate::store::{Audit, UhsStore};
use crate::supply::Supply;

/// Column family of the unspent outputs and their locks (the UHS store's default name).
pub const CF_UHS: &str = "uhs";
/// Column family of the mint records.
pub const CF_UHS_MINTED: &str = "uhs_minted";
/// Column family of the supply counters.
pub const CF_UHS_META: &str = "uhs_meta";

/// Every column family of the machine: the UHS store's, then its own.
pub const LOCKING_SHARD_CFS: [&str; 8] = [
    CF_UHS,
    CF_UHS_MINTED,
    CF_UHS_META,
    CF_DTXS,
    CF_DTX_ORDER,
    CF_OUTCOMES,
    CF_OUTCOME_ORDER,
    CF_SHARD_META,
];

/// Where a dtx is in its life on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtxState {
    /// Locked, waiting for `Apply`.
    Locked,
    /// Applied, waiting for `Discard`.
    Applied,
    /// Discarded; a tombstone remains.
    Discarded,
}

/// A full audit of one shard: the UHS supply (scanned and recorded) and the 2PC
/// bookkeeping, read by scanning everything. For tests and operators, not the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardAudit {
    /// Count and value of the unspent outputs, recomputed and as recorded.
    pub uhs: Audit,
    /// Locks held on inputs and mint ids: zero once every dtx was applied.
    pub locks_held: u64,
    /// Dtxs locked and not applied.
    pub locked_dtxs: u64,
    /// Dtxs applied and not discarded.
    pub applied_dtxs: u64,
    /// Tombstones of discarded dtxs.
    pub tombstones: u64,
    /// Recorded transaction outcomes.
    pub outcomes: u64,
}

/// The 2PC locking shard's state machine (see the module docs and
/// [`cbdc_consensus::StateMachine`]).
pub struct LockingShardMachine {
    db: Arc<DB>,
    store: UhsStore,
    params: LockingShardParams,
    /// The dtxs holding each pending transaction this shard owns.
    pending: PendingTable,
    /// The locked dtxs, as their records say.
    locked: LockedTable,
    /// The lock and pending changes of the run last applied, until its batch is written.
    staged: Option<MemoryChanges>,
    /// Whether a snapshot was installed, so the locks and pending transactions must be
    /// rebuilt from its dtx records once it is written.
    memory_stale: bool,
}

/// What an applied run changed in memory, to commit once its batch is written.
struct MemoryChanges {
    locks: LockChanges,
    pending: PendingChanges,
    locked: LockedChanges,
}

/// The UHS store inside a locking shard replica's database.
fn uhs_store(db: &Arc<DB>) -> Result<UhsStore, crate::StoreError> {
    let names = ColumnFamilyNames {
        uhs: CF_UHS.into(),
        minted: CF_UHS_MINTED.into(),
        meta: CF_UHS_META.into(),
    };
    UhsStore::new(db.clone(), names)
}

/// Seeds the database of a locking shard replica that has never run (at `data_dir`) with
/// genesis outputs, like a pre-funded ledger: the benchmark funds millions of outputs
/// this way instead of minting them. Every replica of a group must get the same outputs
/// (the ones its range owns), before any replica starts. Refuses a store that already
/// holds outputs; returns the supply seeded.
pub fn seed_genesis(
    data_dir: &std::path::Path,
    outputs: impl IntoIterator<Item = (cbdc_core::UhsId, cbdc_core::Amount)>,
) -> Result<crate::Supply, LockingError> {
    let db = cbdc_consensus::storage::open_db::<LockingShardMachine>(data_dir)
        .map_err(|e| LockingError::Genesis(e.to_string()))?;
    let store = uhs_store(&db)?;
    if store.supply()?.count > 0 {
        return Err(LockingError::Genesis(format!(
            "{} already holds outputs; genesis seeds only a fresh replica",
            data_dir.display()
        )));
    }
    Ok(store.seed(outputs)?)
}

/// Column family in which builds before the lock moved into its output's record kept
/// the locks of prepared transactions.
const CF_LEGACY_LOCKS: &str = "uhs_locks";

/// Refuses a database in which locks are still held in [`CF_LEGACY_LOCKS`]: this build
/// would not see them, and could spend an input a prepared transaction holds. (An empty
/// one, left by a build that had applied or released every lock, is harmless.)
fn refuse_separate_locks(db: &DB) -> Result<(), ConsensusError> {
    let Some(cf) = db.cf_handle(CF_LEGACY_LOCKS) else {
        return Ok(());
    };
    let mut it = db.raw_iterator_cf_opt(cf, scan_options());
    it.seek_to_first();
    if it.valid() {
        return Err(ConsensusError::Config(format!(
            "this data directory holds 2PC locks in the column family {CF_LEGACY_LOCKS:?} of \
             an older cbdc; finish its prepared transactions with that build, or start \
             the replica from an empty directory and let it install a snapshot"
        )));
    }
    Ok(it.status()?)
}

impl LockingShardMachine {
    /// The machine over a replica's database, which must have been opened with
    /// [`LockingShardMachine::column_families`] (as `Replica::start` does).
    pub fn new(db: Arc<DB>, params: LockingShardParams) -> Result<Self, ConsensusError> {
        params.validate()?;
        refuse_separate_locks(&db)?;
        let store = uhs_store(&db).map_err(LockingError::from)?;
        let mut machine = LockingShardMachine {
            db,
            store,
            params,
            pending: PendingTable::default(),
            locked: LockedTable::default(),
            staged: None,
            memory_stale: false,
        };
        machine.restore_memory()?;
        Ok(machine)
    }

    /// Rebuilds the store's locks on inputs, the pending transactions and the locked
    /// dtxs from the `Locked` dtx records: every input of a transaction whose lock
    /// succeeded is held by that transaction until its dtx is applied, and an owned
    /// transaction whose lock succeeded is pending in that dtx.
    fn restore_memory(&mut self) -> Result<(), LockingError> {
        let (no_pending, no_locked) = (PendingTable::default(), LockedTable::default());
        let tables = Tables::new(&self.db, &no_pending, &no_locked)?;
        let mut held = Vec::new();
        let mut pending = PendingTable::default();
        let mut locked = LockedTable::default();
        let mut it = self
            .db
            .raw_iterator_cf_opt(tables.cf(Table::Dtxs), scan_options());
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if let DtxRecord::Locked(dtx_locked) = super::tables::decode(CF_DTXS, value)? {
                let dtx = DtxKey::from_bytes(key).ok_or_else(|| LockingError::Corrupt {
                    table: CF_DTXS,
                    reason: "key is not a dtx id".into(),
                })?;
                let LockedDtx { txs, results } = dtx_locked.as_ref();
                for (i, (tx, result)) in txs.iter().zip(results).enumerate() {
                    if result.locked {
                        // Fits: the dtx was locked with at most u32::MAX transactions.
                        let owner = dtx.owner(i as u32);
                        held.extend(tx.inputs.iter().map(|id| (*id, owner)));
                        if tx.owns_id {
                            pending.entry(tx.id).or_default().push(owner);
                        }
                    }
                }
                locked.insert(dtx, dtx_locked);
            }
            it.next();
        }
        it.status()?;
        drop(it);
        self.store.restore_locks(held)?;
        self.pending = pending;
        self.locked = locked;
        Ok(())
    }

    /// The UHS store the machine settles into (for reads and genesis seeding).
    pub fn store(&self) -> &UhsStore {
        &self.store
    }

    /// The parameters.
    pub fn params(&self) -> &LockingShardParams {
        &self.params
    }

    /// The prefixes this shard owns.
    pub fn range(&self) -> ShardRange {
        self.params.range
    }

    /// Whether this shard records the outcome of transaction `id` (routed like a UHS id
    /// with the same bytes, as `ShardMap::shard_for_tx` does).
    pub fn owns_tx(&self, id: &TxId) -> bool {
        self.params.range.owns(&UhsId(id.0))
    }

    /// Unspent (and whether locked) or absent, for each of `ids`.
    pub fn output_statuses(&self, ids: &[UhsId]) -> Result<Vec<OutputStatus>, LockingError> {
        Ok(self.store.multi_status(ids)?)
    }

    /// The outcome of each of `ids`: committed or rejected as recorded, or pending while
    /// a locked dtx holds it.
    pub fn tx_outcomes(&self, ids: &[TxId]) -> Result<Vec<TxOutcome>, LockingError> {
        let tables = Tables::new(&self.db, &self.pending, &self.locked)?;
        ids.iter()
            .map(|id| {
                let recorded = tables.outcome(id)?.map(|r| r.state);
                Ok(match recorded {
                    Some(StoredOutcome::Committed) => TxOutcome::Committed,
                    _ if !tables.pending(id).is_empty() => TxOutcome::Pending,
                    _ => recorded.map_or(TxOutcome::Unknown, StoredOutcome::to_outcome),
                })
            })
            .collect()
    }

    /// Where `dtx` is in its life here; `None` if unknown (or its tombstone was pruned).
    pub fn dtx_state(&self, dtx: &DtxKey) -> Result<Option<DtxState>, LockingError> {
        Ok(Tables::new(&self.db, &self.pending, &self.locked)?
            .dtx(dtx)?
            .map(|r| match r {
                DtxRecord::Locked(_) => DtxState::Locked,
                DtxRecord::Applied => DtxState::Applied,
                DtxRecord::Discarded { .. } => DtxState::Discarded,
            }))
    }

    /// The incrementally kept count and value of the unspent outputs.
    pub fn supply(&self) -> Result<Supply, LockingError> {
        Ok(self.store.supply()?)
    }

    /// Scans everything (see [`ShardAudit`]).
    pub fn audit(&self) -> Result<ShardAudit, LockingError> {
        let uhs = self.store.audit()?;
        let locks_held = uhs.locks_held;
        let tables = Tables::new(&self.db, &self.pending, &self.locked)?;
        let mut audit = ShardAudit {
            uhs,
            locks_held,
            locked_dtxs: 0,
            applied_dtxs: 0,
            tombstones: 0,
            outcomes: 0,
        };
        let mut it = self
            .db
            .raw_iterator_cf_opt(tables.cf(Table::Dtxs), scan_options());
        it.seek_to_first();
        while let Some(value) = it.value() {
            match super::tables::decode::<DtxRecord>(CF_DTXS, value)? {
                DtxRecord::Locked(_) => audit.locked_dtxs += 1,
                DtxRecord::Applied => audit.applied_dtxs += 1,
                DtxRecord::Discarded { .. } => audit.tombstones += 1,
            }
            it.next();
        }
        it.status()?;
        let mut it = self
            .db
            .raw_iterator_cf_opt(tables.cf(Table::Outcomes), scan_options());
        it.seek_to_first();
        while it.valid() {
            audit.outcomes += 1;
            it.next();
        }
        it.status()?;
        Ok(audit)
    }

    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// Runs `commands` in order into `batch`; one response each, and the lock and pending
    /// changes to commit once the batch is written.
    fn apply_commands(
        &self,
        batch: &mut WriteBatch,
        commands: Vec<ShardCommand>,
    ) -> Result<(Vec<ShardResponse>, MemoryChanges), LockingError> {
        let mut staged = self.store.stage(batch)?;
        let mut tables = Tables::new(&self.db, &self.pending, &self.locked)?;
        self.prefetch(&staged, &mut tables, &commands)?;
        let mut responses = Vec::with_capacity(commands.len());
        for command in commands {
            let response = match command {
                ShardCommand::Lock { dtx, txs } => self.lock(&mut staged, &mut tables, dtx, txs)?,
                ShardCommand::Apply {
                    dtx,
                    commit,
                    reasons,
                } => self.apply_dtx(&mut staged, &mut tables, dtx, &commit, &reasons)?,
                ShardCommand::Discard { dtx } => self.discard(&mut tables, dtx)?,
            };
            responses.push(response);
        }
        tables.prune(
            self.params.dtx_tombstone_retention,
            self.params.outcome_retention,
        )?;
        let (pending, locked) = tables.finish(staged.batch());
        let locks = staged.finish()?;
        Ok((
            responses,
            MemoryChanges {
                locks,
                pending,
                locked,
            },
        ))
    }

    /// Reads every owned record the `Lock`s of `commands` will check, in one batched
    /// lookup per table ([`StagedBatch::prefetch`] for inputs and outputs,
    /// [`Tables::prefetch_outcomes`] for the outcomes of owned tx ids). Not those of
    /// `Apply`: its inputs are locked, so the lock table knows them without a read.
    fn prefetch(
        &self,
        s: &StagedBatch<'_>,
        t: &mut Tables<'_>,
        commands: &[ShardCommand],
    ) -> Result<(), LockingError> {
        let range = self.params.range;
        let checked = || {
            commands
                .iter()
                .flat_map(|command| match command {
                    ShardCommand::Lock { txs, .. } => txs.as_slice(),
                    _ => &[],
                })
                .filter_map(|slot| match slot {
                    LockSlot::Check(tx) => Some(tx),
                    LockSlot::Refused { .. } => None,
                })
        };
        let ids = checked().flat_map(|tx| {
            let outputs = tx.outputs.iter().map(|(id, _)| id);
            tx.inputs.iter().chain(outputs).filter(|id| range.owns(id))
        });
        s.prefetch(ids)?;
        t.prefetch_outcomes(checked().map(|tx| &tx.id).filter(|id| self.owns_tx(id)))
    }

    /// `Lock`: idempotent by dtx id. A dtx locked before gets its recorded results again;
    /// one applied or discarded is refused ([`CommandRefusal::DtxFinished`]).
    fn lock(
        &self,
        s: &mut StagedBatch<'_>,
        t: &mut Tables<'_>,
        dtx: DtxKey,
        slots: Vec<LockSlot>,
    ) -> Result<ShardResponse, LockingError> {
        match t.dtx(&dtx)? {
            Some(DtxRecord::Locked(locked)) => {
                return Ok(ShardResponse::Locked {
                    results: locked.results.clone(),
                    repeated: true,
                })
            }
            Some(DtxRecord::Applied | DtxRecord::Discarded { .. }) => {
                return Ok(ShardResponse::Refused(CommandRefusal::DtxFinished { dtx }))
            }
            None => {}
        }
        if u32::try_from(slots.len()).is_err() {
            return Ok(ShardResponse::Refused(
                CommandRefusal::TooManyTransactions {
                    count: slots.len() as u64,
                },
            ));
        }
        let mut results = Vec::with_capacity(slots.len());
        let mut sliced = Vec::with_capacity(slots.len());
        for (i, slot) in slots.into_iter().enumerate() {
            // Fits: the number of slots was checked above.
            let owner = dtx.owner(i as u32);
            let (result, tx) = match slot {
                LockSlot::Refused { id, reason } => (
                    LockResult::refused(reason, None),
                    SlicedTx::unlocked(id, self.owns_tx(&id)),
                ),
                LockSlot::Check(tx) => self.lock_one(s, t, owner, &tx)?,
            };
            results.push(result);
            sliced.push(tx);
        }
        let locked = LockedDtx {
            txs: sliced,
            results: results.clone(),
        };
        t.put_dtx(&dtx, &DtxRecord::Locked(Arc::new(locked)))?;
        Ok(ShardResponse::Locked {
            results,
            repeated: false,
        })
    }

    /// Prepares one transaction: the parts this shard owns are checked and locked for
    /// `owner`, or nothing is.
    fn lock_one(
        &self,
        s: &mut StagedBatch<'_>,
        t: &mut Tables<'_>,
        owner: LockOwner,
        tx: &CompactTransaction,
    ) -> Result<(LockResult, SlicedTx), LockingError> {
        let range = self.params.range;
        let owns_id = self.owns_tx(&tx.id);
        let unlocked = || SlicedTx::unlocked(tx.id, owns_id);
        let previous = if owns_id { t.outcome(&tx.id)? } else { None };
        if previous.is_some_and(|r| r.state == StoredOutcome::Committed) {
            return Ok((LockResult::committed_before(), unlocked()));
        }

        let mint = (tx.is_mint() && owns_id).then_some(&tx.id);
        // A replayed mint is named as such, before its outputs (which exist, if the
        // replay is exact) are found taken.
        if let Some(id) = mint {
            if s.mint_state(id)? == Some(MintState::Recorded) {
                return Ok((
                    LockResult::refused(RejectCode::MintReplay, None),
                    unlocked(),
                ));
            }
        }

        let outputs: Vec<(UhsId, Amount)> = tx
            .outputs
            .iter()
            .filter(|(id, _)| range.owns(id))
            .copied()
            .collect();
        let output_ids: Vec<UhsId> = outputs.iter().map(|(id, _)| *id).collect();
        // The owned inputs, and where each sits in the whole transaction, so that a
        // refusal names the input the client knows.
        let (positions, inputs): (Vec<usize>, Vec<UhsId>) = tx
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, id)| range.owns(id))
            .map(|(i, id)| (i, *id))
            .unzip();
        if let Err(rejection) = s.prepare(owner, &inputs, &output_ids, mint)? {
            let input_index = rejected_input(&rejection)
                .and_then(|i| positions.get(i))
                .and_then(|&p| u32::try_from(p).ok());
            let code = RejectCode::from_rejection(&rejection);
            return Ok((LockResult::refused(code, input_index), unlocked()));
        }

        // New, a retry in a second dtx, or a new attempt after a rejection: pending in
        // this dtx too.
        if owns_id {
            t.hold_pending(&tx.id, owner);
        }
        let sliced = SlicedTx {
            id: tx.id,
            owns_id,
            inputs,
            outputs: outputs.iter().map(|(id, v)| (*id, v.cents())).collect(),
            mint: mint.is_some(),
        };
        Ok((LockResult::locked(), sliced))
    }

    /// `Apply`: idempotent by dtx id. An unknown dtx is marked applied (so that a late
    /// `Lock` is refused), an applied or discarded one is left alone.
    fn apply_dtx(
        &self,
        s: &mut StagedBatch<'_>,
        t: &mut Tables<'_>,
        dtx: DtxKey,
        commit: &[bool],
        reasons: &[Option<RejectCode>],
    ) -> Result<ShardResponse, LockingError> {
        let locked = match t.dtx(&dtx)? {
            None => {
                t.put_dtx(&dtx, &DtxRecord::Applied)?;
                return Ok(ShardResponse::Applied(ApplyOutcome::UnknownDtx));
            }
            Some(DtxRecord::Applied) => {
                return Ok(ShardResponse::Applied(ApplyOutcome::AlreadyApplied))
            }
            Some(DtxRecord::Discarded { .. }) => {
                return Ok(ShardResponse::Applied(ApplyOutcome::AlreadyDiscarded))
            }
            Some(DtxRecord::Locked(locked)) => locked,
        };
        let LockedDtx { txs, results } = locked.as_ref();
        if commit.len() != txs.len() {
            return Ok(ShardResponse::Refused(CommandRefusal::FlagCount {
                expected: txs.len() as u64,
                got: commit.len() as u64,
            }));
        }
        if !reasons.is_empty() && reasons.len() != txs.len() {
            return Ok(ShardResponse::Refused(CommandRefusal::ReasonCount {
                expected: txs.len() as u64,
                got: reasons.len() as u64,
            }));
        }
        if let Some(refusal) = check_commits(s, dtx, txs, results, commit)? {
            return Ok(ShardResponse::Refused(refusal));
        }

        // Checked: from here on the store cannot refuse anything.
        for (i, ((tx, result), &commit)) in txs.iter().zip(results).zip(commit).enumerate() {
            // Fits: the dtx was locked with at most u32::MAX transactions.
            let tx_index = i as u32;
            let owner = dtx.owner(tx_index);
            let mint = tx.mint.then_some(&tx.id);
            if commit {
                let outputs: Vec<(UhsId, Amount)> = tx
                    .outputs
                    .iter()
                    .map(|(id, cents)| (*id, Amount::from_cents(*cents)))
                    .collect();
                if let Err(rejection) = s.apply(owner, &tx.inputs, &outputs, mint)? {
                    return Err(LockingError::Invariant {
                        tx_index,
                        detail: rejection.to_string(),
                    });
                }
                if tx.owns_id {
                    record_commit(t, &tx.id, owner)?;
                }
            } else {
                let outputs: Vec<UhsId> = tx.outputs.iter().map(|(id, _)| *id).collect();
                s.release(owner, &tx.inputs, &outputs, mint)?;
                if tx.owns_id {
                    // The coordinator knows the real reason (another shard's refusal);
                    // this shard's own refusal is the next best; ABORTED says nothing.
                    let reason = reasons
                        .get(i)
                        .copied()
                        .flatten()
                        .or(result.reason)
                        .unwrap_or(RejectCode::Aborted);
                    record_rejection(t, &tx.id, owner, reason)?;
                }
            }
        }
        t.put_dtx(&dtx, &DtxRecord::Applied)?;
        Ok(ShardResponse::Applied(ApplyOutcome::Applied))
    }

    /// `Discard`: idempotent. Leaves a tombstone (also for an unknown dtx, so that a late
    /// `Lock` is refused); a locked dtx that was not applied is refused, since its locks
    /// would stay held forever.
    fn discard(&self, t: &mut Tables<'_>, dtx: DtxKey) -> Result<ShardResponse, LockingError> {
        Ok(match t.dtx(&dtx)? {
            None => {
                t.put_tombstone(&dtx)?;
                ShardResponse::Discarded(DiscardOutcome::UnknownDtx)
            }
            Some(DtxRecord::Locked(_)) => {
                ShardResponse::Refused(CommandRefusal::NotApplied { dtx })
            }
            Some(DtxRecord::Applied) => {
                t.put_tombstone(&dtx)?;
                ShardResponse::Discarded(DiscardOutcome::Discarded)
            }
            Some(DtxRecord::Discarded { .. }) => {
                ShardResponse::Discarded(DiscardOutcome::AlreadyDiscarded)
            }
        })
    }
}

/// The position (among the inputs passed to the store) of the input a rejection names.
fn rejected_input(rejection: &Rejection) -> Option<usize> {
    match *rejection {
        Rejection::InputMissing { index, .. }
        | Rejection::InputLocked { index, .. }
        | Rejection::DuplicateInput { index, .. } => Some(index),
        _ => None,
    }
}

/// Why the commits of an `Apply` cannot be staged, if they cannot: a commit for a
/// transaction that was not locked here, or a state that no longer matches the locks
/// taken. Checks everything [`StagedBatch::apply`] would, so that after it passes no
/// commit of the command can be refused half-way.
fn check_commits(
    s: &StagedBatch<'_>,
    dtx: DtxKey,
    txs: &[SlicedTx],
    results: &[LockResult],
    commit: &[bool],
) -> Result<Option<CommandRefusal>, LockingError> {
    let mut created = IdSet::default();
    for (i, ((tx, result), _)) in txs
        .iter()
        .zip(results)
        .zip(commit)
        .enumerate()
        .filter(|(_, (_, &commit))| commit)
    {
        let tx_index = i as u32;
        if !result.locked {
            return Ok(Some(CommandRefusal::CommitNotLocked { dtx, tx_index }));
        }
        let owner = dtx.owner(tx_index);
        let diverged = |detail: String| {
            Ok(Some(CommandRefusal::Diverged {
                dtx,
                tx_index,
                detail,
            }))
        };
        for id in &tx.inputs {
            match s.entry(id)? {
                None => return diverged(format!("input {id} is no longer unspent")),
                Some(entry) if entry.lock != Some(owner) => {
                    return diverged(format!("input {id} is no longer locked for the dtx"))
                }
                Some(_) => {}
            }
        }
        for (id, _) in &tx.outputs {
            if !created.insert(*id) || s.get(id)?.is_some() {
                return diverged(format!("output {id} already exists"));
            }
        }
        if tx.mint && s.mint_state(&tx.id)? != Some(MintState::Locked(owner)) {
            return diverged(format!("mint {} is no longer locked for the dtx", tx.id));
        }
    }
    Ok(None)
}

/// Records `tx`, committed in the dtx of `owner`, as committed: final, whatever other
/// dtx still holds it pending (their inputs cannot be locked again, so they abort). No
/// read: a transaction commits at most once (its inputs are locked for one dtx at a
/// time).
fn record_commit(t: &mut Tables<'_>, tx: &TxId, owner: LockOwner) -> Result<(), LockingError> {
    t.settle_pending(tx, owner);
    t.put_outcome(tx, StoredOutcome::Committed)
}

/// Records `tx`, aborted in the dtx of `owner`, as rejected — unless another dtx still
/// holds it pending (the last to settle decides) or it committed (in another dtx: a
/// commit is final). Aborts are rare, so reading the outcome here costs little.
fn record_rejection(
    t: &mut Tables<'_>,
    tx: &TxId,
    owner: LockOwner,
    reason: RejectCode,
) -> Result<(), LockingError> {
    if t.settle_pending(tx, owner)
        || t.outcome(tx)?
            .is_some_and(|r| r.state == StoredOutcome::Committed)
    {
        return Ok(());
    }
    t.put_outcome(tx, StoredOutcome::Rejected(reason))
}

impl StateMachine for LockingShardMachine {
    type Command = ShardCommand;
    type Response = ShardResponse;

    fn column_families() -> &'static [&'static str] {
        &LOCKING_SHARD_CFS
    }

    /// The tables keyed by a random 32-byte id and written for every transaction (the
    /// ordered and the small ones keep the default tuning).
    fn random_key_column_families() -> &'static [&'static str] {
        &[CF_UHS, CF_UHS_MINTED, CF_OUTCOMES]
    }

    fn apply(
        &mut self,
        batch: &mut WriteBatch,
        commands: Vec<ShardCommand>,
    ) -> Result<Vec<ShardResponse>, ConsensusError> {
        let (responses, changes) = self.apply_commands(batch, commands)?;
        self.staged = Some(changes);
        Ok(responses)
    }

    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        Ok(super::snapshot::write(self)?)
    }

    fn install_snapshot(
        &mut self,
        batch: &mut WriteBatch,
        data: &[u8],
    ) -> Result<(), ConsensusError> {
        super::snapshot::install(self, batch, data)?;
        self.staged = None;
        self.memory_stale = true;
        Ok(())
    }

    fn on_written(&mut self) -> Result<(), ConsensusError> {
        if let Some(MemoryChanges {
            locks,
            pending,
            locked,
        }) = self.staged.take()
        {
            self.store.commit_locks(locks);
            for (tx, holders) in pending {
                if holders.is_empty() {
                    self.pending.remove(&tx);
                } else {
                    self.pending.insert(tx, holders);
                }
            }
            for (dtx, record) in locked {
                match record {
                    Some(record) => self.locked.insert(dtx, record),
                    None => self.locked.remove(&dtx),
                };
            }
        }
        if std::mem::take(&mut self.memory_stale) {
            self.restore_memory()?;
        }
        Ok(())
    }
}
