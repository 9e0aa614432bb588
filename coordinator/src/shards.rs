//! How the coordinator reaches the locking shard groups.
//!
//! The driver talks to shards only through [`ShardGroups`], one call per shard group and
//! phase, so that it can be tested against in-memory shards (including ones that are
//! down for a while) and run against real groups with [`GrpcShardGroups`]. Each method is
//! one attempt; the driver retries retryable failures with backoff, because a dtx's locks
//! must always be resolved.

use std::time::Duration;

use async_trait::async_trait;
use cbdc_consensus::{ConsensusError, LeaderClient};
use cbdc_core::{CompactTransaction, ShardMap};
use cbdc_proto::v1::locking_shard_client::LockingShardClient;
use cbdc_proto::v1::{self, DtxId, RejectReason};
use cbdc_proto::MAX_INTERNAL_MESSAGE_BYTES;
use tonic::transport::Channel;

/// One shard's answer to `Lock` for one transaction (the core form of `v1::LockResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockVote {
    /// Every owned input is locked for this dtx, and the owned outputs and mint id are free.
    pub locked: bool,
    /// The shard owns the tx id and recorded it committed by an earlier dtx.
    pub committed_before: bool,
    /// Why not, when `locked` is false.
    pub reason: RejectReason,
    /// The input at fault, when the shard names one.
    pub input_index: Option<u32>,
}

impl LockVote {
    /// A yes.
    pub fn locked() -> Self {
        Self {
            locked: true,
            committed_before: false,
            reason: RejectReason::Unspecified,
            input_index: None,
        }
    }

    /// A no, for `reason`.
    pub fn refused(reason: RejectReason, input_index: Option<u32>) -> Self {
        Self {
            locked: false,
            committed_before: false,
            reason,
            input_index,
        }
    }

    /// "Already committed by an earlier dtx; nothing locked".
    pub fn committed_before() -> Self {
        Self {
            locked: false,
            committed_before: true,
            reason: RejectReason::Unspecified,
            input_index: None,
        }
    }

    /// Reads a wire result. An unknown reason becomes ABORTED rather than an error: the
    /// vote is still a clear no.
    pub fn from_wire(result: &v1::LockResult) -> Self {
        Self {
            locked: result.locked,
            committed_before: result.committed_before,
            reason: RejectReason::try_from(result.reason).unwrap_or(RejectReason::Aborted),
            input_index: result.input_index,
        }
    }
}

/// Why a call to a shard group failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The group could not be reached or has no leader right now; retry later.
    #[error("shard {shard} is unavailable: {reason}")]
    Unavailable {
        /// The shard's index.
        shard: usize,
        /// What went wrong.
        reason: String,
    },
    /// The group answered with an error that repeating the same request cannot change
    /// (it found the request malformed, or does not know the dtx any more).
    #[error("shard {shard} refused the request ({code:?}): {message}")]
    Refused {
        /// The shard's index.
        shard: usize,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// The group answered `Lock` with the wrong number of results.
    #[error("shard {shard} answered {found} lock results for {expected} transactions")]
    WrongResultCount {
        /// The shard's index.
        shard: usize,
        /// Transactions sent.
        expected: usize,
        /// Results received.
        found: usize,
    },
    /// The shard index is not in the shard map.
    #[error("no shard {shard}: the cluster has {count} shards")]
    UnknownShard {
        /// The index asked for.
        shard: usize,
        /// Shards configured.
        count: usize,
    },
    /// The shard configuration is invalid.
    #[error("invalid shard configuration: {0}")]
    Config(String),
}

impl ShardError {
    /// Whether repeating the call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ShardError::Unavailable { .. })
    }

    /// Classifies a replication-layer error of a call to `shard`.
    fn from_consensus(shard: usize, e: ConsensusError) -> Self {
        match e {
            ConsensusError::Status { code, message } => {
                if retryable_code(code) {
                    ShardError::Unavailable {
                        shard,
                        reason: format!("{code:?}: {message}"),
                    }
                } else {
                    ShardError::Refused {
                        shard,
                        code,
                        message,
                    }
                }
            }
            ConsensusError::Config(reason) => ShardError::Config(reason),
            other => ShardError::Unavailable {
                shard,
                reason: other.to_string(),
            },
        }
    }
}

/// Status codes that say "not now" rather than "never": the group is electing a leader,
/// overloaded, or hit a transient storage error.
fn retryable_code(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled
    )
}

/// The locking shard groups of a cluster, as the coordinator driver uses them. Every
/// method is one attempt against one group; every command is idempotent by dtx id on the
/// shard side, so the driver may repeat any of them.
#[async_trait]
pub trait ShardGroups: Send + Sync + 'static {
    /// Which shard owns which ids (also how a dtx is split into slices).
    fn shard_map(&self) -> &ShardMap;

    /// `Lock(dtx, txs)` on shard `shard`: one vote per transaction, in order.
    async fn lock(
        &self,
        shard: usize,
        dtx: DtxId,
        txs: &[&CompactTransaction],
    ) -> Result<Vec<LockVote>, ShardError>;

    /// `Apply(dtx, commit, reasons)` on shard `shard`: one flag and one reason per
    /// transaction of the slice given to `lock`, in the same order.
    async fn apply(
        &self,
        shard: usize,
        dtx: DtxId,
        commit: &[bool],
        reasons: &[RejectReason],
    ) -> Result<(), ShardError>;

    /// `Discard(dtx)` on shard `shard`.
    async fn discard(&self, shard: usize, dtx: DtxId) -> Result<(), ShardError>;
}

