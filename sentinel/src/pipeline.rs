//! The submission pipeline: batcher → parallel validation → attestation → back end, with
//! one answer per caller and in-flight deduplication by tx id.
//!
//! ```text
//!  submit(tx) ──▶ in-flight map ──(first of its id)──▶ queue ──▶ batcher (size / delay)
//!      ▲            (a duplicate joins)                              │ spawn per batch
//!      │                                                              ▼
//!   oneshot ◀── complete(id) ◀── back end ◀── attest_batch ◀── validate_many (rayon pool)
//!                     ▲                                             │
//!                     └────────────── invalid: answered at once ◀───┘
//! ```

use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cbdc_core::{
    attest_batch, CompactTransaction, HasTxId, IdMap, IdentifiedTransaction, SecretKey, TxId,
    UhsId, ValidationError, Validator,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backend::{Backend, BackendError, Outcome, OutputState, TxState};
use crate::params::SentinelParams;

/// Why a submission got no settlement outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The transaction failed stateless validation and never reached the back end.
    #[error("invalid transaction: {0}")]
    Invalid(ValidationError),
    /// The back end could not answer.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The sentinel is shutting down (or a validation task died).
    #[error("sentinel is shutting down")]
    ShuttingDown,
}

impl SubmitError {
    /// The gRPC status a unary caller gets: `INVALID_ARGUMENT` with the validation
    /// failure in the details, `UNAVAILABLE` for an unreachable back end or a shutdown,
    /// `INTERNAL` for a back end that answered nonsense.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            SubmitError::Invalid(e) => cbdc_proto::status::invalid_transaction_status(e),
            SubmitError::Backend(e) => e.to_status(),
            SubmitError::ShuttingDown => tonic::Status::unavailable(self.to_string()),
        }
    }
}

/// What a submitter is answered.
pub type Answer = Result<Outcome, SubmitError>;

/// What the batcher and the batch tasks share with the submitters.
struct Shared {
    validator: Validator,
    key: SecretKey,
    backend: Arc<dyn Backend>,
    request_timeout: Duration,
    /// Callers waiting per tx id in flight. The first submission of an id enqueues it;
    /// later ones only add their sender. A `std` mutex: held for a map operation, never
    /// across an await.
    in_flight: Mutex<IdMap<TxId, Vec<oneshot::Sender<Answer>>>>,
}

impl Shared {
    fn in_flight(&self) -> MutexGuard<'_, IdMap<TxId, Vec<oneshot::Sender<Answer>>>> {
        // Every critical section is a single map operation, so a poisoned map is
        // consistent.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers every caller waiting on `id` and forgets it: a later submission of the
    /// same id goes to the back end again, which answers it with the recorded outcome.
    fn complete(&self, id: &TxId, answer: Answer) {
        let waiters = self.in_flight().remove(id).unwrap_or_default();
        for waiter in waiters {
            // A caller that went away (cancelled RPC) is simply not answered.
            let _ = waiter.send(answer.clone());
        }
    }

