//! The coordinator leader driver: batching, the two phases, recovery.
//!
//! One [`Coordinator`] runs beside each replica of a coordinator group. It does nothing
//! while its replica follows. When the replica becomes leader (in some Raft term) it
//! opens an *epoch*:
//!
//! 1. recovery: confirm leadership and catch up (`ensure_linearizable`), read every
//!    unfinished dtx from the replicated state and drive each to completion; meanwhile
//!    `ExecuteBatch` answers UNAVAILABLE;
//! 2. service: requests register their transactions as waiters (by tx id, so a
//!    transaction already in flight is joined, never settled twice) and queue them; a
//!    batcher cuts dtxs of up to `batch_size` transactions or after `batch_delay`, and
//!    runs up to `max_in_flight` of them at once, each in its own task:
//!    Prepare (Raft) → Lock (all involved shards, concurrently) → decide → Decide (Raft)
//!    → Apply (all involved shards) → answer the waiters → Discard → Done (Raft, batched
//!    across dtxs by a finisher task).
//!
//! The epoch ends when the replica stops leading in that term or the coordinator shuts
//! down: every task of the epoch stops at its next step (shard retries included), and
//! every waiting request is answered UNAVAILABLE. Whatever was left half-done stays in the
//! replicated state for the next leader's recovery.

use std::collections::hash_map::Entry;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use cbdc_consensus::{ConsensusError, ReplicaHandle};
use cbdc_core::{AttestationError, AttestationVerifier, CompactTransaction, IdMap, TxId};
use cbdc_proto::v1::{self, DtxId, RejectReason};
use futures::future::{join_all, try_join_all};
use openraft::ServerState;
use rayon::prelude::*;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::dtx::{apply_args, decide, split, ShardSlice, Verdict};
use crate::error::CoordinatorError;
use crate::machine::{
    CoordinatorCommand, CoordinatorMachine, CoordinatorResponse, DtxTransactions,
};
use crate::service::CoordinatorService;
use crate::shards::{LockVote, ShardError, ShardGroups};

/// Batches at least this large have their attestations checked on the blocking pool
/// with rayon, so that big batches never stall the async threads.
const PARALLEL_VERIFY_FROM: usize = 64;
/// Transactions per parallel task when a batch's attestations are checked on rayon.
const VERIFY_CHUNK: usize = 256;
/// Largest allowed `batch_size` (see [`CoordinatorParams::batch_size`]).
pub const MAX_BATCH_SIZE: usize = 16_384;
/// Requests queued for the batcher before `ExecuteBatch` callers wait (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// First pause before retrying a failed step; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between retries of a shard call or a Raft write.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Most dtxs marked done by one `Done` command.
const MAX_DONE_PER_WRITE: usize = 4096;
/// How long [`Coordinator::shutdown`] waits for the driver's tasks to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The parameters of a coordinator group's driver (the same on every replica).
#[derive(Debug, Clone)]
pub struct CoordinatorParams {
    /// This coordinator group's id: the `coordinator` part of every dtx id it issues, so
    /// that shards can tell dtxs of different groups apart.
    pub group: u32,
    /// Most transactions in one dtx (1..=16384). Bigger dtxs amortize the Raft writes
    /// and shard round trips; smaller ones cut latency. The cap keeps one dtx's Prepare
    /// entry and Lock request (about 700 bytes per attested transaction) well inside the
    /// internal message limit.
    pub batch_size: usize,
    /// How long the batcher waits for a dtx to fill once it holds a first transaction.
    pub batch_delay: Duration,
    /// Most dtxs between Prepare and answer at once (at least 1); as many more may be
    /// discarding.
    pub max_in_flight: usize,
    /// Longest an `ExecuteBatch` call waits for its verdicts before answering
    /// UNAVAILABLE (its transactions stay in flight; a retry joins them).
    pub request_timeout: Duration,
}

