//! The settlement back end a sentinel forwards to, as a trait, and its 2PC
//! implementation over gRPC.

use std::sync::Arc;
use std::time::Duration;

use cbdc_consensus::{ConsensusError, LeaderClient};
use cbdc_core::{Amount, CompactTransaction, ShardMap, TxId, UhsId};
use cbdc_proto::v1::coordinator_client::CoordinatorClient;
use cbdc_proto::v1::shard_query_client::ShardQueryClient;
use cbdc_proto::{status, v1, MAX_INTERNAL_MESSAGE_BYTES};
use futures::future::{try_join_all, BoxFuture};

use crate::params::{ParamsError, SentinelParams};

/// What the back end answered for a valid transaction: its final outcome, or (atomizer)
/// that it was accepted for ordering and is not final yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Settled: inputs spent, outputs created (atomizer: in the block at this height).
    Confirmed {
        /// The confirming block (atomizer only).
        block_height: Option<u64>,
    },
    /// Handed on for settlement; the final outcome comes later (ask
    /// [`Backend::await_final`] or the transaction's status).
    Pending,
    /// Refused because of the ledger's state; nothing of it was applied.
    Rejected {
        /// Why.
        reason: v1::RejectReason,
        /// The input at fault, when known.
        input_index: Option<u32>,
        /// The reason in words.
        message: String,
    },
}

impl Outcome {
    /// Confirmed, with no block height (2PC).
    pub const CONFIRMED: Outcome = Outcome::Confirmed { block_height: None };

    /// The wire result for transaction `id`.
    pub fn to_result(&self, id: &TxId) -> v1::TransactionResult {
        match self {
            Outcome::Confirmed { block_height } => {
                v1::TransactionResult::confirmed(id, *block_height)
            }
            Outcome::Pending => v1::TransactionResult::pending(id),
            Outcome::Rejected {
                reason,
                input_index,
                message,
            } => v1::TransactionResult::rejected(id, *reason, *input_index, message.clone()),
        }
    }

    /// Reads a back end's final answer (CONFIRMED or REJECTED with a known reason).
    pub fn from_result(result: &v1::TransactionResult) -> Result<Outcome, BackendError> {
        match status::tx_status("transaction_result.status", result.status) {
            Ok(v1::TxStatus::Confirmed) => Ok(Outcome::Confirmed {
                block_height: result.block_height,
            }),
            Ok(v1::TxStatus::Rejected) => {
                let reason =
                    status::reject_reason("transaction_result.reject_reason", result.reject_reason)
                        .map_err(|e| BackendError::Protocol(e.to_string()))?;
                Ok(Outcome::Rejected {
                    reason,
                    input_index: result.input_index,
                    message: result.message.clone(),
                })
            }
            Ok(other) => Err(BackendError::Protocol(format!(
                "back end answered {} for a batch, expected a final outcome",
                other.as_str_name()
            ))),
            Err(e) => Err(BackendError::Protocol(e.to_string())),
        }
    }
}

/// What the back end knows about a transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxState {
    /// Being settled.
    Pending,
    /// Settled with this outcome.
    Final(Outcome),
    /// Never seen, or no longer remembered.
    Unknown,
}

impl TxState {
    /// Reads a back end's status answer (PENDING, UNKNOWN or a final outcome).
    pub fn from_result(result: &v1::TransactionResult) -> Result<TxState, BackendError> {
        match status::tx_status("transaction_result.status", result.status) {
            Ok(v1::TxStatus::Pending) => Ok(TxState::Pending),
            Ok(v1::TxStatus::Unknown) => Ok(TxState::Unknown),
            _ => Outcome::from_result(result).map(TxState::Final),
        }
    }

    /// The wire result for transaction `id`.
    pub fn to_result(&self, id: &TxId) -> v1::TransactionResult {
        match self {
            TxState::Pending => v1::TransactionResult::pending(id),
            TxState::Final(outcome) => outcome.to_result(id),
            TxState::Unknown => v1::TransactionResult::unknown(id),
        }
    }
}

