//! `cbdc bench`: the benchmark harness ([`cbdc_bench`]) on the embedded cluster (seeded
//! with the workload's genesis outputs before it starts) or on an external cluster given
//! by its cluster file (funded by minting through the API).

use std::path::{Path, PathBuf};

use cbdc_bench::{BenchArgs, Funding, Report, Target, WatchedProcess, Workload};
use cbdc_core::{Amount, UhsId};

use crate::cluster::{prepare_dev_dir, Cluster, DevOptions};
use crate::config::{Architecture, ClusterConfig, StorageConfig};
use crate::error::NodeError;

/// Where `cbdc bench` sends its load.
#[derive(Debug, Clone)]
pub enum BenchTarget {
    /// A fresh embedded cluster of this shape, in `dir` (a temporary directory if
    /// `None`, removed afterwards).
    Embedded {
        /// Cluster shape.
        options: DevOptions,
        /// Where the cluster's data goes.
        dir: Option<PathBuf>,
        /// Its replicas' RocksDB tuning.
        storage: StorageConfig,
    },
    /// A running cluster described by this cluster file.
    External {
        /// The cluster file.
        config: PathBuf,
    },
}

/// Why `cbdc bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchCmdError {
    /// Starting or stopping the embedded cluster failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The harness failed.
    #[error(transparent)]
    Bench(#[from] cbdc_bench::BenchError),
    /// Seeding the shard stores failed.
    #[error("seeding shard group {group}: {message}")]
    Seed {
        /// The shard group.
        group: u64,
        /// The shard's error.
        message: String,
    },
    /// A directory could not be created.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes `genesis` into every replica of every shard group of `config` (each group gets
/// the outputs its range owns; in an atomizer cluster, every shard of the range). The cluster must not be running and must be fresh.
pub fn seed_cluster(
    config: &ClusterConfig,
    genesis: &[(UhsId, Amount)],
) -> Result<(), BenchCmdError> {
    for group in &config.shards {
        let range = group.range();
        let owned: Vec<(UhsId, Amount)> = genesis
            .iter()
            .filter(|(id, _)| range.contains(id.prefix()))
            .copied()
            .collect();
        for replica in &group.replicas {
            let outputs = owned.iter().copied();
            let seeded = match config.architecture {
                Architecture::TwoPhaseCommit => {
                    cbdc_shard::seed_genesis(&replica.data_dir, outputs)
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
                Architecture::Atomizer => {
                    cbdc_shard::seed_atomizer_shard(&replica.data_dir, outputs)
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            };
            seeded.map_err(|message| BenchCmdError::Seed {
                group: group.id,
                message,
            })?;
        }
    }
    Ok(())
}

/// Runs the benchmark; the report says whether every answer was as expected.
pub async fn run_bench(args: &BenchArgs, target: BenchTarget) -> Result<Report, BenchCmdError> {
    match target {
        BenchTarget::External { config } => {
            let config = ClusterConfig::load(&config).map_err(NodeError::from)?;
            let key_file = match &args.issuer_key {
                Some(path) => path.clone(),
                None => default_issuer_key(&config),
            };
            let target = Target {
                endpoints: config
                    .sentinels
                    .iter()
                    .map(|s| s.endpoint.to_string())
                    .collect(),
                funding: Funding::mint_with_key_file(&key_file)?,
                watch: Vec::new(),
            };
            Ok(cbdc_bench::run(args, target).await?)
        }
        BenchTarget::Embedded {
            options,
            dir,
            storage,
        } => {
            let temp;
            let dir = match dir {
                Some(dir) => dir,
                None => {
                    temp = tempfile::TempDir::new()?;
                    temp.path().join("cluster")
                }
            };
            let mut prepared = prepare_dev_dir(&dir, &options)?;
            prepared.config.storage = storage;
            let args_for_workload = args.clone();
            let workload =
                tokio::task::spawn_blocking(move || Workload::generate(&args_for_workload))
                    .await
                    .map_err(|e| NodeError::Server {
                        role: "bench".into(),
                        message: format!("workload generation failed: {e}"),
                    })??;
            seed_cluster(&prepared.config, workload.genesis())?;
            let cluster = Cluster::start(prepared.config, prepared.listeners).await?;
            let target = Target {
                endpoints: cluster
                    .sentinel_endpoints()
                    .iter()
                    .map(|e| e.to_string())
                    .collect(),
                funding: Funding::Genesis(workload),
                watch: vec![WatchedProcess::this_process("cbdc (cluster + harness)")],
            };
            let result = cbdc_bench::run(args, target).await;
            cluster.shutdown().await?;
            Ok(result?)
        }
    }
}

/// `keys/issuer.key` beside the cluster file, as `cbdc config init` writes it.
fn default_issuer_key(config: &ClusterConfig) -> PathBuf {
    config
        .sentinels
        .first()
        .and_then(|s| s.key_file.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join("issuer.key")
}
