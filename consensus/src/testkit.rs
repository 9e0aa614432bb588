//! Test fixtures: a small key-value state machine used by this crate's tests, the
//! `cbdc-raft-testnode` binary and the replication benchmark. Not for production use.

use std::collections::BTreeMap;
use std::sync::Arc;

use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::error::ConsensusError;
use crate::state_machine::StateMachine;
use crate::storage::{cf, clear_cf};

/// The column family of [`KvStateMachine`].
pub const CF_KV: &str = "kv";

/// A command of [`KvStateMachine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Set `key` to `value` (idempotent).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Read `key` through the log (a linearizable read).
    Get {
        /// The key.
        key: String,
    },
}

/// The answer to a [`KvCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// A put was applied; the previous value.
    Put {
        /// What `key` held before.
        previous: Option<String>,
    },
    /// The value of the key read.
    Value(Option<String>),
}

/// A replicated `String → String` map in column family [`CF_KV`].
pub struct KvStateMachine {
    db: Arc<DB>,
}

impl KvStateMachine {
    /// The state machine over a replica's DB.
    pub fn new(db: Arc<DB>) -> Result<Self, ConsensusError> {
        cf(&db, CF_KV)?;
        Ok(Self { db })
    }

    /// The stored value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<String>, ConsensusError> {
        let handle = cf(&self.db, CF_KV)?;
        match self.db.get_cf(handle, key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|e| ConsensusError::Corrupt {
                        what: "kv value",
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Every stored pair.
    pub fn all(&self) -> Result<BTreeMap<String, String>, ConsensusError> {
        let handle = cf(&self.db, CF_KV)?;
        let mut out = BTreeMap::new();
        for item in self.db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            out.insert(
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
        Ok(out)
    }
}

impl StateMachine for KvStateMachine {
    type Command = KvCommand;
    type Response = KvResponse;

    fn column_families() -> &'static [&'static str] {
        &[CF_KV]
    }

    fn apply(
        &mut self,
        batch: &mut WriteBatch,
        commands: Vec<KvCommand>,
    ) -> Result<Vec<KvResponse>, ConsensusError> {
        let handle = cf(&self.db, CF_KV)?;
        // Changes staged by earlier commands of this call: the DB does not show them yet.
        let mut overlay: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::with_capacity(commands.len());
        for command in commands {
            match command {
                KvCommand::Put { key, value } => {
                    let previous = match overlay.get(&key) {
                        Some(v) => Some(v.clone()),
                        None => self.get(&key)?,
                    };
                    batch.put_cf(handle, key.as_bytes(), value.as_bytes());
                    overlay.insert(key, value);
                    out.push(KvResponse::Put { previous });
                }
                KvCommand::Get { key } => {
                    let value = match overlay.get(&key) {
                        Some(v) => Some(v.clone()),
                        None => self.get(&key)?,
                    };
                    out.push(KvResponse::Value(value));
                }
            }
        }
        Ok(out)
    }

    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        let all: Vec<(String, String)> = self.all()?.into_iter().collect();
        crate::error::encode(&all)
    }

    fn install_snapshot(
        &mut self,
        batch: &mut WriteBatch,
        data: &[u8],
    ) -> Result<(), ConsensusError> {
        let all: Vec<(String, String)> = crate::error::decode(data)?;
        clear_cf(&self.db, CF_KV, batch)?;
        let handle = cf(&self.db, CF_KV)?;
        for (k, v) in all {
            batch.put_cf(handle, k.as_bytes(), v.as_bytes());
        }
        Ok(())
    }
}

/// An in-process group of [`KvStateMachine`] replicas on 127.0.0.1 with ports chosen by
/// the OS, each with its data under `base/node-<id>`: one can stop and restart a replica
/// keeping its store. Each replica also serves `GroupClient` on its client endpoint.
pub struct TestGroup {
    base: std::path::PathBuf,
    members: BTreeMap<crate::NodeId, crate::ReplicaNode>,
    tuning: crate::RaftTuning,
    nodes: BTreeMap<crate::NodeId, TestNode>,
}

/// One running replica of a [`TestGroup`].
struct TestNode {
    replica: crate::Replica<KvStateMachine>,
    stop_client: tokio::sync::watch::Sender<bool>,
    client_server: tokio::task::JoinHandle<()>,
}

/// Raft timings for tests on a small, busy machine: quick, but with election timeouts
/// long enough not to flap under a debug build.
pub fn test_tuning() -> crate::RaftTuning {
    crate::RaftTuning {
        heartbeat_interval: std::time::Duration::from_millis(100),
        election_timeout_min: std::time::Duration::from_millis(500),
        election_timeout_max: std::time::Duration::from_millis(1000),
        ..Default::default()
    }
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ConsensusError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ConsensusError::Network(format!("bind {addr}: {e}")))
}

