//! [`Shared`]: what the services and the background tasks of one atomizer-mode shard
//! share, and the steps they have in common (checking transactions against the store,
//! notifying the atomizer, reporting to the watchtower).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use cbdc_consensus::LeaderClient;
use cbdc_core::{AttestationVerifier, CompactTransaction, ShardRange};
use cbdc_proto::convert::{Notification, Rejection};
use cbdc_proto::v1::atomizer_client::AtomizerClient;
use cbdc_proto::v1::watchtower_client::WatchtowerClient;
use cbdc_proto::{v1, MAX_INTERNAL_MESSAGE_BYTES};
use tokio::sync::watch;
use tonic::transport::Channel;

use super::check::{ids_to_read, select_owned, verdicts, Owned, Verdict};
use super::error::AtomizerShardError;
use super::recheck::{Entry, GraceRule, RecheckList};
use crate::store::UhsStore;

/// Most notifications or rejections the background recheck sends in one call, so that a
/// long list never makes a message beyond the internal size limit.
pub(crate) const MAX_PER_CALL: usize = 4096;

/// The state of one atomizer-mode shard, behind an `Arc`.
pub(crate) struct Shared {
    /// The unspent set and its height; the follower is its only writer.
    pub store: UhsStore,
    /// The prefixes this shard owns.
    pub range: ShardRange,
    /// The cluster's sentinel keys and threshold.
    pub verifier: Arc<AttestationVerifier>,
    /// The atomizer group, following its leader (Notify, GetHeight).
    pub atomizer: LeaderClient,
    /// The watchtower (ReportErrors); a lazily connecting channel, reused.
    pub watchtower: WatchtowerClient<Channel>,
    /// Longest wait for one call to the watchtower.
    pub request_timeout: Duration,
    /// The height of the last block applied, published by the follower (the sender
    /// lives here so that subscribers never see it closed while the shard runs).
    pub height: watch::Sender<u64>,
    /// The atomizer's height when this shard started: attest nothing below it. Set once
    /// `GetHeight` answered.
    pub target: OnceLock<u64>,
    /// Why the shard stopped applying blocks, once it did (never cleared: the store must
    /// be rebuilt).
    pub unhealthy: OnceLock<String>,
    /// Transactions waiting for a missing input. A std mutex: held for list operations
    /// only, never across an `.await` or a store read.
    pub rechecks: Mutex<RecheckList>,
    /// When a missing input is reported.
    pub grace: GraceRule,
}

impl Shared {
    /// The height of the last block applied.
    pub fn height(&self) -> u64 {
        *self.height.borrow()
    }

    /// Whether the shard has applied every block the atomizer had cut when it started.
    pub fn is_caught_up(&self) -> bool {
        self.target.get().is_some_and(|&t| self.height() >= t)
    }

    /// The recheck list, even if a panicking holder poisoned the lock (list operations
    /// leave it consistent at every step).
    pub fn rechecks(&self) -> MutexGuard<'_, RecheckList> {
        self.rechecks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the shard unhealthy (the first reason stays).
    pub fn mark_unhealthy(&self, reason: String) {
        let _ = self.unhealthy.set(reason);
    }

    /// `Ok` when the shard may attest inputs now: it is healthy and caught up.
    pub fn admit(&self) -> Result<(), AtomizerShardError> {
        if let Some(reason) = self.unhealthy.get() {
            return Err(AtomizerShardError::Unhealthy(reason.clone()));
        }
        let height = self.height();
        match self.target.get() {
            None => Err(AtomizerShardError::AwaitingTarget { height }),
            Some(&target) if height < target => {
                Err(AtomizerShardError::CatchingUp { height, target })
            }
            Some(_) => Ok(()),
        }
    }

    /// `Ok` when the store can be trusted for queries (the shard is healthy).
    pub fn healthy(&self) -> Result<(), AtomizerShardError> {
        match self.unhealthy.get() {
            Some(reason) => Err(AtomizerShardError::Unhealthy(reason.clone())),
            None => Ok(()),
        }
    }

