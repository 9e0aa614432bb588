//! `cbdc`: the one binary operators run.

use anyhow::Context;

/// mimalloc rather than glibc's allocator: every hop allocates and frees a transaction's
/// buffers from many threads, and glibc's malloc/free showed as ~10 % of a `cbdc bench`
/// profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cbdc_node::atomizer_roles;
use cbdc_node::bench_cmd::{run_bench, BenchTarget};
use cbdc_node::cluster::{prepare_dev_dir, Cluster, DevOptions};
use cbdc_node::config::{Architecture, ClusterConfig, StorageConfig};
use cbdc_node::init::{init_cluster, InitOptions};
use cbdc_node::listeners::Listeners;
use cbdc_node::roles::{self, RoleContext};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "cbdc",
    version,
    about = "A central bank digital currency transaction processor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or check cluster files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run one role of a cluster (one process per role and replica).
    Run {
        /// The cluster file.
        #[arg(long, env = "CBDC_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        role: RoleCommand,
    },
    /// Run a whole cluster in this process on loopback (the embedded default).
    Dev {
        /// Directory for the cluster file, keys and data; reused (with its data) when it
        /// already holds a cluster.toml.
        #[arg(long, default_value = "cbdc-dev")]
        dir: PathBuf,
        /// Settlement architecture (for a new directory).
        #[arg(long, value_enum, default_value = "2pc")]
        arch: Arch,
        /// Shard groups (for a new directory).
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// Replicas per Raft group (for a new directory).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Run a short scripted mint-and-spend against the cluster, print it, and exit.
        #[arg(long)]
        demo: bool,
    },
    /// Measure throughput and latency (the embedded cluster by default).
    Bench {
        #[command(flatten)]
        target: BenchTargetArgs,
        #[command(flatten)]
        args: Box<cbdc_bench::BenchArgs>,
    },
}

/// Where `cbdc bench` drives load.
#[derive(clap::Args)]
struct BenchTargetArgs {
    /// Benchmark the running cluster described by this file (funded by minting with
    /// `--issuer-key`, default `keys/issuer.key` beside the sentinels' keys) instead of a
    /// fresh embedded one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Embedded cluster: settlement architecture.
    #[arg(long, value_enum, default_value = "2pc")]
    arch: Arch,
    /// Embedded cluster: shard groups.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Embedded cluster: replicas per Raft group.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Embedded cluster: keep its data in this (new) directory instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Embedded cluster: most MiB/s each replica's RocksDB flushes and compactions may
    /// write (`storage.compaction_rate_mib_s`; 0: no limit).
    #[arg(long, default_value_t = 0)]
    compaction_rate_mib_s: u64,
}