/// Whether an output can be spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// In the unspent set and free, with its value.
    Unspent(Amount),
    /// Unspent but locked by a transaction being settled.
    Locked(Amount),
    /// Spent, or never created.
    SpentOrAbsent,
}

impl OutputState {
    /// The wire entry for output `id`.
    pub fn to_entry(&self, id: &UhsId) -> v1::OutputStatusEntry {
        let (status, value) = match self {
            OutputState::Unspent(v) => (v1::OutputStatus::Unspent, Some(v.cents())),
            OutputState::Locked(v) => (v1::OutputStatus::Locked, Some(v.cents())),
            OutputState::SpentOrAbsent => (v1::OutputStatus::SpentOrAbsent, None),
        };
        let mut entry = v1::OutputStatusEntry {
            uhs_id: id.as_bytes().to_vec().into(),
            value,
            ..Default::default()
        };
        entry.set_status(status);
        entry
    }

    pub(crate) fn from_entry(entry: &v1::OutputStatusEntry) -> Result<OutputState, BackendError> {
        let s = status::output_status("output_status_entry.status", entry.status)
            .map_err(|e| BackendError::Protocol(e.to_string()))?;
        let value = || {
            entry
                .value
                .map(Amount::from_cents)
                .ok_or_else(|| BackendError::Protocol("output status without a value".into()))
        };
        Ok(match s {
            v1::OutputStatus::Unspent => OutputState::Unspent(value()?),
            v1::OutputStatus::Locked => OutputState::Locked(value()?),
            _ => OutputState::SpentOrAbsent,
        })
    }
}

/// Why the back end could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Unreachable, no leader, or no answer in time. The caller gets `UNAVAILABLE`; a
    /// transaction may still have settled, and submitting it again is safe.
    #[error("back end unavailable: {0}")]
    Unavailable(String),
    /// The back end answered something that does not make sense (wrong number of
    /// results, unknown enum values, an error status). The caller gets `INTERNAL`.
    #[error("back end protocol error: {0}")]
    Protocol(String),
}

impl BackendError {
    /// The gRPC status a client gets.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            BackendError::Unavailable(_) => tonic::Status::unavailable(self.to_string()),
            BackendError::Protocol(_) => tonic::Status::internal(self.to_string()),
        }
    }

    pub(crate) fn from_consensus(error: ConsensusError) -> BackendError {
        match error {
            ConsensusError::Status { code, message } if code != tonic::Code::Unavailable => {
                BackendError::Protocol(format!("{code:?}: {message}"))
            }
            ConsensusError::Codec(e) => BackendError::Protocol(e),
            other => BackendError::Unavailable(other.to_string()),
        }
    }
}

