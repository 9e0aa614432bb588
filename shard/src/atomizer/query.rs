//! [`AtomizerShardQueryService`]: `cbdc.v1.ShardQuery` for an atomizer-mode shard, read
//! from the store at its current height (every answer names that height).

use std::sync::Arc;

use cbdc_core::UhsId;
use cbdc_proto::v1::shard_query_server::{ShardQuery, ShardQueryServer};
use cbdc_proto::v1::{
    self, AuditRequest, AuditResponse, GetOutputStatusResponse, ShardOutputStatusRequest,
    ShardTransactionStatusRequest, ShardTransactionStatusResponse,
};
use cbdc_proto::MAX_INTERNAL_MESSAGE_BYTES;
use tonic::{Request, Response, Status};

use super::error::AtomizerShardError;
use super::shared::Shared;
use crate::columns::{META_HEIGHT, META_SUPPLY};
use crate::error::StoreError;
use crate::store::UhsStore;
use crate::supply::{decode_height, Supply};

/// Serves `ShardQuery` for one atomizer-mode shard.
///
/// - `GetOutputStatus`: `UNSPENT` with the value, or `SPENT_OR_ABSENT`, each with the
///   block height the answer holds at (all read from one snapshot);
/// - `Audit`: count and total value of the unspent outputs and the height they hold at
///   (the store's counters, read from one snapshot with the height);
/// - `GetTransactionStatus`: `UNIMPLEMENTED`: an atomizer-mode shard keeps no outcomes,
///   the watchtower answers transaction status in atomizer mode.
///
/// A shard that stopped applying blocks (unhealthy) answers `UNAVAILABLE`: its unspent
/// set may be wrong, and another shard owning the range can answer instead. A shard
/// still catching up answers, truthfully, at its own height.
pub struct AtomizerShardQueryService {
    shared: Arc<Shared>,
}

impl AtomizerShardQueryService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        AtomizerShardQueryService { shared }
    }

    /// As a tonic service, with the internal message size limit.
    pub fn into_server(self) -> ShardQueryServer<Self> {
        ShardQueryServer::new(self)
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }

    async fn output_status(
        &self,
        request: &ShardOutputStatusRequest,
    ) -> Result<Vec<v1::OutputStatusEntry>, AtomizerShardError> {
        self.shared.healthy()?;
        let ids = request.to_uhs_ids()?;
        let range = self.shared.range;
        if let Some(index) = ids.iter().position(|id| !range.owns(id)) {
            return Err(AtomizerShardError::OutsideRange {
                field: "shard_output_status_request.uhs_ids",
                index,
                id: ids[index],
                start: range.start,
                end: range.end,
            });
        }
        let store = self.shared.store.clone();
        let (height, values) = tokio::task::spawn_blocking(move || {
            let (height, values) = store.check_inputs(&ids)?;
            Ok::<_, StoreError>((height, ids.into_iter().zip(values).collect::<Vec<_>>()))
        })
        .await
        .map_err(|e| AtomizerShardError::task("output status read", e))??;
        Ok(values
            .iter()
            .map(|(id, value)| output_status_entry(id, value.map(|v| v.cents()), height))
            .collect())
    }

    async fn audit_at_height(&self) -> Result<(Supply, u64), AtomizerShardError> {
        self.shared.healthy()?;
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || supply_and_height(&store))
            .await
            .map_err(|e| AtomizerShardError::task("audit read", e))?
            .map_err(Into::into)
    }
}

/// The wire entry of `id`: unspent with `value` or spent-or-absent, at `height`.
fn output_status_entry(id: &UhsId, value: Option<u64>, height: u64) -> v1::OutputStatusEntry {
    let mut entry = v1::OutputStatusEntry {
        uhs_id: id.as_bytes().to_vec().into(),
        value,
        block_height: Some(height),
        ..Default::default()
    };
    entry.set_status(match value {
        Some(_) => v1::OutputStatus::Unspent,
        None => v1::OutputStatus::SpentOrAbsent,
    });
    entry
}

/// The supply counters and the height, read from one snapshot (a block changes both in
/// one write batch, so they always agree).
fn supply_and_height(store: &UhsStore) -> Result<(Supply, u64), StoreError> {
    let snapshot = store.db().snapshot();
    let meta = store.cf_meta()?;
    let supply = match snapshot.get_pinned_cf(meta, META_SUPPLY)? {
        Some(bytes) => Supply::from_bytes(&bytes)?,
        None => Supply::default(),
    };
    let height = match snapshot.get_pinned_cf(meta, META_HEIGHT)? {
        Some(bytes) => decode_height(&bytes)?,
        None => 0,
    };
    Ok((supply, height))
}

#[tonic::async_trait]
impl ShardQuery for AtomizerShardQueryService {
    async fn get_output_status(
        &self,
        request: Request<ShardOutputStatusRequest>,
    ) -> Result<Response<GetOutputStatusResponse>, Status> {
        self.output_status(request.get_ref())
            .await
            .map(|outputs| Response::new(GetOutputStatusResponse { outputs }))
            .map_err(|e| e.to_status())
    }

    async fn get_transaction_status(
        &self,
        _request: Request<ShardTransactionStatusRequest>,
    ) -> Result<Response<ShardTransactionStatusResponse>, Status> {
        Err(Status::unimplemented(
            "an atomizer-mode shard keeps no transaction outcomes: in atomizer mode the \
             watchtower answers transaction status (cbdc.v1.Watchtower/GetTransactionStatus)",
        ))
    }

    async fn audit(
        &self,
        _request: Request<AuditRequest>,
    ) -> Result<Response<AuditResponse>, Status> {
        let (supply, height) = self.audit_at_height().await.map_err(|e| e.to_status())?;
        Ok(Response::new(AuditResponse {
            output_count: supply.count,
            total_value: supply.total.cents(),
            block_height: Some(height),
        }))
    }
}
