//! RocksDB tuning for the UHS workload: 32-byte random keys, 8-byte values, point
//! lookups (most of them hits for inputs, misses for new outputs), no range scans on the
//! hot path, and a memory budget that must hold at 10 million outputs (under 1 GiB
//! resident for the whole shard process).
//!
//! Memory is bounded by three knobs: one LRU block cache shared by the store's column
//! families that also holds index and filter blocks (so they do not grow with the data
//! outside the budget), a capped number of memtables per column family, and a cap on
//! all memtables of the database.

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType,
    DataBlockIndexType, Options,
};

use crate::columns::ColumnFamilyNames;

/// Tuning of the store's column families. Every field has a unit; defaults suit one shard
/// of up to tens of millions of outputs in well under 1 GiB.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Bytes of the LRU block cache shared by the store's column families (data, index
    /// and filter blocks). Default 256 MiB.
    pub block_cache_bytes: usize,
    /// Bytes of one memtable of the UHS column family. Default 64 MiB.
    pub write_buffer_bytes: usize,
    /// Most memtables (one active, the rest being flushed) per column family. Default 3.
    pub max_write_buffers: i32,
    /// Bytes of all memtables of the database together, across every column family of
    /// the instance; 0 leaves it unlimited. Only applied by [`StoreOptions::db_options`].
    /// Default 256 MiB.
    pub db_write_buffer_bytes: usize,
    /// Bloom filter bits per key; 10 gives about 1% false positives. Default 10.
    pub bloom_bits_per_key: f64,
    /// Bytes of one data block. Small blocks make a point lookup read and cache less.
    /// Default 4 KiB.
    pub block_size_bytes: usize,
    /// Background flush and compaction threads. Default 2.
    pub background_jobs: i32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            max_write_buffers: 3,
            db_write_buffer_bytes: 256 << 20,
            bloom_bits_per_key: 10.0,
            block_size_bytes: 4 << 10,
            background_jobs: 2,
        }
    }
}

impl StoreOptions {
    /// A new block cache of [`StoreOptions::block_cache_bytes`]; pass the same one to
    /// every column family that should share the budget.
    pub fn new_block_cache(&self) -> Cache {
        Cache::new_lru_cache(self.block_cache_bytes)
    }

    /// Database-wide options for a standalone store (or for the node's shared instance):
    /// create what is missing, cap memtables, bound background work.
    pub fn db_options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(self.background_jobs);
        if self.db_write_buffer_bytes > 0 {
            opts.set_db_write_buffer_size(self.db_write_buffer_bytes);
        }
        // Without this, many column families each keep their WAL alive until their own
        // memtable flushes; with it, a cold column family is flushed to free the WAL.
        opts.set_max_total_wal_size(512 << 20);
        opts.set_bytes_per_sync(1 << 20);
        opts
    }

    /// Options of one of the store's column families, tuned for point lookups on 32-byte
    /// keys, reading blocks through `cache`.
    pub fn cf_options(&self, cache: &Cache) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        table.set_block_size(self.block_size_bytes);
        table.set_bloom_filter(self.bloom_bits_per_key, false);
        table.set_whole_key_filtering(true);
        // Index and filter blocks live in the cache, charged to its budget, with those of
        // level 0 (hit on every lookup) pinned there.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_index_type(BlockBasedIndexType::BinarySearch);
        // A hash index inside each data block: a point lookup avoids a binary search.
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
        table.set_data_block_hash_ratio(0.75);
        table.set_format_version(5);

        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(self.write_buffer_bytes);
        opts.set_max_write_buffer_number(self.max_write_buffers);
        // A bloom filter over memtable keys: lookups of absent ids skip the memtable scan.
        opts.set_memtable_prefix_bloom_ratio(0.02);
        opts.set_memtable_whole_key_filtering(true);
        // Hashes do not compress; do not pay for trying.
        opts.set_compression_type(DBCompressionType::None);
        opts.set_level_compaction_dynamic_level_bytes(true);
        opts
    }

    /// Descriptors of the store's column families, to open (or create) a database with
    /// them next to the node's other column families.
    pub fn column_families(
        &self,
        names: &ColumnFamilyNames,
        cache: &Cache,
    ) -> Vec<ColumnFamilyDescriptor> {
        names
            .all()
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, self.cf_options(cache)))
            .collect()
    }
}
