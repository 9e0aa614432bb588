//! The watchtower: where transactions and outputs stand, from blocks and error reports.
//!
//! In atomizer mode no single shard knows a transaction's outcome: shards see only the
//! inputs they own, and the atomizer forgets. The watchtower follows every block from
//! height 1 (older heights from the archiver) and the errors shards report
//! (`INPUTS_NOT_FOUND`, which never reach a block), and answers the sentinels' status
//! queries, including a call that waits for a final status.
//!
//! ```text
//!  atomizer / archiver ──blocks──▶ follower task ─┐
//!  shards ──ReportErrors──────────────────────────┼─▶ StatusBook (std Mutex) ──▶ queries
//!                                                 └─▶ version (watch) ──▶ AwaitTransactionStatus
//! ```
//!
//! The decision logic lives in [`StatusBook`], a plain struct with no I/O; the
//! [`Watchtower`] and its [`WatchtowerService`] only feed it and read it. Everything is in
//! memory and bounded by [`WatchtowerParams::retention`]: after a restart the watchtower
//! reads every block again from height 1, so confirmations and block rejections come back;
//! only reported errors older than the restart are lost (they read as UNKNOWN).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cbdc_core::{Amount, TxId, UhsId};
use cbdc_proto::convert::{self, Block, Rejection, MAX_BATCH_TRANSACTIONS};
use cbdc_proto::v1::watchtower_server::{Watchtower as WatchtowerRpc, WatchtowerServer};
use cbdc_proto::{v1, ProtoError, MAX_INTERNAL_MESSAGE_BYTES};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use crate::feed::{follow, BlockSources};

/// How long `AwaitTransactionStatus` waits when the request says 0.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `AwaitTransactionStatus` waits, whatever the request says: a waiting call
/// holds a connection slot and a watch subscription.
pub const MAX_AWAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest reason text kept per rejection (bytes): reports come from the network, and the
/// book keeps up to `retention` of them.
pub const MAX_MESSAGE_BYTES: usize = 512;

/// What can go wrong in the watchtower's gRPC layer. Every variant is the caller's fault
/// and maps to `INVALID_ARGUMENT`; the status book itself cannot fail.
#[derive(Debug, thiserror::Error)]
pub enum WatchtowerError {
    /// A request was malformed (a bad id, a missing or unspecified reason, too many
    /// items).
    #[error(transparent)]
    Malformed(#[from] ProtoError),
}

impl WatchtowerError {
    /// The gRPC answer.
    pub fn to_status(&self) -> Status {
        match self {
            WatchtowerError::Malformed(e) => e.to_status(),
        }
    }
}

/// The known outcome of a transaction. Both are final for the sentinel, but a
/// confirmation also overrides an earlier rejection (see [`StatusBook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutcome {
    /// Confirmed in the block at `height`.
    Confirmed {
        /// The confirming block.
        height: u64,
    },
    /// Refused by the atomizer (in a block) or by a shard (reported).
    Rejected {
        /// Why.
        reason: v1::RejectReason,
        /// The input at fault, when known.
        input_index: Option<u32>,
        /// The reason in words (at most [`MAX_MESSAGE_BYTES`]).
        message: String,
        /// The block, or the reporting shard's height, at which it was refused.
        height: u64,
    },
}

/// What the watchtower saw of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// Created in the block at `height` and not spent in any block seen since.
    Unspent {
        /// Its value.
        value: Amount,
        /// The creating block.
        height: u64,
    },
    /// Spent by a transaction of the block at `height`.
    Spent {
        /// The spending block.
        height: u64,
    },
}

/// A map that forgets its oldest entries (by first insertion) beyond a bound.
#[derive(Debug)]
struct Bounded<K, V> {
    limit: usize,
    entries: HashMap<K, V>,
    /// Keys in first-insertion order; exactly the keys of `entries`.
    order: VecDeque<K>,
}

