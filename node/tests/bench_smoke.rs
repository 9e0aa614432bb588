//! A short `cbdc bench` run on each embedded architecture: the report is written and
//! every answer (confirmations, invalid transactions, double spends) is as expected. No
//! speed is asserted: speed is measured by the benchmark itself (BENCHMARKS.md).

use std::time::Duration;

use cbdc_bench::BenchArgs;
use cbdc_node::bench_cmd::{run_bench, BenchTarget};
use cbdc_node::cluster::DevOptions;
use cbdc_node::config::{Architecture, StorageConfig};

async fn smoke(architecture: Architecture) {
    let dir = tempfile::tempdir().unwrap();
    let args = BenchArgs {
        transactions: Some(2_000),
        warmup: Duration::ZERO,
        connections: 2,
        window: 64,
        invalid_fraction: 0.05,
        double_spend_fraction: 0.05,
        out: dir.path().join("results"),
        quiet: true,
        ceiling_time: Duration::from_millis(200),
        ..BenchArgs::default()
    };
    let target = BenchTarget::Embedded {
        options: DevOptions {
            architecture,
            ..DevOptions::default()
        },
        dir: Some(dir.path().join("cluster")),
        // Exercises RocksDB's rate limiter (far above what this run writes).
        storage: StorageConfig {
            compaction_rate_mib_s: 64,
            ..StorageConfig::default()
        },
    };
    let report = run_bench(&args, target).await.unwrap();
    assert!(report.passed(), "{report:?}");
    assert!(dir.path().join("results/report.json").exists());
    assert!(dir.path().join("results/plot.svg").exists());
    // The embedded cluster's process is watched: its CPU time over the run is reported.
    assert_eq!(report.cpu.len(), 1, "{:?}", report.cpu);
    if cfg!(target_os = "linux") {
        let cpu = &report.cpu[0];
        assert!(cpu.cpu_s.is_some_and(|c| c > 0.0), "{cpu:?}");
        assert!(cpu.ms_per_1000_tx.is_some_and(|c| c > 0.0), "{cpu:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_bench_smoke_two_phase_commit() {
    smoke(Architecture::TwoPhaseCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_bench_smoke_atomizer() {
    smoke(Architecture::Atomizer).await;
}
