//! The harness against a real sentinel gRPC server (127.0.0.1, port 0) in front of the
//! in-memory back end: funds by mints and by genesis, closed and open loop, invalid
//! transactions and double spends, and the errors that stop a run before the clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cbdc_bench::{BenchArgs, BenchError, Funding, Mode, Report, Target, WatchedProcess, Workload};
use cbdc_core::{Limits, SecretKey, ShardMap, Validator};
use cbdc_sentinel::{serve, MemoryBackend, SentinelParams};
use tokio::sync::oneshot;

fn issuer() -> SecretKey {
    SecretKey::from_bytes(&[1; 32])
}

/// A running sentinel; it stops when this is dropped.
struct Sentinel {
    endpoint: String,
    backend: Arc<MemoryBackend>,
    _stop: oneshot::Sender<()>,
}

async fn start_sentinel() -> anyhow::Result<Sentinel> {
    let validator = Validator::new(Limits::default(), Some(issuer().public_key()));
    let mut params = SentinelParams::new(
        SecretKey::from_bytes(&[9; 32]),
        validator,
        ShardMap::even(2)?,
    );
    params.max_batch_delay = Duration::from_millis(1);
    let backend = Arc::new(MemoryBackend::new(None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = listener.local_addr()?.to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = backend.clone();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = serve(listener, params, served, shutdown).await {
            eprintln!("sentinel stopped: {e}");
        }
    });
    Ok(Sentinel {
        endpoint,
        backend,
        _stop: stop,
    })
}

