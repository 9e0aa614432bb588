//! The atomizer back end: transfers go to every shard owning one of their inputs, mints to
//! the atomizer leader; final outcomes come from the watchtower.
//!
//! ```text
//!  execute(batch) ──SubmitTransactions──▶ each shard of each range owning an input
//!        │         ──SubmitMints────────▶ atomizer leader
//!        └─▶ PENDING
//!  await_final(id) ──▶ Waiter (one task): every poll interval, one GetTransactionStatus
//!                      for all ids being waited on ──▶ watchtower
//! ```
//!
//! Several shards may own one range (redundancy): a batch counts as handed on when at
//! least one shard of every range involved took it; the others are still sent it, so
//! that the atomizer gets an attestation from whichever answers first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use cbdc_consensus::network::lazy_channel;
use cbdc_consensus::LeaderClient;
use cbdc_core::{CompactTransaction, ShardMap, TxId, UhsId};
use cbdc_proto::convert::{compact_transactions_to_wire, MAX_QUERY_ITEMS};
use cbdc_proto::v1::atomizer_client::AtomizerClient;
use cbdc_proto::v1::atomizer_shard_client::AtomizerShardClient;
use cbdc_proto::v1::shard_query_client::ShardQueryClient;
use cbdc_proto::v1::watchtower_client::WatchtowerClient;
use cbdc_proto::{v1, MAX_INTERNAL_MESSAGE_BYTES};
use futures::future::{join_all, try_join_all, BoxFuture};
use tokio::sync::{oneshot, Notify};
use tonic::transport::Channel;

use crate::backend::{
    merge_in_order, split_by_group, Backend, BackendError, Outcome, OutputState, TxState,
};
use crate::params::{ParamsError, SentinelParams};

/// How often the waiter asks the watchtower about the transactions being waited on.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Where an atomizer cluster's roles listen (client endpoints, `host:port`).
#[derive(Debug, Clone)]
pub struct AtomizerEndpoints {
    /// The atomizer group's replicas.
    pub atomizer: Vec<String>,
    /// The watchtower.
    pub watchtower: String,
}

/// The atomizer back end.
pub struct AtomizerBackend {
    atomizer: LeaderClient,
    /// Channels to every shard, per range (indexed like the shard map).
    shards: Vec<Vec<(String, Channel)>>,
    shard_map: ShardMap,
    watchtower: Channel,
    waiter: Arc<Waiter>,
    timeout: Duration,
}

