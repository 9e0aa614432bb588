//! # cbdc-proto
//!
//! The wire protocol: generated tonic services and prost messages.

/// The peer-only Raft service (package `cbdc.raft.v1`), used by `cbdc-consensus`.
pub mod raft {
    tonic::include_proto!("cbdc.raft.v1");
}
