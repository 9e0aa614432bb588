//! Why a transaction cannot settle on this shard, and what a shard says about an output.
//!
//! These are business outcomes, returned as values: a double spend must never stop the
//! Raft state machine that found it.

use cbdc_core::{Amount, TxId, UhsId};

use crate::lock::LockOwner;

/// Why [`crate::StagedBatch::check_and_lock`] or [`crate::StagedBatch::apply`] refused a
/// transaction. Nothing was staged for it. `index` is the position in the slice the
/// caller passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The input is not in the unspent set: never created, or already spent.
    #[error("input {index} ({id}) is not unspent")]
    InputMissing {
        /// Position among the inputs.
        index: usize,
        /// Its UHS id.
        id: UhsId,
    },
    /// The input is unspent but another transaction holds its lock.
    #[error("input {index} ({id}) is locked by another transaction")]
    InputLocked {
        /// Position among the inputs.
        index: usize,
        /// Its UHS id.
        id: UhsId,
        /// The transaction holding it.
        owner: LockOwner,
    },
    /// The same input appears twice in one transaction.
    #[error("input {index} ({id}) appears twice")]
    DuplicateInput {
        /// Position of the second occurrence.
        index: usize,
        /// Its UHS id.
        id: UhsId,
    },
    /// An output id already exists: the store never overwrites an output.
    #[error("output {index} ({id}) already exists")]
    OutputExists {
        /// Position among the outputs.
        index: usize,
        /// Its UHS id.
        id: UhsId,
    },
    /// The same output id appears twice in one transaction.
    #[error("output {index} ({id}) appears twice")]
    DuplicateOutput {
        /// Position of the second occurrence.
        index: usize,
        /// Its UHS id.
        id: UhsId,
    },
    /// The mint's tx id was recorded before: a replay.
    #[error("mint {tx_id} was already issued")]
    MintReplayed {
        /// The mint's id.
        tx_id: TxId,
    },
    /// Another prepared transaction holds the same mint id.
    #[error("mint {tx_id} is locked by another transaction")]
    MintLocked {
        /// The mint's id.
        tx_id: TxId,
        /// The transaction holding it.
        owner: LockOwner,
    },
}

/// What a shard knows about one output id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStatus {
    /// Not in the unspent set (never created here, or spent).
    Absent,
    /// Unspent and free to spend.
    Unspent(Amount),
    /// Unspent but locked by a prepared transaction.
    Locked(Amount, LockOwner),
}
