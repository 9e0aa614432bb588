//! [`MemoryLedger`]: a [`Ledger`] in memory that keeps a real unspent set and can be told
//! to misbehave, so that the wallet's safety rules are tested without sockets.
//!
//! It settles like a cluster (stateless validation with the issuer key, inputs must be
//! unspent, outputs must be new, a mint id is accepted once, a settled transaction is
//! answered with its recorded outcome and never applied twice) and offers the failures a
//! wallet must survive, one per submission ([`Fault`]): an answer lost after settling, a
//! transaction lost before arriving, a transaction held in flight, a rejection; plus an
//! unreachable switch and a way to forget outcomes (a ledger that no longer keeps old
//! statuses).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cbdc_core::{Amount, CompactTransaction, Limits, PublicKey, Transaction, TxId, UhsId};
use cbdc_core::{ValidationError, Validator};
use futures::future::BoxFuture;

use crate::ledger::{Final, Ledger, LedgerError, LedgerInfo, OutputStatus, Rejection, TxStatus};

/// What the next submission suffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The transaction settles, but its answer is lost: the caller sees a timeout.
    LoseAnswer,
    /// The transaction never arrives: the caller sees a timeout and the ledger knows
    /// nothing.
    LoseTransaction,
    /// The transaction arrives and stays in flight (pending, inputs locked) until
    /// [`MemoryLedger::release`]: the caller sees a timeout.
    Hold,
    /// The ledger refuses it with this rejection, whatever its state.
    Reject(Rejection),
}

#[derive(Default)]
struct State {
    unspent: HashMap<UhsId, Amount>,
    outcomes: HashMap<TxId, Final>,
    mints: HashSet<TxId>,
    faults: VecDeque<Fault>,
    held: Vec<CompactTransaction>,
    unreachable: bool,
    submissions: usize,
}

/// An in-memory ledger implementing [`Ledger`].
pub struct MemoryLedger {
    validator: Validator,
    /// A `std` mutex: held for bookkeeping only, never across an await.
    state: Mutex<State>,
}

/// The timeout reported when a fault swallows an answer.
const FAULT_TIMEOUT: Duration = Duration::from_millis(1);

impl MemoryLedger {
    /// An empty ledger whose mints must be signed by `issuer`.
    pub fn new(issuer: PublicKey) -> Self {
        MemoryLedger {
            validator: Validator::new(Limits::default(), Some(issuer)),
            state: Mutex::new(State::default()),
        }
    }

