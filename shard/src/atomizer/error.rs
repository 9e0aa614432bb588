//! The atomizer-mode shard's one error type, and the gRPC status each variant becomes.

use cbdc_consensus::ConsensusError;
use cbdc_core::UhsId;
use cbdc_proto::ProtoError;
use tonic::Status;

use crate::error::StoreError;

/// Why the atomizer-mode shard could not start, stop or answer a request.
///
/// A transaction whose input is missing is *not* an error: it waits on the recheck list
/// and is reported to the watchtower as a rejection (a value), see [`super::recheck`].
#[derive(Debug, thiserror::Error)]
pub enum AtomizerShardError {
    /// The parameters cannot work (no atomizer endpoint, a zero duration, ...).
    #[error("invalid atomizer shard parameters: {0}")]
    InvalidParams(String),

    /// An endpoint is not a usable `host:port`.
    #[error("bad endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The UHS store failed (RocksDB, or data on disk this code did not write).
    #[error("store: {0}")]
    Store(#[from] StoreError),

    /// A request is malformed (a field of the wrong length, too many items, ...).
    #[error("malformed request: {0}")]
    Malformed(#[from] ProtoError),

    /// A query named an id this shard does not own: the caller routed it wrongly and must
    /// hear so rather than read "absent".
    #[error("{field}[{index}]: {id} is outside this shard's range {start}..={end}")]
    OutsideRange {
        /// The request field.
        field: &'static str,
        /// Position of the id in it.
        index: usize,
        /// The id.
        id: UhsId,
        /// First prefix this shard owns.
        start: u16,
        /// Last prefix this shard owns.
        end: u16,
    },

    /// The shard has not asked the atomizer its height yet, so it cannot know whether it
    /// is behind; it attests nothing until it knows.
    #[error("catching up: at {height}, waiting for the atomizer's height")]
    AwaitingTarget {
        /// The shard's block height.
        height: u64,
    },

    /// The shard is behind the height the atomizer had when the shard started; attesting
    /// now could attest outputs the atomizer already spent.
    #[error("catching up: at {height} of {target}")]
    CatchingUp {
        /// The shard's block height.
        height: u64,
        /// The atomizer's height when the shard started.
        target: u64,
    },

    /// The shard stopped applying blocks (its store diverged from the atomizer's blocks,
    /// or the store failed); its unspent set can no longer be trusted.
    #[error("this shard stopped applying blocks and attests nothing until it is rebuilt: {0}")]
    Unhealthy(String),

    /// The atomizer did not accept a call (unreachable, no leader, or an error status).
    #[error("atomizer: {0}")]
    Atomizer(#[source] ConsensusError),

    /// The watchtower did not accept a report.
    #[error("watchtower: {0}")]
    Watchtower(String),

    /// A background task or a blocking step panicked or was cancelled.
    #[error("{what} failed: {reason}")]
    Task {
        /// Which task or step.
        what: &'static str,
        /// The join error.
        reason: String,
    },
}

impl AtomizerShardError {
    /// The gRPC answer: a malformed or misrouted request is `INVALID_ARGUMENT`; a shard
    /// that cannot attest now (catching up, unhealthy) or a peer that did not accept the
    /// result (atomizer, watchtower) is `UNAVAILABLE`, so that the sentinel retries, here
    /// or at another shard owning the same range; everything else is `INTERNAL`.
    pub fn to_status(&self) -> Status {
        match self {
            AtomizerShardError::Malformed(e) => e.to_status(),
            AtomizerShardError::OutsideRange { .. } => Status::invalid_argument(self.to_string()),
            AtomizerShardError::AwaitingTarget { .. }
            | AtomizerShardError::CatchingUp { .. }
            | AtomizerShardError::Unhealthy(_)
            | AtomizerShardError::Atomizer(_)
            | AtomizerShardError::Watchtower(_) => Status::unavailable(self.to_string()),
            AtomizerShardError::InvalidParams(_)
            | AtomizerShardError::Endpoint { .. }
            | AtomizerShardError::Store(_)
            | AtomizerShardError::Task { .. } => {
                tracing::error!(error = %self, "atomizer shard request failed");
                Status::internal(self.to_string())
            }
        }
    }

    /// A [`AtomizerShardError::Task`] for a join error of `what`.
    pub(crate) fn task(what: &'static str, e: tokio::task::JoinError) -> Self {
        AtomizerShardError::Task {
            what,
            reason: e.to_string(),
        }
    }
}
