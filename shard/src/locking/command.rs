//! The locking shard's Raft commands and their responses.
//!
//! These travel in the shard group's Raft log (bincode), so their shape is a format:
//! append variants and fields at the end, never reorder.

use cbdc_core::{CompactTransaction, TxId};
use serde::{Deserialize, Serialize};

use super::outcome::RejectCode;
use crate::lock::LockOwner;

/// A distributed transaction's id across the cluster: the coordinator group that owns it
/// and a sequence number unique within that group (`cbdc.v1.DtxId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DtxKey {
    /// The coordinator group.
    pub coordinator: u32,
    /// The dtx's number within that group.
    pub sequence: u64,
}

impl DtxKey {
    /// Bytes of [`DtxKey::to_bytes`].
    pub const LEN: usize = 12;

    /// `coordinator u32 BE ‖ sequence u64 BE`: big-endian so that a group's dtxs sort in
    /// sequence order in RocksDB.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.coordinator.to_be_bytes());
        out[4..].copy_from_slice(&self.sequence.to_be_bytes());
        out
    }

    /// Reads [`DtxKey::to_bytes`]; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let (c, s) = bytes.split_at(4);
        Some(DtxKey {
            coordinator: u32::from_be_bytes(c.try_into().ok()?),
            sequence: u64::from_be_bytes(s.try_into().ok()?),
        })
    }

    /// The lock owner of transaction `tx_index` of this dtx.
    pub fn owner(&self, tx_index: u32) -> LockOwner {
        LockOwner {
            coordinator: self.coordinator,
            dtx: self.sequence,
            tx_index,
        }
    }
}

impl std::fmt::Display for DtxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.coordinator, self.sequence)
    }
}

/// One transaction of a `Lock` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockSlot {
    /// Check the transaction against the shard's state and lock what it owns.
    ///
    /// The service strips the attestations before it writes the command: the leader
    /// checked them, and every replica of the group trusts its own log, so they would
    /// only make the log longer.
    Check(CompactTransaction),
    /// The service refused the transaction before the log (its attestations): it keeps
    /// its position in the dtx, so that the `Apply` flags line up, and locks nothing.
    Refused {
        /// The transaction's id (its outcome is recorded at `Apply`).
        id: TxId,
        /// Why it was refused.
        reason: RejectCode,
    },
}

/// A command of the locking shard's state machine. Each is idempotent by dtx id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// 2PC prepare of the shard's slice of a dtx.
    Lock {
        /// The dtx.
        dtx: DtxKey,
        /// Its transactions that touch this shard, in the coordinator's order.
        txs: Vec<LockSlot>,
    },
    /// 2PC commit or abort, one flag per transaction of the `Lock` slice.
    Apply {
        /// The dtx.
        dtx: DtxKey,
        /// `true` commits the transaction at that position, `false` aborts it.
        commit: Vec<bool>,
        /// Why each aborted transaction was refused (`None`: no reason given); empty, or
        /// one per transaction.
        reasons: Vec<Option<RejectCode>>,
    },
    /// Forget the dtx (after `Apply`), keeping a tombstone.
    Discard {
        /// The dtx.
        dtx: DtxKey,
    },
}

/// One transaction's answer to `Lock` (`cbdc.v1.LockResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockResult {
    /// Every input this shard owns is locked for the dtx, and the outputs and mint id it
    /// owns are free.
    pub locked: bool,
    /// Why not, when `locked` is false (`None` when `committed_before`).
    pub reason: Option<RejectCode>,
    /// The input at fault: its position in the whole transaction's inputs.
    pub input_index: Option<u32>,
    /// The transaction was committed by an earlier dtx (this shard owns its id and
    /// recorded it). Nothing was locked.
    pub committed_before: bool,
}

impl LockResult {
    /// Locked.
    pub fn locked() -> Self {
        LockResult {
            locked: true,
            reason: None,
            input_index: None,
            committed_before: false,
        }
    }