impl AtomizerBackend {
    /// Clients for the shards in `params.shard_groups` (one list of redundant shards per
    /// range) and the roles in `endpoints`; starts the waiter task (needs a runtime).
    pub fn new(
        params: &SentinelParams,
        endpoints: &AtomizerEndpoints,
    ) -> Result<Self, ParamsError> {
        params.validate_shard_groups()?;
        if endpoints.atomizer.is_empty() {
            return Err(ParamsError::Zero("atomizer endpoints"));
        }
        let channel =
            |e: &str| lazy_channel(e).map_err(|_| ParamsError::BadEndpoint(e.to_string()));
        let shards = params
            .shard_groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|e| Ok((e.clone(), channel(e)?)))
                    .collect::<Result<Vec<_>, ParamsError>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let watchtower = channel(&endpoints.watchtower)?;
        let waiter = Arc::new(Waiter {
            waiting: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            watchtower: watchtower.clone(),
        });
        tokio::spawn(run_waiter(Arc::downgrade(&waiter)));
        Ok(AtomizerBackend {
            atomizer: LeaderClient::new(endpoints.atomizer.clone())
                .with_timeout(params.request_timeout),
            shards,
            shard_map: params.shard_map.clone(),
            watchtower,
            waiter,
            timeout: params.request_timeout,
        })
    }

    async fn submit_mints(&self, mints: Vec<CompactTransaction>) -> Result<(), BackendError> {
        let request = v1::SubmitMintsRequest {
            mints: compact_transactions_to_wire(&mints),
        };
        self.atomizer
            .call(|channel| {
                let request = request.clone();
                async move {
                    AtomizerClient::new(channel)
                        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                        .submit_mints(request)
                        .await
                }
            })
            .await
            .map_err(BackendError::from_consensus)?;
        Ok(())
    }

    /// Sends `txs` to every shard of range `group`; fine when one of them took it. While
    /// every shard is unavailable (restarting, catching up with the blocks), the batch is
    /// sent again after a backoff (10 ms doubling to 500 ms) until the request timeout;
    /// any other refusal is final.
    async fn submit_to_range(
        &self,
        group: usize,
        txs: Vec<CompactTransaction>,
    ) -> Result<(), BackendError> {
        let request = v1::ShardSubmitRequest {
            transactions: compact_transactions_to_wire(&txs),
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            let calls = self.shards[group].iter().map(|(endpoint, channel)| {
                let request = request.clone();
                let mut client = AtomizerShardClient::new(channel.clone())
                    .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES);
                async move {
                    match tokio::time::timeout_at(deadline, client.submit_transactions(request))
                        .await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(status)) => Err((
                            status.code() == tonic::Code::Unavailable,
                            format!("{endpoint}: {}", status.message()),
                        )),
                        Err(_) => Err((true, format!("{endpoint}: no answer in time"))),
                    }
                }
            });
            let answers = join_all(calls).await;
            if answers.iter().any(Result::is_ok) {
                return Ok(());
            }
            let failures: Vec<(bool, String)> =
                answers.into_iter().filter_map(Result::err).collect();
            let retry = failures.iter().all(|(unavailable, _)| *unavailable);
            let reasons: Vec<String> = failures.into_iter().map(|(_, r)| r).collect();
            let message = format!(
                "no shard of range {group} took the batch: {}",
                reasons.join("; ")
            );
            if !retry {
                return Err(BackendError::Protocol(message));
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(BackendError::Unavailable(message));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// The shards' view of `ids`, in order.
    async fn shard_outputs(&self, ids: Vec<UhsId>) -> Result<Vec<OutputState>, BackendError> {
        let total = ids.len();
        let parts = split_by_group(ids, self.shards.len(), |id| self.shard_map.shard_for(id));
        let calls = parts.into_iter().map(|(g, positions, ids)| async move {
            self.output_group(g, ids)
                .await
                .map(|states| (positions, states))
        });
        merge_in_order(total, try_join_all(calls).await?)
    }

    /// What the watchtower knows of `ids` from the blocks it saw (`None`: never seen).
    async fn watchtower_outputs(
        &self,
        ids: &[UhsId],
    ) -> Result<Vec<Option<OutputState>>, BackendError> {
        let request = v1::ShardOutputStatusRequest {
            uhs_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
        };
        let response = WatchtowerClient::new(self.watchtower.clone())
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
            .get_output_status(request)
            .await
            .map_err(|s| BackendError::Unavailable(format!("watchtower: {}", s.message())))?
            .into_inner();
        if response.outputs.len() != ids.len() {
            return Err(BackendError::Protocol(format!(
                "watchtower answered {} output statuses for {} ids",
                response.outputs.len(),
                ids.len()
            )));
        }
        response
            .outputs
            .iter()
            .map(|entry| match entry.status() {
                v1::OutputStatus::Unspecified => Ok(None),
                _ => OutputState::from_entry(entry).map(Some),
            })
            .collect()
    }

    /// Asks the shards of range `group`, one after the other until one answers.
    async fn output_group(
        &self,
        group: usize,
        ids: Vec<UhsId>,
    ) -> Result<Vec<OutputState>, BackendError> {
        let request = v1::ShardOutputStatusRequest {
            uhs_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
        };
        let mut last = String::new();
        for (endpoint, channel) in &self.shards[group] {
            let mut client = ShardQueryClient::new(channel.clone())
                .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES);
            match tokio::time::timeout(self.timeout, client.get_output_status(request.clone()))
                .await
            {
                Ok(Ok(response)) => {
                    let outputs = response.into_inner().outputs;
                    if outputs.len() != ids.len() {
                        return Err(BackendError::Protocol(format!(
                            "shard {endpoint} answered {} statuses for {} ids",
                            outputs.len(),
                            ids.len()
                        )));
                    }
                    return outputs.iter().map(OutputState::from_entry).collect();
                }
                Ok(Err(status)) => last = format!("{endpoint}: {}", status.message()),
                Err(_) => last = format!("{endpoint}: no answer within {:?}", self.timeout),
            }
        }
        Err(BackendError::Unavailable(format!(
            "no shard of range {group} answered: {last}"
        )))
    }
}

impl Backend for AtomizerBackend {
    fn execute(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> BoxFuture<'_, Result<Vec<Outcome>, BackendError>> {
        Box::pin(async move {
            let n = txs.len();
            let (mints, transfers): (Vec<_>, Vec<_>) =
                txs.into_iter().partition(|tx| tx.inputs.is_empty());
            let mut per_range: Vec<Vec<CompactTransaction>> = vec![Vec::new(); self.shards.len()];
            for tx in transfers {
                let mut ranges: Vec<usize> = tx
                    .inputs
                    .iter()
                    .map(|id| self.shard_map.shard_for(id))
                    .collect();
                ranges.sort_unstable();
                ranges.dedup();
                for g in ranges {
                    per_range[g].push(tx.clone());
                }
            }
            let sends = per_range
                .into_iter()
                .enumerate()
                .filter(|(_, txs)| !txs.is_empty())
                .map(|(g, txs)| self.submit_to_range(g, txs));
            let mints = async {
                if mints.is_empty() {
                    Ok(())
                } else {
                    self.submit_mints(mints).await
                }
            };
            let (sent, minted) = tokio::join!(try_join_all(sends), mints);
            sent?;
            minted?;
            Ok(vec![Outcome::Pending; n])
        })
    }

