//! The Raft network: openraft's RPCs over the peer-only gRPC service `cbdc.raft.v1.RaftPeer`.
//!
//! Wire format: each request and each `Result<response, RaftError>` is serialized with
//! **bincode** (1.x, default options) into a `RaftPayload`. bincode is compact and fast on
//! the hot path (AppendEntries carries every command); openraft's types contain nothing
//! bincode cannot encode (no untagged enums, no skipped fields). The format is private to
//! cbdc-consensus: all replicas of a group must run the same version.
//!
//! Client side: one [`Network`] per replica caches one lazily connected tonic `Channel` per
//! peer (HTTP/2, multiplexed, reconnecting by itself), shared by every [`PeerClient`]
//! openraft creates. A refused or failed connection is reported as `Unreachable`, so
//! openraft backs off instead of retrying in a tight loop. Snapshots go in chunks
//! (openraft 0.9's chunked `install_snapshot`, chunk size from
//! [`RaftTuning::snapshot_chunk_size`](crate::RaftTuning)).

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cbdc_proto::raft::raft_peer_client::RaftPeerClient;
use cbdc_proto::raft::raft_peer_server::{RaftPeer, RaftPeerServer};
use cbdc_proto::raft::RaftPayload;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::error::{decode, encode, ConsensusError};
use crate::types::{typ, NodeId, ReplicaNode, TypeConfig};

/// Largest gRPC message accepted or sent on Raft and client services (256 MiB): an
/// AppendEntries carries up to [`crate::RaftTuning::max_payload_entries`] entries, and a
/// coordinator's Prepare entry holds a whole dtx (about 650 bytes per transaction, so
/// 10 MiB at the largest batch size of 16,384).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// How long a peer connection attempt may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A lazily connecting channel to `addr` (`host:port`).
pub fn lazy_channel(addr: &str) -> Result<Channel, ConsensusError> {
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ConsensusError::Config(format!("bad endpoint {addr:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// openraft's network factory: hands out [`PeerClient`]s over cached channels.
#[derive(Clone)]
pub struct Network {
    id: NodeId,
    /// Channel per peer id, with the address it was made for. A std mutex: held only to
    /// clone or insert a channel, never across an `.await`.
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
}

impl Network {
    /// The network of replica `id`.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, ConsensusError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| ConsensusError::Network("channel cache poisoned".into()))?;
        if let Some((cached_addr, ch)) = channels.get(&target) {
            if cached_addr == addr {
                return Ok(ch.clone());
            }
        }
        let ch = lazy_channel(addr)?;
        channels.insert(target, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ReplicaNode) -> PeerClient {
        let channel = self
            .channel(target, &node.peer_addr)
            .map_err(|e| e.to_string());
        PeerClient {
            id: self.id,
            target,
            node: node.clone(),
            channel,
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    node: ReplicaNode,
    /// The cached channel, or why none could be made (a malformed address).
    channel: Result<Channel, String>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ReplicaNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let channel = match &self.channel {
            Ok(ch) => ch.clone(),
            Err(e) => {
                let e = ConsensusError::Config(e.clone());
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let ttl = option.hard_ttl();
        let mut request = Request::new(RaftPayload { data: data.into() });
        request.set_timeout(ttl);
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::Snapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                let action = match rpc {
                    Rpc::Append => RPCTypes::AppendEntries,
                    Rpc::Vote => RPCTypes::Vote,
                    Rpc::Snapshot => RPCTypes::InstallSnapshot,
                };
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => {
                let e = ConsensusError::Status {
                    code: status.code(),
                    message: status.message().to_string(),
                };
                return Err(if status.code() == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: typ::AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<typ::AppendEntriesResponse, RPCError<NodeId, ReplicaNode, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: typ::InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<
        typ::InstallSnapshotResponse,
        RPCError<NodeId, ReplicaNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, RPCError<NodeId, ReplicaNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

/// The server side of `RaftPeer`: decodes a request, hands it to the local Raft, and
/// ships back the encoded `Result`.
pub struct RaftPeerService {
    raft: typ::Raft,
}

impl RaftPeerService {
    /// The service for one replica's Raft.
    pub fn new(raft: typ::Raft) -> Self {
        Self { raft }
    }

    /// As a tonic service, with the message size limit raised to [`MAX_MESSAGE_SIZE`].
    pub fn into_server(self) -> RaftPeerServer<Self> {
        RaftPeerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

fn bad_payload(e: ConsensusError) -> Status {
    Status::invalid_argument(format!("undecodable Raft payload: {e}"))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let data = encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data: data.into() }))
}

#[tonic::async_trait]
impl RaftPeer for RaftPeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: typ::AppendEntriesRequest =
            decode(&request.into_inner().data).map_err(bad_payload)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: typ::VoteRequest = decode(&request.into_inner().data).map_err(bad_payload)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: typ::InstallSnapshotRequest =
            decode(&request.into_inner().data).map_err(bad_payload)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}

/// The lowest port [`reserve_loopback_port`] draws.
const LOWEST_PORT: u16 = 10_000;
/// Random draws before falling back to port 0.
const PORT_DRAWS: usize = 64;

/// The first port of the kernel's ephemeral range (Linux); the IANA range's start where
/// it cannot be read.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(49_152)
}

/// A listener on a free loopback port for a cluster file: a port drawn at random
/// *below* the kernel's ephemeral range. Port 0 would pick one inside it, where every
/// outgoing connection takes its local port, so a role restarted after a crash could
/// find its listening port held by some other process's connection. Where the range
/// leaves no room below it, port 0 it is.
pub fn reserve_loopback_port() -> std::io::Result<std::net::TcpListener> {
    use rand_core::RngCore;
    let end = ephemeral_start();
    if LOWEST_PORT < end {
        let span = u32::from(end - LOWEST_PORT);
        for _ in 0..PORT_DRAWS {
            // `span` < 2^16, so the offset fits in a u16.
            let port = LOWEST_PORT + (rand_core::OsRng.next_u32() % span) as u16;
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Ok(listener);
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reserved_ports_lie_below_the_ephemeral_range() {
        let held: Vec<_> = (0..20).map(|_| reserve_loopback_port().unwrap()).collect();
        if LOWEST_PORT < ephemeral_start() {
            for listener in &held {
                let port = listener.local_addr().unwrap().port();
                assert!((LOWEST_PORT..ephemeral_start()).contains(&port), "{port}");
            }
        }
    }
}
