//! Replicated writes per second for 1- and 3-replica groups of the key-value test state
//! machine, in process on 127.0.0.1 (real RocksDB with synced log, real gRPC between
//! replicas). Commands go to the leader's `ReplicaHandle::write_batch`: `batch` commands per
//! log entry and `in_flight` entries outstanding at once (one writer task each).
//!
//! `cargo bench -p cbdc-consensus --bench replication` (env `BENCH_SECS`, default 5).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cbdc_consensus::testkit::{test_tuning, KvCommand, TestGroup};
use cbdc_consensus::RaftTuning;

struct Case {
    replicas: u64,
    batch: usize,
    in_flight: usize,
}

async fn run(case: &Case, secs: u64) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::TempDir::new()?;
    let tuning = RaftTuning {
        snapshot_every: 100_000,
        ..test_tuning()
    };
    let mut group = TestGroup::start(dir.path(), case.replicas, tuning).await?;
    let leader = group.wait_leader(Duration::from_secs(20)).await?;
    let handle = group
        .handle(leader)
        .ok_or_else(|| anyhow::anyhow!("no leader"))?;

    // Pre-build every batch before the clock starts: each writer has its own keys.
    let value = "x".repeat(32);
    let commands = Arc::new(AtomicU64::new(0));
    let entries = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..case.in_flight {
        let batches: Vec<Vec<KvCommand>> = (0..64)
            .map(|b| {
                (0..case.batch)
                    .map(|i| KvCommand::Put {
                        key: format!("w{w}-b{b}-{i}"),
                        value: value.clone(),
                    })
                    .collect()
            })
            .collect();
        let (handle, commands, entries, measuring, stop) = (
            handle.clone(),
            commands.clone(),
            entries.clone(),
            measuring.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let batch = batches[n % batches.len()].clone();
                n += 1;
                let len = batch.len() as u64;
                if handle.write_batch(batch).await.is_ok() && measuring.load(Ordering::Relaxed) {
                    commands.fetch_add(len, Ordering::Relaxed);
                    entries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    drop(handle);
    group.shutdown().await?;
    Ok((
        commands.load(Ordering::Relaxed) as f64 / elapsed,
        entries.load(Ordering::Relaxed) as f64 / elapsed,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a name filter is not supported.
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let cases = [
        Case {
            replicas: 1,
            batch: 1,
            in_flight: 1,
        },
        Case {
            replicas: 1,
            batch: 100,
            in_flight: 16,
        },
        Case {
            replicas: 1,
            batch: 1000,
            in_flight: 8,
        },
        Case {
            replicas: 3,
            batch: 1,
            in_flight: 1,
        },
        Case {
            replicas: 3,
            batch: 100,
            in_flight: 16,
        },
        Case {
            replicas: 3,
            batch: 1000,
            in_flight: 8,
        },
    ];
    println!("replicas  commands/entry  entries in flight  commands/s  entries/s  ({secs}s each)");
    for case in &cases {
        let (cps, eps) = run(case, secs).await?;
        println!(
            "{:>8}  {:>14}  {:>17}  {:>10.0}  {:>9.0}",
            case.replicas, case.batch, case.in_flight, cps, eps
        );
    }
    Ok(())
}
