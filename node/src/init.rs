//! `cbdc config init`: writes a cluster file with fresh keys and free loopback ports, so
//! that a new cluster is one command away.

use crate::config::{
    default_batch_delay, default_batch_size, default_in_flight, default_sentinel_batch_delay,
    Architecture, ArchiverConfig, AtomizerConfig, ClusterConfig, CoordinatorGroupConfig,
    LimitsConfig, RaftConfig, ReplicaConfig, SentinelConfig, ShardGroupConfig, StorageConfig,
    WatchtowerConfig,
};
use cbdc_consensus::network::reserve_loopback_port;
use cbdc_core::{write_key_file, SecretKey, ShardMap};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// What `cbdc config init` builds.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Back end.
    pub architecture: Architecture,
    /// Shard groups (prefix space split evenly).
    pub shards: usize,
    /// Replicas per Raft group.
    pub replicas: usize,
    /// Sentinels.
    pub sentinels: usize,
    /// Coordinator groups (2PC).
    pub coordinators: usize,
    /// Atomizer: independent shards per range (redundancy); 2PC shard groups use
    /// `replicas` instead.
    pub shard_copies: usize,
}

/// Why `config init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Refused to overwrite an existing cluster file.
    #[error("{0} already exists; choose another directory or remove it")]
    Exists(PathBuf),
    /// A count out of range.
    #[error("{0}")]
    BadOption(String),
    /// Writing files or finding ports failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The generated file did not validate (a bug, reported rather than written).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A key file could not be written.
    #[error(transparent)]
    KeyFile(#[from] cbdc_core::KeyFileError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let context = context.into();
    move |source| InitError::Io { context, source }
}

/// Hands out free loopback ports ([`reserve_loopback_port`]: below the ephemeral range).
/// Every listener stays open until the allocator is dropped, so no port is handed out
/// twice. `cbdc config init` releases them before the cluster starts, so another program
/// could take one in between (`cbdc` then fails to bind with a clear error and the file
/// can be regenerated); an in-process cluster keeps them ([`init_cluster_holding_ports`])
/// and serves on the very sockets it reserved.
#[derive(Default)]
struct PortAllocator {
    held: Vec<TcpListener>,
}

impl PortAllocator {
    fn next(&mut self) -> Result<SocketAddr, InitError> {
        let listener = reserve_loopback_port().map_err(io("finding a free port"))?;
        let addr = listener.local_addr().map_err(io("finding a free port"))?;
        self.held.push(listener);
        Ok(addr)
    }
}

/// `count` replicas of `group`; Raft replicas get a peer endpoint too.
fn replicas(
    ports: &mut PortAllocator,
    group: &str,
    count: usize,
    raft: bool,
) -> Result<Vec<ReplicaConfig>, InitError> {
    (0..count)
        .map(|i| {
            Ok(ReplicaConfig {
                id: i as u64 + 1,
                endpoint: ports.next()?,
                raft_endpoint: if raft { Some(ports.next()?) } else { None },
                data_dir: PathBuf::from(format!("data/{group}-r{}", i + 1)),
            })
        })
        .collect()
}

/// Writes `dir/cluster.toml`, `dir/keys/issuer.key` and one key per sentinel. Returns the
/// path of the cluster file.
pub fn init_cluster(dir: &Path, options: &InitOptions) -> Result<PathBuf, InitError> {
    init_cluster_holding_ports(dir, options).map(|(file, _ports)| file)
}

