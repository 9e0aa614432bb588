//! The `cbdc.v1.Atomizer` gRPC service of one atomizer replica.
//!
//! Notify and SubmitMints go to the leader's [`crate::sequencer`] (a follower answers
//! UNAVAILABLE with the leader's address, which `LeaderClient` follows). Attestations are
//! checked here, off the async runtime, before anything is gathered: the atomizer must
//! refuse what no sentinel vouched for even if a shard was compromised. Blocks are served
//! by every replica from its replicated state.

use std::pin::Pin;
use std::sync::Arc;

use cbdc_consensus::{to_status, ReplicaHandle};
use cbdc_core::{AttestationVerifier, CompactTransaction};
use cbdc_proto::convert::{compact_transactions, Notification, MAX_BATCH_TRANSACTIONS};
use cbdc_proto::v1::atomizer_server::{Atomizer, AtomizerServer};
use cbdc_proto::{v1, MAX_INTERNAL_MESSAGE_BYTES};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::machine::{AtomizerMachine, Command, Response as MachineResponse};
use crate::sequencer::SequencerClient;

/// Blocks buffered per subscriber before the stream waits for the reader.
const SUBSCRIBER_BUFFER: usize = 16;

/// The atomizer's gRPC service.
pub struct AtomizerService {
    sequencer: SequencerClient,
    verifier: Arc<AttestationVerifier>,
}

impl AtomizerService {
    /// The service over `sequencer`'s replica, checking attestations with `verifier`.
    pub fn new(sequencer: SequencerClient, verifier: Arc<AttestationVerifier>) -> Self {
        AtomizerService {
            sequencer,
            verifier,
        }
    }

    /// As a tonic service with the internal message size limits.
    pub fn into_server(self) -> AtomizerServer<Self> {
        AtomizerServer::new(self)
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }

    fn handle(&self) -> &ReplicaHandle<AtomizerMachine> {
        self.sequencer.handle()
    }

    /// Checks the attestations of every item's transaction (`tx_of`) on the blocking
    /// pool and hands the items back (moved there and back, not copied); the first
    /// failure refuses the whole request.
    async fn verify_all<T: Send + 'static>(
        &self,
        items: Vec<T>,
        tx_of: fn(&T) -> &CompactTransaction,
    ) -> Result<Vec<T>, Status> {
        let verifier = self.verifier.clone();
        tokio::task::spawn_blocking(move || {
            for (i, tx) in items.iter().map(tx_of).enumerate() {
                verifier.verify(tx).map_err(|e| {
                    Status::invalid_argument(format!("transaction {i} ({}): {e}", tx.id))
                })?;
            }
            Ok(items)
        })
        .await
        .map_err(|e| Status::internal(format!("attestation check failed: {e}")))?
    }
}

type BlockStream = Pin<Box<dyn Stream<Item = Result<v1::Block, Status>> + Send>>;

#[tonic::async_trait]
impl Atomizer for AtomizerService {
    async fn notify(
        &self,
        request: Request<v1::NotifyRequest>,
    ) -> Result<Response<v1::NotifyResponse>, Status> {
        let wire = &request.get_ref().notifications;
        if wire.len() > MAX_BATCH_TRANSACTIONS {
            return Err(Status::invalid_argument(format!(
                "{} notifications, at most {MAX_BATCH_TRANSACTIONS} per request",
                wire.len()
            )));
        }
        let notifications = wire
            .iter()
            .map(Notification::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some((i, _)) = notifications
            .iter()
            .enumerate()
            .find(|(_, n)| n.transaction.inputs.is_empty())
        {
            return Err(Status::invalid_argument(format!(
                "notification {i} is for a transaction without inputs; mints go to SubmitMints"
            )));
        }
        let notifications = self.verify_all(notifications, |n| &n.transaction).await?;
        self.sequencer
            .notify(notifications)
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(v1::NotifyResponse {}))
    }

    async fn submit_mints(
        &self,
        request: Request<v1::SubmitMintsRequest>,
    ) -> Result<Response<v1::SubmitMintsResponse>, Status> {
        let mints = compact_transactions("submit_mints_request.mints", &request.get_ref().mints)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some((i, _)) = mints
            .iter()
            .enumerate()
            .find(|(_, tx)| !tx.inputs.is_empty())
        {
            return Err(Status::invalid_argument(format!(
                "mint {i} has inputs; transfers go through the shards"
            )));
        }
        let mints = self.verify_all(mints, |tx| tx).await?;
        self.sequencer.mint(mints).map_err(|e| to_status(&e))?;
        Ok(Response::new(v1::SubmitMintsResponse {}))
    }

    type SubscribeBlocksStream = BlockStream;

    /// Streams held blocks from `from_height`, then each new one as it is written. A
    /// height below the lowest one held is OUT_OF_RANGE (read it from the archiver).
    async fn subscribe_blocks(
        &self,
        request: Request<v1::SubscribeBlocksRequest>,
    ) -> Result<Response<Self::SubscribeBlocksStream>, Status> {
        let mut next = request.get_ref().from_height.max(1);
        let handle = self.handle().clone();
        let (mut heights, first_held) = handle
            .read(|m| (m.subscribe_heights(), m.first_held()))
            .map_err(|e| to_status(&e))?;
        if next < first_held {
            return Err(pruned(next, first_held));
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        tokio::spawn(async move {
            loop {
                let height = *heights.borrow_and_update();
                while next <= height {
                    let block = match handle.read(|m| (m.block(next), m.first_held())) {
                        Ok((Ok(Some(block)), _)) => Ok(block.to_wire()),
                        Ok((Ok(None), first_held)) => Err(pruned(next, first_held)),
                        Ok((Err(e), _)) | Err(e) => Err(to_status(&e)),
                    };
                    let failed = block.is_err();
                    if tx.send(block).await.is_err() || failed {
                        return;
                    }
                    next += 1;
                }
                tokio::select! {
                    changed = heights.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// Leader only, so that a shard catching up aims at the newest height.
    async fn get_height(
        &self,
        _request: Request<v1::GetHeightRequest>,
    ) -> Result<Response<v1::GetHeightResponse>, Status> {
        let handle = self.handle();
        handle
            .ensure_linearizable()
            .await
            .map_err(|e| to_status(&e))?;
        let (height, first_held) = handle
            .read(|m| (m.height(), m.first_held()))
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(v1::GetHeightResponse { height, first_held }))
    }

    async fn prune(
        &self,
        request: Request<v1::PruneRequest>,
    ) -> Result<Response<v1::PruneResponse>, Status> {
        let below = request.get_ref().below;
        match self.handle().write(Command::Prune { below }).await {
            Ok(MachineResponse::Pruned { first_held }) => {
                Ok(Response::new(v1::PruneResponse { first_held }))
            }
            Ok(other) => Err(Status::internal(format!(
                "unexpected answer to a prune: {other:?}"
            ))),
            Err(e) => Err(to_status(&e)),
        }
    }
}

fn pruned(height: u64, first_held: u64) -> Status {
    Status::out_of_range(format!(
        "block {height} is no longer held here (lowest held: {first_held}); read it from the archiver"
    ))
}
