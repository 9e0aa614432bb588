//! Real `cbdc run` processes: an atomizer cluster with a 3-replica atomizer group, an
//! archiver, a watchtower, 2 shards and a sentinel. While clients stream payments,
//! `kill -9` the atomizer leader; then `kill -9` a shard, let blocks go by without it,
//! and restart it: it catches up (from the archiver for blocks the atomizer pruned) and
//! attests again. After each step: block heights are contiguous, no input is spent twice,
//! every payment answered CONFIRMED stays confirmed, and the value across shards equals
//! the value minted.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cbdc_core::{read_key_file, SecretKey};
use cbdc_node::config::Architecture;
use cbdc_node::init::InitOptions;
use cbdc_proto::convert::Block;
use cbdc_proto::v1::archiver_client::ArchiverClient;
use cbdc_proto::v1::{self, TxStatus};
use support::processes::{
    check_ledger, init_for_kills, leader_of, run_worker, settle, wait_for_progress, Ledger,
    Processes, COIN, WAIT,
};
use support::*;
use tempfile::TempDir;

const WORKERS: usize = 6;

/// Every block the archive holds, checked to be contiguous from 1.
async fn archived_blocks(endpoint: &str) -> Vec<Block> {
    let mut client = ArchiverClient::new(connect(endpoint).await);
    let mut stream = client
        .get_blocks(v1::GetBlocksRequest {
            from_height: 1,
            to_height: u64::MAX,
        })
        .await
        .unwrap()
        .into_inner();
    let mut blocks = Vec::new();
    while let Some(block) = stream.message().await.unwrap() {
        let block = Block::try_from(&block).unwrap();
        assert_eq!(
            block.height,
            blocks.len() as u64 + 1,
            "heights are contiguous"
        );
        blocks.push(block);
    }
    blocks
}

/// No input is spent twice and no transaction is confirmed twice, over the whole chain.
fn check_chain(blocks: &[Block]) {
    let mut spent = HashSet::new();
    let mut confirmed = HashSet::new();
    for block in blocks {
        for tx in &block.transactions {
            assert!(confirmed.insert(tx.id), "{} confirmed twice", tx.id);
            for input in &tx.inputs {
                assert!(spent.insert(*input), "input {input:?} spent twice");
            }
        }
    }
}

/// Waits until the archive reaches at least `height`.
async fn wait_archived(endpoint: &str, height: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let info = ArchiverClient::new(connect(endpoint).await)
            .get_archive_info(v1::GetArchiveInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        if info.highest_height.unwrap_or(0) >= height {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "archive stuck at {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_kill_atomizer_leader_and_a_shard_then_restart_cluster() {
    let dir = TempDir::new().unwrap();
    let options = InitOptions {
        architecture: Architecture::Atomizer,
        shards: 2,
        replicas: 3,
        sentinels: 1,
        coordinators: 0,
        shard_copies: 1,
    };
    // An archiver that lets the atomizer prune often, and a short window, so that a
    // restarted shard must read from the archive.
    let (file, config) = init_for_kills(dir.path(), &options, |config| {
        if let Some(archiver) = config.archiver.as_mut() {
            archiver.prune_every = 2;
        }
        if let Some(atomizer) = config.atomizer.as_mut() {
            atomizer.stxo_cache_depth = 3;
        }
    });
    let issuer: SecretKey = read_key_file(&dir.path().join("keys/issuer.key")).unwrap();
    let endpoint = config.sentinels[0].endpoint.to_string();
    let archiver = config.archiver.as_ref().unwrap().endpoint.to_string();

    let mut procs = Processes::new(&file, &config, dir.path().to_path_buf());
    procs.spawn_all();

    let mut ledger = Ledger::default();
    for _ in 0..WORKERS {
        let (mint_tx, coins) = mint(&issuer, &[COIN]);
        let result = settle(&endpoint, &mint_tx).await;
        assert_eq!(result.status(), TxStatus::Confirmed, "{result:?}");
        ledger.chains.push(coins);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let start_workers = |chains: Vec<Vec<Coin>>| -> Vec<_> {
        chains
            .into_iter()
            .map(|chain| {
                tokio::spawn(run_worker(
                    endpoint.clone(),
                    chain,
                    stop.clone(),
                    confirmed.clone(),
                ))
            })
            .collect()
    };
    let workers = start_workers(std::mem::take(&mut ledger.chains));
    wait_for_progress(&confirmed, 30).await;

    // kill -9 the atomizer leader mid-stream: a new leader goes on cutting blocks.
    let atomizers = config.atomizer_endpoints();
    let leader = leader_of(&atomizers).await;
    let name = format!(
        "atomizer-r{}",
        config.atomizer.as_ref().unwrap().replicas[leader].id
    );
    procs.kill9(&name);
    wait_for_progress(&confirmed, 30).await;
    procs.spawn(&name);
    wait_for_progress(&confirmed, 10).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        ledger.chains.push(w.await.unwrap());
    }
    check_ledger(&endpoint, &config, &ledger).await;

    // kill -9 a shard; blocks go by without it (mints need no shard).
    let shard = format!("shard-{}-r1", config.shards[0].id);
    procs.kill9(&shard);
    let mut extra = Vec::new();
    for _ in 0..8 {
        let (mint_tx, coins) = mint(&issuer, &[COIN]);
        let result = settle(&endpoint, &mint_tx).await;
        let height = result.block_height.expect("a confirmed mint has a height");
        wait_archived(&archiver, height).await;
        extra.push(coins);
    }
    procs.spawn(&shard);
    ledger.chains.extend(extra);
    check_ledger(&endpoint, &config, &ledger).await;
    // It attests again: payments settle on both ranges.
    stop.store(false, Ordering::Relaxed);
    let workers = start_workers(std::mem::take(&mut ledger.chains));
    wait_for_progress(&confirmed, 30).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        ledger.chains.push(w.await.unwrap());
    }
    check_ledger(&endpoint, &config, &ledger).await;
    check_chain(&archived_blocks(&archiver).await);

    // Stop everything gracefully and start it again from disk.
    procs.terminate_all();
    procs.spawn_all();
    check_ledger(&endpoint, &config, &ledger).await;
    let live = ledger.chains[0].last().unwrap().clone();
    let (tx, next) = transfer(&[live], &[COIN]);
    assert_eq!(settle(&endpoint, &tx).await.status(), TxStatus::Confirmed);
    ledger.chains[0].push(next[0].clone());
    check_ledger(&endpoint, &config, &ledger).await;
    check_chain(&archived_blocks(&archiver).await);
    procs.terminate_all();
}