/// [`init_cluster`], also returning the bound listeners of every endpoint in the file, so
/// that a cluster started in this process can serve on them with no race for the ports.
pub fn init_cluster_holding_ports(
    dir: &Path,
    options: &InitOptions,
) -> Result<(PathBuf, Vec<TcpListener>), InitError> {
    if options.shards == 0 || options.replicas == 0 || options.sentinels == 0 {
        return Err(InitError::BadOption(
            "shards, replicas and sentinels must each be at least 1".into(),
        ));
    }
    if options.architecture == Architecture::TwoPhaseCommit && options.coordinators == 0 {
        return Err(InitError::BadOption(
            "a 2pc cluster needs a coordinator group".into(),
        ));
    }
    let file = dir.join("cluster.toml");
    if file.exists() {
        return Err(InitError::Exists(file));
    }
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(io(format!("creating {}", keys_dir.display())))?;
    let mut rng = rand_core::OsRng;
    let mut ports = PortAllocator::default();
    let issuer = SecretKey::generate(&mut rng);
    write_key_file(&keys_dir.join("issuer.key"), &issuer)?;

    let mut sentinels = Vec::new();
    for i in 0..options.sentinels {
        let key = SecretKey::generate(&mut rng);
        let key_file = PathBuf::from(format!("keys/sentinel-{i}.key"));
        write_key_file(&dir.join(&key_file), &key)?;
        sentinels.push(SentinelConfig {
            id: i as u64,
            endpoint: ports.next()?,
            public_key: key.public_key().to_string(),
            key_file,
            batch_delay: default_sentinel_batch_delay(),
        });
    }
    let atomizer_mode = options.architecture == Architecture::Atomizer;
    let (shard_replicas, coordinator_groups) = if atomizer_mode {
        (options.shard_copies.max(1), 0)
    } else {
        (options.replicas, options.coordinators)
    };
    let map = ShardMap::even(options.shards).map_err(crate::config::ConfigError::from)?;
    let shards = map
        .ranges()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(ShardGroupConfig {
                id: i as u64,
                range_start: r.start,
                range_end: r.end,
                replicas: replicas(
                    &mut ports,
                    &format!("shard-{i}"),
                    shard_replicas,
                    !atomizer_mode,
                )?,
            })
        })
        .collect::<Result<_, InitError>>()?;
    let coordinators = (0..coordinator_groups)
        .map(|i| {
            Ok(CoordinatorGroupConfig {
                id: i as u64,
                batch_size: default_batch_size(),
                batch_delay: default_batch_delay(),
                max_in_flight: default_in_flight(),
                replicas: replicas(
                    &mut ports,
                    &format!("coordinator-{i}"),
                    options.replicas,
                    true,
                )?,
            })
        })
        .collect::<Result<_, InitError>>()?;
    let (atomizer, archiver, watchtower) = if atomizer_mode {
        (
            Some(AtomizerConfig {
                block_interval: std::time::Duration::from_millis(50),
                stxo_cache_depth: 8,
                max_batch: 10_000,
                replicas: replicas(&mut ports, "atomizer", options.replicas, true)?,
            }),
            Some(ArchiverConfig {
                endpoint: ports.next()?,
                data_dir: PathBuf::from("data/archiver"),
                prune_every: 64,
            }),
            Some(WatchtowerConfig {
                endpoint: ports.next()?,
                retention: 10_000_000,
            }),
        )
    } else {
        (None, None, None)
    };
    let config = ClusterConfig {
        architecture: options.architecture,
        issuer_public_key: issuer.public_key().to_string(),
        attestation_threshold: 1,
        limits: LimitsConfig::default(),
        storage: StorageConfig::default(),
        raft: RaftConfig::default(),
        sentinels,
        coordinators,
        shards,
        atomizer,
        archiver,
        watchtower,
    };
    config.validate()?;
    std::fs::write(&file, config.to_toml()).map_err(io(format!("writing {}", file.display())))?;
    Ok((file, ports.held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ports_are_distinct() {
        let mut ports = PortAllocator::default();
        let addrs: Vec<SocketAddr> = (0..20).map(|_| ports.next().unwrap()).collect();
        let distinct: std::collections::HashSet<u16> = addrs.iter().map(|a| a.port()).collect();
        assert_eq!(distinct.len(), addrs.len());
    }
}
