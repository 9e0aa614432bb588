//! Starting and stopping each role from the cluster file: a shard replica, a
//! coordinator replica, a sentinel (the atomizer architecture's own roles are in
//! [`crate::atomizer_roles`]). `cbdc run` starts one; an in-process
//! cluster ([`crate::cluster`]) starts them all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cbdc_atomizer::{AtomizerMachine, Sequencer};
use cbdc_consensus::{RaftTuning, Replica, ReplicaNode, ReplicaStatusService};
use cbdc_coordinator::{Coordinator, CoordinatorMachine, CoordinatorParams, GrpcShardGroups};
use cbdc_core::{read_key_file, AttestationVerifier, Validator};
use cbdc_sentinel::{SentinelParams, TwoPhaseBackend};
use cbdc_shard::{LockingShardMachine, LockingShardParams, LockingShardService, ShardQueryService};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Architecture, ClusterConfig, ReplicaConfig, SentinelConfig};
use crate::error::NodeError;
use crate::listeners::Listeners;

/// How long a sentinel or coordinator waits for the next hop before answering
/// `UNAVAILABLE` (the transaction may still settle; a retry gets its real outcome).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every role needs to start.
#[derive(Clone)]
pub struct RoleContext {
    /// The validated cluster file.
    pub config: Arc<ClusterConfig>,
    /// Where the roles' sockets come from.
    pub listeners: Arc<Listeners>,
}

impl RoleContext {
    /// A context over `config`, binding sockets from `listeners`.
    pub fn new(config: ClusterConfig, listeners: Listeners) -> Self {
        RoleContext {
            config: Arc::new(config),
            listeners: Arc::new(listeners),
        }
    }

    pub(crate) fn verifier(&self) -> Result<Arc<AttestationVerifier>, NodeError> {
        Ok(Arc::new(AttestationVerifier::new(
            self.config.sentinel_keys()?,
            self.config.attestation_threshold,
        )))
    }

    fn tuning(&self) -> RaftTuning {
        RaftTuning {
            storage: self.config.storage.tuning(),
            ..self.config.raft.tuning()
        }
    }
}

/// One running role; [`Running::shutdown`] stops it gracefully.
pub enum Running {
    /// A locking shard replica.
    Shard(ServedReplica<LockingShardMachine>),
    /// A coordinator replica and its driver.
    Coordinator(ServedReplica<CoordinatorMachine>, Coordinator),
    /// A sentinel.
    Sentinel(ServedSentinel),
    /// An atomizer replica and its sequencer.
    Atomizer(ServedReplica<AtomizerMachine>, Sequencer),
    /// An atomizer-mode shard, the archiver or the watchtower.
    Service(Server, crate::atomizer_roles::Component),
}

impl Running {
    /// e.g. `shard-0/r1`, `coordinator-0/r2`, `sentinel-0`.
    pub fn name(&self) -> &str {
        match self {
            Running::Shard(r) => r.server.name(),
            Running::Coordinator(r, _) => r.server.name(),
            Running::Sentinel(s) => &s.name,
            Running::Atomizer(r, _) => r.server.name(),
            Running::Service(server, _) => server.name(),
        }
    }

    /// Stops serving, lets calls in progress finish, and closes storage.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        match self {
            Running::Shard(r) => r.shutdown().await,
            Running::Coordinator(r, coordinator) => {
                coordinator.shutdown().await;
                r.shutdown().await
            }
            Running::Sentinel(s) => s.shutdown().await,
            Running::Atomizer(r, sequencer) => {
                sequencer.shutdown().await;
                r.shutdown().await
            }
            Running::Service(server, component) => {
                let name = server.name().to_string();
                let served = server.shutdown().await;
                let stopped = component.shutdown(&name).await;
                tracing::info!(role = %name, "stopped");
                served.and(stopped)
            }
        }
    }
}

/// A gRPC server on one listener, until [`Server::shutdown`].
pub struct Server {
    name: String,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Serves `routes` on `listener` as role `name`.
    pub(crate) fn start(
        name: String,
        listener: tokio::net::TcpListener,
        routes: tonic::service::Routes,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let addr = listener.local_addr().ok();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(cbdc_proto::incoming(listener), async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }),
        );
        tracing::info!(role = %name, endpoint = ?addr, "serving");
        Server { name, server, stop }
    }

    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops accepting calls and waits for the calls in progress.
    pub(crate) async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        join_server(&self.name, self.server).await
    }
}

/// A Raft replica with its client-facing gRPC server.
pub struct ServedReplica<S: cbdc_consensus::StateMachine> {
    server: Server,
    replica: Replica<S>,
}