/// A settlement back end as the sentinel sees it. Object safe (boxed futures), so that a
/// sentinel holds an `Arc<dyn Backend>` and tests substitute an in-memory ledger.
///
/// Retries are safe: a back end answers a transaction it already settled with the
/// recorded outcome and never settles it twice (in 2PC the coordinator and the shard
/// owning the tx id keep that record).
pub trait Backend: Send + Sync + 'static {
    /// Settles a batch of validated, attested transactions; one outcome per transaction,
    /// in order.
    fn execute(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> BoxFuture<'_, Result<Vec<Outcome>, BackendError>>;

    /// What the back end knows about transaction `id`.
    fn tx_status(&self, id: TxId) -> BoxFuture<'_, Result<TxState, BackendError>>;

    /// The state of each output, in order.
    fn output_status(
        &self,
        ids: Vec<UhsId>,
    ) -> BoxFuture<'_, Result<Vec<OutputState>, BackendError>>;

    /// Waits up to `timeout` for transaction `id`, answered [`Outcome::Pending`] by
    /// [`Backend::execute`], to become final; what is known then. A back end whose
    /// answers are always final never gets this call; by default it asks the status once.
    fn await_final(
        &self,
        id: TxId,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<TxState, BackendError>> {
        let _ = timeout;
        self.tx_status(id)
    }

    /// The architecture `GetInfo` reports.
    fn architecture(&self) -> v1::Architecture {
        v1::Architecture::TwoPhaseCommit
    }
}

/// The two-phase-commit back end: coordinator groups for settlement, shard groups for
/// queries, each reached through a [`LeaderClient`] that follows the Raft leader.
///
/// Routing rule: transaction `id` goes to coordinator group
/// `ShardMap::even(coordinator groups).shard_for_tx(id)`, i.e. the first two bytes of the
/// tx id (big-endian) split into equal contiguous ranges, one per group. Status queries
/// go to the shard group that owns the tx id / UHS id in the cluster's [`ShardMap`].
pub struct TwoPhaseBackend {
    coordinators: Vec<Arc<LeaderClient>>,
    coordinator_map: ShardMap,
    shards: Vec<Arc<LeaderClient>>,
    shard_map: ShardMap,
}

impl TwoPhaseBackend {
    /// Clients for the groups named in `params` (no connection is made yet); each call
    /// gives up after `params.request_timeout`.
    pub fn new(params: &SentinelParams) -> Result<Self, ParamsError> {
        params.validate_topology()?;
        let clients = |groups: &[Vec<String>], timeout: Duration| {
            groups
                .iter()
                .map(|g| Arc::new(LeaderClient::new(g.clone()).with_timeout(timeout)))
                .collect::<Vec<_>>()
        };
        Ok(TwoPhaseBackend {
            coordinators: clients(&params.coordinator_groups[..], params.request_timeout),
            coordinator_map: ShardMap::even(params.coordinator_groups.len())
                .map_err(|_| ParamsError::Zero("coordinator_groups"))?,
            shards: clients(&params.shard_groups[..], params.request_timeout),
            shard_map: params.shard_map.clone(),
        })
    }

    /// The coordinator group that settles transaction `id`.
    pub fn coordinator_for(&self, id: &TxId) -> usize {
        self.coordinator_map.shard_for_tx(id)
    }

    async fn execute_group(
        client: Arc<LeaderClient>,
        txs: Vec<CompactTransaction>,
    ) -> Result<Vec<Outcome>, BackendError> {
        // Encoded once; a retry clones the buffer's handle, not the transactions.
        let request = v1::ExecuteBatchRequest::encoded(&txs);
        let response = client
            .call(|channel| {
                let request = request.clone();
                async move {
                    CoordinatorClient::new(channel)
                        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                        .execute_batch(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await
            .map_err(BackendError::from_consensus)?;
        if response.results.len() != txs.len() {
            return Err(BackendError::Protocol(format!(
                "coordinator answered {} results for {} transactions",
                response.results.len(),
                txs.len()
            )));
        }
        response.results.iter().map(Outcome::from_result).collect()
    }

    async fn output_group(
        client: Arc<LeaderClient>,
        ids: Vec<UhsId>,
    ) -> Result<Vec<OutputState>, BackendError> {
        let request = v1::ShardOutputStatusRequest {
            uhs_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
        };
        let response = query_shard(&client, request, |mut query, request| async move {
            query.get_output_status(request).await
        })
        .await?;
        if response.outputs.len() != ids.len() {
            return Err(BackendError::Protocol(format!(
                "shard answered {} output statuses for {} ids",
                response.outputs.len(),
                ids.len()
            )));
        }
        response
            .outputs
            .iter()
            .map(OutputState::from_entry)
            .collect()
    }
}

/// Makes one `ShardQuery` call (`rpc`, given a client with the internal message size
/// limits and a copy of `request`) on the shard group behind `client`.
pub(crate) async fn query_shard<Req, Resp, F, Fut>(
    client: &LeaderClient,
    request: Req,
    rpc: F,
) -> Result<Resp, BackendError>
where
    Req: Clone,
    F: Fn(ShardQueryClient<tonic::transport::Channel>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    client
        .call(|channel| {
            let query = ShardQueryClient::new(channel)
                .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES);
            let call = rpc(query, request.clone());
            async move { call.await.map(tonic::Response::into_inner) }
        })
        .await
        .map_err(BackendError::from_consensus)
}

/// Splits `items` into per-group lists by `group_of`, keeping each item's position so the
/// answers can be put back in order.
pub(crate) fn split_by_group<T>(
    items: Vec<T>,
    groups: usize,
    group_of: impl Fn(&T) -> usize,
) -> Vec<(usize, Vec<usize>, Vec<T>)> {
    let mut split: Vec<(Vec<usize>, Vec<T>)> = (0..groups).map(|_| Default::default()).collect();
    for (i, item) in items.into_iter().enumerate() {
        let g = group_of(&item);
        split[g].0.push(i);
        split[g].1.push(item);
    }
    split
        .into_iter()
        .enumerate()
        .filter(|(_, (positions, _))| !positions.is_empty())
        .map(|(g, (positions, items))| (g, positions, items))
        .collect()
}

/// Puts per-group answers back in the order of the original items.
pub(crate) fn merge_in_order<A: Clone>(
    total: usize,
    parts: Vec<(Vec<usize>, Vec<A>)>,
) -> Result<Vec<A>, BackendError> {
    let mut out: Vec<Option<A>> = vec![None; total];
    for (positions, answers) in parts {
        for (p, a) in positions.into_iter().zip(answers) {
            out[p] = Some(a);
        }
    }
    out.into_iter()
        .map(|a| a.ok_or_else(|| BackendError::Protocol("missing answer".into())))
        .collect()
}

impl Backend for TwoPhaseBackend {
    fn execute(
        &self,
        txs: Vec<CompactTransaction>,
    ) -> BoxFuture<'_, Result<Vec<Outcome>, BackendError>> {
        Box::pin(async move {
            let total = txs.len();
            let parts = split_by_group(txs, self.coordinators.len(), |tx| {
                self.coordinator_for(&tx.id)
            });
            let calls = parts.into_iter().map(|(g, positions, txs)| {
                let client = self.coordinators[g].clone();
                async move {
                    Self::execute_group(client, txs)
                        .await
                        .map(|outcomes| (positions, outcomes))
                }
            });
            merge_in_order(total, try_join_all(calls).await?)
        })
    }

    fn tx_status(&self, id: TxId) -> BoxFuture<'_, Result<TxState, BackendError>> {
        Box::pin(async move {
            let client = &self.shards[self.shard_map.shard_for_tx(&id)];
            let request = v1::ShardTransactionStatusRequest {
                tx_ids: vec![id.as_bytes().to_vec().into()],
            };
            let response = query_shard(client, request, |mut query, request| async move {
                query.get_transaction_status(request).await
            })
            .await?;
            let [result] = response.results.as_slice() else {
                return Err(BackendError::Protocol(format!(
                    "shard answered {} statuses for one id",
                    response.results.len()
                )));
            };
            TxState::from_result(result)
        })
    }

    fn output_status(
        &self,
        ids: Vec<UhsId>,
    ) -> BoxFuture<'_, Result<Vec<OutputState>, BackendError>> {
        Box::pin(async move {
            let total = ids.len();
            let parts = split_by_group(ids, self.shards.len(), |id| self.shard_map.shard_for(id));
            let calls = parts.into_iter().map(|(g, positions, ids)| {
                let client = self.shards[g].clone();
                async move {
                    Self::output_group(client, ids)
                        .await
                        .map(|states| (positions, states))
                }
            });
            merge_in_order(total, try_join_all(calls).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_split_and_merge_keep_order() {
        let items = vec![5usize, 2, 7, 4, 1];
        let parts = split_by_group(items.clone(), 3, |x| x % 3);
        let answers = parts
            .into_iter()
            .map(|(_, positions, items)| (positions, items.iter().map(|x| x * 10).collect()))
            .collect();
        let merged = merge_in_order(items.len(), answers).unwrap();
        assert_eq!(merged, vec![50, 20, 70, 40, 10]);
    }

    #[test]
    fn test_outcome_round_trips_through_result() {
        let id = TxId::from([3; 32]);
        let rejected = Outcome::Rejected {
            reason: v1::RejectReason::InputsSpent,
            input_index: Some(1),
            message: "spent".into(),
        };
        for outcome in [Outcome::CONFIRMED, rejected] {
            assert_eq!(Outcome::from_result(&outcome.to_result(&id)), Ok(outcome));
        }
        assert!(Outcome::from_result(&v1::TransactionResult::pending(&id)).is_err());
    }
}
