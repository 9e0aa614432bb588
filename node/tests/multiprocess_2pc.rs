//! Real `cbdc run` processes: a 2PC cluster with 3-replica shard groups (2 of them) and a
//! 3-replica coordinator group, one sentinel. While clients stream payments, `kill -9` a
//! shard leader, then a coordinator leader; then stop and restart the whole cluster from
//! disk. After each step: every payment answered CONFIRMED stays spent-and-created, none
//! is applied twice, no lock stays held, and the value across shards equals the value
//! minted.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cbdc_core::{read_key_file, SecretKey};
use cbdc_node::config::{ClusterConfig, RaftConfig};
use cbdc_node::init::{init_cluster, InitOptions};
use cbdc_proto::raft::replica_status_client::ReplicaStatusClient;
use cbdc_proto::raft::StatusRequest;
use cbdc_proto::v1::{OutputStatus, TxStatus};
use support::*;
use tempfile::TempDir;

const WORKERS: usize = 6;
const COIN: u64 = 1_000;
const WAIT: Duration = Duration::from_secs(60);

/// The cluster's processes by role name; all are killed when dropped (also on failure).
struct Processes {
    config: PathBuf,
    logs: PathBuf,
    args: BTreeMap<String, Vec<String>>,
    children: BTreeMap<String, Child>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn new(config_path: &Path, config: &ClusterConfig, logs: PathBuf) -> Self {
        let mut args = BTreeMap::new();
        for g in &config.shards {
            for r in &g.replicas {
                args.insert(
                    format!("shard-{}-r{}", g.id, r.id),
                    vec![
                        "shard".into(),
                        "--group".into(),
                        g.id.to_string(),
                        "--replica".into(),
                        r.id.to_string(),
                    ],
                );
            }
        }
        for g in &config.coordinators {
            for r in &g.replicas {
                args.insert(
                    format!("coordinator-{}-r{}", g.id, r.id),
                    vec![
                        "coordinator".into(),
                        "--group".into(),
                        g.id.to_string(),
                        "--replica".into(),
                        r.id.to_string(),
                    ],
                );
            }
        }
        for s in &config.sentinels {
            args.insert(
                format!("sentinel-{}", s.id),
                vec!["sentinel".into(), "--id".into(), s.id.to_string()],
            );
        }
        Processes {
            config: config_path.to_path_buf(),
            logs,
            args,
            children: BTreeMap::new(),
        }
    }

    fn spawn(&mut self, name: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cbdc"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(&self.args[name])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(name.to_string(), child);
    }

    fn spawn_all(&mut self) {
        let names: Vec<String> = self.args.keys().cloned().collect();
        for name in names {
            self.spawn(&name);
        }
    }

    /// The last lines a role wrote to its log (for failure messages: the log directory
    /// is removed with the test's temporary directory).
    fn log_tail(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn kill9(&mut self, name: &str) {
        let mut child = self.children.remove(name).expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM to everything, then wait for each to exit (graceful shutdown).
    fn terminate_all(&mut self) {
        for child in self.children.values() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, mut child) in std::mem::take(&mut self.children) {
            loop {
                match child.try_wait().unwrap() {
                    Some(status) => {
                        assert!(
                            status.success(),
                            "{name} exited with {status} after SIGTERM; the end of its log:\n{}",
                            self.log_tail(&name)
                        );
                        break;
                    }
                    None if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    None => panic!("{name} did not stop on SIGTERM"),
                }
            }
        }
    }
}

/// The replica of `endpoints` that says it leads its group (waits for one).
async fn leader_of(endpoints: &[String]) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        for (i, e) in endpoints.iter().enumerate() {
            let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{e}"))
                .unwrap()
                .connect()
                .await
            else {
                continue;
            };
            if let Ok(reply) = ReplicaStatusClient::new(channel)
                .status(StatusRequest {})
                .await
            {
                if reply.into_inner().state == "Leader" {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader among {endpoints:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the clients know: each worker's chain of coins (the last one is live).
#[derive(Default)]
struct Ledger {
    chains: Vec<Vec<Coin>>,
}

/// Submits `tx` until it gets a final answer (the client contract: a retry after a
/// timeout or an unavailable back end is safe and gets the real outcome).
async fn settle(endpoint: &str, tx: &cbdc_core::Transaction) -> cbdc_proto::v1::TransactionResult {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = sentinel(endpoint).await;
        match submit(&mut client, tx).await {
            Ok(result) if result.status() != TxStatus::Pending => return result,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("no final answer for {}: {other:?}", tx.tx_id()),
        }
    }
}

/// Each worker spends its live coin into a fresh one, over and over, until `stop`.
async fn run_worker(
    endpoint: String,
    mut chain: Vec<Coin>,
    stop: Arc<AtomicBool>,
    confirmed: Arc<AtomicU64>,
) -> Vec<Coin> {
    while !stop.load(Ordering::Relaxed) {
        let live = chain.last().unwrap().clone();
        let (tx, next) = transfer(&[live], &[COIN]);
        let result = settle(&endpoint, &tx).await;
        assert_eq!(result.status(), TxStatus::Confirmed, "{result:?}");
        confirmed.fetch_add(1, Ordering::Relaxed);
        chain.push(next[0].clone());
    }
    chain
}

async fn wait_for_progress(confirmed: &AtomicU64, more: u64) {
    let start = confirmed.load(Ordering::Relaxed);
    let deadline = Instant::now() + WAIT;
    while confirmed.load(Ordering::Relaxed) < start + more {
        assert!(
            Instant::now() < deadline,
            "no progress: {} confirmed",
            confirmed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The invariants: live coins unspent (and unlocked), spent ones gone, every replica of
/// every shard group holds exactly the live coins' value.
async fn check_ledger(endpoint: &str, config: &ClusterConfig, ledger: &Ledger) {
    let mut client = sentinel(endpoint).await;
    for chain in &ledger.chains {
        let (live, spent) = chain.split_last().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let status = output_status(&mut client, std::slice::from_ref(live)).await;
            if status == vec![OutputStatus::Unspent] {
                break;
            }
            assert!(Instant::now() < deadline, "live coin is {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for chunk in spent.chunks(1000) {
            let status = output_status(&mut client, chunk).await;
            assert!(
                status.iter().all(|s| *s == OutputStatus::SpentOrAbsent),
                "{status:?}"
            );
        }
    }
    let expected = (
        ledger.chains.len() as u64,
        ledger.chains.len() as u64 * COIN,
    );
    // Sum over groups, each group read from every replica until they agree.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut total = (0, 0);
        let mut agree = true;
        for group in config.shard_endpoints() {
            let mut seen = Vec::new();
            for replica in &group {
                seen.push(audit(std::slice::from_ref(replica)).await);
            }
            agree &= seen.windows(2).all(|w| w[0] == w[1]);
            total.0 += seen[0].0;
            total.1 += seen[0].1;
        }
        if agree && total == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "audit {total:?} (replicas agree: {agree}), expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_kill_shard_and_coordinator_leaders_then_restart_cluster() {
    let dir = TempDir::new().unwrap();
    let options = InitOptions {
        architecture: cbdc_node::config::Architecture::TwoPhaseCommit,
        shards: 2,
        replicas: 3,
        sentinels: 1,
        coordinators: 1,
    };
    let file = init_cluster(dir.path(), &options).unwrap();
    // Faster failure detection than the production default.
    let mut config = ClusterConfig::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    config.raft = RaftConfig {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        ..RaftConfig::default()
    };
    std::fs::write(&file, config.to_toml()).unwrap();
    let config = ClusterConfig::load(&file).unwrap();
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