impl<S: cbdc_consensus::StateMachine> ServedReplica<S> {
    pub(crate) async fn shutdown(self) -> Result<(), NodeError> {
        let name = self.server.name.clone();
        let server = self.server.shutdown().await;
        let replica = self
            .replica
            .shutdown()
            .await
            .map_err(|source| NodeError::Consensus {
                role: name.clone(),
                source,
            });
        tracing::info!(role = %name, "stopped");
        server.and(replica)
    }
}

/// A running sentinel.
pub struct ServedSentinel {
    name: String,
    server: JoinHandle<Result<(), cbdc_sentinel::ServeError>>,
    stop: watch::Sender<bool>,
}

impl ServedSentinel {
    async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        let result = match self.server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NodeError::Server {
                role: self.name.clone(),
                message: e.to_string(),
            }),
            Err(e) => Err(NodeError::Server {
                role: self.name.clone(),
                message: format!("task failed: {e}"),
            }),
        };
        tracing::info!(role = %self.name, "stopped");
        result
    }
}

async fn join_server(
    role: &str,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
) -> Result<(), NodeError> {
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(NodeError::Server {
            role: role.to_string(),
            message: e.to_string(),
        }),
        Err(e) => Err(NodeError::Server {
            role: role.to_string(),
            message: format!("task failed: {e}"),
        }),
    }
}

fn members(replicas: &[ReplicaConfig]) -> BTreeMap<u64, ReplicaNode> {
    replicas
        .iter()
        .map(|r| {
            // Validation guarantees every Raft replica has a peer endpoint.
            let peer = r.raft_endpoint.map(|a| a.to_string()).unwrap_or_default();
            (r.id, ReplicaNode::new(peer, r.endpoint.to_string()))
        })
        .collect()
}

pub(crate) fn find_replica<'a>(
    kind: &str,
    group: u64,
    replicas: &'a [ReplicaConfig],
    id: u64,
) -> Result<&'a ReplicaConfig, NodeError> {
    replicas
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| NodeError::NotInConfig(format!("{kind} group {group} has no replica {id}")))
}

/// A replica whose Raft is running but whose client endpoint is not served yet.
pub(crate) struct StartedReplica<S: cbdc_consensus::StateMachine> {
    name: String,
    pub(crate) replica: Replica<S>,
    client_listener: tokio::net::TcpListener,
}

/// Opens the replica's storage and starts Raft on its peer endpoint.
pub(crate) async fn start_replica<S: cbdc_consensus::StateMachine>(
    ctx: &RoleContext,
    name: String,
    replica_config: &ReplicaConfig,
    replicas: &[ReplicaConfig],
    make_sm: impl FnOnce(Arc<rocksdb::DB>) -> Result<S, cbdc_consensus::ConsensusError>,
) -> Result<StartedReplica<S>, NodeError> {
    let client_listener = ctx.listeners.take(replica_config.endpoint)?;
    let peer_addr = replica_config
        .raft_endpoint
        .ok_or_else(|| NodeError::NotInConfig(format!("{name} has no raft_endpoint")))?;
    let peer_listener = ctx.listeners.take(peer_addr)?;
    let config = cbdc_consensus::ReplicaConfig {
        id: replica_config.id,
        group: name.clone(),
        data_dir: replica_config.data_dir.clone(),
        members: members(replicas),
        tuning: ctx.tuning(),
    };
    let replica = Replica::start(config, peer_listener, make_sm)
        .await
        .map_err(|source| NodeError::Consensus {
            role: name.clone(),
            source,
        })?;
    Ok(StartedReplica {
        name,
        replica,
        client_listener,
    })
}

impl<S: cbdc_consensus::StateMachine> StartedReplica<S> {
    /// Serves `routes`, plus the read-only replica status, on the client endpoint.
    pub(crate) fn serve(self, routes: tonic::service::Routes) -> ServedReplica<S> {
        let routes =
            routes.add_service(ReplicaStatusService::new(self.replica.handle()).into_server());
        ServedReplica {
            server: Server::start(self.name, self.client_listener, routes),
            replica: self.replica,
        }
    }
}