fn args(out: &std::path::Path, transactions: u64) -> BenchArgs {
    BenchArgs {
        transactions: Some(transactions),
        connections: 2,
        window: 16,
        seed: Some(7),
        out: out.to_path_buf(),
        quiet: true,
        ceiling_time: Duration::ZERO,
        drain_timeout: Duration::from_secs(20),
        ..BenchArgs::default()
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_closed_loop_minted_with_invalid_and_double_spends() -> anyhow::Result<()> {
    let sentinel = start_sentinel().await?;
    let out = tempfile::tempdir()?;
    let args = BenchArgs {
        invalid_fraction: 0.05,
        double_spend_fraction: 0.05,
        ceiling_time: Duration::from_millis(200),
        ..args(out.path(), 400)
    };
    let report = cbdc_bench::run(
        &args,
        Target {
            endpoints: vec![sentinel.endpoint.clone()],
            funding: Funding::Mint { issuer: issuer() },
            watch: vec![WatchedProcess::this_process("test")],
        },
    )
    .await?;

    let o = &report.outcomes;
    assert_eq!(o.sent, 400);
    // 20 invalid, 20 double-spend pairs (40 transactions), 340 plain: 340 + 20 confirm.
    assert_eq!(o.confirmed, 360);
    assert_eq!(o.rejected, counts(&[("inputs_spent", 20)]));
    assert_eq!(
        o.invalid,
        counts(&[
            ("invalid_signature", 7),
            ("unbalanced", 7),
            ("program_mismatch", 6)
        ])
    );
    assert_eq!(
        (o.pending, o.unknown, o.malformed, o.unanswered),
        (0, 0, 0, 0)
    );
    let c = &report.checks;
    assert_eq!(c.checked, 400);
    assert_eq!(c.mismatches, 0, "{:?}", c.examples);
    assert_eq!(c.double_spend_pairs, 20);
    assert_eq!(c.double_spend_pairs_resolved, 20);
    assert!(report.passed());

    assert_eq!(report.latency.count, 400);
    assert!(report.latency.p50_us <= report.latency.p99_us);
    assert!(report.latency.p99_us <= report.latency.max_us);
    assert!(report.throughput_tps > 0.0);
    assert!(!report.timeline.is_empty());
    assert_eq!(
        report
            .timeline
            .iter()
            .map(|p| p.tx_per_s * p.length_s)
            .sum::<f64>()
            .round(),
        400.0
    );
    assert_eq!(report.cluster.architecture, "two_phase_commit");
    assert_eq!(report.config.seed, 7);
    let ceiling = report.ceiling.as_ref().expect("ceiling measured");
    assert_eq!(ceiling.ceiling.signatures_per_tx, 2);
    assert!(ceiling.fraction_of_validation > 0.0);
    assert!(report.memory[0].peak_rss_bytes.is_some_and(|b| b > 0));

    // 780 funding outputs in 4 mints of up to 256; invalid transactions never reached
    // the back end.
    assert_eq!(sentinel.backend.received().len(), 4 + 380);

    let json = std::fs::read_to_string(out.path().join("report.json"))?;
    assert_eq!(Report::from_json(&json)?, report);
    let svg = std::fs::read_to_string(out.path().join("plot.svg"))?;
    assert!(svg.contains("<svg"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_open_loop_genesis_funded() -> anyhow::Result<()> {
    let sentinel = start_sentinel().await?;
    let out = tempfile::tempdir()?;
    let args = BenchArgs {
        mode: Mode::Open,
        rate: Some(2_000.0),
        connections: 3,
        double_spend_fraction: 0.1,
        ..args(out.path(), 300)
    };
    let workload = Workload::generate(&args)?;
    for (id, value) in workload.genesis() {
        sentinel.backend.seed(*id, *value);
    }
    let report =
        cbdc_bench::run_with_workload(&args, vec![sentinel.endpoint.clone()], workload, Vec::new())
            .await?;
    assert_eq!(report.outcomes.sent, 300);
    assert_eq!(report.outcomes.confirmed, 270);
    assert_eq!(report.outcomes.rejected, counts(&[("inputs_spent", 30)]));
    assert!(report.outcomes.invalid.is_empty());
    assert_eq!(report.checks.mismatches, 0, "{:?}", report.checks.examples);
    assert_eq!(report.checks.double_spend_pairs_resolved, 30);
    assert_eq!(report.config.rate, Some(2_000.0));
    assert_eq!(report.config.window, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_warmup_longer_than_run_measures_nothing_but_checks_all() -> anyhow::Result<()> {
    let sentinel = start_sentinel().await?;
    let out = tempfile::tempdir()?;
    let args = BenchArgs {
        warmup: Duration::from_secs(3600),
        ..args(out.path(), 50)
    };
    let report = cbdc_bench::run_silent(
        &args,
        Target {
            endpoints: vec![sentinel.endpoint.clone()],
            funding: Funding::Mint { issuer: issuer() },
            watch: Vec::new(),
        },
    )
    .await?;
    assert_eq!(report.latency.count, 0);
    assert_eq!(report.throughput_tps, 0.0);
    assert_eq!(report.checks.checked, 50);
    assert!(report.passed());
    assert!(report.timeline.iter().all(|p| p.warmup));
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("nothing was measured")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_genesis_not_seeded_is_refused_before_the_clock() -> anyhow::Result<()> {
    let sentinel = start_sentinel().await?;
    let out = tempfile::tempdir()?;
    let args = BenchArgs {
        drain_timeout: Duration::from_millis(200),
        ..args(out.path(), 20)
    };
    let workload = Workload::generate(&args)?;
    let result =
        cbdc_bench::run_with_workload(&args, vec![sentinel.endpoint.clone()], workload, Vec::new())
            .await;
    match result {
        Err(BenchError::Funding(message)) => {
            assert!(message.contains("Workload::genesis()"), "{message}")
        }
        other => panic!("expected a funding error, got {other:?}"),
    }
    assert!(sentinel.backend.received().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_mint_replay_and_wrong_issuer_are_refused() -> anyhow::Result<()> {
    let sentinel = start_sentinel().await?;
    let out = tempfile::tempdir()?;
    let args = args(out.path(), 10);
    let target = |issuer| Target {
        endpoints: vec![sentinel.endpoint.clone()],
        funding: Funding::Mint { issuer },
        watch: Vec::new(),
    };
    assert!(cbdc_bench::run_silent(&args, target(issuer()))
        .await?
        .passed());
    // Same seed again: its mints are replays.
    match cbdc_bench::run_silent(&args, target(issuer())).await {
        Err(BenchError::Funding(message)) => {
            assert!(message.contains("used on this cluster before"), "{message}")
        }
        other => panic!("expected a replay, got {other:?}"),
    }
    match cbdc_bench::run_silent(&args, target(SecretKey::from_bytes(&[2; 32]))).await {
        Err(BenchError::Cluster(message)) => assert!(message.contains("issuer"), "{message}"),
        other => panic!("expected an issuer mismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_unreachable_sentinel_and_bad_options() -> anyhow::Result<()> {
    // Bound but never listening, and held until the end: connections are refused and no
    // other test's server can take the port meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4()?;
    reserved.bind("127.0.0.1:0".parse()?)?;
    let endpoint = reserved.local_addr()?.to_string();
    let out = tempfile::tempdir()?;
    let target = || Target {
        endpoints: vec![endpoint.clone()],
        funding: Funding::Mint { issuer: issuer() },
        watch: Vec::new(),
    };
    assert!(matches!(
        cbdc_bench::run_silent(&args(out.path(), 10), target()).await,
        Err(BenchError::Connect { .. })
    ));
    let bad = BenchArgs {
        mode: Mode::Open,
        ..args(out.path(), 10)
    };
    assert!(matches!(
        cbdc_bench::run_silent(&bad, target()).await,
        Err(BenchError::Options(_))
    ));
    let no_endpoints = Target {
        endpoints: Vec::new(),
        ..target()
    };
    assert!(matches!(
        cbdc_bench::run_silent(&args(out.path(), 10), no_endpoints).await,
        Err(BenchError::Options(_))
    ));
    Ok(())
}
