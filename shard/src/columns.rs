//! The column families the store lives in, and the fixed keys of its metadata.
//!
//! A node runs one RocksDB instance shared by every role it hosts (the Raft log, the
//! state machines), so the store never owns "the" database: it is handed an
//! `Arc<DB>` and the names of its column families. Names are configurable so that two
//! stores (say, two shard replicas in one `cbdc dev` process) can share one instance.

/// Names of the store's three column families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFamilyNames {
    /// `UhsId (32 bytes) → value (u64 LE)`: the unspent hash set itself. (Builds that
    /// kept a 2PC lock in its output's record appended the owner; such records are read
    /// for their value. Locks now live in memory: [`crate::lock`].)
    pub uhs: String,
    /// `TxId → MintState`: every mint this shard recorded (forever) or holds locked.
    pub minted: String,
    /// Small fixed keys: supply counters and block height.
    pub meta: String,
}

impl ColumnFamilyNames {
    /// Names with a common prefix, e.g. `with_prefix("shard0_")` gives `shard0_uhs`, ….
    pub fn with_prefix(prefix: &str) -> Self {
        ColumnFamilyNames {
            uhs: format!("{prefix}uhs"),
            minted: format!("{prefix}uhs_minted"),
            meta: format!("{prefix}uhs_meta"),
        }
    }

    /// The three names, in snapshot order.
    pub fn all(&self) -> [&str; 3] {
        [&self.uhs, &self.minted, &self.meta]
    }
}

impl Default for ColumnFamilyNames {
    /// `uhs`, `uhs_minted`, `uhs_meta`.
    fn default() -> Self {
        ColumnFamilyNames::with_prefix("")
    }
}

/// Meta key of the supply counters (`count u64 LE ‖ total u64 LE`).
pub(crate) const META_SUPPLY: &[u8] = b"supply";
/// Meta key of the atomizer block height (`u64 LE`).
pub(crate) const META_HEIGHT: &[u8] = b"height";

/// Length of every key in the `uhs` and `minted` column families.
pub(crate) const ID_LEN: usize = 32;

/// An exclusive upper bound above every key the store writes (ids are 32 bytes, meta keys
/// are short ASCII), used to clear a column family with one range tombstone.
pub(crate) const KEY_END: [u8; 33] = [0xFF; 33];
