//! [`AtomizerShardService`]: `cbdc.v1.AtomizerShard`, where sentinels hand an
//! atomizer-mode shard the transactions that spend its outputs.

use std::sync::Arc;

use cbdc_proto::convert::compact_transactions;
use cbdc_proto::v1::atomizer_shard_server::{AtomizerShard, AtomizerShardServer};
use cbdc_proto::v1::{ShardSubmitRequest, ShardSubmitResponse};
use cbdc_proto::MAX_INTERNAL_MESSAGE_BYTES;
use tonic::{Request, Response, Status};

use super::error::AtomizerShardError;
use super::recheck::{EntryState, Inserted};
use super::shared::Shared;

/// Serves `AtomizerShard.SubmitTransactions` for one atomizer-mode shard.
///
/// For each transaction of a request: if none of its inputs is in this shard's range it
/// is ignored; if its attestations do not pass it is dropped and logged (the others of
/// the request still go ahead, so one bad transaction cannot make a sentinel resend a
/// whole batch; it is not reported either: anyone could have sent it, and a report would
/// let them mark someone else's pending transaction rejected); otherwise
/// its owned inputs are read, with those of every other transaction of the request, from
/// one snapshot at one height `h`. A transaction whose owned inputs are all unspent is
/// notified to the atomizer as `Notify { tx, owned positions, h }`, all of the request's
/// in one call, and the sentinel is answered only once the atomizer accepted them (an
/// error there is `UNAVAILABLE`: resend; notifying twice is harmless). A transaction with
/// an owned input missing goes on the recheck list (see [`super::recheck`]).
///
/// Idempotent: a resent request notifies again (harmless) and lists nothing twice.
pub struct AtomizerShardService {
    shared: Arc<Shared>,
}

impl AtomizerShardService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        AtomizerShardService { shared }
    }

    /// As a tonic service, with the internal message size limit.
    pub fn into_server(self) -> AtomizerShardServer<Self> {
        AtomizerShardServer::new(self)
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }

    async fn submit(&self, request: &ShardSubmitRequest) -> Result<(), AtomizerShardError> {
        // Refuse before decoding or verifying anything: a shard that is behind or
        // diverged must not attest, and the sentinel should try another shard now.
        self.shared.admit()?;
        let txs = compact_transactions("shard_submit_request.transactions", &request.transactions)?;
        let owned = self.shared.attested_owned(txs).await?;
        let (notifications, missing) = self.shared.check(owned).await?;

        let mut overflow = Vec::new();
        {
            let mut list = self.shared.rechecks();
            for entry in missing {
                if let Inserted::Full(entry) = list.insert(entry) {
                    overflow.push(entry);
                }
            }
        }

        self.shared.notify(&notifications).await?;
        if !notifications.is_empty() {
            // A resubmitted transaction may have waited on the list: it is notified now.
            self.shared
                .rechecks()
                .remove(notifications.iter().map(|n| &n.transaction.id));
        }

        if !overflow.is_empty() {
            let height = self.shared.height();
            let rejections: Vec<_> = overflow
                .iter()
                .filter_map(|e| match e.state {
                    EntryState::Missing { index, .. } => Some(e.rejection(index, height)),
                    EntryState::Found { .. } => None,
                })
                .collect();
            tracing::warn!(
                count = rejections.len(),
                "recheck list full: reporting missing inputs without a grace period"
            );
            self.shared.report(&rejections).await?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl AtomizerShard for AtomizerShardService {
    async fn submit_transactions(
        &self,
        request: Request<ShardSubmitRequest>,
    ) -> Result<Response<ShardSubmitResponse>, Status> {
        self.submit(request.get_ref())
            .await
            .map(|()| Response::new(ShardSubmitResponse {}))
            .map_err(|e| e.to_status())
    }
}