/// Starts replica `replica_id` of the shard group at `group_index` in the cluster file.
pub async fn start_shard(
    ctx: &RoleContext,
    group_index: usize,
    replica_id: u64,
) -> Result<Running, NodeError> {
    let group = ctx.config.shards.get(group_index).ok_or_else(|| {
        NodeError::NotInConfig(format!("no shard group at position {group_index}"))
    })?;
    let replica = find_replica("shard", group.id, &group.replicas, replica_id)?;
    let name = format!("shard-{}/r{}", group.id, replica.id);
    if ctx.config.architecture == Architecture::Atomizer {
        return crate::atomizer_roles::start_atomizer_shard(ctx, name, group, replica).await;
    }
    let params = LockingShardParams::new(group.range());
    let verifier = ctx.verifier()?;
    let started = start_replica(ctx, name, replica, &group.replicas, |db| {
        LockingShardMachine::new(db, params)
    })
    .await?;
    let handle = started.replica.handle();
    let served = started.serve(
        tonic::service::Routes::new(
            LockingShardService::new(handle.clone(), verifier).into_server(),
        )
        .add_service(ShardQueryService::new(handle).into_server()),
    );
    Ok(Running::Shard(served))
}

/// Starts replica `replica_id` of the coordinator group at `group_index`.
pub async fn start_coordinator(
    ctx: &RoleContext,
    group_index: usize,
    replica_id: u64,
) -> Result<Running, NodeError> {
    let group = ctx.config.coordinators.get(group_index).ok_or_else(|| {
        NodeError::NotInConfig(format!("no coordinator group at position {group_index}"))
    })?;
    let replica = find_replica("coordinator", group.id, &group.replicas, replica_id)?;
    let name = format!("coordinator-{}/r{}", group.id, replica.id);
    let shards = Arc::new(
        GrpcShardGroups::new(
            ctx.config.shard_map()?,
            ctx.config.shard_endpoints(),
            REQUEST_TIMEOUT,
        )
        .map_err(|e| NodeError::Coordinator(e.to_string()))?,
    );
    let params = CoordinatorParams {
        group: u32::try_from(group.id).map_err(|_| {
            NodeError::NotInConfig(format!("coordinator id {} too large", group.id))
        })?,
        batch_size: group.batch_size,
        batch_delay: group.batch_delay,
        max_in_flight: group.max_in_flight,
        request_timeout: REQUEST_TIMEOUT,
    };
    let verifier = ctx.verifier()?;
    let started =
        start_replica(ctx, name, replica, &group.replicas, CoordinatorMachine::new).await?;
    match Coordinator::start(started.replica.handle(), params, verifier, shards) {
        Ok(coordinator) => {
            let routes = tonic::service::Routes::new(coordinator.service().into_server());
            Ok(Running::Coordinator(started.serve(routes), coordinator))
        }
        Err(e) => {
            let _ = started.replica.shutdown().await;
            Err(NodeError::Coordinator(e.to_string()))
        }
    }
}

fn find_sentinel(config: &ClusterConfig, id: u64) -> Result<&SentinelConfig, NodeError> {
    config
        .sentinels
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| NodeError::NotInConfig(format!("no sentinel with id {id}")))
}

/// Parameters of sentinel `id` from the cluster file (its key read from its key file).
pub fn sentinel_params(config: &ClusterConfig, id: u64) -> Result<SentinelParams, NodeError> {
    let sentinel = find_sentinel(config, id)?;
    let key = read_key_file(&sentinel.key_file)?;
    let validator = Validator::new(config.limits.into(), Some(config.issuer()?));
    let mut params = SentinelParams::new(key, validator, config.shard_map()?);
    params.coordinator_groups = config
        .coordinators
        .iter()
        .map(|g| g.replicas.iter().map(|r| r.endpoint.to_string()).collect())
        .collect();
    params.shard_groups = config.shard_endpoints();
    params.attestation_threshold = u32::try_from(config.attestation_threshold).unwrap_or(u32::MAX);
    params.request_timeout = REQUEST_TIMEOUT;
    params.max_batch_delay = sentinel.batch_delay;
    Ok(params)
}

/// Starts sentinel `id`.
pub async fn start_sentinel(ctx: &RoleContext, id: u64) -> Result<Running, NodeError> {
    let params = sentinel_params(&ctx.config, id)?;
    let endpoint = find_sentinel(&ctx.config, id)?.endpoint;
    let backend: Arc<dyn cbdc_sentinel::Backend> = match ctx.config.architecture {
        Architecture::TwoPhaseCommit => Arc::new(TwoPhaseBackend::new(&params)?),
        Architecture::Atomizer => Arc::new(crate::atomizer_roles::atomizer_backend(
            &ctx.config,
            &params,
        )?),
    };
    let listener = ctx.listeners.take(endpoint)?;
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(cbdc_sentinel::serve(
        listener,
        params,
        backend,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    let name = format!("sentinel-{id}");
    tracing::info!(role = %name, %endpoint, "serving");
    Ok(Running::Sentinel(ServedSentinel { name, server, stop }))
}
