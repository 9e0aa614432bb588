//! An in-memory [`Backend`]: a ledger in a `HashMap`, for tests of the sentinel (and of
//! whatever sits on top of it) without coordinators or shards.
//!
//! It keeps the back end's contract: a settled transaction is answered with its recorded
//! outcome and never applied twice; a mint id is never accepted twice; attestations are
//! checked when a verifier is given. It also records every batch it receives, can hold
//! batches until released (to observe what is in flight) and can play unreachable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use cbdc_core::{Amount, AttestationVerifier, CompactTransaction, TxId, UhsId};
use cbdc_proto::v1::RejectReason;
use futures::future::BoxFuture;
use tokio::sync::{watch, Notify};

use crate::backend::{Backend, BackendError, Outcome, OutputState, TxState};

#[derive(Default)]
struct Ledger {
    unspent: HashMap<UhsId, Amount>,
    outcomes: HashMap<TxId, Outcome>,
    mints: HashSet<TxId>,
    /// Every batch received, in arrival order.
    received: Vec<Vec<CompactTransaction>>,
}

/// An in-memory ledger implementing [`Backend`].
pub struct MemoryBackend {
    /// A `std` mutex: held for bookkeeping only, never across an await.
    ledger: Mutex<Ledger>,
    verifier: Option<AttestationVerifier>,
    unavailable: AtomicBool,
    /// `false` while batches are held (see [`MemoryBackend::hold`]).
    open: watch::Sender<bool>,
    /// Woken whenever a batch arrives.
    arrived: Notify,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new(None)
    }
}

impl MemoryBackend {
    /// An empty ledger; with a verifier, transactions whose attestations do not pass it
    /// are rejected (`REJECT_REASON_ATTESTATION`).
    pub fn new(verifier: Option<AttestationVerifier>) -> Self {
        MemoryBackend {
            ledger: Mutex::new(Ledger::default()),
            verifier,
            unavailable: AtomicBool::new(false),
            open: watch::Sender::new(true),
            arrived: Notify::new(),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates an unspent output (as if a genesis or an earlier mint had).
    pub fn seed(&self, id: UhsId, value: Amount) {
        self.ledger().unspent.insert(id, value);
    }

    /// Makes every call fail with [`BackendError::Unavailable`] (or succeed again).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Holds every batch that arrives from now on until [`MemoryBackend::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Lets held batches (and later ones) through.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Every transaction received so far, in arrival order.
    pub fn received(&self) -> Vec<CompactTransaction> {
        self.ledger().received.iter().flatten().cloned().collect()
    }

    /// The batches received so far.
    pub fn batches(&self) -> Vec<Vec<CompactTransaction>> {
        self.ledger().received.clone()
    }

    /// Waits until at least `count` transactions have arrived.
    pub async fn wait_received(&self, count: usize) {
        loop {
            let arrived = self.arrived.notified();
            if self.ledger().received.iter().map(Vec::len).sum::<usize>() >= count {
                return;
            }
            arrived.await;
        }
    }

    /// Settles one transaction against the ledger (idempotent by tx id).
    fn settle(&self, ledger: &mut Ledger, tx: &CompactTransaction) -> Outcome {
        if let Some(outcome) = ledger.outcomes.get(&tx.id) {
            return outcome.clone();
        }
        let reject = |reason, input_index: Option<usize>, message: &str| Outcome::Rejected {
            reason,
            input_index: input_index.map(|i| i as u32),
            message: message.to_string(),
        };
        let outcome = if let Some(Err(e)) = self.verifier.as_ref().map(|v| v.verify(tx)) {
            reject(RejectReason::Attestation, None, &e.to_string())
        } else if tx.is_mint() && ledger.mints.contains(&tx.id) {
            reject(RejectReason::MintReplay, None, "mint replayed")
        } else if let Some(i) = tx
            .inputs
            .iter()
            .position(|id| !ledger.unspent.contains_key(id))
        {
            reject(RejectReason::InputsSpent, Some(i), "input spent or absent")
        } else if tx
            .outputs
            .iter()
            .any(|(id, _)| ledger.unspent.contains_key(id))
        {
            reject(RejectReason::OutputExists, None, "output exists")
        } else {
            for id in &tx.inputs {
                ledger.unspent.remove(id);
            }
            for (id, value) in &tx.outputs {
                ledger.unspent.insert(*id, *value);
            }
            if tx.is_mint() {
                ledger.mints.insert(tx.id);
            }
            Outcome::CONFIRMED
        };
        ledger.outcomes.insert(tx.id, outcome.clone());
        outcome
    }

    fn check_available(&self) -> Result<(), BackendError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable(
                "memory back end set unavailable".into(),
            ));
        }
        Ok(())
    }
}

impl Backend for MemoryBackend {
    fn execute(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> BoxFuture<'_, Result<Vec<Outcome>, BackendError>> {
        Box::pin(async move {
            self.check_available()?;
            self.ledger().received.push(txs.clone());
            self.arrived.notify_waiters();
            let mut open = self.open.subscribe();
            // The sender lives in `self`, so the wait ends only by a release.
            let _ = open.wait_for(|open| *open).await;
            let mut ledger = self.ledger();
            Ok(txs.iter().map(|tx| self.settle(&mut ledger, tx)).collect())
        })
    }

    fn tx_status(&self, id: TxId) -> BoxFuture<'_, Result<TxState, BackendError>> {
        Box::pin(async move {
            self.check_available()?;
            Ok(self
                .ledger()
                .outcomes
                .get(&id)
                .cloned()
                .map_or(TxState::Unknown, TxState::Final))
        })
    }

    fn output_status(
        &self,
        ids: Vec<UhsId>,
    ) -> BoxFuture<'_, Result<Vec<OutputState>, BackendError>> {
        Box::pin(async move {
            self.check_available()?;
            let ledger = self.ledger();
            Ok(ids
                .iter()
                .map(|id| {
                    ledger
                        .unspent
                        .get(id)
                        .map_or(OutputState::SpentOrAbsent, |v| OutputState::Unspent(*v))
                })
                .collect())
        })
    }
}
