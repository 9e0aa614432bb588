//! Tests of the 2PC locking shard: its state machine applied directly on RocksDB in
//! temporary directories, and its gRPC services on in-process Raft groups on 127.0.0.1.
//!
//! One test binary (modules below) so that RocksDB is linked once.

mod cluster;
mod common;
mod grpc;
mod machine;
