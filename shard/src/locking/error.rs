//! The locking shard's one error type.
//!
//! An error here means the replica cannot go on: RocksDB failed, a record on disk is not
//! what this code wrote, or a snapshot is unreadable. Everything a coordinator or a client
//! can cause — a double spend, a lock conflict, a replayed mint, a flag vector of the
//! wrong length — is a value instead (a [`super::LockResult`] or a
//! [`super::CommandRefusal`]), so that no request can stop a Raft state machine.

use cbdc_consensus::ConsensusError;

use crate::error::StoreError;

/// Why the locking shard's state machine could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum LockingError {
    /// The UHS store failed (RocksDB, or a corrupt UHS record).
    #[error("uhs store: {0}")]
    Store(#[from] StoreError),

    /// Genesis seeding was refused or could not open the replica's database.
    #[error("genesis: {0}")]
    Genesis(String),

    /// RocksDB failed on one of the locking shard's own column families.
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),

    /// The database was opened without one of the machine's column families.
    #[error("column family {0:?} is missing from the database")]
    MissingColumnFamily(&'static str),

    /// A dtx, outcome or counter record does not have the shape this code writes.
    #[error("corrupt {table} record: {reason}")]
    Corrupt {
        /// Which table (`shard_dtxs`, `shard_outcomes`, …).
        table: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A record could not be encoded (it cannot happen for the types written here, but
    /// bincode's signature says it may).
    #[error("encoding a {what} record: {reason}")]
    Encode {
        /// Which record.
        what: &'static str,
        /// bincode's complaint.
        reason: String,
    },

    /// A snapshot is not one this code wrote.
    #[error("snapshot is malformed: {0}")]
    SnapshotMalformed(String),

    /// The parameters are unusable.
    #[error("invalid locking shard parameters: {0}")]
    InvalidParams(&'static str),

    /// A check that the machine made just before staging a commit passed, and the store
    /// then refused the same commit: a bug in this module, never a caller's fault.
    #[error("invariant broken while committing transaction {tx_index}: {detail}")]
    Invariant {
        /// The transaction's position in its dtx.
        tx_index: u32,
        /// What the store said.
        detail: String,
    },
}

impl From<LockingError> for ConsensusError {
    /// Parameter errors are configuration errors; corrupt records and snapshots are
    /// corruption; everything else stops the state machine.
    fn from(e: LockingError) -> Self {
        match e {
            LockingError::InvalidParams(_) => ConsensusError::Config(e.to_string()),
            LockingError::Corrupt { .. } | LockingError::SnapshotMalformed(_) => {
                ConsensusError::Corrupt {
                    what: "locking shard state",
                    reason: e.to_string(),
                }
            }
            LockingError::RocksDb(inner) => ConsensusError::Storage(inner),
            other => ConsensusError::StateMachine(other.to_string()),
        }
    }
}