    /// Validates, attests and settles one batch.
    async fn process(self: Arc<Self>, batch: Vec<IdentifiedTransaction>) {
        let ids: Vec<TxId> = batch.iter().map(HasTxId::id).collect();
        let shared = self.clone();
        // Validation (signature batches across the rayon pool) and attestation are CPU
        // work: run them off the async runtime, on the rayon pool itself (a blocking-pool
        // thread would only wake to wait for rayon's, two thread switches per batch).
        // A panic there is caught and answered like one of the blocking pool.
        let (done, checked) = oneshot::channel();
        rayon::spawn(move || {
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shared.validate_and_attest(batch)
            }));
            let _ = done.send(checked);
        });
        let (invalid, attested) = match checked.await {
            Ok(Ok(checked)) => checked,
            Ok(Err(_)) | Err(_) => {
                tracing::error!("validation task failed (panicked)");
                for id in &ids {
                    self.complete(id, Err(SubmitError::ShuttingDown));
                }
                return;
            }
        };
        for (id, error) in invalid {
            self.complete(&id, Err(SubmitError::Invalid(error)));
        }
        if attested.is_empty() {
            return;
        }
        let ids: Vec<TxId> = attested.iter().map(|tx| tx.id).collect();
        let answer =
            tokio::time::timeout(self.request_timeout, self.backend.execute(attested)).await;
        let outcomes = match answer {
            Err(_) => Err(BackendError::Unavailable(format!(
                "no answer within {:?}",
                self.request_timeout
            ))),
            Ok(Ok(outcomes)) if outcomes.len() != ids.len() => Err(BackendError::Protocol(
                format!("{} outcomes for {} transactions", outcomes.len(), ids.len()),
            )),
            Ok(other) => other,
        };
        match outcomes {
            Ok(outcomes) => {
                for (id, outcome) in ids.iter().zip(outcomes) {
                    self.complete(id, Ok(outcome));
                }
            }
            Err(error) => {
                tracing::warn!(%error, transactions = ids.len(), "batch not settled");
                for id in &ids {
                    self.complete(id, Err(SubmitError::Backend(error.clone())));
                }
            }
        }
    }

    /// Blocking: validates the batch and attests its valid transactions as one Merkle
    /// batch. Returns the invalid ones with their errors, and the attested compact
    /// transactions in submission order.
    fn validate_and_attest(
        &self,
        txs: Vec<IdentifiedTransaction>,
    ) -> (Vec<(TxId, ValidationError)>, Vec<CompactTransaction>) {
        let results = self.validator.validate_many(&txs);
        let mut invalid = Vec::new();
        let mut valid = Vec::with_capacity(txs.len());
        for (tx, result) in txs.iter().zip(results) {
            match result {
                Ok(()) => valid.push(tx.compact()),
                Err(e) => invalid.push((tx.id(), e)),
            }
        }
        attest_batch(&self.key, &mut valid);
        (invalid, valid)
    }
}

/// The sentinel's submission pipeline. Cheap to clone (all clones share one batcher);
/// the batcher task stops when the last clone is dropped. Must be created inside a tokio
/// runtime.
#[derive(Clone)]
pub struct Pipeline {
    shared: Arc<Shared>,
    queue: mpsc::Sender<IdentifiedTransaction>,
}

impl Pipeline {
    /// Starts the batcher for `params` in front of `backend`.
    pub fn new(params: &SentinelParams, backend: Arc<dyn Backend>) -> Self {
        let shared = Arc::new(Shared {
            validator: params.validator.clone(),
            key: params.key.clone(),
            backend,
            request_timeout: params.request_timeout,
            in_flight: Mutex::new(IdMap::default()),
        });
        let max_batch = params.max_batch_size.max(1);
        // Room for a few batches: beyond that, submitters wait (back pressure).
        let (queue, queued) = mpsc::channel(max_batch.saturating_mul(4));
        tokio::spawn(run_batcher(
            shared.clone(),
            queued,
            max_batch,
            params.max_batch_delay,
        ));
        Pipeline { shared, queue }
    }

