//! The `cbdc.v1.Coordinator` gRPC service: decode, hand to the driver, answer.

use std::sync::Arc;

use cbdc_proto::v1::coordinator_server::{Coordinator as CoordinatorRpc, CoordinatorServer};
use cbdc_proto::v1::{ExecuteBatchRequest, ExecuteBatchResponse};
use cbdc_proto::MAX_INTERNAL_MESSAGE_BYTES;
use tonic::{Request, Response, Status};

use crate::driver::Inner;

/// Serves `ExecuteBatch` for one replica's [`crate::Coordinator`]. A malformed request is
/// refused with INVALID_ARGUMENT before anything is queued; on a follower the answer is
/// UNAVAILABLE with the leader's endpoint in metadata.
pub struct CoordinatorService {
    inner: Arc<Inner>,
}

impl CoordinatorService {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// As a tonic service, accepting and sending messages up to
    /// [`MAX_INTERNAL_MESSAGE_BYTES`].
    pub fn into_server(self) -> CoordinatorServer<Self> {
        CoordinatorServer::new(self)
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl CoordinatorRpc for CoordinatorService {
    async fn execute_batch(
        &self,
        request: Request<ExecuteBatchRequest>,
    ) -> Result<Response<ExecuteBatchResponse>, Status> {
        let txs = request
            .get_ref()
            .to_transactions()
            .map_err(|e| e.to_status())?;
        drop(request);
        let results = self.inner.execute(txs).await.map_err(|e| e.to_status())?;
        Ok(Response::new(ExecuteBatchResponse { results }))
    }
}
