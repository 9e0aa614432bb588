//! Real `cbdc run` processes: a 2PC cluster with 3-replica shard groups (2 of them) and a
//! 3-replica coordinator group, one sentinel. While clients stream payments, `kill -9` a
//! shard leader, then a coordinator leader; then stop and restart the whole cluster from
//! disk. After each step: every payment answered CONFIRMED stays spent-and-created, none
//! is applied twice, no lock stays held, and the value across shards equals the value
//! minted.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cbdc_core::{read_key_file, SecretKey};
use cbdc_node::init::InitOptions;
use cbdc_proto::v1::TxStatus;
use support::processes::{
    check_ledger, init_for_kills, leader_of, run_worker, settle, wait_for_progress, Ledger,
    Processes, COIN,
};
use support::*;
use tempfile::TempDir;

const WORKERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_kill_shard_and_coordinator_leaders_then_restart_cluster() {
    let dir = TempDir::new().unwrap();
    let options = InitOptions {
        architecture: cbdc_node::config::Architecture::TwoPhaseCommit,
        shards: 2,
        replicas: 3,
        sentinels: 1,
        coordinators: 1,
        shard_copies: 1,
    };
    let (file, config) = init_for_kills(dir.path(), &options, |_| {});
    let issuer: SecretKey = read_key_file(&dir.path().join("keys/issuer.key")).unwrap();
    let endpoint = config.sentinels[0].endpoint.to_string();

    let mut procs = Processes::new(&file, &config, dir.path().to_path_buf());
    procs.spawn_all();

    // Fund the workers (retried until the cluster is up).
    let mut ledger = Ledger::default();
    for _ in 0..WORKERS {
        let (mint_tx, coins) = mint(&issuer, &[COIN]);
        let result = settle(&endpoint, &mint_tx).await;
        assert_eq!(result.status(), TxStatus::Confirmed, "{result:?}");
        ledger.chains.push(coins);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = std::mem::take(&mut ledger.chains)
        .into_iter()
        .map(|chain| {
            tokio::spawn(run_worker(
                endpoint.clone(),
                chain,
                stop.clone(),
                confirmed.clone(),
            ))
        })
        .collect();
    wait_for_progress(&confirmed, 30).await;

    // kill -9 the leader of shard group 0 mid-stream; payments keep settling.
    let shard0 = &config.shard_endpoints()[0];
    let leader = leader_of(shard0).await;
    let shard_name = format!(
        "shard-{}-r{}",
        config.shards[0].id, config.shards[0].replicas[leader].id
    );
    procs.kill9(&shard_name);
    wait_for_progress(&confirmed, 30).await;
    procs.spawn(&shard_name);

    // kill -9 the coordinator leader mid-stream; a new leader recovers its dtxs.
    let coordinators: Vec<String> = config.coordinators[0]
        .replicas
        .iter()
        .map(|r| r.endpoint.to_string())
        .collect();
    let leader = leader_of(&coordinators).await;
    let coordinator_name = format!(
        "coordinator-{}-r{}",
        config.coordinators[0].id, config.coordinators[0].replicas[leader].id
    );
    procs.kill9(&coordinator_name);
    wait_for_progress(&confirmed, 30).await;
    procs.spawn(&coordinator_name);
    wait_for_progress(&confirmed, 10).await;

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        ledger.chains.push(w.await.unwrap());
    }
    check_ledger(&endpoint, &config, &ledger).await;

    // Stop everything gracefully and start it again from disk.
    procs.terminate_all();
    procs.spawn_all();
    check_ledger(&endpoint, &config, &ledger).await;
    // And it still settles payments.
    let live = ledger.chains[0].last().unwrap().clone();
    let (tx, next) = transfer(&[live], &[COIN]);
    assert_eq!(settle(&endpoint, &tx).await.status(), TxStatus::Confirmed);
    ledger.chains[0].push(next[0].clone());
    check_ledger(&endpoint, &config, &ledger).await;
    procs.terminate_all();
}