impl<K: std::hash::Hash + Eq + Copy, V> Bounded<K, V> {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    /// Sets `key` to `value`. An update keeps the key's place in the eviction order; a new
    /// key goes last and may evict the oldest ones.
    fn set(&mut self, key: K, value: V) {
        if let Some(slot) = self.entries.get_mut(&key) {
            *slot = value;
            return;
        }
        self.entries.insert(key, value);
        self.order.push_back(key);
        while self.entries.len() > self.limit {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Transaction and output status, kept from blocks and reports. Pure: no I/O, no clock.
///
/// Rules:
/// - a block's transactions become [`TxOutcome::Confirmed`] at the block's height. A
///   confirmation is final and overrides an earlier rejection: blocks are authoritative,
///   and a shard's report may be stale (a retried transaction can be confirmed after a
///   first attempt was refused);
/// - a block's rejections become [`TxOutcome::Rejected`] unless the transaction is
///   already confirmed (a later block's rejection replaces an earlier one);
/// - a reported rejection ([`StatusBook::apply_report`]) is recorded only for a
///   transaction not known yet;
/// - outputs created in a block become [`OutputState::Unspent`], inputs spent in a block
///   [`OutputState::Spent`], in transaction order (so an output created and spent in the
///   same block ends spent).
///
/// At most `retention` transactions and `retention` outputs are kept; the oldest (by first
/// record) are forgotten first and then read as unknown.
#[derive(Debug)]
pub struct StatusBook {
    txs: Bounded<TxId, TxOutcome>,
    outputs: Bounded<UhsId, OutputState>,
    /// The last block applied; 0 before the first.
    height: u64,
}

impl StatusBook {
    /// An empty book keeping at most `retention` transactions and as many outputs (at
    /// least one of each: 0 is taken as 1).
    pub fn new(retention: usize) -> Self {
        let limit = retention.max(1);
        Self {
            txs: Bounded::new(limit),
            outputs: Bounded::new(limit),
            height: 0,
        }
    }

    /// The last block applied; 0 before the first.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Transactions remembered.
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    /// Outputs remembered.
    pub fn output_count(&self) -> usize {
        self.outputs.len()
    }

    /// Records a block. Idempotent: applying the same block again changes nothing (the
    /// height never goes back).
    pub fn apply_block(&mut self, block: &Block) {
        for tx in &block.transactions {
            for input in &tx.inputs {
                self.outputs.set(
                    *input,
                    OutputState::Spent {
                        height: block.height,
                    },
                );
            }
            for (id, value) in &tx.outputs {
                // An output already spent in a block seen stays spent (a replayed older
                // block must not revive it).
                if !matches!(self.outputs.get(id), Some(OutputState::Spent { .. })) {
                    self.outputs.set(
                        *id,
                        OutputState::Unspent {
                            value: *value,
                            height: block.height,
                        },
                    );
                }
            }
            self.txs.set(
                tx.id,
                TxOutcome::Confirmed {
                    height: block.height,
                },
            );
        }
        for rejection in &block.rejections {
            if !matches!(
                self.txs.get(&rejection.tx_id),
                Some(TxOutcome::Confirmed { .. })
            ) {
                self.txs
                    .set(rejection.tx_id, rejected(rejection, block.height));
            }
        }
        self.height = self.height.max(block.height);
    }

    /// Records a rejection reported by a shard, if the transaction is not known yet;
    /// answers whether it was recorded. Idempotent: a repeated report changes nothing.
    ///
    /// A shard cannot tell a spent input from one that never existed (the unspent set
    /// holds neither); when the report names the input and this book saw it spent in a
    /// block, the rejection is recorded as INPUTS_SPENT, naming that block.
    pub fn apply_report(&mut self, rejection: &Rejection) -> bool {
        if self.txs.get(&rejection.tx_id).is_some() {
            return false;
        }
        let spent_at = match (rejection.reason, rejection.input_uhs_id) {
            (v1::RejectReason::InputsNotFound, Some(id)) => match self.outputs.get(&id) {
                Some(OutputState::Spent { height }) => Some(*height),
                _ => None,
            },
            _ => None,
        };
        let recorded = match spent_at {
            Some(block) => Rejection {
                reason: v1::RejectReason::InputsSpent,
                message: format!(
                    "input {} was spent in block {block}",
                    rejection.input_index.unwrap_or_default()
                ),
                ..rejection.clone()
            },
            None => rejection.clone(),
        };
        self.txs
            .set(rejection.tx_id, rejected(&recorded, recorded.height));
        true
    }

    /// The known outcome of `id`, if remembered.
    pub fn transaction(&self, id: &TxId) -> Option<&TxOutcome> {
        self.txs.get(id)
    }

    /// What was seen of the output `id`, if remembered.
    pub fn output(&self, id: &UhsId) -> Option<&OutputState> {
        self.outputs.get(id)
    }

    /// The wire result for `id`: CONFIRMED or REJECTED (with the block height), or
    /// `otherwise` (UNKNOWN for a status query, PENDING for a wait) when not known.
    pub fn tx_result(
        &self,
        id: &TxId,
        otherwise: fn(&TxId) -> v1::TransactionResult,
    ) -> v1::TransactionResult {
        match self.txs.get(id) {
            Some(TxOutcome::Confirmed { height }) => {
                v1::TransactionResult::confirmed(id, Some(*height))
            }
            Some(TxOutcome::Rejected {
                reason,
                input_index,
                message,
                height,
            }) => {
                let mut result =
                    v1::TransactionResult::rejected(id, *reason, *input_index, message.clone());
                result.block_height = Some(*height);
                result
            }
            None => otherwise(id),
        }
    }

    /// The wire status of output `id`:
    /// - UNSPENT with its value, as of the last block seen (`block_height`);
    /// - SPENT_OR_ABSENT with the spending block's height;
    /// - UNSPECIFIED when never seen (or forgotten): the watchtower does not know. Outputs
    ///   it never saw created, such as genesis outputs seeded into shards, are the
    ///   shards' to answer for; ask them (`ShardQuery.GetOutputStatus`).
    pub fn output_entry(&self, id: &UhsId) -> v1::OutputStatusEntry {
        let mut entry = v1::OutputStatusEntry {
            uhs_id: id.as_bytes().to_vec().into(),
            ..Default::default()
        };
        match self.outputs.get(id) {
            Some(OutputState::Unspent { value, .. }) => {
                entry.set_status(v1::OutputStatus::Unspent);
                entry.value = Some(value.cents());
                entry.block_height = Some(self.height);
            }
            Some(OutputState::Spent { height }) => {
                entry.set_status(v1::OutputStatus::SpentOrAbsent);
                entry.block_height = Some(*height);
            }
            None => entry.set_status(v1::OutputStatus::Unspecified),
        }
        entry
    }
}

/// The book's form of a rejection at `height`, its message cut to [`MAX_MESSAGE_BYTES`].
fn rejected(rejection: &Rejection, height: u64) -> TxOutcome {
    TxOutcome::Rejected {
        reason: rejection.reason,
        input_index: rejection.input_index,
        message: truncate(&rejection.message, MAX_MESSAGE_BYTES).to_string(),
        height,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How to run a watchtower.
#[derive(Debug, Clone)]
pub struct WatchtowerParams {
    /// Client endpoints (`host:port`) of the atomizer replicas.
    pub atomizer: Vec<String>,
    /// The archiver's endpoint (`host:port`), for heights the atomizer has pruned.
    pub archiver: String,
    /// Most transactions (and, separately, outputs) remembered; the oldest are forgotten
    /// first. At least 1.
    pub retention: usize,
    /// Pause before trying a block source again after a failure.
    pub retry: Duration,
}

/// What the follower task and the gRPC service share.
struct Inner {
    /// A std mutex: held only for in-memory updates and lookups, never across an
    /// `.await`, so it is cheaper than tokio's and cannot deadlock a task.
    book: Mutex<StatusBook>,
    /// Bumped after each block or report is recorded; `AwaitTransactionStatus` waits on
    /// it instead of polling.
    version: watch::Sender<u64>,
    /// Set at shutdown, so that waiting calls answer at once.
    shutdown: watch::Receiver<bool>,
}

impl Inner {
    /// The book. A poisoned lock is taken over: the book's updates cannot panic halfway
    /// (they only insert into maps), so its content is consistent.
    fn book(&self) -> MutexGuard<'_, StatusBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A running watchtower: a task following blocks into the [`StatusBook`], and the state
/// its [`WatchtowerService`] answers from.
pub struct Watchtower {
    inner: Arc<Inner>,
    shutdown_tx: watch::Sender<bool>,
    follower: JoinHandle<()>,
}

impl Watchtower {
    /// Starts following blocks from height 1 (from the atomizer, or the archiver for
    /// pruned heights). Must be called within a Tokio runtime.
    pub fn start(params: WatchtowerParams) -> Watchtower {
        if params.atomizer.is_empty() {
            tracing::error!("watchtower has no atomizer endpoints: it will see no blocks");
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (version, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            book: Mutex::new(StatusBook::new(params.retention)),
            version,
            shutdown: shutdown_rx.clone(),
        });
        let sources = BlockSources {
            atomizer: params.atomizer,
            archiver: Some(params.archiver),
            retry: params.retry,
        };
        let blocks = follow(sources, 1, shutdown_rx.clone());
        let follower = tokio::spawn(record_blocks(inner.clone(), blocks, shutdown_rx));
        tracing::info!(retention = params.retention, "watchtower started");
        Watchtower {
            inner,
            shutdown_tx,
            follower,
        }
    }

    /// The `cbdc.v1.Watchtower` tonic service, accepting and sending messages up to
    /// [`MAX_INTERNAL_MESSAGE_BYTES`].
    pub fn service(&self) -> WatchtowerServer<WatchtowerService> {
        WatchtowerServer::new(WatchtowerService {
            inner: self.inner.clone(),
        })
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }

    /// The last block seen; 0 before the first.
    pub fn height(&self) -> u64 {
        self.inner.book().height()
    }

    /// A counter bumped after each block or report is recorded, for waiting until the
    /// watchtower has seen something (then read [`Watchtower::height`]).
    pub fn watch_updates(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// Stops following blocks and waits for the task; waiting calls answer at once.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.follower.await {
            tracing::warn!(error = %e, "watchtower follower task failed");
        }
        tracing::info!("watchtower stopped");
    }
}

/// The follower task: records each block (with those already waiting, under one lock),
/// then bumps the version.
async fn record_blocks(
    inner: Arc<Inner>,
    mut blocks: tokio::sync::mpsc::Receiver<Block>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let block = tokio::select! {
            block = blocks.recv() => block,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Some(block) = block else {
            return;
        };
        {
            let mut book = inner.book();
            book.apply_block(&block);
            while let Ok(block) = blocks.try_recv() {
                book.apply_block(&block);
            }
        }
        inner.bump();
    }
}

/// Serves `cbdc.v1.Watchtower` from a [`Watchtower`]'s book.
pub struct WatchtowerService {
    inner: Arc<Inner>,
}

/// How long an `AwaitTransactionStatus` with `timeout_ms` waits.
fn await_timeout(timeout_ms: u32) -> Duration {
    if timeout_ms == 0 {
        DEFAULT_AWAIT_TIMEOUT
    } else {
        Duration::from_millis(u64::from(timeout_ms)).min(MAX_AWAIT_TIMEOUT)
    }
}

impl WatchtowerService {
    /// Results for `ids` (unknown ones as PENDING) and whether all are final.
    fn await_results(&self, ids: &[TxId]) -> (Vec<v1::TransactionResult>, bool) {
        let book = self.inner.book();
        let results: Vec<_> = ids
            .iter()
            .map(|id| book.tx_result(id, v1::TransactionResult::pending))
            .collect();
        let done = results.iter().all(|r| r.is_final());
        (results, done)
    }
}

#[tonic::async_trait]
impl WatchtowerRpc for WatchtowerService {
    /// Idempotent: a rejection for a transaction already known changes nothing.
    async fn report_errors(
        &self,
        request: Request<v1::ReportErrorsRequest>,
    ) -> Result<Response<v1::ReportErrorsResponse>, Status> {
        let rejections = convert::list(
            "report_errors_request.rejections",
            &request.get_ref().rejections,
            MAX_BATCH_TRANSACTIONS,
            |r| Rejection::try_from(r),
        )
        .map_err(|e| WatchtowerError::from(e).to_status())?;
        drop(request);
        let recorded = {
            let mut book = self.inner.book();
            rejections.iter().filter(|r| book.apply_report(r)).count()
        };
        if recorded > 0 {
            self.inner.bump();
        }
        Ok(Response::new(v1::ReportErrorsResponse {}))
    }

    async fn get_transaction_status(
        &self,
        request: Request<v1::WatchtowerTxStatusRequest>,
    ) -> Result<Response<v1::WatchtowerTxStatusResponse>, Status> {
        let ids = request
            .get_ref()
            .to_tx_ids()
            .map_err(|e| WatchtowerError::from(e).to_status())?;
        let results = {
            let book = self.inner.book();
            ids.iter()
                .map(|id| book.tx_result(id, v1::TransactionResult::unknown))
                .collect()
        };
        Ok(Response::new(v1::WatchtowerTxStatusResponse { results }))
    }

    async fn get_output_status(
        &self,
        request: Request<v1::ShardOutputStatusRequest>,
    ) -> Result<Response<v1::GetOutputStatusResponse>, Status> {
        let ids = request
            .get_ref()
            .to_uhs_ids()
            .map_err(|e| WatchtowerError::from(e).to_status())?;
        let outputs = {
            let book = self.inner.book();
            ids.iter().map(|id| book.output_entry(id)).collect()
        };
        Ok(Response::new(v1::GetOutputStatusResponse { outputs }))
    }

    /// Answers as soon as every id is CONFIRMED or REJECTED, or when the timeout passes
    /// (0: [`DEFAULT_AWAIT_TIMEOUT`]; at most [`MAX_AWAIT_TIMEOUT`]) or the watchtower
    /// shuts down, with PENDING for the ids not final yet. Unknown ids count as PENDING:
    /// the caller has just submitted them.
    async fn await_transaction_status(
        &self,
        request: Request<v1::AwaitTransactionStatusRequest>,
    ) -> Result<Response<v1::WatchtowerTxStatusResponse>, Status> {
        let ids = request
            .get_ref()
            .to_tx_ids()
            .map_err(|e| WatchtowerError::from(e).to_status())?;
        let deadline = tokio::time::Instant::now() + await_timeout(request.get_ref().timeout_ms);
        drop(request);
        let mut updates = self.inner.version.subscribe();
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            // Mark the current version seen before reading the book, so that a record
            // made after the read wakes the wait below.
            updates.borrow_and_update();
            let (results, done) = self.await_results(&ids);
            if done || *shutdown.borrow() {
                return Ok(Response::new(v1::WatchtowerTxStatusResponse { results }));
            }
            let woke = tokio::select! {
                changed = updates.changed() => changed.is_ok(),
                _ = tokio::time::sleep_until(deadline) => false,
                _ = shutdown.wait_for(|stop| *stop) => false,
            };
            if !woke {
                let (results, _) = self.await_results(&ids);
                return Ok(Response::new(v1::WatchtowerTxStatusResponse { results }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::{CompactTransaction, Hash};

    fn tx_id(n: u8) -> TxId {
        TxId(Hash([n; 32]))
    }

    fn uhs(n: u8) -> UhsId {
        UhsId(Hash([n; 32]))
    }

    fn tx(id: u8, inputs: &[u8], outputs: &[(u8, u64)]) -> CompactTransaction {
        CompactTransaction {
            id: tx_id(id),
            inputs: inputs.iter().map(|&n| uhs(n)).collect(),
            outputs: outputs
                .iter()
                .map(|&(n, v)| (uhs(n), Amount::from_cents(v)))
                .collect(),
            attestations: Vec::new(),
        }
    }

    fn rejection(id: u8, reason: v1::RejectReason, height: u64) -> Rejection {
        Rejection {
            tx_id: tx_id(id),
            reason,
            input_index: Some(0),
            height,
            message: format!("{reason:?}"),
            input_uhs_id: None,
        }
    }

    fn block(height: u64, txs: Vec<CompactTransaction>, rejections: Vec<Rejection>) -> Block {
        Block {
            height,
            transactions: txs,
            rejections,
        }
    }

    #[test]
    fn test_missing_input_seen_spent_is_reported_as_spent() {
        let mut book = StatusBook::new(100);
        book.apply_block(&block(1, vec![tx(1, &[], &[(10, 5), (11, 5)])], vec![]));
        book.apply_block(&block(2, vec![tx(2, &[10], &[(12, 5)])], vec![]));
        let report = |id, input| Rejection {
            input_uhs_id: Some(uhs(input)),
            ..rejection(id, v1::RejectReason::InputsNotFound, 2)
        };
        assert!(book.apply_report(&report(3, 10)));
        assert!(book.apply_report(&report(4, 99)));
        let reason = |id| match book.transaction(&tx_id(id)) {
            Some(TxOutcome::Rejected { reason, .. }) => *reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(3), v1::RejectReason::InputsSpent);
        assert_eq!(reason(4), v1::RejectReason::InputsNotFound);
    }

    #[test]
    fn test_apply_block_confirms_transactions() {
        let mut book = StatusBook::new(100);
        book.apply_block(&block(1, vec![tx(1, &[], &[(10, 5)])], vec![]));
        assert_eq!(
            book.transaction(&tx_id(1)),
            Some(&TxOutcome::Confirmed { height: 1 })
        );
        assert_eq!(book.height(), 1);
        let result = book.tx_result(&tx_id(1), v1::TransactionResult::unknown);
        assert_eq!(result.status(), v1::TxStatus::Confirmed);
        assert_eq!(result.block_height, Some(1));
        let unknown = book.tx_result(&tx_id(2), v1::TransactionResult::unknown);
        assert_eq!(unknown.status(), v1::TxStatus::Unknown);
        let pending = book.tx_result(&tx_id(2), v1::TransactionResult::pending);
        assert_eq!(pending.status(), v1::TxStatus::Pending);
    }

    #[test]
    fn test_apply_block_confirmation_overrides_report() {
        let mut book = StatusBook::new(100);
        assert!(book.apply_report(&rejection(1, v1::RejectReason::InputsNotFound, 0)));
        let result = book.tx_result(&tx_id(1), v1::TransactionResult::unknown);
        assert_eq!(result.status(), v1::TxStatus::Rejected);
        assert_eq!(result.reject_reason(), v1::RejectReason::InputsNotFound);
        book.apply_block(&block(1, vec![tx(1, &[20], &[(21, 5)])], vec![]));
        assert_eq!(
            book.transaction(&tx_id(1)),
            Some(&TxOutcome::Confirmed { height: 1 })
        );
    }

    #[test]
    fn test_apply_block_confirmation_overrides_block_rejection() {
        let mut book = StatusBook::new(100);
        book.apply_block(&block(
            1,
            vec![],
            vec![rejection(1, v1::RejectReason::Incomplete, 1)],
        ));
        book.apply_block(&block(2, vec![tx(1, &[], &[])], vec![]));
        assert_eq!(
            book.transaction(&tx_id(1)),
            Some(&TxOutcome::Confirmed { height: 2 })
        );
    }

    #[test]
    fn test_apply_block_rejection_does_not_override_confirmation() {
        let mut book = StatusBook::new(100);
        book.apply_block(&block(1, vec![tx(1, &[], &[])], vec![]));
        book.apply_block(&block(
            2,
            vec![],
            vec![rejection(1, v1::RejectReason::InputsSpent, 2)],
        ));
        assert_eq!(
            book.transaction(&tx_id(1)),
            Some(&TxOutcome::Confirmed { height: 1 })
        );
        // Same block, rejection listed too: the confirmation wins.
        book.apply_block(&block(
            3,
            vec![tx(2, &[], &[])],
            vec![rejection(2, v1::RejectReason::Stale, 3)],
        ));
        assert_eq!(
            book.transaction(&tx_id(2)),
            Some(&TxOutcome::Confirmed { height: 3 })
        );
    }

    #[test]
    fn test_apply_block_rejection_overrides_report() {
        let mut book = StatusBook::new(100);
        assert!(book.apply_report(&rejection(1, v1::RejectReason::InputsNotFound, 4)));
        book.apply_block(&block(
            5,
            vec![],
            vec![rejection(1, v1::RejectReason::Stale, 5)],
        ));
        let result = book.tx_result(&tx_id(1), v1::TransactionResult::unknown);
        assert_eq!(result.reject_reason(), v1::RejectReason::Stale);
        assert_eq!(result.block_height, Some(5));
    }

    #[test]
    fn test_apply_report_only_for_unknown() {
        let mut book = StatusBook::new(100);
        book.apply_block(&block(1, vec![tx(1, &[], &[])], vec![]));
        assert!(!book.apply_report(&rejection(1, v1::RejectReason::InputsNotFound, 1)));
        assert_eq!(
            book.transaction(&tx_id(1)),
            Some(&TxOutcome::Confirmed { height: 1 })
        );
        assert!(book.apply_report(&rejection(2, v1::RejectReason::InputsNotFound, 1)));
        // Repeated, or with another reason: the first report stays.
        assert!(!book.apply_report(&rejection(2, v1::RejectReason::InputsSpent, 1)));
        let result = book.tx_result(&tx_id(2), v1::TransactionResult::unknown);
        assert_eq!(result.reject_reason(), v1::RejectReason::InputsNotFound);
        assert_eq!(result.input_index, Some(0));
    }

    #[test]
    fn test_apply_report_truncates_message() {
        let mut book = StatusBook::new(100);
        let mut long = rejection(1, v1::RejectReason::InputsNotFound, 1);
        long.message = "é".repeat(MAX_MESSAGE_BYTES);
        book.apply_report(&long);
        match book.transaction(&tx_id(1)) {
            Some(TxOutcome::Rejected { message, .. }) => {
                assert!(message.len() <= MAX_MESSAGE_BYTES);
                assert!(message.len() > MAX_MESSAGE_BYTES - 4);
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn test_retention_evicts_oldest_transactions() {
        let mut book = StatusBook::new(3);
        book.apply_block(&block(1, vec![tx(1, &[], &[]), tx(2, &[], &[])], vec![]));
        book.apply_report(&rejection(3, v1::RejectReason::InputsNotFound, 1));
        // An update keeps its place: 1 is still the oldest.
        book.apply_block(&block(2, vec![tx(3, &[], &[])], vec![]));
        assert_eq!(book.transaction_count(), 3);
        book.apply_block(&block(3, vec![tx(4, &[], &[])], vec![]));
        assert_eq!(book.transaction_count(), 3);
        assert_eq!(book.transaction(&tx_id(1)), None);
        for id in [2, 3, 4] {
            assert!(book.transaction(&tx_id(id)).is_some(), "tx {id}");
        }
        let result = book.tx_result(&tx_id(1), v1::TransactionResult::unknown);
        assert_eq!(result.status(), v1::TxStatus::Unknown);
    }

    #[test]
    fn test_retention_evicts_oldest_outputs() {
        let mut book = StatusBook::new(2);
        book.apply_block(&block(
            1,
            vec![tx(1, &[], &[(10, 1), (11, 2), (12, 3)])],
            vec![],
        ));
        assert_eq!(book.output_count(), 2);
        assert_eq!(book.output(&uhs(10)), None);
        assert_eq!(
            book.output_entry(&uhs(10)).status(),
            v1::OutputStatus::Unspecified
        );
        assert!(book.output(&uhs(12)).is_some());
    }

    #[test]
    fn test_outputs_created_and_spent() {
        let mut book = StatusBook::new(100);
        book.apply_block(&block(1, vec![tx(1, &[], &[(10, 7), (11, 8)])], vec![]));
        book.apply_block(&block(2, vec![tx(2, &[10], &[(12, 7)])], vec![]));
        book.apply_block(&block(3, vec![], vec![]));

        let spent = book.output_entry(&uhs(10));
        assert_eq!(spent.status(), v1::OutputStatus::SpentOrAbsent);
        assert_eq!(spent.block_height, Some(2));
        assert_eq!(spent.value, None);

        let unspent = book.output_entry(&uhs(11));
        assert_eq!(unspent.status(), v1::OutputStatus::Unspent);
        assert_eq!(unspent.value, Some(8));
        assert_eq!(unspent.block_height, Some(3));
        assert_eq!(
            book.output(&uhs(11)),
            Some(&OutputState::Unspent {
                value: Amount::from_cents(8),
                height: 1
            })
        );
        assert_eq!(unspent.uhs_id, uhs(11).as_bytes().to_vec());

        // Never seen (a genesis output, say): the watchtower does not know.
        let unknown = book.output_entry(&uhs(99));
        assert_eq!(unknown.status(), v1::OutputStatus::Unspecified);
        assert_eq!(unknown.block_height, None);
    }

    #[test]
    fn test_outputs_created_and_spent_in_one_block() {
        let mut book = StatusBook::new(100);
        book.apply_block(&block(
            1,
            vec![tx(1, &[], &[(10, 7)]), tx(2, &[10], &[(11, 7)])],
            vec![],
        ));
        assert_eq!(
            book.output(&uhs(10)),
            Some(&OutputState::Spent { height: 1 })
        );
        // Replaying the block changes nothing.
        book.apply_block(&block(
            1,
            vec![tx(1, &[], &[(10, 7)]), tx(2, &[10], &[(11, 7)])],
            vec![],
        ));
        assert_eq!(
            book.output(&uhs(10)),
            Some(&OutputState::Spent { height: 1 })
        );
        assert_eq!(book.height(), 1);
    }

    #[test]
    fn test_await_timeout_bounds() {
        assert_eq!(await_timeout(0), DEFAULT_AWAIT_TIMEOUT);
        assert_eq!(await_timeout(250), Duration::from_millis(250));
        assert_eq!(await_timeout(u32::MAX), MAX_AWAIT_TIMEOUT);
    }
}
