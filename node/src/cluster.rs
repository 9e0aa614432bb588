//! A whole cluster in one process: every role of a cluster file (2PC: shard and
//! coordinator replicas; atomizer: atomizer replicas, archiver, watchtower, shards; and
//! the sentinels), on loopback. This is `cbdc dev` (the embedded default) and the
//! harness of the in-process tests and of the benchmark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::atomizer_roles::{start_archiver, start_atomizer, start_watchtower};
use crate::config::{Architecture, ClusterConfig};
use crate::error::NodeError;
use crate::init::{init_cluster_holding_ports, InitOptions};
use crate::listeners::Listeners;
use crate::roles::{start_coordinator, start_sentinel, start_shard, RoleContext, Running};

/// The shape of a development cluster.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The settlement back end.
    pub architecture: Architecture,
    /// Shard groups.
    pub shards: usize,
    /// Replicas per group.
    pub replicas: usize,
    /// Coordinator groups.
    pub coordinators: usize,
    /// Sentinels.
    pub sentinels: usize,
    /// Atomizer: independent shards per range.
    pub shard_copies: usize,
}

impl Default for DevOptions {
    /// 2PC: 2 shard groups, 1 coordinator group, 1 sentinel, 1 replica each (atomizer:
    /// 1 shard per range).
    fn default() -> Self {
        DevOptions {
            architecture: Architecture::TwoPhaseCommit,
            shard_copies: 1,
            shards: 2,
            replicas: 1,
            coordinators: 1,
            sentinels: 1,
        }
    }
}

/// A cluster directory ready to start: its file, and the sockets reserved for it.
pub struct PreparedCluster {
    /// The cluster file.
    pub file: PathBuf,
    /// The validated configuration (paths resolved).
    pub config: ClusterConfig,
    /// Sockets for the endpoints (reserved when the file was just written).
    pub listeners: Listeners,
    /// Whether the file was written now (a fresh cluster) or found (a restart).
    pub created: bool,
}

/// Reuses `dir/cluster.toml` if it exists (a restart keeps its data), or writes a new
/// cluster there with `options`, keeping its ports reserved for this process.
pub fn prepare_dev_dir(dir: &Path, options: &DevOptions) -> Result<PreparedCluster, NodeError> {
    let file = dir.join("cluster.toml");
    if file.exists() {
        let config = ClusterConfig::load(&file)?;
        return Ok(PreparedCluster {
            file,
            config,
            listeners: Listeners::on_demand(),
            created: false,
        });
    }
    let init = InitOptions {
        architecture: options.architecture,
        shard_copies: options.shard_copies,
        shards: options.shards,
        replicas: options.replicas,
        sentinels: options.sentinels,
        coordinators: options.coordinators,
    };
    let (file, ports) = init_cluster_holding_ports(dir, &init)?;
    let config = ClusterConfig::load(&file)?;
    Ok(PreparedCluster {
        file,
        config,
        listeners: Listeners::reserved(ports),
        created: true,
    })
}

/// Every role of a cluster, running in this process.
pub struct Cluster {
    ctx: RoleContext,
    /// In start order: atomizer, archiver, watchtower, shards, coordinators, sentinels.
    roles: Vec<Running>,
}

impl Cluster {
    /// Starts every replica of every group, then the sentinels. On failure, what was
    /// started is stopped again before the error is returned.
    pub async fn start(config: ClusterConfig, listeners: Listeners) -> Result<Self, NodeError> {
        let ctx = RoleContext::new(config, listeners);
        let mut cluster = Cluster {
            ctx: ctx.clone(),
            roles: Vec::new(),
        };
        if let Err(e) = cluster.start_all().await {
            cluster.shutdown().await.ok();
            return Err(e);
        }
        Ok(cluster)
    }

    async fn start_all(&mut self) -> Result<(), NodeError> {
        let config = self.ctx.config.clone();
        // Atomizer: the sequencer, then who follows its blocks, then the shards (which
        // catch up from them), then the sentinels.
        if let Some(atomizer) = &config.atomizer {
            for r in &atomizer.replicas {
                self.roles.push(start_atomizer(&self.ctx, r.id).await?);
            }
        }
        if config.archiver.is_some() {
            self.roles.push(start_archiver(&self.ctx).await?);
        }
        if config.watchtower.is_some() {
            self.roles.push(start_watchtower(&self.ctx).await?);
        }
        for (g, group) in config.shards.iter().enumerate() {
            for r in &group.replicas {
                self.roles.push(start_shard(&self.ctx, g, r.id).await?);
            }
        }
        for (g, group) in config.coordinators.iter().enumerate() {
            for r in &group.replicas {
                self.roles
                    .push(start_coordinator(&self.ctx, g, r.id).await?);
            }
        }
        for s in &config.sentinels {
            self.roles.push(start_sentinel(&self.ctx, s.id).await?);
        }
        Ok(())
    }

    /// The cluster file's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.ctx.config
    }

    /// The sentinels' public endpoints.
    pub fn sentinel_endpoints(&self) -> Vec<SocketAddr> {
        self.ctx
            .config
            .sentinels
            .iter()
            .map(|s| s.endpoint)
            .collect()
    }

    /// Names of the running roles, in start order.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.name().to_string()).collect()
    }

    /// Stops the roles in the reverse order of their start (sentinels first: no new
    /// work; the atomizer last); returns the first error after trying to stop
    /// everything. The replicas of one Raft group stop together: stopped one by one, the
    /// group's leader spent each follower's shutdown failing to reach it, a screen of
    /// warnings after every benchmark's summary.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let mut first_error = None;
        let mut roles = self.roles;
        while let Some(last) = roles.last() {
            let group = raft_group(last.name()).to_string();
            let start = roles
                .iter()
                .rposition(|r| raft_group(r.name()) != group)
                .map_or(0, |i| i + 1);
            let stops = roles
                .split_off(start)
                .into_iter()
                .rev()
                .map(|role| async move {
                    let name = role.name().to_string();
                    (name, role.shutdown().await)
                });
            for (name, result) in futures::future::join_all(stops).await {
                if let Err(e) = result {
                    tracing::error!(role = %name, error = %e, "stop failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The Raft group a role belongs to: its name up to the replica (`shard-0` of
/// `shard-0/r2`); a role without replicas is a group of its own.
fn raft_group(role: &str) -> &str {
    role.split_once('/').map_or(role, |(group, _)| group)
}

#[cfg(test)]
mod tests {
    use super::raft_group;

    #[test]
    fn test_replicas_of_a_group_share_it_and_other_roles_are_their_own() {
        assert_eq!(raft_group("shard-0/r2"), "shard-0");
        assert_eq!(raft_group("coordinator-1/r1"), "coordinator-1");
        assert_eq!(raft_group("atomizer/r3"), "atomizer");
        assert_eq!(raft_group("sentinel-0"), "sentinel-0");
    }
}
