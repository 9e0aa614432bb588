//! Starting and stopping the atomizer architecture's roles from the cluster file: an
//! atomizer replica, an atomizer-mode shard, the archiver, the watchtower, and the
//! sentinel's atomizer back end.

use std::time::Duration;

use cbdc_atomizer::archiver::{Archiver, ArchiverParams};
use cbdc_atomizer::watchtower::{Watchtower, WatchtowerParams};
use cbdc_atomizer::{AtomizerMachine, AtomizerService, MachineParams, Sequencer, SequencerParams};
use cbdc_sentinel::{AtomizerBackend, AtomizerEndpoints, SentinelParams};
use cbdc_shard::atomizer::{AtomizerShard, AtomizerShardParams};

use crate::config::{AtomizerConfig, ClusterConfig, ReplicaConfig, ShardGroupConfig};
use crate::error::NodeError;
use crate::roles::{find_replica, start_replica, RoleContext, Running, Server, REQUEST_TIMEOUT};

/// Pause before a follower of blocks tries a failed source again.
const RETRY: Duration = Duration::from_millis(100);
/// Most partial transactions the atomizer leader holds at once.
const MAX_PARTIALS: usize = 1_000_000;

/// A running atomizer-mode component behind its gRPC [`Server`].
pub enum Component {
    /// An atomizer-mode shard.
    Shard(AtomizerShard),
    /// The archiver.
    Archiver(Archiver),
    /// The watchtower.
    Watchtower(Watchtower),
}

impl Component {
    /// Stops the component (after its server stopped) and closes its storage.
    pub async fn shutdown(self, role: &str) -> Result<(), NodeError> {
        let failed = |message: String| NodeError::Role {
            role: role.to_string(),
            message,
        };
        match self {
            Component::Shard(shard) => shard.shutdown().await.map_err(|e| failed(e.to_string())),
            Component::Archiver(archiver) => {
                archiver.shutdown().await.map_err(|e| failed(e.to_string()))
            }
            Component::Watchtower(watchtower) => {
                watchtower.shutdown().await;
                Ok(())
            }
        }
    }
}

fn atomizer_config(config: &ClusterConfig) -> Result<&AtomizerConfig, NodeError> {
    config
        .atomizer
        .as_ref()
        .ok_or_else(|| NodeError::NotInConfig("the cluster file has no [atomizer]".into()))
}

fn endpoint_of<T>(
    section: &Option<T>,
    name: &str,
    endpoint: impl Fn(&T) -> std::net::SocketAddr,
) -> Result<String, NodeError> {
    section
        .as_ref()
        .map(|s| endpoint(s).to_string())
        .ok_or_else(|| NodeError::NotInConfig(format!("the cluster file has no [{name}]")))
}

/// Starts replica `replica_id` of the atomizer group.
pub async fn start_atomizer(ctx: &RoleContext, replica_id: u64) -> Result<Running, NodeError> {
    let atomizer = atomizer_config(&ctx.config)?;
    let replica = find_replica("atomizer", 0, &atomizer.replicas, replica_id)?;
    let name = format!("atomizer/r{}", replica.id);
    let machine = MachineParams {
        stxo_cache_depth: atomizer.stxo_cache_depth,
    };
    let sequencer = SequencerParams {
        block_interval: atomizer.block_interval,
        max_batch: atomizer.max_batch,
        stxo_cache_depth: atomizer.stxo_cache_depth,
        max_partials: MAX_PARTIALS,
    };
    let verifier = ctx.verifier()?;
    let started = start_replica(ctx, name, replica, &atomizer.replicas, |db| {
        AtomizerMachine::open(db, machine)
    })
    .await?;
    let sequencer = Sequencer::start(started.replica.handle(), sequencer);
    let routes = tonic::service::Routes::new(
        AtomizerService::new(sequencer.client(), verifier).into_server(),
    );
    Ok(Running::Atomizer(started.serve(routes), sequencer))
}

/// Starts the atomizer-mode shard `replica` of range `group` (independent of the other
/// shards of its range).
pub(crate) async fn start_atomizer_shard(
    ctx: &RoleContext,
    name: String,
    group: &ShardGroupConfig,
    replica: &ReplicaConfig,
) -> Result<Running, NodeError> {
    let config = &ctx.config;
    let params = AtomizerShardParams {
        data_dir: replica.data_dir.clone(),
        range: group.range(),
        atomizer: config.atomizer_endpoints(),
        archiver: endpoint_of(&config.archiver, "archiver", |a| a.endpoint)?,
        watchtower: endpoint_of(&config.watchtower, "watchtower", |w| w.endpoint)?,
        verifier: ctx.verifier()?,
        request_timeout: REQUEST_TIMEOUT,
        missing_grace_blocks: 2,
        retry: RETRY,
    };
    let listener = ctx.listeners.take(replica.endpoint)?;
    let shard = AtomizerShard::start(params)
        .await
        .map_err(|e| NodeError::Role {
            role: name.clone(),
            message: e.to_string(),
        })?;
    let routes =
        tonic::service::Routes::new(shard.submit_service()).add_service(shard.query_service());
    Ok(Running::Service(
        Server::start(name, listener, routes),
        Component::Shard(shard),
    ))
}

/// Starts the archiver.
pub async fn start_archiver(ctx: &RoleContext) -> Result<Running, NodeError> {
    let name = "archiver".to_string();
    let section = ctx
        .config
        .archiver
        .as_ref()
        .ok_or_else(|| NodeError::NotInConfig("the cluster file has no [archiver]".into()))?;
    let listener = ctx.listeners.take(section.endpoint)?;
    let archiver = Archiver::start(ArchiverParams {
        data_dir: section.data_dir.clone(),
        atomizer: ctx.config.atomizer_endpoints(),
        prune_every: section.prune_every.max(1),
        retry: RETRY,
    })
    .await
    .map_err(|e| NodeError::Role {
        role: name.clone(),
        message: e.to_string(),
    })?;
    let routes = tonic::service::Routes::new(archiver.service());
    Ok(Running::Service(
        Server::start(name, listener, routes),
        Component::Archiver(archiver),
    ))
}

/// Starts the watchtower.
pub async fn start_watchtower(ctx: &RoleContext) -> Result<Running, NodeError> {
    let config = &ctx.config;
    let section = config
        .watchtower
        .as_ref()
        .ok_or_else(|| NodeError::NotInConfig("the cluster file has no [watchtower]".into()))?;
    let listener = ctx.listeners.take(section.endpoint)?;
    let watchtower = Watchtower::start(WatchtowerParams {
        atomizer: config.atomizer_endpoints(),
        archiver: endpoint_of(&config.archiver, "archiver", |a| a.endpoint)?,
        retention: section.retention,
        retry: RETRY,
    });
    let routes = tonic::service::Routes::new(watchtower.service());
    Ok(Running::Service(
        Server::start("watchtower".into(), listener, routes),
        Component::Watchtower(watchtower),
    ))
}

/// The sentinel's back end in an atomizer cluster.
pub(crate) fn atomizer_backend(
    config: &ClusterConfig,
    params: &SentinelParams,
) -> Result<AtomizerBackend, NodeError> {
    let endpoints = AtomizerEndpoints {
        atomizer: config.atomizer_endpoints(),
        watchtower: endpoint_of(&config.watchtower, "watchtower", |w| w.endpoint)?,
    };
    Ok(AtomizerBackend::new(params, &endpoints)?)
}