impl Default for CoordinatorParams {
    fn default() -> Self {
        Self {
            group: 0,
            batch_size: 2000,
            batch_delay: Duration::from_millis(2),
            max_in_flight: 8,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl CoordinatorParams {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), CoordinatorError> {
        let max_batch = MAX_BATCH_SIZE;
        if self.batch_size == 0 || self.batch_size > max_batch {
            return Err(CoordinatorError::InvalidParams(format!(
                "batch_size is {}, must be 1..={max_batch}",
                self.batch_size
            )));
        }
        if self.max_in_flight == 0 {
            return Err(CoordinatorError::InvalidParams(
                "max_in_flight must be at least 1".into(),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(CoordinatorError::InvalidParams(
                "request_timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The coordinator driver of one replica. Start it beside the replica with
/// [`Coordinator::start`], serve [`Coordinator::service`], and stop it with
/// [`Coordinator::shutdown`] before shutting the replica down.
pub struct Coordinator {
    inner: Arc<Inner>,
    supervisor: Option<JoinHandle<()>>,
    /// Every task of the driver holds a clone of this sender; the receiver sees the
    /// channel close once all of them have ended.
    alive: Option<mpsc::Sender<()>>,
    all_ended: mpsc::Receiver<()>,
}

/// What the driver's tasks and the gRPC service share.
pub(crate) struct Inner {
    handle: ReplicaHandle<CoordinatorMachine>,
    params: CoordinatorParams,
    verifier: Arc<AttestationVerifier>,
    shards: Arc<dyn ShardGroups>,
    /// The epoch taking new work: `Some` while this replica leads and has recovered. A
    /// std mutex: it is held only to clone or replace the `Arc`.
    current: Mutex<Option<Arc<Epoch>>>,
    shutdown: watch::Sender<bool>,
}

/// The stop signal of an epoch: set when this replica stops leading in the epoch's term
/// or the coordinator shuts down.
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stopped (or once the epoch's sender is gone, which means the same).
    async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// "This replica stopped driving": leadership lost or shutdown. Whatever was in progress
/// is left to the next leader's recovery.
#[derive(Debug)]
struct Stopped;

/// One period of leadership (one Raft term) in which this replica takes new work.
struct Epoch {
    term: u64,
    stop: Stop,
    waiters: Mutex<Waiters>,
    /// Into the batcher: the new (not already in flight) transactions of each request.
    queue: mpsc::Sender<Vec<CompactTransaction>>,
}

/// Requests waiting for verdicts, by tx id.
#[derive(Default)]
struct Waiters {
    /// Set when the epoch ended: nothing may register any more.
    closed: bool,
    by_tx: IdMap<TxId, Vec<Waiter>>,
}

/// One request position waiting for a transaction's verdict. Weak: a request that gave
/// up (timeout, client gone) leaves nothing alive behind.
struct Waiter {
    slot: Weak<RequestSlot>,
    index: usize,
}

/// How a transaction of a request ended.
#[derive(Debug, Clone, Copy)]
enum Settled {
    Verdict(Verdict),
    /// This replica stopped leading before the verdict was known.
    Unavailable,
}

/// Where one `ExecuteBatch` request collects its verdicts.
struct RequestSlot {
    state: Mutex<SlotState>,
}

struct SlotState {
    outcomes: Vec<Option<Settled>>,
    /// Positions still waiting.
    remaining: usize,
    done: Option<oneshot::Sender<()>>,
}

impl RequestSlot {
    fn new(len: usize, waiting: usize, done: oneshot::Sender<()>) -> Self {
        Self {
            state: Mutex::new(SlotState {
                outcomes: vec![None; len],
                remaining: waiting,
                done: Some(done),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Every update leaves the state consistent, so a poisoned lock is safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the outcome of position `index` (the first one wins) and wakes the
    /// request once every position has one.
    fn fill(&self, index: usize, settled: Settled) {
        let mut state = self.lock();
        let Some(outcome) = state.outcomes.get_mut(index) else {
            return;
        };
        if outcome.is_some() {
            return;
        }
        *outcome = Some(settled);
        state.remaining = state.remaining.saturating_sub(1);
        if state.remaining == 0 {
            if let Some(done) = state.done.take() {
                let _ = done.send(());
            }
        }
    }

    fn take_outcomes(&self) -> Vec<Option<Settled>> {
        std::mem::take(&mut self.lock().outcomes)
    }
}

impl Epoch {
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Every update leaves the map consistent, so a poisoned lock is safe to use.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands every request waiting for one of `txs` its outcome.
    fn settle(&self, txs: &[CompactTransaction], outcome: impl Fn(usize) -> Settled) {
        let ready: Vec<(Vec<Waiter>, Settled)> = {
            let mut waiters = self.waiters();
            txs.iter()
                .enumerate()
                .filter_map(|(i, tx)| waiters.by_tx.remove(&tx.id).map(|w| (w, outcome(i))))
                .collect()
        };
        // Filled outside the map's lock, so that requests registering are not held up.
        for (waiters, settled) in ready {
            for waiter in waiters {
                if let Some(slot) = waiter.slot.upgrade() {
                    slot.fill(waiter.index, settled);
                }
            }
        }
    }

    /// Answers every request waiting for one of `txs` with UNAVAILABLE.
    fn fail(&self, txs: &[CompactTransaction]) {
        self.settle(txs, |_| Settled::Unavailable);
    }

    /// Ends the epoch for its requests: nothing registers any more, and everything still
    /// waiting is answered UNAVAILABLE.
    fn close(&self) {
        let drained: Vec<Waiter> = {
            let mut waiters = self.waiters();
            waiters.closed = true;
            waiters.by_tx.drain().flat_map(|(_, w)| w).collect()
        };
        for waiter in drained {
            if let Some(slot) = waiter.slot.upgrade() {
                slot.fill(waiter.index, Settled::Unavailable);
            }
        }
    }
}

/// Replicates `command`, giving up (`Err(Stopped)`) when `stop` fires first. The entry
/// may still be committed then; whoever leads next deals with it.
async fn write(
    handle: &ReplicaHandle<CoordinatorMachine>,
    stop: &mut Stop,
    command: CoordinatorCommand,
) -> Result<Result<CoordinatorResponse, ConsensusError>, Stopped> {
    tokio::select! {
        biased;
        _ = stop.stopped() => Err(Stopped),
        result = handle.write(command) => Ok(result),
    }
}

/// Exponential backoff between retries, cut short by the stop signal.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(FIRST_BACKOFF)
    }

    async fn wait(&mut self, stop: &mut Stop) -> Result<(), Stopped> {
        let pause = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        tokio::select! {
            biased;
            _ = stop.stopped() => Err(Stopped),
            _ = tokio::time::sleep(pause) => Ok(()),
        }
    }
}

/// Why a retried shard call ended without success.
enum RetryError {
    Stopped,
    /// The shard refused in a way a repeat cannot change.
    Permanent(ShardError),
}

/// Repeats `op` with backoff while it fails retryably, until it succeeds, fails
/// permanently, or `stop` fires.
async fn retry<T, F, Fut>(
    stop: &Stop,
    what: &'static str,
    dtx: DtxId,
    mut op: F,
) -> Result<T, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ShardError>>,
{
    let mut stop = stop.clone();
    let mut backoff = Backoff::new();
    let mut failures = 0u32;
    loop {
        if stop.is_stopped() {
            return Err(RetryError::Stopped);
        }
        let result = tokio::select! {
            biased;
            _ = stop.stopped() => return Err(RetryError::Stopped),
            result = op() => result,
        };
        match result {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(
                        what,
                        dtx = dtx.sequence,
                        failures,
                        "shard call succeeded after retries"
                    );
                }
                return Ok(value);
            }
            Err(e) if e.is_retryable() => {
                failures += 1;
                // Loud on the first failure and then now and then, not on every retry.
                if failures == 1 || failures % 30 == 0 {
                    tracing::warn!(what, dtx = dtx.sequence, failures, error = %e, "shard call failed; retrying");
                } else {
                    tracing::debug!(what, dtx = dtx.sequence, failures, error = %e, "shard call failed; retrying");
                }
                backoff
                    .wait(&mut stop)
                    .await
                    .map_err(|_| RetryError::Stopped)?;
            }
            Err(e) => return Err(RetryError::Permanent(e)),
        }
    }
}

impl Coordinator {
    /// Starts the driver of the replica behind `handle`. It waits for the replica to lead;
    /// each time it does, the driver recovers unfinished dtxs and then serves.
    /// `verifier` checks the sentinel attestations of every transaction; `shards` reaches
    /// the shard groups (and says how ids map to shards). Spawns its tasks, so it must be
    /// called within a tokio runtime.
    pub fn start(
        handle: ReplicaHandle<CoordinatorMachine>,
        params: CoordinatorParams,
        verifier: Arc<AttestationVerifier>,
        shards: Arc<dyn ShardGroups>,
    ) -> Result<Coordinator, CoordinatorError> {
        params.validate()?;
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            handle,
            params,
            verifier,
            shards,
            current: Mutex::new(None),
            shutdown,
        });
        let (alive, all_ended) = mpsc::channel(1);
        let supervisor = tokio::spawn(supervise(inner.clone(), alive.clone()));
        Ok(Coordinator {
            inner,
            supervisor: Some(supervisor),
            alive: Some(alive),
            all_ended,
        })
    }

    /// The `cbdc.v1.Coordinator` gRPC service of this driver.
    pub fn service(&self) -> CoordinatorService {
        CoordinatorService::new(self.inner.clone())
    }

    /// Settles `txs` (what `ExecuteBatch` does, for in-process callers): one result per
    /// transaction, in order, each CONFIRMED or REJECTED.
    pub async fn execute(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> Result<Vec<v1::TransactionResult>, CoordinatorError> {
        self.inner.execute(txs).await
    }

    /// Whether this replica leads, has recovered, and takes new work.
    pub fn is_accepting(&self) -> bool {
        self.inner.current_epoch().is_some()
    }

    /// Stops the driver: requests in progress are answered UNAVAILABLE, dtxs in flight
    /// are left for the next leader's recovery, and every task has ended on return (or
    /// after 10 s, with a warning). Call it before shutting the replica down.
    pub async fn shutdown(mut self) {
        let _ = self.inner.shutdown.send(true);
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.await;
        }
        self.alive = None;
        if tokio::time::timeout(SHUTDOWN_WAIT, self.all_ended.recv())
            .await
            .is_err()
        {
            tracing::warn!("coordinator tasks did not stop in time");
        }
    }
}

impl Drop for Coordinator {
    /// Without [`Coordinator::shutdown`], the tasks are still told to stop.
    fn drop(&mut self) {
        let _ = self.inner.shutdown.send(true);
    }
}

impl Inner {
    fn current_epoch(&self) -> Option<Arc<Epoch>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_current(&self, epoch: Option<Arc<Epoch>>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = epoch;
    }

    /// The epoch taking work, or why there is none.
    fn epoch(&self) -> Result<Arc<Epoch>, CoordinatorError> {
        if *self.shutdown.borrow() {
            return Err(CoordinatorError::ShuttingDown);
        }
        if let Some(epoch) = self.current_epoch() {
            return Ok(epoch);
        }
        if self.handle.is_leader() {
            return Err(CoordinatorError::Recovering);
        }
        let leader = self.handle.leader();
        Err(CoordinatorError::NotLeader {
            leader_id: leader.as_ref().map(|(id, _)| *id),
            leader_addr: leader.map(|(_, node)| node.client_addr),
        })
    }

    fn dtx_id(&self, sequence: u64) -> DtxId {
        DtxId {
            coordinator: self.params.group,
            sequence,
        }
    }

    /// Checks every transaction's attestations; big batches on the blocking pool.
    async fn verify(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> Result<(Vec<CompactTransaction>, Vec<Result<(), AttestationError>>), CoordinatorError>
    {
        if txs.len() < PARALLEL_VERIFY_FROM {
            let checks = self.verifier.verify_all(&txs);
            return Ok((txs, checks));
        }
        let verifier = self.verifier.clone();
        tokio::task::spawn_blocking(move || {
            // One run per chunk: the transactions of a sentinel batch arrive together, so
            // a chunk shares most of its Merkle nodes.
            let chunks: Vec<Vec<_>> = txs
                .par_chunks(VERIFY_CHUNK)
                .map(|chunk| verifier.verify_all(chunk))
                .collect();
            (txs, chunks.into_iter().flatten().collect())
        })
        .await
        .map_err(|_| CoordinatorError::ShuttingDown)
    }

    /// Settles a batch: see [`Coordinator::execute`].
    pub(crate) async fn execute(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> Result<Vec<v1::TransactionResult>, CoordinatorError> {
        if txs.is_empty() {
            return Ok(Vec::new());
        }
        let epoch = self.epoch()?;
        let (txs, checks) = self.verify(txs).await?;
        let ids: Vec<TxId> = txs.iter().map(|tx| tx.id).collect();
        let mut results: Vec<Option<v1::TransactionResult>> = checks
            .iter()
            .zip(&ids)
            .map(|(check, id)| {
                check.as_ref().err().map(|e| {
                    v1::TransactionResult::rejected(
                        id,
                        RejectReason::Attestation,
                        None,
                        e.to_string(),
                    )
                })
            })
            .collect();
        let waiting = results.iter().filter(|r| r.is_none()).count();
        if waiting == 0 {
            return Ok(results.into_iter().flatten().collect());
        }
        let (done_tx, done_rx) = oneshot::channel();
        let slot = Arc::new(RequestSlot::new(txs.len(), waiting, done_tx));
        let mut fresh = Vec::with_capacity(waiting);
        {
            let mut waiters = epoch.waiters();
            if waiters.closed {
                return Err(CoordinatorError::LeadershipLost);
            }
            for (index, (tx, check)) in txs.into_iter().zip(checks).enumerate() {
                if check.is_err() {
                    continue;
                }
                let waiter = Waiter {
                    slot: Arc::downgrade(&slot),
                    index,
                };
                match waiters.by_tx.entry(tx.id) {
                    Entry::Occupied(mut entry) => {
                        // In flight already (or twice in this request): wait for the same
                        // verdict. Forget requests that gave up while at it.
                        let list = entry.get_mut();
                        list.retain(|w| w.slot.strong_count() > 0);
                        list.push(waiter);
                    }
                    Entry::Vacant(entry) => {
                        entry.insert(vec![waiter]);
                        fresh.push(tx);
                    }
                }
            }
        }
        // If the batcher is gone the epoch is ending, and closing it answers the waiters.
        if !fresh.is_empty() && epoch.queue.send(fresh).await.is_err() {
            tracing::debug!("batcher gone; the epoch is ending");
        }
        match tokio::time::timeout(self.params.request_timeout, done_rx).await {
            Err(_) => return Err(CoordinatorError::Timeout(self.params.request_timeout)),
            Ok(Err(_)) => return Err(CoordinatorError::LeadershipLost),
            Ok(Ok(())) => {}
        }
        for (index, outcome) in slot.take_outcomes().into_iter().enumerate() {
            match outcome {
                Some(Settled::Verdict(verdict)) => {
                    if let (Some(result), Some(id)) = (results.get_mut(index), ids.get(index)) {
                        *result = Some(verdict.to_result(id));
                    }
                }
                Some(Settled::Unavailable) => return Err(CoordinatorError::LeadershipLost),
                None => {}
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or(CoordinatorError::LeadershipLost))
            .collect()
    }

    /// Replicates the verdicts of dtx `sequence` and returns the verdicts that stand
    /// (an earlier decision wins). Retried until it succeeds or `stop` fires.
    async fn replicate_decision(
        &self,
        stop: &Stop,
        sequence: u64,
        verdicts: Vec<Verdict>,
    ) -> Result<Vec<Verdict>, Stopped> {
        let mut stop = stop.clone();
        let mut backoff = Backoff::new();
        loop {
            if stop.is_stopped() {
                return Err(Stopped);
            }
            let command = CoordinatorCommand::Decide {
                sequence,
                verdicts: verdicts.clone(),
            };
            match write(&self.handle, &mut stop, command).await? {
                Ok(CoordinatorResponse::Decided { earlier: None }) => return Ok(verdicts),
                Ok(CoordinatorResponse::Decided {
                    earlier: Some(earlier),
                }) => return Ok(earlier),
                Ok(other) => {
                    // The dtx is gone or the decision malformed: only another leader
                    // driving the same dtx could cause it. Leave it alone.
                    tracing::error!(dtx = sequence, response = ?other, "Decide refused; no longer driving this dtx");
                    return Err(Stopped);
                }
                Err(ConsensusError::ShuttingDown) => return Err(Stopped),
                Err(e) => {
                    tracing::debug!(dtx = sequence, error = %e, "Decide not replicated; retrying");
                    backoff.wait(&mut stop).await?;
                }
            }
        }
    }

    /// Replicates `Done` for `sequences`, retried until it succeeds or `stop` fires.
    async fn replicate_done(&self, stop: &Stop, sequences: Vec<u64>) -> Result<(), Stopped> {
        let mut stop = stop.clone();
        let mut backoff = Backoff::new();
        loop {
            if stop.is_stopped() {
                return Err(Stopped);
            }
            let command = CoordinatorCommand::Done {
                sequences: sequences.clone(),
            };
            match write(&self.handle, &mut stop, command).await? {
                Ok(_) => return Ok(()),
                Err(ConsensusError::ShuttingDown) => return Err(Stopped),
                Err(e) => {
                    tracing::debug!(error = %e, "Done not replicated; retrying");
                    backoff.wait(&mut stop).await?;
                }
            }
        }
    }

    /// Lock on every slice's shard, concurrently; one vote list per slice. A shard that
    /// refuses the request itself (not retryable) counts as refusing every transaction of
    /// its slice: aborting is always safe before the decision.
    async fn lock_all(
        &self,
        stop: &Stop,
        dtx: DtxId,
        txs: &[CompactTransaction],
        slices: &[ShardSlice],
    ) -> Result<Vec<Vec<LockVote>>, Stopped> {
        let calls = slices.iter().map(|slice| async move {
            let refs: Vec<&CompactTransaction> = slice
                .txs
                .iter()
                .filter_map(|&i| txs.get(i as usize))
                .collect();
            let refs = &refs;
            let outcome = retry(stop, "lock", dtx, || async move {
                let votes = self.shards.lock(slice.shard, dtx, refs).await?;
                if votes.len() != refs.len() {
                    return Err(ShardError::WrongResultCount {
                        shard: slice.shard,
                        expected: refs.len(),
                        found: votes.len(),
                    });
                }
                Ok(votes)
            })
            .await;
            match outcome {
                Ok(votes) => Ok(votes),
                Err(RetryError::Stopped) => Err(Stopped),
                Err(RetryError::Permanent(e)) => {
                    tracing::error!(dtx = dtx.sequence, shard = slice.shard, error = %e, "Lock refused; aborting the slice");
                    Ok(vec![
                        LockVote::refused(RejectReason::Aborted, None);
                        refs.len()
                    ])
                }
            }
        });
        try_join_all(calls).await
    }

    /// Apply on every slice's shard, concurrently. A permanent refusal is logged and
    /// passed over: repeating the same request cannot change the shard's answer.
    async fn apply_all(
        &self,
        stop: &Stop,
        dtx: DtxId,
        slices: &[ShardSlice],
        verdicts: &[Verdict],
    ) -> Result<(), Stopped> {
        let calls = slices.iter().map(|slice| async move {
            let (commit, reasons) = apply_args(slice, verdicts);
            let (commit, reasons) = (&commit, &reasons);
            match retry(stop, "apply", dtx, || {
                self.shards.apply(slice.shard, dtx, commit, reasons)
            })
            .await
            {
                Ok(()) => Ok(()),
                Err(RetryError::Stopped) => Err(Stopped),
                Err(RetryError::Permanent(e)) => {
                    tracing::error!(dtx = dtx.sequence, shard = slice.shard, error = %e, "Apply refused");
                    Ok(())
                }
            }
        });
        try_join_all(calls).await.map(|_| ())
    }

    /// Discard on every given shard, concurrently (see [`Inner::apply_all`] on refusals).
    async fn discard_all(&self, stop: &Stop, dtx: DtxId, shards: &[usize]) -> Result<(), Stopped> {
        let calls = shards.iter().map(|&shard| async move {
            match retry(stop, "discard", dtx, || self.shards.discard(shard, dtx)).await {
                Ok(()) => Ok(()),
                Err(RetryError::Stopped) => Err(Stopped),
                Err(RetryError::Permanent(e)) => {
                    tracing::error!(dtx = dtx.sequence, shard, error = %e, "Discard refused");
                    Ok(())
                }
            }
        });
        try_join_all(calls).await.map(|_| ())
    }

    /// Takes a prepared dtx through lock, decision and apply (or, when `recorded` holds
    /// its replicated verdicts, through apply alone) and returns the verdicts.
    async fn settle(
        &self,
        stop: &Stop,
        dtx: DtxId,
        txs: &[CompactTransaction],
        slices: &[ShardSlice],
        recorded: Option<Vec<Verdict>>,
    ) -> Result<Vec<Verdict>, Stopped> {
        let verdicts = match recorded {
            Some(verdicts) => verdicts,
            None => {
                let votes = self.lock_all(stop, dtx, txs, slices).await?;
                let verdicts = decide(txs.len(), slices, &votes);
                self.replicate_decision(stop, dtx.sequence, verdicts)
                    .await?
            }
        };
        self.apply_all(stop, dtx, slices, &verdicts).await?;
        Ok(verdicts)
    }

    /// Drives a new dtx of `txs` from Prepare to the answers, then discards it and hands
    /// it to the finisher.
    async fn run_dtx(
        self: Arc<Self>,
        epoch: Arc<Epoch>,
        txs: Vec<CompactTransaction>,
        permit: OwnedSemaphorePermit,
        finishing: Arc<Semaphore>,
        finisher: mpsc::Sender<u64>,
        _alive: mpsc::Sender<()>,
    ) {
        let mut stop = epoch.stop.clone();
        if stop.is_stopped() {
            epoch.fail(&txs);
            return;
        }
        // Prepare is replicated before any shard is asked to lock, so that a new leader
        // always knows of every dtx that may hold locks.
        let prepare = CoordinatorCommand::Prepare {
            txs: DtxTransactions::encode(&txs),
        };
        let Ok(written) = write(&self.handle, &mut stop, prepare).await else {
            epoch.fail(&txs);
            return;
        };
        let sequence = match written {
            Ok(CoordinatorResponse::Prepared { sequence }) => sequence,
            Ok(other) => {
                tracing::error!(response = ?other, "Prepare refused");
                epoch.fail(&txs);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "Prepare not replicated");
                epoch.fail(&txs);
                return;
            }
        };
        let dtx = self.dtx_id(sequence);
        let slices = split(self.shards.shard_map(), &txs);
        tracing::debug!(
            dtx = sequence,
            txs = txs.len(),
            shards = slices.len(),
            "dtx prepared"
        );
        match self.settle(&stop, dtx, &txs, &slices, None).await {
            Ok(verdicts) => epoch.settle(&txs, |i| {
                Settled::Verdict(
                    verdicts
                        .get(i)
                        .copied()
                        .unwrap_or(Verdict::abort(RejectReason::Aborted, None)),
                )
            }),
            Err(Stopped) => {
                epoch.fail(&txs);
                return;
            }
        }
        // Answered. The rest only tidies up, so it gives its place to the next dtx once
        // a finishing place is free.
        drop(txs);
        let finishing = tokio::select! {
            biased;
            _ = stop.stopped() => return,
            permit = finishing.acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        drop(permit);
        let shards: Vec<usize> = slices.iter().map(|s| s.shard).collect();
        if self.discard_all(&stop, dtx, &shards).await.is_ok() {
            let _ = finisher.send(sequence).await;
        }
        drop(finishing);
    }

    /// Finishes one dtx left by an earlier leader; returns its sequence once it can be
    /// marked done (`None` if its record cannot be read: it is left in place, loudly).
    async fn recover_dtx(
        &self,
        stop: &Stop,
        record: crate::machine::DtxRecord,
    ) -> Result<Option<u64>, Stopped> {
        let sequence = record.sequence;
        let txs = match record.txs.decode() {
            Ok(txs) => txs,
            Err(e) => {
                tracing::error!(dtx = sequence, error = %e, "cannot decode an unfinished dtx; leaving it");
                return Ok(None);
            }
        };
        let dtx = self.dtx_id(sequence);
        let slices = split(self.shards.shard_map(), &txs);
        let decided = record.verdicts.is_some();
        let verdicts = self
            .settle(stop, dtx, &txs, &slices, record.verdicts)
            .await?;
        let shards: Vec<usize> = slices.iter().map(|s| s.shard).collect();
        self.discard_all(stop, dtx, &shards).await?;
        let committed = verdicts.iter().filter(|v| v.commits()).count();
        tracing::info!(
            dtx = sequence,
            txs = txs.len(),
            committed,
            was_decided = decided,
            "recovered dtx"
        );
        Ok(Some(sequence))
    }

    /// Makes this new leader's state current and finishes every dtx it finds unfinished.
    async fn recover(&self, stop: &Stop) -> Result<(), Stopped> {
        let mut wait = stop.clone();
        let mut backoff = Backoff::new();
        // Everything committed by earlier leaders is applied here once this returns, so
        // the records read next are complete.
        loop {
            match self.handle.ensure_linearizable().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "recovery: leadership not confirmed yet");
                    backoff.wait(&mut wait).await?;
                }
            }
        }
        let records = loop {
            match self.handle.read(CoordinatorMachine::unfinished) {
                Ok(Ok(records)) => break records,
                Ok(Err(e)) | Err(e) => {
                    tracing::error!(error = %e, "recovery: cannot read unfinished dtxs; retrying");
                    backoff.wait(&mut wait).await?;
                }
            }
        };
        if records.is_empty() {
            return Ok(());
        }
        tracing::info!(count = records.len(), "recovery: finishing unfinished dtxs");
        let finished = join_all(records.into_iter().map(|r| self.recover_dtx(stop, r))).await;
        let mut sequences = Vec::with_capacity(finished.len());
        for outcome in finished {
            if let Some(sequence) = outcome? {
                sequences.push(sequence);
            }
        }
        if !sequences.is_empty() {
            self.replicate_done(stop, sequences).await?;
        }
        Ok(())
    }
}

/// Waits until this replica leads; returns the term, or `None` on shutdown.
async fn wait_for_leadership(
    metrics: &mut watch::Receiver<cbdc_consensus::typ::RaftMetrics>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<u64> {
    loop {
        if *shutdown.borrow() {
            return None;
        }
        {
            let m = metrics.borrow_and_update();
            if m.state == ServerState::Leader {
                return Some(m.current_term);
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return None },
            _ = shutdown.wait_for(|s| *s) => return None,
        }
    }
}

/// Resolves once this replica no longer leads in `term`, or on shutdown. Returns whether
/// the supervisor should go on (false once Raft is gone or the driver shuts down).
async fn leadership_ended(
    metrics: &mut watch::Receiver<cbdc_consensus::typ::RaftMetrics>,
    shutdown: &mut watch::Receiver<bool>,
    term: u64,
) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        {
            let m = metrics.borrow_and_update();
            if m.state != ServerState::Leader || m.current_term != term {
                return true;
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return false },
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}

/// Follows this replica's leadership: one epoch per term in which it leads.
async fn supervise(inner: Arc<Inner>, alive: mpsc::Sender<()>) {
    let mut metrics = inner.handle.raft().metrics();
    let mut shutdown = inner.shutdown.subscribe();
    while let Some(term) = wait_for_leadership(&mut metrics, &mut shutdown).await {
        if !lead(&inner, term, &mut metrics, &mut shutdown, &alive).await {
            break;
        }
    }
    tracing::debug!("coordinator supervisor stopped");
}

/// One epoch: recover, then take work until leadership in `term` ends. Returns whether
/// the supervisor should go on.
async fn lead(
    inner: &Arc<Inner>,
    term: u64,
    metrics: &mut watch::Receiver<cbdc_consensus::typ::RaftMetrics>,
    shutdown: &mut watch::Receiver<bool>,
    alive: &mpsc::Sender<()>,
) -> bool {
    tracing::info!(term, "coordinator leads; recovering before taking work");
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop(stop_rx);
    let (queue_tx, queue_rx) = mpsc::channel(QUEUE_DEPTH);
    let epoch = Arc::new(Epoch {
        term,
        stop: stop.clone(),
        waiters: Mutex::new(Waiters::default()),
        queue: queue_tx,
    });
    let work = async {
        if inner.recover(&stop).await.is_err() {
            return;
        }
        tokio::spawn(run_batcher(
            inner.clone(),
            epoch.clone(),
            queue_rx,
            alive.clone(),
        ));
        inner.set_current(Some(epoch.clone()));
        tracing::info!(term, "coordinator recovered; taking work");
        futures::future::pending::<()>().await;
    };
    let go_on = tokio::select! {
        go_on = leadership_ended(metrics, shutdown, term) => go_on,
        _ = work => true,
    };
    inner.set_current(None);
    let _ = stop_tx.send(true);
    epoch.close();
    tracing::info!(term = epoch.term, "coordinator no longer leads this term");
    go_on
}

/// Cuts the epoch's queue into dtxs and starts each in its own task, at most
/// `max_in_flight` at once.
async fn run_batcher(
    inner: Arc<Inner>,
    epoch: Arc<Epoch>,
    mut queue: mpsc::Receiver<Vec<CompactTransaction>>,
    alive: mpsc::Sender<()>,
) {
    let mut stop = epoch.stop.clone();
    let batch_size = inner.params.batch_size;
    let in_flight = Arc::new(Semaphore::new(inner.params.max_in_flight));
    let finishing = Arc::new(Semaphore::new(inner.params.max_in_flight));
    let (finisher, finisher_rx) = mpsc::channel(inner.params.max_in_flight.saturating_mul(4));
    tokio::spawn(run_finisher(
        inner.clone(),
        epoch.stop.clone(),
        finisher_rx,
        alive.clone(),
    ));
    let mut buffer: Vec<CompactTransaction> = Vec::new();
    loop {
        if buffer.is_empty() {
            tokio::select! {
                biased;
                _ = stop.stopped() => return,
                chunk = queue.recv() => match chunk {
                    Some(chunk) => buffer = chunk,
                    None => return,
                },
            }
        }
        let deadline = Instant::now() + inner.params.batch_delay;
        while buffer.len() < batch_size {
            tokio::select! {
                biased;
                _ = stop.stopped() => return,
                chunk = queue.recv() => match chunk {
                    Some(chunk) => buffer.extend(chunk),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let permit = tokio::select! {
            biased;
            _ = stop.stopped() => return,
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        // Whatever arrived while every place was taken rides along.
        while buffer.len() < batch_size {
            match queue.try_recv() {
                Ok(chunk) => buffer.extend(chunk),
                Err(_) => break,
            }
        }
        let rest = if buffer.len() > batch_size {
            buffer.split_off(batch_size)
        } else {
            Vec::new()
        };
        let txs = std::mem::replace(&mut buffer, rest);
        tokio::spawn(inner.clone().run_dtx(
            epoch.clone(),
            txs,
            permit,
            finishing.clone(),
            finisher.clone(),
            alive.clone(),
        ));
    }
}

/// Marks discarded dtxs done, as many per Raft write as have queued up meanwhile.
async fn run_finisher(
    inner: Arc<Inner>,
    mut stop: Stop,
    mut sequences: mpsc::Receiver<u64>,
    alive: mpsc::Sender<()>,
) {
    let _alive = alive;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.stopped() => return,
            sequence = sequences.recv() => match sequence {
                Some(sequence) => sequence,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_DONE_PER_WRITE {
            match sequences.try_recv() {
                Ok(sequence) => batch.push(sequence),
                Err(_) => break,
            }
        }
        if inner.replicate_done(&stop, batch).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_params_validate() {
        assert!(CoordinatorParams::default().validate().is_ok());
        for bad in [
            CoordinatorParams {
                batch_size: 0,
                ..Default::default()
            },
            CoordinatorParams {
                batch_size: MAX_BATCH_SIZE + 1,
                ..Default::default()
            },
            CoordinatorParams {
                max_in_flight: 0,
                ..Default::default()
            },
            CoordinatorParams {
                request_timeout: Duration::ZERO,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                bad.validate(),
                Err(CoordinatorError::InvalidParams(_))
            ));
        }
    }

    #[test]
    fn test_request_slot_first_outcome_wins_and_wakes_once() {
        let (tx, mut rx) = oneshot::channel();
        let slot = RequestSlot::new(3, 2, tx);
        slot.fill(0, Settled::Verdict(Verdict::Commit));
        assert!(rx.try_recv().is_err(), "one position still waiting");
        slot.fill(0, Settled::Unavailable);
        slot.fill(2, Settled::Unavailable);
        slot.fill(7, Settled::Unavailable);
        assert!(rx.try_recv().is_ok());
        let outcomes = slot.take_outcomes();
        assert!(matches!(
            outcomes[0],
            Some(Settled::Verdict(Verdict::Commit))
        ));
        assert!(outcomes[1].is_none());
        assert!(matches!(outcomes[2], Some(Settled::Unavailable)));
    }
}
