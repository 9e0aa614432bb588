//! [`LockingShardParams`]: what a locking shard replica is configured with.

use cbdc_core::ShardRange;

use super::error::LockingError;

/// The parameters of a locking shard; every replica of a group must have the same ones,
/// since they steer the deterministic state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockingShardParams {
    /// The UHS id prefixes this shard owns: its inputs, outputs and the tx ids whose
    /// outcomes it records.
    pub range: ShardRange,
    /// Transaction outcomes kept for status queries and for answering a retried,
    /// already-committed transaction with `committed_before`, in records (a transaction
    /// locked by several dtxs counts once per dtx). The oldest are pruned first. A
    /// retry of a committed transaction whose outcome was pruned is answered
    /// `INPUTS_SPENT` (or `MINT_REPLAY`) instead of CONFIRMED: its status is lost, its
    /// money is not — inputs stay spent and mint ids stay recorded forever. Default
    /// 1 000 000; at least 1.
    pub outcome_retention: u64,
    /// Tombstones of discarded dtxs kept, in records; they make a late or repeated `Lock`
    /// of a finished dtx fail instead of taking locks nobody would release. The oldest
    /// are pruned first. Default 100 000; at least 1.
    pub dtx_tombstone_retention: u64,
}

impl LockingShardParams {
    /// Default of [`LockingShardParams::outcome_retention`].
    pub const DEFAULT_OUTCOME_RETENTION: u64 = 1_000_000;
    /// Default of [`LockingShardParams::dtx_tombstone_retention`].
    pub const DEFAULT_DTX_TOMBSTONE_RETENTION: u64 = 100_000;

    /// The shard owning `range`, with default retention.
    pub fn new(range: ShardRange) -> Self {
        LockingShardParams {
            range,
            outcome_retention: Self::DEFAULT_OUTCOME_RETENTION,
            dtx_tombstone_retention: Self::DEFAULT_DTX_TOMBSTONE_RETENTION,
        }
    }

    /// Checks that the range is not inverted and the retentions keep something.
    pub fn validate(&self) -> Result<(), LockingError> {
        if self.range.start > self.range.end {
            return Err(LockingError::InvalidParams("range starts after it ends"));
        }
        if self.outcome_retention == 0 {
            return Err(LockingError::InvalidParams(
                "outcome_retention must be at least 1",
            ));
        }
        if self.dtx_tombstone_retention == 0 {
            return Err(LockingError::InvalidParams(
                "dtx_tombstone_retention must be at least 1",
            ));
        }
        Ok(())
    }
}