#[derive(Subcommand)]
enum RoleCommand {
    /// A shard: a replica of a 2PC locking shard group, or one atomizer-mode shard of a
    /// range (its "replica" id in the group).
    Shard {
        /// The group's id in the cluster file.
        #[arg(long)]
        group: u64,
        /// The replica's id in the group.
        #[arg(long)]
        replica: u64,
    },
    /// A replica of a 2PC coordinator group.
    Coordinator {
        /// The group's id in the cluster file.
        #[arg(long)]
        group: u64,
        /// The replica's id in the group.
        #[arg(long)]
        replica: u64,
    },
    /// A sentinel (the public API).
    Sentinel {
        /// The sentinel's id in the cluster file.
        #[arg(long)]
        id: u64,
    },
    /// A replica of the atomizer group (atomizer).
    Atomizer {
        /// The replica's id in the group.
        #[arg(long)]
        replica: u64,
    },
    /// The block archive (atomizer).
    Archiver,
    /// The transaction status service (atomizer).
    Watchtower,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write DIR/cluster.toml with fresh keys and free loopback ports.
    Init {
        /// Directory for cluster.toml, keys/ and data/.
        #[arg(long, default_value = "cluster")]
        dir: PathBuf,
        /// Settlement back end.
        #[arg(long, value_enum, default_value_t = Arch::TwoPc)]
        arch: Arch,
        /// Shard groups.
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// Replicas per Raft group (1 for development, 3 or 5 in production).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Sentinels.
        #[arg(long, default_value_t = 1)]
        sentinels: usize,
        /// Coordinator groups (2pc).
        #[arg(long, default_value_t = 1)]
        coordinators: usize,
        /// Independent shards per range (atomizer redundancy).
        #[arg(long, default_value_t = 1)]
        shard_copies: usize,
    },
    /// Validate a cluster file and print a summary.
    Check {
        /// The cluster file.
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    #[value(name = "2pc")]
    TwoPc,
    Atomizer,
}

impl From<Arch> for Architecture {
    fn from(arch: Arch) -> Self {
        match arch {
            Arch::TwoPc => Architecture::TwoPhaseCommit,
            Arch::Atomizer => Architecture::Atomizer,
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn position<T>(
    items: &[T],
    id: u64,
    item_id: impl Fn(&T) -> u64,
    what: &str,
) -> anyhow::Result<usize> {
    items
        .iter()
        .position(|i| item_id(i) == id)
        .with_context(|| format!("the cluster file has no {what} with id {id}"))
}

async fn run_role(config_path: &Path, role: RoleCommand) -> anyhow::Result<()> {
    let config = ClusterConfig::load(config_path)?;
    let ctx = RoleContext::new(config, Listeners::on_demand());
    let running = match role {
        RoleCommand::Shard { group, replica } => {
            let g = position(&ctx.config.shards, group, |g| g.id, "shard group")?;
            roles::start_shard(&ctx, g, replica).await?
        }
        RoleCommand::Coordinator { group, replica } => {
            let g = position(
                &ctx.config.coordinators,
                group,
                |g| g.id,
                "coordinator group",
            )?;
            roles::start_coordinator(&ctx, g, replica).await?
        }
        RoleCommand::Sentinel { id } => roles::start_sentinel(&ctx, id).await?,
        RoleCommand::Atomizer { replica } => atomizer_roles::start_atomizer(&ctx, replica).await?,
        RoleCommand::Archiver => atomizer_roles::start_archiver(&ctx).await?,
        RoleCommand::Watchtower => atomizer_roles::start_watchtower(&ctx).await?,
    };
    tracing::info!(role = running.name(), "ready; Ctrl-C or SIGTERM stops it");
    shutdown_signal().await;
    tracing::info!(role = running.name(), "stopping");
    running.shutdown().await?;
    Ok(())
}

async fn run_dev(dir: &Path, options: DevOptions, demo: bool) -> anyhow::Result<()> {
    let prepared = prepare_dev_dir(dir, &options)?;
    let cluster = Cluster::start(prepared.config, prepared.listeners).await?;
    let issuer_file = dir.join("keys/issuer.key");
    println!(
        "cbdc dev: {} cluster from {} ({})",
        cluster.config().architecture,
        prepared.file.display(),
        if prepared.created {
            "new"
        } else {
            "restarted from its data"
        }
    );
    for name in cluster.role_names() {
        println!("  running {name}");
    }
    for endpoint in cluster.sentinel_endpoints() {
        println!("  sentinel (public API): {endpoint}");
    }
    println!("  issuer key file: {}", issuer_file.display());
    let result = if demo {
        let issuer = cbdc_core::read_key_file(&issuer_file)?;
        let endpoint = cluster.sentinel_endpoints()[0].to_string();
        cbdc_node::demo::run_demo(&endpoint, &issuer)
            .await
            .map(|transcript| print!("{transcript}"))
            .map_err(anyhow::Error::from)
    } else {
        println!("Ctrl-C stops the cluster.");
        shutdown_signal().await;
        Ok(())
    };
    cluster.shutdown().await?;
    result
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_t`, which
/// `libmimalloc-sys` does not name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc keep memory freed in the last 10 s instead of the last second before
/// handing it back to the kernel. Buffers of a busy node are freed and allocated again
/// all the time (a Raft batch, a block of signed transactions); returned too early, each
/// new one faults in freshly zeroed pages, which took 1–2 % of all CPU time under
/// `cbdc bench` on the 2-core VM. An idle node still gives its memory back.
fn keep_freed_memory_longer() {
    // SAFETY: sets one of mimalloc's runtime options; mimalloc reads it at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
}

/// Makes glibc's malloc, which RocksDB's C++ code still uses, keep and reuse the memory
/// it frees. Every flush frees a database's memtables (tens of MiB) and the next ones
/// are allocated at once; by default glibc hands such blocks back to the kernel (each
/// thread arena's heap is unmapped once empty, the main heap is trimmed, big blocks are
/// mapped on their own) and the new memtables fault in freshly zeroed pages. Under
/// `cbdc bench` that zeroing took 4–19 % of all CPU time on the 2-core VM (a page its
/// host had reclaimed costs far more than a `memset`); with one arena, blocks up to
/// 32 MiB (glibc's most) from the heap and no trimming RocksDB's share fell below 1 %. RocksDB's
/// memory stays bounded by its own budgets (memtables, block cache), so keeping its peak
/// costs nothing it was not allowed to use anyway. Must run before other threads start.
fn keep_rocksdb_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            ("M_ARENA_MAX", libc::M_ARENA_MAX, 1),
            ("M_MMAP_THRESHOLD", libc::M_MMAP_THRESHOLD, 32 << 20),
            // -1 turns trimming off altogether (mallopt(3)).
            ("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, -1),
        ];
        for (name, param, value) in settings {
            // SAFETY: `mallopt` only sets a glibc malloc parameter; no other thread runs yet.
            if unsafe { libc::mallopt(param, value) } != 1 {
                tracing::warn!(param = name, value, "glibc rejected a malloc setting");
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    // openraft narrates every vote at INFO; our own roles log what an operator needs.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    keep_rocksdb_memory();
    keep_freed_memory_longer();
    match Cli::parse().command {
        Command::Bench { target, args } => {
            let target = match target.config {
                Some(config) => BenchTarget::External { config },
                None => BenchTarget::Embedded {
                    options: DevOptions {
                        architecture: target.arch.into(),
                        shards: target.shards,
                        replicas: target.replicas,
                        ..DevOptions::default()
                    },
                    dir: target.dir,
                    storage: StorageConfig {
                        compaction_rate_mib_s: target.compaction_rate_mib_s,
                        ..StorageConfig::default()
                    },
                },
            };
            let report = runtime()?.block_on(run_bench(&args, target))?;
            if !report.passed() {
                anyhow::bail!("some answers were not as expected (see the report)");
            }
        }
        Command::Run { config, role } => runtime()?.block_on(run_role(&config, role))?,
        Command::Dev {
            dir,
            arch,
            shards,
            replicas,
            demo,
        } => {
            let options = DevOptions {
                architecture: arch.into(),
                shards,
                replicas,
                ..DevOptions::default()
            };
            runtime()?.block_on(run_dev(&dir, options, demo))?
        }
        Command::Config(ConfigCommand::Init {
            dir,
            arch,
            shards,
            replicas,
            sentinels,
            coordinators,
            shard_copies,
        }) => {
            let options = InitOptions {
                architecture: arch.into(),
                shards,
                replicas,
                sentinels,
                coordinators,
                shard_copies,
            };
            let file = init_cluster(&dir, &options).context("cbdc config init")?;
            println!("wrote {}", file.display());
            println!("issuer key: {}", dir.join("keys/issuer.key").display());
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let c = ClusterConfig::load(&config)?;
            println!(
                "{}: {} cluster, {} sentinel(s), {} coordinator group(s), {} shard group(s)",
                config.display(),
                c.architecture,
                c.sentinels.len(),
                c.coordinators.len(),
                c.shards.len()
            );
        }
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MI_OPTION_PURGE_DELAY` is a bare position in mimalloc's option enum: this fails if
    /// a mimalloc upgrade moves it (no other option defaults to 1,000).
    #[test]
    fn purge_delay_option_is_the_one_we_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one of mimalloc's options.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(default, 1_000);
    }
}
