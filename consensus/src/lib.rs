//! # cbdc-consensus
//!
//! The replication layer shared by every replicated cbdc role (2PC coordinator groups,
//! 2PC shard groups, the atomizer): openraft 0.9 on RocksDB, over gRPC.
//!
//! ```text
//!  role's gRPC service ──▶ ReplicaHandle::write_batch ──▶ openraft ──AppendEntries──▶ peers
//!        ▲  (NotLeader → UNAVAILABLE + x-cbdc-leader)        │      (RaftPeer, bincode)
//!        │                                                    ▼
//!   LeaderClient                                   LogStore (raft_log, raft_meta CFs)
//!                                                  StateMachineStore ─▶ your StateMachine
//!                                                  (sm_meta + the state machine's CFs,
//!                                                   one RocksDB instance per replica)
//! ```
//!
//! ## Layout
//! - [`types`]: the one `declare_raft_types!` ([`TypeConfig`]), [`ReplicaNode`], and the
//!   [`typ`] aliases.
//! - [`StateMachine`]: the trait a role implements (deterministic, synchronous, applies a
//!   run of commands into one RocksDB write batch). [`StateMachineStore`] adapts it to
//!   openraft.
//! - [`LogStore`]: the Raft log and vote in RocksDB, synced before acknowledgement.
//! - [`storage`]: opening the replica's RocksDB and its column families.
//! - [`network`]: the gRPC Raft network (cached channels, chunked snapshots).
//! - [`Replica`] / [`ReplicaHandle`]: start, bootstrap, write, read, stop one replica.
//! - [`byte_string`]: serde for byte strings that bincode copies in one go.
//! - [`client`]: the not-leader convention for gRPC services and [`LeaderClient`].
//! - [`GroupClientService`]: a generic client-facing write service.
//! - [`testkit`]: a key-value test state machine (tests, the test node, the benchmark).

pub mod byte_string;
pub mod client;
pub mod error;
mod log_store;
pub mod network;
mod replica;
pub mod service;
mod state_machine;
pub mod storage;
pub mod testkit;
pub mod types;

pub use client::{leader_hint, to_status, LeaderClient, LEADER_METADATA_KEY};
pub use error::{encode, to_bincode, ConsensusError};
pub use log_store::{LogReader, LogStore};
pub use replica::{RaftTuning, Replica, ReplicaConfig, ReplicaHandle};
pub use service::{GroupClientService, ReplicaStatusService};
pub use state_machine::{SnapshotBuilder, StateMachine, StateMachineStore};
pub use types::{typ, CommandBytes, NodeId, ReplicaNode, ResponseBytes, TypeConfig};
