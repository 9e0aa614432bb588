//! Replication layer shared by every replicated role (openraft, RocksDB log, gRPC network).