    /// Refused for `reason`, naming the input at fault when there is one.
    pub fn refused(reason: RejectCode, input_index: Option<u32>) -> Self {
        LockResult {
            locked: false,
            reason: Some(reason),
            input_index,
            committed_before: false,
        }
    }

    /// Already committed by an earlier dtx.
    pub fn committed_before() -> Self {
        LockResult {
            locked: false,
            reason: None,
            input_index: None,
            committed_before: true,
        }
    }
}

/// What `Apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// The decisions were applied now.
    Applied,
    /// The dtx was applied before; nothing changed.
    AlreadyApplied,
    /// The dtx was discarded before; nothing changed.
    AlreadyDiscarded,
    /// The shard never locked this dtx. Nothing to apply; the dtx is marked applied, so
    /// that a late `Lock` (one that lost a race with the coordinator's abort) is refused
    /// instead of taking locks nobody would release.
    UnknownDtx,
}

/// What `Discard` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscardOutcome {
    /// The dtx record was replaced by a tombstone.
    Discarded,
    /// It was discarded before; nothing changed.
    AlreadyDiscarded,
    /// The shard never saw the dtx; a tombstone now refuses a late `Lock`.
    UnknownDtx,
}

/// Why the machine refused a whole command and changed nothing: the request contradicts
/// the shard's record of the dtx. A coordinator bug, or a dtx whose life is over; never a
/// reason to stop the replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandRefusal {
    /// `Lock` of a dtx that was applied or discarded already.
    #[error("dtx {dtx} is already finished (applied or discarded)")]
    DtxFinished {
        /// The dtx.
        dtx: DtxKey,
    },
    /// More transactions in one `Lock` than positions in a dtx (`u32`).
    #[error("{count} transactions in one dtx is more than a lock owner can number")]
    TooManyTransactions {
        /// How many were sent.
        count: u64,
    },
    /// `Apply` with a number of commit flags other than the number of locked
    /// transactions.
    #[error("{got} commit flags for the {expected} transactions of the dtx")]
    FlagCount {
        /// Transactions in the dtx's `Lock` slice.
        expected: u64,
        /// Flags sent.
        got: u64,
    },
    /// `Apply` with reasons, but not one per transaction.
    #[error("{got} reasons for the {expected} transactions of the dtx")]
    ReasonCount {
        /// Transactions in the dtx's `Lock` slice.
        expected: u64,
        /// Reasons sent.
        got: u64,
    },
    /// `Apply` commits a transaction this shard did not lock.
    #[error("transaction {tx_index} of dtx {dtx} is committed but was not locked here")]
    CommitNotLocked {
        /// The dtx.
        dtx: DtxKey,
        /// The transaction's position in the dtx.
        tx_index: u32,
    },
    /// `Discard` of a dtx that is locked and not applied: its locks would stay held
    /// forever. Apply it first.
    #[error("dtx {dtx} is locked and not applied; apply it before discarding it")]
    NotApplied {
        /// The dtx.
        dtx: DtxKey,
    },
    /// The shard's state no longer matches its record of the dtx (a lock it took is gone,
    /// an output it checked now exists): a committed transaction cannot be applied.
    /// Nothing of the command was applied.
    #[error("dtx {dtx}: transaction {tx_index} cannot be committed: {detail}")]
    Diverged {
        /// The dtx.
        dtx: DtxKey,
        /// The transaction's position in the dtx.
        tx_index: u32,
        /// What does not match.
        detail: String,
    },
}

/// The answer to one [`ShardCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardResponse {
    /// `Lock`: one result per transaction.
    Locked {
        /// The per-transaction results, in command order.
        results: Vec<LockResult>,
        /// The dtx had been locked before; these are the recorded results and nothing
        /// changed.
        repeated: bool,
    },
    /// `Apply` succeeded.
    Applied(ApplyOutcome),
    /// `Discard` succeeded.
    Discarded(DiscardOutcome),
    /// The command was refused whole; nothing changed.
    Refused(CommandRefusal),
}
