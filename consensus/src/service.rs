//! The generic client-facing service `cbdc.raft.v1.GroupClient` over a [`ReplicaHandle`],
//! and the read-only `cbdc.raft.v1.ReplicaStatus` every replicated role serves.
//!
//! Commands and responses travel bincode-encoded (`Vec<S::Command>` / `Vec<S::Response>`).
//! A malformed batch is refused with `INVALID_ARGUMENT` before it reaches the log.

use cbdc_proto::raft::group_client_server::{GroupClient, GroupClientServer};
use cbdc_proto::raft::replica_status_server::{ReplicaStatus, ReplicaStatusServer};
use cbdc_proto::raft::{StatusReply, StatusRequest, WriteReply, WriteRequest};
use tonic::{Request, Response, Status};

use crate::client::to_status;
use crate::error::{decode, encode};
use crate::network::MAX_MESSAGE_SIZE;
use crate::replica::ReplicaHandle;
use crate::state_machine::StateMachine;

/// Serves `GroupClient` for one replica.
pub struct GroupClientService<S: StateMachine> {
    handle: ReplicaHandle<S>,
}

impl<S: StateMachine> GroupClientService<S> {
    /// The service over `handle`.
    pub fn new(handle: ReplicaHandle<S>) -> Self {
        Self { handle }
    }

    /// As a tonic service, with the message size limit raised.
    pub fn into_server(self) -> GroupClientServer<Self> {
        GroupClientServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

#[tonic::async_trait]
impl<S: StateMachine> GroupClient for GroupClientService<S> {
    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        let commands: Vec<S::Command> = decode(&request.into_inner().commands)
            .map_err(|e| Status::invalid_argument(format!("malformed command batch: {e}")))?;
        if commands.is_empty() {
            return Err(Status::invalid_argument("empty command batch"));
        }
        let (responses, log_index) = self
            .handle
            .write_batch_at(commands)
            .await
            .map_err(|e| to_status(&e))?;
        let responses = encode(&responses).map_err(|e| to_status(&e))?;
        Ok(Response::new(WriteReply {
            responses: responses.into(),
            log_index,
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(status_reply(&self.handle)))
    }
}

fn status_reply<S: StateMachine>(handle: &ReplicaHandle<S>) -> StatusReply {
    let m = handle.metrics();
    let leader_addr = handle
        .leader()
        .map(|(_, n)| n.client_addr)
        .unwrap_or_default();
    StatusReply {
        id: handle.id(),
        leader_id: m.current_leader,
        leader_addr,
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        state: format!("{:?}", m.state),
    }
}

/// Serves the read-only `ReplicaStatus` for one replica (safe next to any role's service).
pub struct ReplicaStatusService<S: StateMachine> {
    handle: ReplicaHandle<S>,
}

impl<S: StateMachine> ReplicaStatusService<S> {
    /// The service over `handle`.
    pub fn new(handle: ReplicaHandle<S>) -> Self {
        Self { handle }
    }

    /// As a tonic service.
    pub fn into_server(self) -> ReplicaStatusServer<Self> {
        ReplicaStatusServer::new(self)
    }
}

#[tonic::async_trait]
impl<S: StateMachine> ReplicaStatus for ReplicaStatusService<S> {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(status_reply(&self.handle)))
    }
}
