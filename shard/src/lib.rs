//! Shard storage: the unspent hash set (UHS) in RocksDB.
