//! The storage layer's one error type.
//!
//! An error here means the store could not do its job: RocksDB failed, the data on disk
//! is not what this code wrote, or a caller broke a precondition (a block out of order).
//! A transaction that cannot settle (a spent input, a lock conflict, a replayed mint) is
//! *not* an error: it is a [`crate::Rejection`], returned as a value, so that a Raft
//! state machine keeps running.

use cbdc_core::UhsId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB itself reported an error.
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),

    /// The database was opened without one of the store's column families.
    #[error("column family {name:?} is missing from the database")]
    MissingColumnFamily {
        /// The column family's name.
        name: String,
    },

    /// A key or value read from disk does not have the shape this code writes.
    #[error("corrupt {column} record (key {key}): {reason}")]
    Corrupt {
        /// Which logical column (`uhs`, `locks`, `minted`, `meta`).
        column: &'static str,
        /// The key, in hex.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The incremental supply counters would overflow or go below zero: they no longer
    /// match the unspent set (or the unspent set holds more than `u64::MAX` cents).
    #[error("supply counter {counter} out of range: the counters disagree with the UHS")]
    SupplyOutOfRange {
        /// `count` or `total`.
        counter: &'static str,
    },

    /// A block was staged whose height is not the next one.
    #[error("block at height {got} cannot follow height {current}")]
    HeightGap {
        /// The store's height.
        current: u64,
        /// The block's height.
        got: u64,
    },

    /// A block spends an output this store does not hold, or creates one it already
    /// holds: the shard's state has diverged from the atomizer's.
    #[error("block {height} is inconsistent with the store at {id}: {reason}")]
    BlockInconsistent {
        /// The block's height.
        height: u64,
        /// The offending UHS id.
        id: UhsId,
        /// `input missing` or `output exists`.
        reason: &'static str,
    },

    /// An earlier operation on this staged batch failed half-way; its write batch holds
    /// a partial change and must be discarded.
    #[error("the staged batch was poisoned by an earlier error and must be discarded")]
    Poisoned,

    /// Reading or writing a snapshot stream failed.
    #[error("snapshot i/o: {0}")]
    SnapshotIo(#[source] std::io::Error),

    /// A snapshot ended before its trailer.
    #[error("snapshot is truncated")]
    SnapshotTruncated,

    /// A snapshot is not in a format this code reads.
    #[error("snapshot is malformed at byte {offset}: {reason}")]
    SnapshotMalformed {
        /// Offset of the offending record from the start of the stream.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },

    /// A snapshot's version is not one this code reads.
    #[error("snapshot format version {found} is not supported (expected {expected})")]
    SnapshotVersion {
        /// The version in the header.
        found: u32,
        /// The version this code writes.
        expected: u32,
    },

    /// A snapshot's checksum does not match its contents.
    #[error("snapshot checksum mismatch")]
    SnapshotChecksum,
}

impl StoreError {
    /// A [`StoreError::Corrupt`] for `key` in `column`.
    pub(crate) fn corrupt(column: &'static str, key: &[u8], reason: &'static str) -> Self {
        StoreError::Corrupt {
            column,
            key: hex_bytes(key),
            reason,
        }
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