    /// Submits one transaction and waits for its answer: its settlement outcome, or why
    /// it has none.
    ///
    /// Deduplication: if a transaction with the same id is in flight on this sentinel,
    /// this call joins it and gets the same answer; the back end sees the id once. (The
    /// first submission's witnesses are the ones validated.) Once an id has its answer it
    /// is forgotten here; submitting it again reaches the back end, which answers a
    /// settled transaction with its recorded outcome and never settles it twice.
    ///
    /// Cancel safe: a caller that stops waiting leaves nothing behind; the transaction
    /// may still settle.
    pub async fn submit(&self, tx: impl Into<IdentifiedTransaction>) -> Answer {
        let tx = tx.into();
        let id = tx.id();
        // Reserve a queue slot before registering, so that a registered id is always
        // enqueued (a cancelled reserve leaves nothing behind).
        let permit = match self.queue.reserve().await {
            Ok(permit) => permit,
            Err(_) => return Err(SubmitError::ShuttingDown),
        };
        let (answer, waiter) = oneshot::channel();
        let first = match self.shared.in_flight().entry(id) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().push(answer);
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(vec![answer]);
                true
            }
        };
        if first {
            permit.send(tx);
        } else {
            drop(permit);
        }
        waiter.await.unwrap_or(Err(SubmitError::ShuttingDown))
    }

    /// How many callers are waiting on transaction `id` (0 when it is not in flight).
    pub fn waiters(&self, id: &TxId) -> usize {
        self.shared.in_flight().get(id).map_or(0, Vec::len)
    }

    /// What the back end knows about transaction `id`.
    pub async fn tx_status(&self, id: TxId) -> Result<TxState, BackendError> {
        self.with_timeout(self.shared.backend.tx_status(id)).await
    }

    /// Waits up to `timeout` for transaction `id`, answered [`Outcome::Pending`], to
    /// become final (the back end's own call is bounded by `timeout` too).
    pub async fn await_final(&self, id: TxId, timeout: Duration) -> Result<TxState, BackendError> {
        let call = self.shared.backend.await_final(id, timeout);
        // A little slack over the wait itself for the back end to answer.
        match tokio::time::timeout(timeout + self.shared.request_timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Ok(TxState::Pending),
        }
    }

    /// How long the back end gets to answer one call.
    pub fn request_timeout(&self) -> Duration {
        self.shared.request_timeout
    }

    /// The architecture of the back end.
    pub fn architecture(&self) -> cbdc_proto::v1::Architecture {
        self.shared.backend.architecture()
    }

    /// The state of each output, in order.
    pub async fn output_status(&self, ids: Vec<UhsId>) -> Result<Vec<OutputState>, BackendError> {
        self.with_timeout(self.shared.backend.output_status(ids))
            .await
    }

    async fn with_timeout<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let timeout = self.shared.request_timeout;
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(BackendError::Unavailable(format!(
                    "no answer within {timeout:?}"
                )))
            })
    }
}

