//! `cbdc`: the one binary operators run.

use anyhow::Context;
use cbdc_node::config::{Architecture, ClusterConfig};
use cbdc_node::init::{init_cluster, InitOptions};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Config(ConfigCommand::Init {
            dir,
            arch,
            shards,
            replicas,
            sentinels,
            coordinators,
        }) => {
            let architecture = match arch {
                Arch::TwoPc => Architecture::TwoPhaseCommit,
                Arch::Atomizer => Architecture::Atomizer,
            };
            let options = InitOptions {
                architecture,
                shards,
                replicas,
                sentinels,
                coordinators,
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
