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

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, ReadOptions, WriteBatch, DB};

use crate::error::ConsensusError;
use crate::state_machine::StateMachine;

/// Column family of the Raft log.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Column family of the Raft metadata (vote, committed, last purged).
pub const CF_RAFT_META: &str = "raft_meta";
/// Column family of the state machine's metadata (last applied, membership, snapshot).
pub const CF_SM_META: &str = "sm_meta";
/// The column families the replication layer itself uses.
pub const CONSENSUS_CFS: [&str; 3] = [CF_RAFT_LOG, CF_RAFT_META, CF_SM_META];

/// Open (or create) a replica's RocksDB at `path` with the consensus column families and
/// those of state machine `S`. Column families already present on disk are opened too.
pub fn open_db<S: StateMachine>(path: &Path) -> Result<Arc<DB>, ConsensusError> {
    open_db_with::<S>(path, &StorageTuning::default())
}

/// RocksDB tuning of one replica's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageTuning {
    /// Block cache shared by the database's column families, in bytes.
    pub block_cache_bytes: usize,
    /// Most bytes per second that flushes and compactions together may write; 0: no
    /// limit. A compaction of a shard's randomly keyed outputs rewrites a whole level at
    /// full speed, taking a core for about a second, and on a busy machine every
    /// transaction in flight waits that long: a limit spreads it out (flushes go first).
    /// Too low a limit lets compaction fall behind until RocksDB stalls writes: it must
    /// stay well above the replica's write rate times its write amplification.
    pub compaction_rate_bytes_per_s: u64,
}

impl Default for StorageTuning {
    fn default() -> Self {
        StorageTuning {
            block_cache_bytes: 256 << 20,
            compaction_rate_bytes_per_s: 0,
        }
    }
}

/// [`open_db`] with explicit tuning.
pub fn open_db_with<S: StateMachine>(
    path: &Path,
    tuning: &StorageTuning,
) -> Result<Arc<DB>, ConsensusError> {
    let extra = S::column_families();
    let random = S::random_key_column_families();
    for name in extra {
        if CONSENSUS_CFS.contains(name) {
            return Err(ConsensusError::Config(format!(
                "column family {name:?} is reserved by cbdc-consensus"
            )));
        }
    }
    if let Some(name) = random.iter().find(|name| !extra.contains(name)) {
        return Err(ConsensusError::Config(format!(
            "random-key column family {name:?} is not one of the state machine's"
        )));
    }
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Writes to the DB are serialized by RocksDB's write queue anyway (one state machine
    // and one log store per replica): concurrent memtable inserts would only add their
    // synchronisation.
    opts.set_allow_concurrent_memtable_write(false);
    // The state machine writes without the WAL (see `crate::state_machine`): only a flush
    // of all column families at one point keeps its durable state whole.
    opts.set_atomic_flush(true);
    if tuning.compaction_rate_bytes_per_s > 0 {
        let rate = i64::try_from(tuning.compaction_rate_bytes_per_s).unwrap_or(i64::MAX);
        // Refilled every 100 ms (RocksDB's default); fairness 10: compaction gets 1 in 10
        // grants while flushes wait.
        opts.set_ratelimiter(rate, 100_000, 10);
    }
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
    let cache = rocksdb::Cache::new_lru_cache(tuning.block_cache_bytes);
    let descriptors = names.iter().map(|name| {
        let point_lookups = !CONSENSUS_CFS.contains(&name.as_str());
        let mut options = column_family_options(&cache, point_lookups);
        if random.contains(&name.as_str()) {
            random_key_tuning(&mut options);
        }
        ColumnFamilyDescriptor::new(name, options)
    });
    let db = DB::open_cf_descriptors(&opts, path, descriptors)?;
    Ok(Arc::new(db))
}

/// Options of every column family, tuned for what replicas do most: point lookups of
/// keys that are usually absent (a lock on an input, a mint id, a tx outcome) or recently
/// written. Bloom filters and a hash index in data blocks let such a lookup skip most of
/// an SST file. With `memtable_bloom`, a bloom filter over memtable keys lets it skip the
/// memtable's skip list too (profiles of `cbdc bench` showed the skip-list search as the
/// top RocksDB cost). The consensus column families are read by range, so they go
/// without: the filter is allocated and zeroed with every new memtable (5 % of the
/// memtable's size, 3.2 MiB for the Raft log's) and hashed on every insert, for no lookup
/// it would speed up.
fn column_family_options(cache: &rocksdb::Cache, memtable_bloom: bool) -> Options {
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
    if memtable_bloom {
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_memtable_whole_key_filtering(true);
    }
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

/// Write buffer (memtable) size of a random-key column family. Every insert searches the
/// memtable's skip list, and a smaller list is a shorter search that stays in cache:
/// 8 MiB (about 65,000 shard records) cost less CPU per transaction than 16 MiB or 64 MiB
/// (`cbdc bench --replicas 3`, run side by side: 3.5–4.4 % less than 16 MiB), while 4 MiB
/// cost more again (more flushes and L0 compactions).
const RANDOM_KEY_WRITE_BUFFER_BYTES: usize = 8 << 20;

/// Tuning of a random-key column family (see [`StateMachine::random_key_column_families`]).
///
/// Its memtable is RocksDB's default skip list. (Builds before this one used a hashed
/// memtable, whose inserts and point lookups are cheap but whose flush sorts all of it by
/// inserting every entry into a new skip list, on one core: 8 % of a 2PC run's CPU with
/// one replica, three quarters of the flush threads' 21 % with three. Writers that insert
/// their keys in sorted order, as the shard does, make skip-list inserts cheap enough that
/// the default list costs less overall.)
fn random_key_tuning(options: &mut Options) {
    options.set_write_buffer_size(RANDOM_KEY_WRITE_BUFFER_BYTES);
    // The keys are hashes and the values mostly amounts: nothing to compress, so LZ4
    // only costs time in every flush and compaction. And with random keys every L0 file
    // overlaps all of L1, so each L0 → L1 compaction rewrites the whole level: starting
    // one every 8 flushes instead of 4 halves that work (`cbdc bench`, 2PC, 60 s: the
    // shards' compaction CPU fell from 4.2 s to 1.9 s), for a few more filter probes per
    // read.
    options.set_compression_type(rocksdb::DBCompressionType::None);
    options.set_level_zero_file_num_compaction_trigger(8);
}

/// Read options of every scan (an iterator over a column family): a total-order scan,
/// whatever prefix extractor a column family was once opened with, and without filling
/// the block cache with blocks read once.
pub fn scan_options() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    opts.fill_cache(false);
    opts
}

/// Write options of what may be lost in a crash together with the state machine's
/// unflushed writes, because the Raft log replays both: the state machine's batches
/// ([`crate::state_machine`]) and log purges ([`crate::log_store`]). Without the WAL, they
/// reach disk only with a flush, which is atomic across every column family.
pub(crate) fn unlogged() -> rocksdb::WriteOptions {
    let mut opts = rocksdb::WriteOptions::default();
    opts.disable_wal(true);
    opts
}

/// Stage the deletion of every key of column family `name` into `batch` (used when a
/// snapshot replaces a state machine's data). Only keys already written are covered: the
/// range ends after the last key in the database, so a key staged earlier in `batch`
/// beyond it survives. Call it before staging anything into that column family.
pub fn clear_cf(db: &DB, name: &str, batch: &mut WriteBatch) -> Result<(), ConsensusError> {
    let handle = cf(db, name)?;
    let mut iter = db.iterator_cf_opt(handle, scan_options(), rocksdb::IteratorMode::End);
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
