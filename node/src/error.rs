//! Why a role of the `cbdc` binary could not start or stopped with a failure.

use std::net::SocketAddr;

/// The node layer's error: wraps the lower layers' errors with what was being started.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The cluster file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listening address could not be bound (in use, not local…).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A key file is missing or malformed.
    #[error(transparent)]
    KeyFile(#[from] cbdc_core::KeyFileError),
    /// The replication layer failed (storage, Raft).
    #[error("{role}: {source}")]
    Consensus {
        /// The role being started or stopped.
        role: String,
        /// The replication layer's error.
        source: cbdc_consensus::ConsensusError,
    },
    /// A coordinator's parameters or shard clients are unusable.
    #[error("coordinator: {0}")]
    Coordinator(String),
    /// The sentinel's parameters are inconsistent.
    #[error("sentinel: {0}")]
    Sentinel(#[from] cbdc_sentinel::ParamsError),
    /// A gRPC server failed.
    #[error("{role}: gRPC server failed: {message}")]
    Server {
        /// The role.
        role: String,
        /// The transport's message.
        message: String,
    },
    /// An atomizer-architecture role (atomizer, shard, archiver, watchtower) failed.
    #[error("{role}: {message}")]
    Role {
        /// The role.
        role: String,
        /// What went wrong.
        message: String,
    },
    /// The command line names something the cluster file does not have.
    #[error("{0}")]
    NotInConfig(String),
    /// Creating the cluster directory failed.
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
}