/// Gathers queued transactions into batches of at most `max_batch`, waiting at most
/// `max_delay` after the first of a batch, and processes each batch on its own task
/// (several batches may be in flight). Ends when every [`Pipeline`] clone is dropped.
async fn run_batcher(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<IdentifiedTransaction>,
    max_batch: usize,
    max_delay: Duration,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let deadline = Instant::now() + max_delay;
        while batch.len() < max_batch {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(tx)) => batch.push(tx),
                Ok(None) | Err(_) => break,
            }
        }
        tracing::trace!(size = batch.len(), "batch cut");
        tokio::spawn(shared.clone().process(batch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;
    use cbdc_core::{
        p2pk_output, sign_mint, sign_transfer, AttestationVerifier, Hash, Input, Limits, ShardMap,
        Transaction,
    };
    use cbdc_proto::v1::RejectReason;

    const WAIT: Duration = Duration::from_secs(20);

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32])
    }

    fn params(max_batch_size: usize, max_batch_delay: Duration) -> SentinelParams {
        let validator = Validator::new(Limits::default(), Some(key(1).public_key()));
        let mut params = SentinelParams::new(key(9), validator, ShardMap::even(2).unwrap());
        params.max_batch_size = max_batch_size;
        params.max_batch_delay = max_batch_delay;
        params
    }

    fn pipeline(params: &SentinelParams) -> (Pipeline, Arc<MemoryBackend>) {
        let verifier = AttestationVerifier::new([params.key.public_key()], 1);
        let backend = Arc::new(MemoryBackend::new(Some(verifier)));
        (Pipeline::new(params, backend.clone()), backend)
    }

    /// A mint of `cents` to `owner`, unique by `nonce`.
    fn mint(owner: &SecretKey, cents: u64, nonce: u8) -> Transaction {
        sign_mint(&key(1), vec![p2pk_output(owner, cents)], Hash([nonce; 32]))
    }

    /// Spends output 0 of `from` (owned by `owner`) entirely to `to`.
    fn spend(from: &Transaction, owner: &SecretKey, to: &SecretKey) -> Transaction {
        let input = Input {
            outpoint: from.outpoint(0),
            spent: from.outputs[0],
        };
        sign_transfer(
            &[(input, owner)],
            vec![p2pk_output(to, from.outputs[0].value.cents())],
        )
    }

    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(WAIT, f).await.expect("timed out")
    }

    #[tokio::test]
    async fn test_submit_mint_then_transfer_confirmed_then_double_spend_rejected() {
        let (pipeline, _backend) = pipeline(&params(16, Duration::from_millis(1)));
        let m = mint(&key(2), 500, 7);
        assert_eq!(
            within(pipeline.submit(m.clone())).await,
            Ok(Outcome::CONFIRMED)
        );
        let t = spend(&m, &key(2), &key(3));
        assert_eq!(within(pipeline.submit(t)).await, Ok(Outcome::CONFIRMED));
        let conflicting = spend(&m, &key(2), &key(4));
        match within(pipeline.submit(conflicting)).await {
            Ok(Outcome::Rejected {
                reason,
                input_index,
                ..
            }) => {
                assert_eq!(reason, RejectReason::InputsSpent);
                assert_eq!(input_index, Some(0));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn test_submit_unauthorized_mint_invalid() {
        let (pipeline, backend) = pipeline(&params(16, Duration::from_millis(1)));
        let forged = sign_mint(&key(5), vec![p2pk_output(&key(5), 100)], Hash([1; 32]));
        assert_eq!(
            within(pipeline.submit(forged)).await,
            Err(SubmitError::Invalid(ValidationError::UnauthorizedMint))
        );
        assert!(backend.received().is_empty());
    }

    #[tokio::test]
    async fn test_submit_bad_signature_invalid_and_never_sent() {
        let (pipeline, backend) = pipeline(&params(16, Duration::from_millis(1)));
        let m = mint(&key(2), 500, 7);
        // Signed by the wrong key for a program naming key 2.
        let mut t = spend(&m, &key(2), &key(3));
        t.witnesses[0].signature = key(3).sign(t.tx_id().as_bytes());
        assert_eq!(
            within(pipeline.submit(t)).await,
            Err(SubmitError::Invalid(ValidationError::InvalidSignature {
                witness: 0
            }))
        );
        assert!(backend.received().is_empty());
    }

    #[tokio::test]
    async fn test_batcher_cuts_full_batches_by_size() {
        // A delay far longer than the test: only the size can cut these batches.
        let (pipeline, backend) = pipeline(&params(4, Duration::from_secs(3600)));
        let mints: Vec<_> = (0..8).map(|n| mint(&key(2), 10, n + 1)).collect();
        let answers = within(futures::future::join_all(
            mints.into_iter().map(|m| pipeline.submit(m)),
        ))
        .await;
        assert!(answers.iter().all(|a| *a == Ok(Outcome::CONFIRMED)));
        let sizes: Vec<usize> = backend.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4]);
    }

    #[tokio::test]
    async fn test_batcher_cuts_partial_batch_after_delay() {
        let (pipeline, backend) = pipeline(&params(1000, Duration::from_millis(5)));
        assert_eq!(
            within(pipeline.submit(mint(&key(2), 10, 1))).await,
            Ok(Outcome::CONFIRMED)
        );
        assert_eq!(backend.batches().len(), 1);
    }

    #[tokio::test]
    async fn test_submit_mixed_batch_answers_each_caller() {
        let (pipeline, backend) = pipeline(&params(3, Duration::from_secs(3600)));
        let good = mint(&key(2), 10, 1);
        let forged = sign_mint(&key(5), vec![p2pk_output(&key(5), 1)], Hash([2; 32]));
        let unbalanced = {
            let mut t = spend(&good, &key(2), &key(3));
            t.outputs[0].value = cbdc_core::Amount::from_cents(11);
            t
        };
        let (a, b, c) = within(async {
            tokio::join!(
                pipeline.submit(good),
                pipeline.submit(forged),
                pipeline.submit(unbalanced)
            )
        })
        .await;
        assert_eq!(a, Ok(Outcome::CONFIRMED));
        assert_eq!(
            b,
            Err(SubmitError::Invalid(ValidationError::UnauthorizedMint))
        );
        assert!(matches!(
            c,
            Err(SubmitError::Invalid(ValidationError::Unbalanced { .. }))
        ));
        assert_eq!(backend.received().len(), 1);
    }

    #[tokio::test]
    async fn test_submit_duplicate_in_flight_joins_first() {
        let (pipeline, backend) = pipeline(&params(16, Duration::from_millis(1)));
        backend.hold();
        let m = mint(&key(2), 10, 1);
        let id = m.tx_id();
        let first = tokio::spawn({
            let (p, m) = (pipeline.clone(), m.clone());
            async move { p.submit(m).await }
        });
        within(backend.wait_received(1)).await;
        let second = tokio::spawn({
            let (p, m) = (pipeline.clone(), m.clone());
            async move { p.submit(m).await }
        });
        within(async {
            while pipeline.waiters(&id) < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        backend.release();
        assert_eq!(within(first).await.unwrap(), Ok(Outcome::CONFIRMED));
        assert_eq!(within(second).await.unwrap(), Ok(Outcome::CONFIRMED));
        assert_eq!(backend.received().len(), 1);
        assert_eq!(pipeline.waiters(&id), 0);
        // A retry after completion reaches the back end, which answers the recorded
        // outcome without applying anything twice.
        assert_eq!(within(pipeline.submit(m)).await, Ok(Outcome::CONFIRMED));
        assert_eq!(backend.received().len(), 2);
    }

    #[tokio::test]
    async fn test_attestations_reaching_backend_verify() {
        let params = params(8, Duration::from_secs(3600));
        let (pipeline, backend) = pipeline(&params);
        let mints: Vec<_> = (0..8).map(|n| mint(&key(2), 10, n + 1)).collect();
        within(futures::future::join_all(
            mints.iter().cloned().map(|m| pipeline.submit(m)),
        ))
        .await;
        let verifier = AttestationVerifier::new([params.key.public_key()], 1);
        let received = backend.received();
        assert_eq!(received.len(), 8);
        for tx in &received {
            assert_eq!(tx.attestations.len(), 1);
            verifier.verify(tx).unwrap();
        }
        // One batch, one root.
        assert!(received
            .windows(2)
            .all(|w| w[0].attestations[0].root == w[1].attestations[0].root));
        let stranger = AttestationVerifier::new([key(8).public_key()], 1);
        assert!(stranger.verify(&received[0]).is_err());
    }

    #[tokio::test]
    async fn test_submit_backend_unavailable_and_timeout() {
        let mut p = params(16, Duration::from_millis(1));
        p.request_timeout = Duration::from_millis(50);
        let (pipeline, backend) = pipeline(&p);
        backend.set_unavailable(true);
        assert!(matches!(
            within(pipeline.submit(mint(&key(2), 10, 1))).await,
            Err(SubmitError::Backend(BackendError::Unavailable(_)))
        ));
        backend.set_unavailable(false);
        backend.hold();
        assert!(matches!(
            within(pipeline.submit(mint(&key(2), 10, 2))).await,
            Err(SubmitError::Backend(BackendError::Unavailable(_)))
        ));
        assert_eq!(
            SubmitError::Backend(BackendError::Unavailable(String::new()))
                .to_status()
                .code(),
            tonic::Code::Unavailable
        );
    }
}
