//! The harness against one in-process sentinel with the in-memory back end: a way to try
//! `cbdc bench`'s options, progress bar, table and plot without a cluster, and to see how
//! fast a sentinel alone (validation, attestation, gRPC) goes on this machine.
//!
//! ```text
//! cargo run --release -p cbdc-bench --example memory_sentinel -- --transactions 50000 --invalid-fraction 0.05
//! ```

use std::sync::Arc;
use std::time::Duration;

use cbdc_bench::{BenchArgs, Target, WatchedProcess, Workload};
use cbdc_core::{Limits, SecretKey, ShardMap, Validator};
use cbdc_sentinel::{serve, MemoryBackend, SentinelParams};
use clap::Parser;

#[derive(Parser)]
#[command(about = "cbdc bench against an in-process sentinel with an in-memory ledger")]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Cli::parse().bench;
    args.validate()?;

    let workload = tokio::task::spawn_blocking({
        let args = args.clone();
        move || Workload::generate(&args)
    })
    .await??;
    let backend = Arc::new(MemoryBackend::new(None));
    for (id, value) in workload.genesis() {
        backend.seed(*id, *value);
    }

    let issuer = SecretKey::from_bytes(&[1; 32]);
    let validator = Validator::new(Limits::default(), Some(issuer.public_key()));
    let mut params = SentinelParams::new(
        SecretKey::from_bytes(&[9; 32]),
        validator,
        ShardMap::even(1)?,
    );
    params.max_batch_delay = Duration::from_millis(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = listener.local_addr()?.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, params, backend, async {
        let _ = stopped.await;
    }));

    let report = cbdc_bench::run(
        &args,
        Target {
            endpoints: vec![endpoint],
            funding: cbdc_bench::Funding::Genesis(workload),
            watch: vec![WatchedProcess::this_process("sentinel + harness")],
        },
    )
    .await?;
    let _ = stop.send(());
    server.await??;
    if !report.passed() {
        anyhow::bail!("some answers were not as expected");
    }
    Ok(())
}
