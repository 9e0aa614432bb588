//! [`ShardQueryService`]: `cbdc.v1.ShardQuery` for a locking shard, answered from the
//! replica's applied state without writing to Raft.
//!
//! Output and transaction status are what clients see through the sentinel, so only the
//! leader answers them (a follower answers UNAVAILABLE with the leader's address, which
//! `LeaderClient` follows): the leader applied every Apply it acknowledged, while a
//! lagging follower could show a client told CONFIRMED its spent input as still locked.
//! `Audit` is answered by every replica from its own state, so that operators can
//! compare replicas.

use std::fmt::Display;

use cbdc_consensus::{to_status, ReplicaHandle};
use cbdc_core::{ShardRange, TxId, UhsId};
use cbdc_proto::v1::shard_query_server::{ShardQuery, ShardQueryServer};
use cbdc_proto::v1::{
    AuditRequest, AuditResponse, GetOutputStatusResponse, ShardOutputStatusRequest,
    ShardTransactionStatusRequest, ShardTransactionStatusResponse,
};
use cbdc_proto::MAX_INTERNAL_MESSAGE_BYTES;
use tonic::{Request, Response, Status};

use super::error::LockingError;
use super::machine::LockingShardMachine;
use super::wire::{output_status_entry, transaction_result};

/// Serves `ShardQuery` for one replica of a locking shard group.
pub struct ShardQueryService {
    handle: ReplicaHandle<LockingShardMachine>,
}

impl ShardQueryService {
    /// The service over `handle`.
    pub fn new(handle: ReplicaHandle<LockingShardMachine>) -> Self {
        ShardQueryService { handle }
    }

    /// As a tonic service, with the internal message size limit.
    pub fn into_server(self) -> ShardQueryServer<Self> {
        ShardQueryServer::new(self)
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }

    /// Refuses on a follower, naming the leader.
    fn leader_only(&self) -> Result<(), Status> {
        self.handle.require_leader().map_err(|e| to_status(&e))
    }

    /// Runs `f` on the local state machine.
    fn read<T>(
        &self,
        f: impl FnOnce(&LockingShardMachine) -> Result<T, LockingError>,
    ) -> Result<T, Status> {
        self.handle
            .read(f)
            .map_err(|e| to_status(&e))?
            .map_err(|e| {
                tracing::error!(error = %e, "shard query failed");
                Status::internal(e.to_string())
            })
    }
}

/// `INVALID_ARGUMENT` for the first id outside `range` (a caller that routed wrongly
/// must hear it, not read "absent").
fn check_range<T: Display>(
    field: &str,
    range: ShardRange,
    ids: &[T],
    prefix: impl Fn(&T) -> u16,
) -> Result<(), Status> {
    match ids.iter().position(|id| !range.contains(prefix(id))) {
        None => Ok(()),
        Some(i) => Err(Status::invalid_argument(format!(
            "{field}[{i}]: {} is outside this shard's range {}..={}",
            ids[i], range.start, range.end
        ))),
    }
}

#[tonic::async_trait]
impl ShardQuery for ShardQueryService {
    async fn get_output_status(
        &self,
        request: Request<ShardOutputStatusRequest>,
    ) -> Result<Response<GetOutputStatusResponse>, Status> {
        let ids = request.get_ref().to_uhs_ids().map_err(|e| e.to_status())?;
        self.leader_only()?;
        let range = self.read(|sm| Ok(sm.range()))?;
        check_range(
            "shard_output_status_request.uhs_ids",
            range,
            &ids,
            UhsId::prefix,
        )?;
        let statuses = self.read(|sm| sm.output_statuses(&ids))?;
        let outputs = ids
            .iter()
            .zip(&statuses)
            .map(|(id, status)| output_status_entry(id, status))
            .collect();
        Ok(Response::new(GetOutputStatusResponse { outputs }))
    }

    async fn get_transaction_status(
        &self,
        request: Request<ShardTransactionStatusRequest>,
    ) -> Result<Response<ShardTransactionStatusResponse>, Status> {
        let ids = request.get_ref().to_tx_ids().map_err(|e| e.to_status())?;
        self.leader_only()?;
        let range = self.read(|sm| Ok(sm.range()))?;
        // Transactions are routed like UHS ids with the same bytes.
        check_range(
            "shard_transaction_status_request.tx_ids",
            range,
            &ids,
            |id: &TxId| UhsId(id.0).prefix(),
        )?;
        let outcomes = self.read(|sm| sm.tx_outcomes(&ids))?;
        let results = ids
            .iter()
            .zip(outcomes)
            .map(|(id, outcome)| transaction_result(id, outcome))
            .collect();
        Ok(Response::new(ShardTransactionStatusResponse { results }))
    }

    async fn audit(
        &self,
        _request: Request<AuditRequest>,
    ) -> Result<Response<AuditResponse>, Status> {
        let supply = self.read(|sm| sm.supply())?;
        Ok(Response::new(AuditResponse {
            output_count: supply.count,
            total_value: supply.total.cents(),
            block_height: None,
        }))
    }
}
