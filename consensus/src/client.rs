//! Leader forwarding for client-facing gRPC services.
//!
//! Convention: a replica that is not the leader answers `UNAVAILABLE` with the leader's
//! client endpoint (`host:port`) in the [`LEADER_METADATA_KEY`] metadata entry, absent
//! while no leader is known. [`to_status`] produces such an answer; [`LeaderClient`]
//! follows it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cbdc_proto::raft::group_client_client::GroupClientClient;
use cbdc_proto::raft::WriteRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::Status;

use crate::error::{decode, encode, ConsensusError};
use crate::network::{lazy_channel, MAX_MESSAGE_SIZE};

/// gRPC metadata key carrying the leader's client endpoint on a not-leader answer.
pub const LEADER_METADATA_KEY: &str = "x-cbdc-leader";

/// The gRPC status for a replication-layer error: `NotLeader` and other retryable errors
/// become `UNAVAILABLE` (with the leader hint when known), codec errors `INVALID_ARGUMENT`,
/// the rest `INTERNAL`.
pub fn to_status(err: &ConsensusError) -> Status {
    match err {
        ConsensusError::NotLeader { leader_addr, .. } => {
            let mut status = Status::unavailable(err.to_string());
            if let Some(addr) = leader_addr {
                if let Ok(value) = addr.parse() {
                    status.metadata_mut().insert(LEADER_METADATA_KEY, value);
                }
            }
            status
        }
        ConsensusError::ShuttingDown | ConsensusError::Network(_) | ConsensusError::Timeout(_) => {
            Status::unavailable(err.to_string())
        }
        ConsensusError::Status { code, message } => Status::new(*code, message.clone()),
        ConsensusError::Codec(_) => Status::invalid_argument(err.to_string()),
        _ => Status::internal(err.to_string()),
    }
}

/// The leader's client endpoint named by a not-leader status, if any.
pub fn leader_hint(status: &Status) -> Option<String> {
    let value = status.metadata().get(LEADER_METADATA_KEY)?;
    let s = value.to_str().ok()?;
    (!s.is_empty()).then(|| s.to_string())
}

/// A client of one replicated group that finds and follows the leader.
///
/// It sends each call to the replica it last saw answer (initially the first endpoint);
/// on `UNAVAILABLE` it switches to the leader named in the hint, or else to the next
/// endpoint after a backoff (10 ms doubling to 500 ms), until the call succeeds, fails
/// with another status, or `timeout` is spent.
///
/// Delivery is at-least-once: a call whose answer was lost with a crashed leader is sent
/// again, so commands must be idempotent (as every cbdc role's commands are).
pub struct LeaderClient {
    endpoints: Vec<String>,
    timeout: Duration,
    /// Channels by endpoint, created lazily, reused for every call.
    channels: Mutex<HashMap<String, Channel>>,
    /// Where the next call goes first: the last endpoint that answered or was hinted.
    current: Mutex<Option<String>>,
}

impl LeaderClient {
    /// A client of the group whose replicas serve client calls at `endpoints` (`host:port`),
    /// giving up on a call after 10 s.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            timeout: Duration::from_secs(10),
            channels: Mutex::new(HashMap::new()),
            current: Mutex::new(None),
        }
    }

    /// Give up on a call after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn channel(&self, addr: &str) -> Result<Channel, ConsensusError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| ConsensusError::Network("channel cache poisoned".into()))?;
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let ch = lazy_channel(addr)?;
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    fn set_current(&self, addr: Option<String>) {
        if let Ok(mut current) = self.current.lock() {
            *current = addr;
        }
    }

    fn get_current(&self) -> Option<String> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Run `call` against the leader: `call` gets a channel to one replica and makes one
    /// gRPC request over it.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, ConsensusError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        if self.endpoints.is_empty() {
            return Err(ConsensusError::Config("no endpoints".into()));
        }
        let deadline = Instant::now() + self.timeout;
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(10);
        let mut target = self
            .get_current()
            .unwrap_or_else(|| self.endpoints[0].clone());
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ConsensusError::Timeout(self.timeout));
            }
            let channel = self.channel(&target)?;
            let outcome = tokio::time::timeout(remaining, call(channel)).await;
            let status = match outcome {
                Err(_) => return Err(ConsensusError::Timeout(self.timeout)),
                Ok(Ok(value)) => {
                    self.set_current(Some(target));
                    return Ok(value);
                }
                Ok(Err(status)) => status,
            };
            if status.code() != tonic::Code::Unavailable {
                return Err(ConsensusError::Status {
                    code: status.code(),
                    message: status.message().to_string(),
                });
            }
            match leader_hint(&status) {
                Some(leader) if leader != target => {
                    tracing::debug!(from = %target, to = %leader, "following the leader hint");
                    target = leader;
                }
                _ => {
                    tracing::debug!(endpoint = %target, status = %status.message(), "replica unavailable; trying another");
                    next = (next + 1) % self.endpoints.len();
                    if self.endpoints[next] == target {
                        next = (next + 1) % self.endpoints.len();
                    }
                    target = self.endpoints[next].clone();
                    self.set_current(None);
                    let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Replicate a batch of commands through the generic `GroupClient` service and return
    /// one response per command (see [`crate::GroupClientService`]).
    pub async fn write<C, R>(&self, commands: &[C]) -> Result<Vec<R>, ConsensusError>
    where
        C: Serialize,
        R: DeserializeOwned,
    {
        // Shared by every attempt: a retry clones a reference, not the commands.
        let bytes = prost::bytes::Bytes::from(encode(commands)?);
        let reply = self
            .call(|channel| {
                let bytes = bytes.clone();
                async move {
                    let mut client = GroupClientClient::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE_SIZE)
                        .max_encoding_message_size(MAX_MESSAGE_SIZE);
                    client
                        .write(WriteRequest { commands: bytes })
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await?;
        decode(&reply.responses)
    }
}