fn local_addr(l: &tokio::net::TcpListener) -> Result<String, ConsensusError> {
    l.local_addr()
        .map(|a| a.to_string())
        .map_err(|e| ConsensusError::Network(e.to_string()))
}

impl TestGroup {
    /// Start a group of `n` replicas (ids 1..=n).
    pub async fn start(
        base: &std::path::Path,
        n: u64,
        tuning: crate::RaftTuning,
    ) -> Result<Self, ConsensusError> {
        // Bind every listener first, so the member list knows every port.
        let mut listeners = BTreeMap::new();
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let peer = bind("127.0.0.1:0").await?;
            let client = bind("127.0.0.1:0").await?;
            members.insert(
                id,
                crate::ReplicaNode::new(local_addr(&peer)?, local_addr(&client)?),
            );
            listeners.insert(id, (peer, client));
        }
        let mut group = Self {
            base: base.to_path_buf(),
            members,
            tuning,
            nodes: BTreeMap::new(),
        };
        for (id, (peer, client)) in listeners {
            group.launch(id, peer, client).await?;
        }
        Ok(group)
    }

    async fn launch(
        &mut self,
        id: crate::NodeId,
        peer: tokio::net::TcpListener,
        client: tokio::net::TcpListener,
    ) -> Result<(), ConsensusError> {
        let config = crate::ReplicaConfig {
            id,
            group: "test".into(),
            data_dir: self.base.join(format!("node-{id}")),
            members: self.members.clone(),
            tuning: self.tuning.clone(),
        };
        let replica = crate::Replica::start(config, peer, KvStateMachine::new).await?;
        let (stop_client, mut stop_rx) = tokio::sync::watch::channel(false);
        let service = crate::GroupClientService::new(replica.handle()).into_server();
        let client_server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(cbdc_proto::incoming(client), async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "test client server failed");
            }
        });
        self.nodes.insert(
            id,
            TestNode {
                replica,
                stop_client,
                client_server,
            },
        );
        Ok(())
    }

    /// Stop replica `id` (keeping its data).
    pub async fn stop(&mut self, id: crate::NodeId) -> Result<(), ConsensusError> {
        let node = self
            .nodes
            .remove(&id)
            .ok_or_else(|| ConsensusError::Config(format!("replica {id} is not running")))?;
        let _ = node.stop_client.send(true);
        let _ = node.client_server.await;
        node.replica.shutdown().await
    }

    /// Restart a stopped replica `id` on its old endpoints and data directory.
    pub async fn restart(&mut self, id: crate::NodeId) -> Result<(), ConsensusError> {
        let node = self
            .members
            .get(&id)
            .cloned()
            .ok_or_else(|| ConsensusError::Config(format!("no replica {id}")))?;
        let peer = bind(&node.peer_addr).await?;
        let client = bind(&node.client_addr).await?;
        self.launch(id, peer, client).await
    }

    /// Stop every running replica.
    pub async fn shutdown(&mut self) -> Result<(), ConsensusError> {
        let ids: Vec<_> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await?;
        }
        Ok(())
    }

    /// The handle of a running replica.
    pub fn handle(&self, id: crate::NodeId) -> Option<crate::ReplicaHandle<KvStateMachine>> {
        self.nodes.get(&id).map(|n| n.replica.handle())
    }

    /// Ids of the running replicas.
    pub fn running(&self) -> Vec<crate::NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The member list.
    pub fn members(&self) -> &BTreeMap<crate::NodeId, crate::ReplicaNode> {
        &self.members
    }

    /// Client endpoints of every member, in id order.
    pub fn client_endpoints(&self) -> Vec<String> {
        self.members
            .values()
            .map(|n| n.client_addr.clone())
            .collect()
    }

    /// Wait until every running replica agrees on one running leader.
    pub async fn wait_leader(
        &self,
        timeout: std::time::Duration,
    ) -> Result<crate::NodeId, ConsensusError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<crate::NodeId>> = self
                .nodes
                .values()
                .map(|n| n.replica.handle().metrics().current_leader)
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                let agreed = leaders.iter().all(|l| *l == Some(*leader));
                let is_leader = self
                    .nodes
                    .get(leader)
                    .is_some_and(|n| n.replica.handle().is_leader());
                if agreed && is_leader {
                    return Ok(*leader);
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(ConsensusError::Timeout(timeout));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Wait until every running replica has applied `index`.
    pub async fn wait_applied(
        &self,
        index: u64,
        timeout: std::time::Duration,
    ) -> Result<(), ConsensusError> {
        for node in self.nodes.values() {
            node.replica.handle().wait_applied(index, timeout).await?;
        }
        Ok(())
    }
}
