//! The one error type of the replication layer.

use crate::types::NodeId;

/// What can go wrong in the replication layer.
///
/// Business rejections of a state machine (a double spend, a missing input) are never
/// errors here: they are ordinary responses of [`StateMachine::apply`](crate::StateMachine::apply).
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// This replica is not the leader; retry at the leader's client endpoint when known.
    #[error("not the leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// The leader's id, when this replica knows it.
        leader_id: Option<NodeId>,
        /// The leader's client endpoint (`host:port`), when known.
        leader_addr: Option<String>,
    },
    /// RocksDB failed (opening, reading or writing).
    #[error("storage: {0}")]
    Storage(#[from] rocksdb::Error),
    /// Stored bytes could not be decoded (corruption or an incompatible version).
    #[error("corrupt stored data in {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A command, response or RPC payload could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The state machine failed in a way that must stop it (not a business rejection).
    #[error("state machine: {0}")]
    StateMachine(String),
    /// Raft itself failed (a fatal error, a shutdown, an invalid configuration).
    #[error("raft: {0}")]
    Raft(String),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A network operation failed (bind, connect, gRPC transport).
    #[error("network: {0}")]
    Network(String),
    /// A remote replica answered with an error status.
    #[error("rpc status {code:?}: {message}")]
    Status {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// No answer in time (the leader client gave up).
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The replica is shutting down.
    #[error("replica is shutting down")]
    ShuttingDown,
}

impl ConsensusError {
    /// Whether the operation may succeed if retried (elsewhere or later).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConsensusError::NotLeader { .. }
                | ConsensusError::Network(_)
                | ConsensusError::Timeout(_)
                | ConsensusError::Status {
                    code: tonic::Code::Unavailable,
                    ..
                }
        )
    }
}

/// Encode a value with bincode, mapping the failure to [`ConsensusError::Codec`].
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ConsensusError> {
    to_bincode(value).map_err(|e| ConsensusError::Codec(e.to_string()))
}

/// The bytes of `bincode::serialize(value)`, written straight into a growing buffer:
/// `bincode::serialize` first walks the whole value once more to size its buffer, with a
/// call per byte of every 32-byte id, which profiles of `cbdc bench` found costing three
/// times the encoding itself for a 2PC shard's commands. Same options, same bytes. The
/// buffer starts at 64 bytes, enough for the small records (a shard's outcome record takes
/// a dozen) that would otherwise be copied on their way up from 8.
pub fn to_bincode<T: serde::Serialize + ?Sized>(value: &T) -> bincode::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    bincode::serialize_into(&mut out, value)?;
    Ok(out)
}

/// Decode a value with bincode, mapping the failure to [`ConsensusError::Codec`].
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConsensusError> {
    bincode::deserialize(bytes).map_err(|e| ConsensusError::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_to_bincode_writes_the_bytes_of_bincode_serialize() {
        // Ids are fixed arrays (a tuple of bytes to serde), next to sequences, options and
        // integers of each width: what commands and records are made of.
        type Sample = (
            [u8; 32],
            Vec<[u8; 32]>,
            Option<(u64, u32)>,
            Option<u16>,
            String,
        );
        let value: Sample = (
            [7u8; 32],
            vec![[1u8; 32], [2u8; 32]],
            Some((u64::MAX, 3u32)),
            None::<u16>,
            "dtx".to_string(),
        );
        assert_eq!(
            to_bincode(&value).unwrap(),
            bincode::serialize(&value).unwrap()
        );
        let back: Sample = decode(&encode(&value).unwrap()).unwrap();
        assert_eq!(back, value);
    }
}
