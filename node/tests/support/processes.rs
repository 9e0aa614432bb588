//! Real `cbdc run` processes for the multi-process tests: spawn, kill -9, SIGTERM, log
//! tails; finding a Raft leader; settling a transaction the way a client must (retrying
//! until the answer is final).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cbdc_node::config::ClusterConfig;
use cbdc_proto::raft::replica_status_client::ReplicaStatusClient;
use cbdc_proto::raft::StatusRequest;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cbdc_proto::v1::sentinel_client::SentinelClient;
use cbdc_proto::v1::{OutputStatus, RejectReason, TxStatus};
use tonic::transport::Channel;

use super::{audit, output_status, sentinel, submit, transfer, Coin};

/// How long any wait for the cluster may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// The value of every worker's coin.
pub const COIN: u64 = 1_000;

/// The cluster's processes by role name; all are killed when dropped (also on failure).
pub struct Processes {
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
    pub fn new(config_path: &Path, config: &ClusterConfig, logs: PathBuf) -> Self {
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
        if let Some(atomizer) = &config.atomizer {
            for r in &atomizer.replicas {
                args.insert(
                    format!("atomizer-r{}", r.id),
                    vec!["atomizer".into(), "--replica".into(), r.id.to_string()],
                );
            }
        }
        if config.archiver.is_some() {
            args.insert("archiver".into(), vec!["archiver".into()]);
        }
        if config.watchtower.is_some() {
            args.insert("watchtower".into(), vec!["watchtower".into()]);
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

    pub fn spawn(&mut self, name: &str) {
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

    pub fn spawn_all(&mut self) {
        let names: Vec<String> = self.args.keys().cloned().collect();
        for name in names {
            self.spawn(&name);
        }
    }

    /// The last lines a role wrote to its log (for failure messages: the log directory
    /// is removed with the test's temporary directory).
    pub fn log_tail(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn kill9(&mut self, name: &str) {
        let mut child = self.children.remove(name).expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM to everything, then wait for each to exit (graceful shutdown).
    pub fn terminate_all(&mut self) {
        for child in self.children.values() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        // Each child leaves the map once it has exited, so that a failure here leaves the
        // rest to `Drop`, which kills them: no process outlives the test.
        let names: Vec<String> = self.children.keys().cloned().collect();
        for name in names {
            loop {
                let child = self.children.get_mut(&name).expect("running");
                match child.try_wait().unwrap() {
                    Some(status) => {
                        self.children.remove(&name);
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
pub async fn leader_of(endpoints: &[String]) -> usize {
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
pub struct Ledger {
    pub chains: Vec<Vec<Coin>>,
}

/// Submits `tx` until it gets a final answer (the client contract: a retry after a
/// timeout or an unavailable back end is safe and gets the real outcome).
pub async fn settle(
    endpoint: &str,
    tx: &cbdc_core::Transaction,
) -> cbdc_proto::v1::TransactionResult {
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
pub async fn run_worker(
    endpoint: String,
    mut chain: Vec<Coin>,
    stop: Arc<AtomicBool>,
    confirmed: Arc<AtomicU64>,
) -> Vec<Coin> {
    while !stop.load(Ordering::Relaxed) {
        let live = chain.last().unwrap().clone();
        let (tx, next) = transfer(&[live], &[COIN]);
        let result = settle(&endpoint, &tx).await;
        // An atomizer refuses a transaction whose shard attestations fell out of its
        // double-spend window (STALE): around a leader's kill a notification can outlast
        // the kill test's 3-block window. Its input is untouched, so a client spends it
        // again in a new transaction (fresh outputs, a new id); the ledger check at the
        // end still proves nothing was lost or spent twice.
        if result.status() == TxStatus::Rejected && result.reject_reason() == RejectReason::Stale {
            continue;
        }
        assert_eq!(result.status(), TxStatus::Confirmed, "{result:?}");
        confirmed.fetch_add(1, Ordering::Relaxed);
        chain.push(next[0].clone());
    }
    chain
}

pub async fn wait_for_progress(confirmed: &AtomicU64, more: u64) {
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

/// Asks about `coins` until every one reads `wanted`; fails at `deadline`.
async fn wait_for_status(
    client: &mut SentinelClient<Channel>,
    coins: &[Coin],
    wanted: OutputStatus,
    deadline: Instant,
) {
    loop {
        let status = output_status(client, coins).await;
        if status.iter().all(|s| *s == wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "wanted {wanted:?}, coins are {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The invariants: live coins unspent (and unlocked), spent ones gone, every replica of
/// every shard group holds exactly the live coins' value.
pub async fn check_ledger(endpoint: &str, config: &ClusterConfig, ledger: &Ledger) {
    let mut client = sentinel(endpoint).await;
    // After a restart the back end may answer UNAVAILABLE for a moment (the API's
    // "ask again" answer): wait until it answers a query.
    let deadline = Instant::now() + WAIT;
    let probe = ledger.chains[0].last().unwrap();
    while client
        .get_output_status(cbdc_proto::v1::GetOutputStatusRequest {
            outputs: vec![cbdc_proto::v1::OutputRef::from(&probe.input)],
        })
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the sentinel does not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for chain in &ledger.chains {
        let (live, spent) = chain.split_last().unwrap();
        let deadline = Instant::now() + WAIT;
        wait_for_status(
            &mut client,
            std::slice::from_ref(live),
            OutputStatus::Unspent,
            deadline,
        )
        .await;
        // A restarted atomizer-mode shard answers at its own height until it has caught
        // up with the blocks cut while it was down, so a spent coin may read as unspent
        // for a moment: wait for the condition, as for the live coin.
        for chunk in spent.chunks(1000) {
            wait_for_status(&mut client, chunk, OutputStatus::SpentOrAbsent, deadline).await;
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

/// `cbdc config init` for a kill test: Raft detects a dead leader faster than with the
/// production default, and `adjust` changes whatever else the test needs. Returns the
/// cluster file and its configuration as the processes will load it.
pub fn init_for_kills(
    dir: &Path,
    options: &cbdc_node::init::InitOptions,
    adjust: impl FnOnce(&mut ClusterConfig),
) -> (PathBuf, ClusterConfig) {
    let file = cbdc_node::init::init_cluster(dir, options).unwrap();
    let mut config = ClusterConfig::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    config.raft = cbdc_node::config::RaftConfig {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        ..Default::default()
    };
    adjust(&mut config);
    std::fs::write(&file, config.to_toml()).unwrap();
    let config = ClusterConfig::load(&file).unwrap();
    (file, config)
}
