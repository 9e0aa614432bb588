//! The one error type of the coordinator driver, and its gRPC form.

use std::time::Duration;

use cbdc_consensus::{to_status, ConsensusError, NodeId};

/// Why the coordinator could not give a batch its final verdicts. None of these is a
/// verdict: a transaction refused by the ledger is a REJECTED result, not an error. Every
/// variant but `InvalidParams` means "retry": settling is idempotent by tx id, so a retry
/// gets the real outcome.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// This replica does not lead the coordinator group; retry at the leader.
    #[error("not the coordinator group's leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// The leader's id, when known.
        leader_id: Option<NodeId>,
        /// The leader's client endpoint, when known.
        leader_addr: Option<String>,
    },
    /// This replica leads but is still finishing the dtxs its predecessor left; it takes
    /// new work once they are done.
    #[error("the new coordinator leader is still recovering unfinished dtxs")]
    Recovering,
    /// This replica stopped leading before the transactions were settled. The new leader
    /// finishes any dtx they were in; a retry there gets the outcome.
    #[error("lost the coordinator group's leadership before settling; retry")]
    LeadershipLost,
    /// The transactions were not settled within the request timeout (a shard group may be
    /// down). They stay in flight; a retry joins them rather than settling them twice.
    #[error("not settled within {0:?}; the transactions stay in flight, retry")]
    Timeout(Duration),
    /// The coordinator is shutting down.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    /// The parameters given to [`crate::Coordinator::start`] are invalid.
    #[error("invalid coordinator parameters: {0}")]
    InvalidParams(String),
    /// The replication layer failed.
    #[error("replication: {0}")]
    Replication(#[from] ConsensusError),
}

impl CoordinatorError {
    /// The gRPC answer: UNAVAILABLE for everything a caller should retry (with the
    /// leader's endpoint in metadata on a follower, see `cbdc_consensus::to_status`).
    pub fn to_status(&self) -> tonic::Status {
        match self {
            CoordinatorError::NotLeader {
                leader_id,
                leader_addr,
            } => to_status(&ConsensusError::NotLeader {
                leader_id: *leader_id,
                leader_addr: leader_addr.clone(),
            }),
            CoordinatorError::Recovering
            | CoordinatorError::LeadershipLost
            | CoordinatorError::Timeout(_)
            | CoordinatorError::ShuttingDown => tonic::Status::unavailable(self.to_string()),
            CoordinatorError::InvalidParams(_) => tonic::Status::internal(self.to_string()),
            CoordinatorError::Replication(e) => to_status(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_not_leader_status_carries_hint() {
        let status = CoordinatorError::NotLeader {
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7000".into()),
        }
        .to_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            cbdc_consensus::leader_hint(&status).as_deref(),
            Some("127.0.0.1:7000")
        );
    }

    #[test]
    fn test_retryable_errors_are_unavailable() {
        for e in [
            CoordinatorError::Recovering,
            CoordinatorError::LeadershipLost,
            CoordinatorError::Timeout(Duration::from_secs(1)),
            CoordinatorError::ShuttingDown,
        ] {
            assert_eq!(e.to_status().code(), tonic::Code::Unavailable);
        }
    }
}