    /// The same with other limits (to test coin selection against them).
    pub fn with_limits(issuer: PublicKey, limits: Limits) -> Self {
        MemoryLedger {
            validator: Validator::new(limits, Some(issuer)),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a fault for the next submission that has none yet.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Makes every call fail as unreachable (or work again).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.state().unreachable = unreachable;
    }

    /// Settles every held transaction, in arrival order.
    pub fn release(&self) {
        let mut state = self.state();
        let held = std::mem::take(&mut state.held);
        for tx in &held {
            settle(&mut state, tx);
        }
    }

    /// Forgets the recorded outcome of `tx_id`, as a ledger that keeps statuses only for a
    /// while would.
    pub fn forget(&self, tx_id: &TxId) {
        self.state().outcomes.remove(tx_id);
    }

    /// How many submissions arrived (including refused and faulty ones).
    pub fn submissions(&self) -> usize {
        self.state().submissions
    }

    /// The total value of the unspent set: what a supply audit would find.
    pub fn supply(&self) -> Option<Amount> {
        Amount::checked_sum(self.state().unspent.values().copied())
    }

    fn check_reachable(&self) -> Result<(), LedgerError> {
        if self.state().unreachable {
            return Err(LedgerError::Unreachable {
                endpoint: "memory".into(),
                detail: "set unreachable".into(),
            });
        }
        Ok(())
    }

    fn submit_now(&self, tx: &Transaction) -> Result<Final, LedgerError> {
        self.check_reachable()?;
        if let Err(e) = self.validator.validate(tx) {
            return Ok(invalid(&e));
        }
        let compact = tx.compact();
        let mut state = self.state();
        state.submissions += 1;
        if let Some(done) = state.outcomes.get(&compact.id) {
            return Ok(done.clone());
        }
        if state.held.iter().any(|h| h.id == compact.id) {
            return Err(LedgerError::Timeout {
                after: FAULT_TIMEOUT,
            });
        }
        match state.faults.pop_front() {
            None => Ok(settle(&mut state, &compact)),
            Some(Fault::LoseAnswer) => {
                settle(&mut state, &compact);
                Err(LedgerError::Timeout {
                    after: FAULT_TIMEOUT,
                })
            }
            Some(Fault::LoseTransaction) => Err(LedgerError::Timeout {
                after: FAULT_TIMEOUT,
            }),
            Some(Fault::Hold) => {
                state.held.push(compact);
                Err(LedgerError::Timeout {
                    after: FAULT_TIMEOUT,
                })
            }
            Some(Fault::Reject(rejection)) => {
                let outcome = Final::Rejected(rejection);
                state.outcomes.insert(compact.id, outcome.clone());
                Ok(outcome)
            }
        }
    }
}

fn invalid(e: &ValidationError) -> Final {
    Final::Invalid {
        message: e.to_string(),
    }
}

fn rejected(reason: &str, input_index: Option<usize>) -> Final {
    Final::Rejected(Rejection {
        reason: reason.to_string(),
        message: reason.to_lowercase().replace('_', " "),
        input_index: input_index.and_then(|i| u32::try_from(i).ok()),
    })
}

/// Settles one transaction (idempotent by tx id), as a back end does.
fn settle(state: &mut State, tx: &CompactTransaction) -> Final {
    if let Some(done) = state.outcomes.get(&tx.id) {
        return done.clone();
    }
    let outcome = if tx.is_mint() && state.mints.contains(&tx.id) {
        rejected("MINT_REPLAY", None)
    } else if let Some(i) = tx
        .inputs
        .iter()
        .position(|id| !state.unspent.contains_key(id))
    {
        rejected("INPUTS_SPENT", Some(i))
    } else if tx
        .outputs
        .iter()
        .any(|(id, _)| state.unspent.contains_key(id))
    {
        rejected("OUTPUT_EXISTS", None)
    } else {
        for id in &tx.inputs {
            state.unspent.remove(id);
        }
        for (id, value) in &tx.outputs {
            state.unspent.insert(*id, *value);
        }
        if tx.is_mint() {
            state.mints.insert(tx.id);
        }
        Final::Confirmed
    };
    state.outcomes.insert(tx.id, outcome.clone());
    outcome
}

impl Ledger for MemoryLedger {
    fn submit<'a>(&'a self, tx: &'a Transaction) -> BoxFuture<'a, Result<Final, LedgerError>> {
        Box::pin(async move { self.submit_now(tx) })
    }

    fn tx_status(&self, id: TxId) -> BoxFuture<'_, Result<TxStatus, LedgerError>> {
        Box::pin(async move {
            self.check_reachable()?;
            let state = self.state();
            if state.held.iter().any(|h| h.id == id) {
                return Ok(TxStatus::Pending);
            }
            Ok(state
                .outcomes
                .get(&id)
                .cloned()
                .map_or(TxStatus::Unknown, TxStatus::Final))
        })
    }

    fn output_status<'a>(
        &'a self,
        ids: &'a [UhsId],
    ) -> BoxFuture<'a, Result<Vec<OutputStatus>, LedgerError>> {
        Box::pin(async move {
            self.check_reachable()?;
            let state = self.state();
            let locked: HashSet<&UhsId> = state.held.iter().flat_map(|h| &h.inputs).collect();
            Ok(ids
                .iter()
                .map(|id| match state.unspent.get(id) {
                    Some(v) if locked.contains(id) => OutputStatus::Locked(*v),
                    Some(v) => OutputStatus::Unspent(*v),
                    None => OutputStatus::SpentOrAbsent,
                })
                .collect())
        })
    }

    fn info(&self) -> BoxFuture<'_, Result<LedgerInfo, LedgerError>> {
        Box::pin(async move {
            self.check_reachable()?;
            Ok(LedgerInfo {
                architecture: "memory".into(),
                issuer: self.validator.issuer,
                limits: self.validator.limits,
                version: env!("CARGO_PKG_VERSION").into(),
            })
        })
    }
}
