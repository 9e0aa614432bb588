//! The one openraft type configuration of cbdc and the aliases everything else uses.
//!
//! Every Raft group of the system (coordinators, 2PC shards, the atomizer) uses the same
//! [`TypeConfig`]: log entries carry opaque [`CommandBytes`], the state machine answers with
//! opaque [`ResponseBytes`]. What those bytes mean belongs to the group's
//! [`StateMachine`](crate::StateMachine) (a bincode-encoded batch of its commands and the
//! matching responses), so the log store and the network are not generic at all.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A replica's id inside its group. Ids are chosen in the cluster configuration.
pub type NodeId = u64;

/// Where a replica can be reached: stored in the Raft membership, so every replica knows
/// every other one's endpoints, and followers can name the leader's client endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaNode {
    /// `host:port` of the peer-only `RaftPeer` gRPC service.
    pub peer_addr: String,
    /// `host:port` of the replica's client-facing gRPC service(s); what a follower sends
    /// back to a caller in the `x-cbdc-leader` hint.
    pub client_addr: String,
}

impl ReplicaNode {
    /// A node with the given peer and client endpoints (`host:port`).
    pub fn new(peer_addr: impl Into<String>, client_addr: impl Into<String>) -> Self {
        Self {
            peer_addr: peer_addr.into(),
            client_addr: client_addr.into(),
        }
    }
}

impl fmt::Display for ReplicaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} client={}", self.peer_addr, self.client_addr)
    }
}

/// The payload of one normal log entry: the bincode encoding of a non-empty
/// `Vec<S::Command>` of the group's state machine (a batch applied in order).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBytes(#[serde(with = "crate::byte_string")] pub Vec<u8>);

/// What applying one log entry returned: the bincode encoding of the `Vec<S::Response>`
/// with one response per command of the entry (empty for blank and membership entries).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseBytes(#[serde(with = "crate::byte_string")] pub Vec<u8>);

impl fmt::Debug for CommandBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandBytes({} bytes)", self.0.len())
    }
}

impl fmt::Debug for ResponseBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseBytes({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration shared by every cbdc Raft group.
    pub TypeConfig:
        D = CommandBytes,
        R = ResponseBytes,
        NodeId = NodeId,
        Node = ReplicaNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Short names for openraft's generic types instantiated with [`TypeConfig`].
pub mod typ {
    use super::{NodeId, ReplicaNode, TypeConfig};

    /// The Raft handle of one replica.
    pub type Raft = openraft::Raft<TypeConfig>;
    /// A log id (term, leader, index).
    pub type LogId = openraft::LogId<NodeId>;
    /// A vote.
    pub type Vote = openraft::Vote<NodeId>;
    /// One log entry.
    pub type Entry = openraft::Entry<TypeConfig>;
    /// The payload of one log entry.
    pub type EntryPayload = openraft::EntryPayload<TypeConfig>;
    /// Membership with its log id, as the state machine stores it.
    pub type StoredMembership = openraft::StoredMembership<NodeId, ReplicaNode>;
    /// A snapshot's metadata.
    pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, ReplicaNode>;
    /// A snapshot (metadata and data).
    pub type Snapshot = openraft::Snapshot<TypeConfig>;
    /// What a storage operation fails with.
    pub type StorageError = openraft::StorageError<NodeId>;
    /// Log state (last purged and last log id).
    pub type LogState = openraft::storage::LogState<TypeConfig>;
    /// Callback of `append`.
    pub type LogFlushed = openraft::storage::LogFlushed<TypeConfig>;
    /// A Raft-level error with an API-specific part.
    pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
    /// A network-level error of an RPC with an API-specific part.
    pub type RPCError<E = openraft::error::Infallible> =
        openraft::error::RPCError<NodeId, ReplicaNode, RaftError<E>>;
    /// AppendEntries request.
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    /// AppendEntries response.
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
    /// Vote request.
    pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
    /// Vote response.
    pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
    /// One chunk of a snapshot.
    pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
    /// Answer to one chunk of a snapshot.
    pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
    /// Error of a client write.
    pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, ReplicaNode>;
    /// Error of a linearizable-read check.
    pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, ReplicaNode>;
    /// The metrics a replica publishes.
    pub type RaftMetrics = openraft::RaftMetrics<NodeId, ReplicaNode>;
}