    /// The transactions of `txs` that own an input here and whose attestations pass.
    /// One that fails is dropped and logged, not reported: its attestations were not
    /// made by the cluster's sentinels, so anyone could have sent it, and a report would
    /// let them mark someone else's pending transaction rejected. Signature checks are
    /// CPU work: off the async runtime.
    pub async fn attested_owned(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> Result<Vec<Owned>, AtomizerShardError> {
        let owned = select_owned(self.range, txs);
        if owned.is_empty() {
            return Ok(owned);
        }
        let verifier = self.verifier.clone();
        tokio::task::spawn_blocking(move || {
            let total = owned.len();
            let kept: Vec<Owned> = owned
                .into_iter()
                .filter(|o| match verifier.verify(&o.tx) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(tx = %o.tx.id, error = %e, "attestations refused");
                        false
                    }
                })
                .collect();
            if kept.len() < total {
                // One line per request, not per transaction: whoever sends forged
                // transactions must not be able to flood the log.
                tracing::warn!(
                    dropped = total - kept.len(),
                    total,
                    "dropped submitted transactions whose attestations do not pass"
                );
            }
            kept
        })
        .await
        .map_err(|e| AtomizerShardError::task("attestation check", e))
    }

    /// Reads the owned inputs of `owned` from one snapshot: the notifications of the
    /// transactions whose owned inputs are all unspent at the snapshot's height, and
    /// recheck entries for the others.
    pub async fn check(
        &self,
        owned: Vec<Owned>,
    ) -> Result<(Vec<Notification>, Vec<Entry>), AtomizerShardError> {
        if owned.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let (height, values) = store.check_inputs(&ids_to_read(&owned))?;
            let now = Instant::now();
            let verdicts = verdicts(&owned, &values);
            let mut notifications = Vec::new();
            let mut missing = Vec::new();
            for (Owned { tx, positions }, verdict) in owned.into_iter().zip(verdicts) {
                match verdict {
                    Verdict::Present => notifications.push(Notification {
                        transaction: tx,
                        attested_inputs: positions,
                        height,
                    }),
                    Verdict::Missing { index } => {
                        missing.push(Entry::missing(tx, positions, index, height, now))
                    }
                }
            }
            Ok::<_, AtomizerShardError>((notifications, missing))
        })
        .await
        .map_err(|e| AtomizerShardError::task("input check", e))?
    }

    /// Sends `notifications` to the atomizer leader in one `Notify` call; `Ok` once the
    /// atomizer accepted them. Sending twice is harmless (attesting again changes
    /// nothing).
    pub async fn notify(&self, notifications: &[Notification]) -> Result<(), AtomizerShardError> {
        if notifications.is_empty() {
            return Ok(());
        }
        let request = v1::NotifyRequest {
            notifications: notifications.iter().map(Into::into).collect(),
        };
        self.atomizer
            .call(|channel| {
                let request = request.clone();
                async move {
                    atomizer_client(channel)
                        .notify(request)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await
            .map(|_| ())
            .map_err(AtomizerShardError::Atomizer)
    }

    /// The atomizer leader's height (the last block cut).
    pub async fn atomizer_height(&self) -> Result<u64, AtomizerShardError> {
        self.atomizer
            .call(|channel| async move {
                atomizer_client(channel)
                    .get_height(v1::GetHeightRequest {})
                    .await
                    .map(|r| r.into_inner().height)
            })
            .await
            .map_err(AtomizerShardError::Atomizer)
    }

    /// Reports `rejections` to the watchtower in one `ReportErrors` call; `Ok` once it
    /// accepted them. Reporting twice is harmless (the watchtower keeps one verdict).
    pub async fn report(&self, rejections: &[Rejection]) -> Result<(), AtomizerShardError> {
        if rejections.is_empty() {
            return Ok(());
        }
        let request = v1::ReportErrorsRequest {
            rejections: rejections.iter().map(Into::into).collect(),
        };
        let mut client = self.watchtower.clone();
        match tokio::time::timeout(self.request_timeout, client.report_errors(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(AtomizerShardError::Watchtower(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
            Err(_) => Err(AtomizerShardError::Watchtower(format!(
                "no answer within {:?}",
                self.request_timeout
            ))),
        }
    }
}

/// An atomizer client over `channel` with the internal message size limits.
fn atomizer_client(channel: Channel) -> AtomizerClient<Channel> {
    AtomizerClient::new(channel)
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
}

/// A watchtower client over `channel` with the internal message size limits.
pub(crate) fn watchtower_client(channel: Channel) -> WatchtowerClient<Channel> {
    WatchtowerClient::new(channel)
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
}
