//! [`LockingShardService`]: `cbdc.v1.LockingShard` over one replica of a locking shard
//! group. It decodes a request, checks the attestations, writes one command through the
//! group's Raft log and ships the machine's answer; every decision is the machine's.

use std::sync::Arc;

use cbdc_consensus::{to_status, ReplicaHandle};
use cbdc_core::{AttestationVerifier, CompactTransaction};
use cbdc_proto::v1::locking_shard_server::{LockingShard, LockingShardServer};
use cbdc_proto::v1::{
    self, ApplyRequest, ApplyResponse, DiscardRequest, DiscardResponse, LockRequest, LockResponse,
};
use cbdc_proto::{ProtoError, MAX_INTERNAL_MESSAGE_BYTES};
use tonic::{Request, Response, Status};

use super::command::{LockSlot, ShardCommand, ShardResponse};
use super::machine::LockingShardMachine;
use super::outcome::RejectCode;
use super::wire::refusal_status;

/// Serves `LockingShard` for one replica; only the group's leader accepts writes (a
/// follower answers `UNAVAILABLE` with the leader's endpoint, see
/// [`cbdc_consensus::to_status`]).
pub struct LockingShardService {
    handle: ReplicaHandle<LockingShardMachine>,
    verifier: Arc<AttestationVerifier>,
}

impl LockingShardService {
    /// The service over `handle`, checking attestations with `verifier` (the cluster's
    /// sentinel keys and threshold).
    pub fn new(
        handle: ReplicaHandle<LockingShardMachine>,
        verifier: Arc<AttestationVerifier>,
    ) -> Self {
        LockingShardService { handle, verifier }
    }

    /// As a tonic service, with the internal message size limit.
    pub fn into_server(self) -> LockingShardServer<Self> {
        LockingShardServer::new(self)
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }

    async fn write(&self, command: ShardCommand) -> Result<ShardResponse, Status> {
        self.handle.write(command).await.map_err(|e| to_status(&e))
    }

    /// The lock slots of `txs`: each one whose attestations pass, stripped of them (the
    /// log need not carry what the leader checked); each one that fails, refused with
    /// `ATTESTATION` in its place, so that the others still settle and the positions
    /// still match the coordinator's. The checks are CPU work (hashing, and a signature
    /// per new root): long slices go off the async runtime.
    async fn attested_slots(&self, txs: Vec<CompactTransaction>) -> Result<Vec<LockSlot>, Status> {
        if txs.len() < BLOCKING_CHECK_FROM {
            return Ok(attested_slots(&self.verifier, txs));
        }
        let verifier = self.verifier.clone();
        tokio::task::spawn_blocking(move || attested_slots(&verifier, txs))
            .await
            .map_err(|e| Status::internal(format!("attestation check failed: {e}")))
    }
}

/// Slices at least this long have their attestations checked on the blocking pool.
/// Shorter ones (a few microseconds of hashing per transaction, well under a millisecond
/// in all, plus a signature per root not seen before) are checked in place, sparing two
/// thread switches, as the coordinator does.
const BLOCKING_CHECK_FROM: usize = 64;

/// See [`LockingShardService::attested_slots`].
fn attested_slots(verifier: &AttestationVerifier, txs: Vec<CompactTransaction>) -> Vec<LockSlot> {
    let checks = verifier.verify_all(&txs);
    txs.into_iter()
        .zip(checks)
        .map(|(mut tx, check)| match check {
            Ok(()) => {
                tx.attestations.clear();
                LockSlot::Check(tx)
            }
            Err(e) => {
                tracing::debug!(tx = %tx.id, error = %e, "attestation refused");
                LockSlot::Refused {
                    id: tx.id,
                    reason: RejectCode::Attestation,
                }
            }
        })
        .collect()
}

/// The answer to a response of the wrong kind (the machine answers each command with its
/// own kind, so this is a bug).
fn unexpected(response: &ShardResponse) -> Status {
    tracing::error!(
        ?response,
        "locking shard answered with the wrong response kind"
    );
    Status::internal("the state machine answered with the wrong response kind")
}

#[tonic::async_trait]
impl LockingShard for LockingShardService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let (dtx, txs) = request.get_ref().to_parts().map_err(|e| e.to_status())?;
        let slots = self.attested_slots(txs).await?;
        let command = ShardCommand::Lock {
            dtx: dtx.into(),
            txs: slots,
        };
        match self.write(command).await? {
            ShardResponse::Locked { results, .. } => Ok(Response::new(LockResponse {
                results: results.iter().map(Into::into).collect(),
            })),
            ShardResponse::Refused(refusal) => Err(refusal_status(&refusal)),
            other => Err(unexpected(&other)),
        }
    }

    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let request = request.into_inner();
        let dtx = request.to_dtx_id().map_err(|e| e.to_status())?;
        let reasons = request
            .reasons
            .iter()
            .enumerate()
            .map(|(i, &value)| {
                v1::RejectReason::try_from(value)
                    .map(RejectCode::from_wire)
                    .map_err(|_| {
                        ProtoError::InvalidEnum {
                            field: "reject_reason",
                            value,
                        }
                        .in_element("apply_request.reasons", i)
                        .to_status()
                    })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let command = ShardCommand::Apply {
            dtx: dtx.into(),
            commit: request.commit,
            reasons,
        };
        match self.write(command).await? {
            ShardResponse::Applied(_) => Ok(Response::new(ApplyResponse {})),
            ShardResponse::Refused(refusal) => Err(refusal_status(&refusal)),
            other => Err(unexpected(&other)),
        }
    }

    async fn discard(
        &self,
        request: Request<DiscardRequest>,
    ) -> Result<Response<DiscardResponse>, Status> {
        let dtx = request.get_ref().to_dtx_id().map_err(|e| e.to_status())?;
        match self
            .write(ShardCommand::Discard { dtx: dtx.into() })
            .await?
        {
            ShardResponse::Discarded(_) => Ok(Response::new(DiscardResponse {})),
            ShardResponse::Refused(refusal) => Err(refusal_status(&refusal)),
            other => Err(unexpected(&other)),
        }
    }
}