    fn tx_status(&self, id: TxId) -> BoxFuture<'_, Result<TxState, BackendError>> {
        Box::pin(async move {
            let mut states = watchtower_status(&self.watchtower, &[id]).await?;
            states
                .pop()
                .map(|(_, state)| state)
                .ok_or_else(|| BackendError::Protocol("watchtower answered no status".into()))
        })
    }

    /// The watchtower first: it saw every recent block, so a client that was just told
    /// CONFIRMED sees that transaction's effects even before a shard applied its block.
    /// Outputs the watchtower never saw (older than its memory, or genesis outputs), or
    /// all of them while the watchtower is unreachable, are asked of the shards.
    fn output_status(
        &self,
        ids: Vec<UhsId>,
    ) -> BoxFuture<'_, Result<Vec<OutputState>, BackendError>> {
        Box::pin(async move {
            // A watchtower that is down (restarting) leaves every answer to the shards.
            let recent = match self.watchtower_outputs(&ids).await {
                Ok(recent) => recent,
                Err(e) => {
                    tracing::debug!(error = %e, "watchtower unavailable; asking the shards");
                    vec![None; ids.len()]
                }
            };
            let unknown: Vec<UhsId> = ids
                .iter()
                .zip(&recent)
                .filter(|(_, state)| state.is_none())
                .map(|(id, _)| *id)
                .collect();
            let mut from_shards = self.shard_outputs(unknown).await?.into_iter();
            recent
                .into_iter()
                .map(|state| {
                    state
                        .or_else(|| from_shards.next())
                        .ok_or_else(|| BackendError::Protocol("missing output status".into()))
                })
                .collect()
        })
    }

    fn await_final(
        &self,
        id: TxId,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<TxState, BackendError>> {
        Box::pin(async move {
            let (answer, waiting) = oneshot::channel();
            self.waiter.waiting().entry(id).or_default().push(answer);
            self.waiter.wake.notify_one();
            match tokio::time::timeout(timeout, waiting).await {
                Ok(Ok(state)) => Ok(state),
                // Timed out (the waiter drops our closed sender on its next round).
                _ => Ok(TxState::Pending),
            }
        })
    }

    fn architecture(&self) -> v1::Architecture {
        v1::Architecture::Atomizer
    }
}

/// Callers waiting for final outcomes, answered from one status query per round.
struct Waiter {
    waiting: Mutex<HashMap<TxId, Vec<oneshot::Sender<TxState>>>>,
    wake: Notify,
    watchtower: Channel,
}

impl Waiter {
    fn waiting(&self) -> MutexGuard<'_, HashMap<TxId, Vec<oneshot::Sender<TxState>>>> {
        // Every critical section is a single map operation: a poisoned map is consistent.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn run_waiter(waiter: Weak<Waiter>) {
    loop {
        let Some(w) = waiter.upgrade() else { return };
        let ids: Vec<TxId> = {
            let mut waiting = w.waiting();
            waiting.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
            waiting.keys().copied().collect()
        };
        if ids.is_empty() {
            // Park until someone waits. The task holds only a weak reference between
            // rounds so that it ends with the back end; a dropped back end never signals,
            // hence the bounded park.
            let _ = tokio::time::timeout(Duration::from_secs(1), w.wake.notified()).await;
            continue;
        }
        for chunk in ids.chunks(MAX_QUERY_ITEMS) {
            match watchtower_status(&w.watchtower, chunk).await {
                Ok(states) => {
                    let mut waiting = w.waiting();
                    for (id, state) in states {
                        if matches!(state, TxState::Final(_)) {
                            for sender in waiting.remove(&id).unwrap_or_default() {
                                let _ = sender.send(state.clone());
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "watchtower status query failed"),
            }
        }
        drop(w);
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The watchtower's view of `ids`, in order.
async fn watchtower_status(
    watchtower: &Channel,
    ids: &[TxId],
) -> Result<Vec<(TxId, TxState)>, BackendError> {
    let request = v1::WatchtowerTxStatusRequest {
        tx_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
    };
    let response = WatchtowerClient::new(watchtower.clone())
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .get_transaction_status(request)
        .await
        .map_err(|s| BackendError::Unavailable(format!("watchtower: {}", s.message())))?
        .into_inner();
    if response.results.len() != ids.len() {
        return Err(BackendError::Protocol(format!(
            "watchtower answered {} statuses for {} ids",
            response.results.len(),
            ids.len()
        )));
    }
    ids.iter()
        .zip(&response.results)
        .map(|(id, result)| Ok((*id, TxState::from_result(result)?)))
        .collect()
}