/// [`ShardGroups`] over gRPC: one [`LeaderClient`] per shard group, which follows the
/// group's leader and reuses its channels.
pub struct GrpcShardGroups {
    map: ShardMap,
    groups: Vec<LeaderClient>,
}

impl GrpcShardGroups {
    /// Clients of the shard groups: `endpoints_per_shard[i]` are the client endpoints
    /// (`host:port`) of the replicas of shard `i` of `shard_map`. One attempt (following
    /// leader hints and trying each replica) gives up after `timeout`.
    pub fn new(
        shard_map: ShardMap,
        endpoints_per_shard: Vec<Vec<String>>,
        timeout: Duration,
    ) -> Result<Self, ShardError> {
        if endpoints_per_shard.len() != shard_map.len() {
            return Err(ShardError::Config(format!(
                "{} endpoint lists for {} shards",
                endpoints_per_shard.len(),
                shard_map.len()
            )));
        }
        if let Some(shard) = endpoints_per_shard.iter().position(Vec::is_empty) {
            return Err(ShardError::Config(format!(
                "shard {shard} has no endpoints"
            )));
        }
        let groups = endpoints_per_shard
            .into_iter()
            .map(|endpoints| LeaderClient::new(endpoints).with_timeout(timeout))
            .collect();
        Ok(Self {
            map: shard_map,
            groups,
        })
    }

    fn group(&self, shard: usize) -> Result<&LeaderClient, ShardError> {
        self.groups.get(shard).ok_or(ShardError::UnknownShard {
            shard,
            count: self.groups.len(),
        })
    }
}

fn client(channel: Channel) -> LockingShardClient<Channel> {
    LockingShardClient::new(channel)
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
}

#[async_trait]
impl ShardGroups for GrpcShardGroups {
    fn shard_map(&self) -> &ShardMap {
        &self.map
    }

    async fn lock(
        &self,
        shard: usize,
        dtx: DtxId,
        txs: &[&CompactTransaction],
    ) -> Result<Vec<LockVote>, ShardError> {
        let group = self.group(shard)?;
        // Encoded once; a retry clones the buffer's handle, not the transactions.
        let request = v1::LockRequest::encoded(dtx, txs.iter().copied());
        let response = group
            .call(|channel| {
                let request = request.clone();
                async move {
                    client(channel)
                        .lock(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await
            .map_err(|e| ShardError::from_consensus(shard, e))?;
        if response.results.len() != txs.len() {
            return Err(ShardError::WrongResultCount {
                shard,
                expected: txs.len(),
                found: response.results.len(),
            });
        }
        Ok(response.results.iter().map(LockVote::from_wire).collect())
    }

    async fn apply(
        &self,
        shard: usize,
        dtx: DtxId,
        commit: &[bool],
        reasons: &[RejectReason],
    ) -> Result<(), ShardError> {
        let group = self.group(shard)?;
        let request = v1::ApplyRequest {
            dtx_id: Some(dtx),
            commit: commit.to_vec(),
            reasons: reasons.iter().map(|r| *r as i32).collect(),
        };
        group
            .call(|channel| {
                let request = request.clone();
                async move { client(channel).apply(request).await.map(|_| ()) }
            })
            .await
            .map_err(|e| ShardError::from_consensus(shard, e))
    }

    async fn discard(&self, shard: usize, dtx: DtxId) -> Result<(), ShardError> {
        let group = self.group(shard)?;
        let request = v1::DiscardRequest { dtx_id: Some(dtx) };
        group
            .call(|channel| async move { client(channel).discard(request).await.map(|_| ()) })
            .await
            .map_err(|e| ShardError::from_consensus(shard, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_grpc_shard_groups_checks_endpoints() {
        let map = ShardMap::even(2).unwrap();
        assert!(matches!(
            GrpcShardGroups::new(
                map.clone(),
                vec![vec!["a:1".into()]],
                Duration::from_secs(1)
            ),
            Err(ShardError::Config(_))
        ));
        assert!(matches!(
            GrpcShardGroups::new(
                map.clone(),
                vec![vec!["a:1".into()], vec![]],
                Duration::from_secs(1)
            ),
            Err(ShardError::Config(_))
        ));
        assert!(GrpcShardGroups::new(
            map,
            vec![vec!["a:1".into()], vec!["b:1".into()]],
            Duration::from_secs(1)
        )
        .is_ok());
    }

    #[test]
    fn test_shard_error_classification() {
        let unavailable = ShardError::from_consensus(
            0,
            ConsensusError::Status {
                code: tonic::Code::Unavailable,
                message: "x".into(),
            },
        );
        assert!(unavailable.is_retryable());
        let timeout = ShardError::from_consensus(0, ConsensusError::Timeout(Duration::ZERO));
        assert!(timeout.is_retryable());
        let invalid = ShardError::from_consensus(
            0,
            ConsensusError::Status {
                code: tonic::Code::InvalidArgument,
                message: "x".into(),
            },
        );
        assert!(!invalid.is_retryable());
    }

    #[test]
    fn test_lock_vote_from_wire_unknown_reason_is_aborted() {
        let vote = LockVote::from_wire(&v1::LockResult {
            locked: false,
            reason: 999,
            input_index: Some(3),
            committed_before: false,
        });
        assert_eq!(vote.reason, RejectReason::Aborted);
        assert_eq!(vote.input_index, Some(3));
    }
}
