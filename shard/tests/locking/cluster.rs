//! An in-process locking shard group: `n` replicas on 127.0.0.1 with ports chosen by the
//! OS, each serving `LockingShard` and `ShardQuery` on its client endpoint, each with its
//! data under its own directory. A replica can be stopped and the rest keep going.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cbdc_consensus::testkit::test_tuning;
use cbdc_consensus::{NodeId, Replica, ReplicaConfig, ReplicaHandle, ReplicaNode};
use cbdc_core::AttestationVerifier;
use cbdc_shard::{LockingShardMachine, LockingShardParams, LockingShardService, ShardQueryService};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One running replica and its client server.
struct Node {
    replica: Replica<LockingShardMachine>,
    stop_client: watch::Sender<bool>,
    client_server: JoinHandle<()>,
}

/// A running locking shard group.
pub struct ShardGroup {
    base: PathBuf,
    members: BTreeMap<NodeId, ReplicaNode>,
    params: LockingShardParams,
    verifier: Arc<AttestationVerifier>,
    nodes: BTreeMap<NodeId, Node>,
}

async fn bind() -> Result<(TcpListener, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    Ok((listener, addr))
}

impl ShardGroup {
    /// Starts replicas 1..=n with data under `base`.
    pub async fn start(
        base: &std::path::Path,
        n: u64,
        params: LockingShardParams,
        verifier: Arc<AttestationVerifier>,
    ) -> Result<Self> {
        // Every listener first, so that the member list knows every port.
        let mut listeners = BTreeMap::new();
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let (peer, peer_addr) = bind().await?;
            let (client, client_addr) = bind().await?;
            members.insert(id, ReplicaNode::new(peer_addr, client_addr));
            listeners.insert(id, (peer, client));
        }
        let mut group = ShardGroup {
            base: base.to_path_buf(),
            members,
            params,
            verifier,
            nodes: BTreeMap::new(),
        };
        for (id, (peer, client)) in listeners {
            group.launch(id, peer, client).await?;
        }
        Ok(group)
    }

    async fn launch(&mut self, id: NodeId, peer: TcpListener, client: TcpListener) -> Result<()> {
        let config = ReplicaConfig {
            id,
            group: "shard-test".into(),
            data_dir: self.base.join(format!("node-{id}")),
            members: self.members.clone(),
            tuning: test_tuning(),
        };
        let params = self.params.clone();
        let replica =
            Replica::start(config, peer, move |db| LockingShardMachine::new(db, params)).await?;
        let locking = LockingShardService::new(replica.handle(), self.verifier.clone());
        let query = ShardQueryService::new(replica.handle());
        let (stop_client, mut stop_rx) = watch::channel(false);
        let client_server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(locking.into_server())
                .add_service(query.into_server())
                .serve_with_incoming_shutdown(cbdc_proto::incoming(client), async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("client server of replica {id} failed: {e}");
            }
        });
        self.nodes.insert(
            id,
            Node {
                replica,
                stop_client,
                client_server,
            },
        );
        Ok(())
    }

    /// Stops replica `id` (its data stays).
    pub async fn stop(&mut self, id: NodeId) -> Result<()> {
        let node = self
            .nodes
            .remove(&id)
            .ok_or_else(|| anyhow!("replica {id} is not running"))?;
        let _ = node.stop_client.send(true);
        node.client_server.await?;
        node.replica.shutdown().await?;
        Ok(())
    }

    /// Stops every running replica.
    pub async fn shutdown(&mut self) -> Result<()> {
        let ids: Vec<_> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await?;
        }
        Ok(())
    }

    /// The handle of running replica `id`.
    pub fn handle(&self, id: NodeId) -> Result<ReplicaHandle<LockingShardMachine>> {
        self.nodes
            .get(&id)
            .map(|n| n.replica.handle())
            .ok_or_else(|| anyhow!("replica {id} is not running"))
    }

    /// `http://host:port` of replica `id`'s client endpoint.
    pub fn url(&self, id: NodeId) -> Result<String> {
        Ok(format!("http://{}", self.client_addr(id)?))
    }

    /// `host:port` of replica `id`'s client endpoint.
    pub fn client_addr(&self, id: NodeId) -> Result<String> {
        self.members
            .get(&id)
            .map(|m| m.client_addr.clone())
            .ok_or_else(|| anyhow!("no replica {id}"))
    }

    /// Ids of the running replicas.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Waits until every running replica names the same running replica as leader and
    /// that replica knows it leads.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<NodeId>> = self
                .nodes
                .values()
                .map(|n| n.replica.handle().metrics().current_leader)
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                let agreed = leaders.iter().all(|l| *l == Some(*leader));
                let leads = self
                    .nodes
                    .get(leader)
                    .is_some_and(|n| n.replica.handle().is_leader());
                if agreed && leads {
                    return Ok(*leader);
                }
            }
            if Instant::now() > deadline {
                bail!("no agreed leader after {timeout:?} (views: {leaders:?})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running replica has applied what `leader` has applied.
    pub async fn wait_caught_up(&self, leader: NodeId, timeout: Duration) -> Result<()> {
        let index = self.handle(leader)?.applied_index();
        for (id, node) in &self.nodes {
            node.replica
                .handle()
                .wait_applied(index, timeout)
                .await
                .with_context(|| format!("replica {id} did not apply index {index}"))?;
        }
        Ok(())
    }
}
