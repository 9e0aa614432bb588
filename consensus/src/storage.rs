//! The replica's one RocksDB instance and its column families.
//!
//! | column family | owner | content |
//! |---|---|---|
//! | `raft_log` | [`LogStore`](crate::LogStore) | log entries by big-endian index |
//! | `raft_meta` | [`LogStore`](crate::LogStore) | vote, committed log id, last purged log id |
//! | `sm_meta` | [`StateMachineStore`](crate::StateMachineStore) | last applied log id, membership, current snapshot |
//! | [`StateMachine::column_families`](crate::StateMachine::column_families) | the state machine | its own data (UHS, locks, dtxs, blocks…) |
//!
//! Everything that goes to RocksDB goes in write batches; the state machine's changes are
//! written in the same batch as the last applied log id.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, DB};

use crate::error::ConsensusError;

/// Column family of the Raft log.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Column family of the Raft metadata (vote, committed, last purged).
pub const CF_RAFT_META: &str = "raft_meta";
/// Column family of the state machine's metadata (last applied, membership, snapshot).
pub const CF_SM_META: &str = "sm_meta";
/// The column families the replication layer itself uses.
pub const CONSENSUS_CFS: [&str; 3] = [CF_RAFT_LOG, CF_RAFT_META, CF_SM_META];

/// Open (or create) a replica's RocksDB at `path` with the consensus column families and
/// `extra` (the state machine's). Column families already present on disk are opened too.
pub fn open_db(path: &Path, extra: &[&str]) -> Result<Arc<DB>, ConsensusError> {
    for name in extra {
        if CONSENSUS_CFS.contains(name) {
            return Err(ConsensusError::Config(format!(
                "column family {name:?} is reserved by cbdc-consensus"
            )));
        }
    }
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let mut names: Vec<String> = CONSENSUS_CFS
        .iter()
        .chain(extra.iter())
        .map(|s| s.to_string())
        .collect();
    if let Ok(existing) = DB::list_cf(&opts, path) {
        for name in existing {
            if name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let descriptors = names
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, column_family_options(&cache)));
    let db = DB::open_cf_descriptors(&opts, path, descriptors)?;
    Ok(Arc::new(db))
}

/// Block cache shared by the column families of one replica's database.
const BLOCK_CACHE_BYTES: usize = 256 << 20;

/// Options of every column family, tuned for what replicas do most: point lookups of
/// keys that are usually absent (a lock on an input, a mint id, a tx outcome) or recently
/// written. A bloom filter over memtable keys lets such a lookup skip the memtable's skip
/// list (profiles of `cbdc bench` showed the skip-list search as the top RocksDB cost);
/// bloom filters and a hash index in data blocks do the same for the SST files.
fn column_family_options(cache: &rocksdb::Cache) -> Options {
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(true);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.set_memtable_prefix_bloom_ratio(0.05);
    opts.set_memtable_whole_key_filtering(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

/// The handle of a column family that must exist.
pub fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, ConsensusError> {
    db.cf_handle(name).ok_or_else(|| ConsensusError::Corrupt {
        what: "column families",
        reason: format!("column family {name:?} is missing"),
    })
}

/// Stage the deletion of every key of column family `name` into `batch` (used when a
/// snapshot replaces a state machine's data).
pub fn clear_cf(db: &DB, name: &str, batch: &mut WriteBatch) -> Result<(), ConsensusError> {
    let handle = cf(db, name)?;
    let mut iter = db.iterator_cf(handle, rocksdb::IteratorMode::End);
    if let Some(item) = iter.next() {
        let (last, _) = item?;
        let mut end = last.to_vec();
        end.push(0);
        batch.delete_range_cf(handle, Vec::<u8>::new(), end);
    }
    Ok(())
}

/// Closes `db` on a blocking thread and waits for it, once it is the last reference (up
/// to 10 s; after that a warning names `owner` and RocksDB closes when the last holder
/// lets go). Closing joins RocksDB's background work, and a close left to whichever task
/// drops the last reference may still run when the process exits (RocksDB then aborts)
/// or while the same directory is opened again in this process.
pub async fn close_db(db: Arc<DB>, owner: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Arc::strong_count(&db) > 1 {
        if std::time::Instant::now() > deadline {
            tracing::warn!(
                owner,
                "RocksDB still in use; it closes when the last holder ends"
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if let Err(e) = tokio::task::spawn_blocking(move || drop(db)).await {
        tracing::error!(owner, error = %e, "closing RocksDB failed");
    }
}
