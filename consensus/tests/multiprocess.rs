//! `cbdc-raft-testnode` processes killed with `kill -9`:
//! - three replicas: kill the leader while a client writes, check that every acknowledged
//!   write survives, then restart the killed replica and see it catch up;
//! - one replica: kill it after snapshots and log purges, restart it from its own disk
//!   and find every acknowledged write (the state machine writes without the WAL, so
//!   what the kill lost is replayed from the Raft log).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cbdc_consensus::testkit::{KvCommand, KvResponse};
use cbdc_consensus::LeaderClient;
use cbdc_proto::raft::group_client_client::GroupClientClient;
use cbdc_proto::raft::{StatusReply, StatusRequest};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);

/// The child processes; killed (SIGKILL) and reaped when dropped, also on a failed test.
struct Processes {
    dir: std::path::PathBuf,
    members: BTreeMap<u64, (String, String)>,
    children: BTreeMap<u64, Child>,
    /// Entries between snapshots (each snapshot purges the log before it).
    snapshot_every: u64,
}

impl Processes {
    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cbdc-raft-testnode"));
        cmd.arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{id}")))
            .arg("--snapshot-every")
            .arg(self.snapshot_every.to_string())
            .arg("--keep-logs")
            .arg("10");
        for (mid, (peer, client)) in &self.members {
            cmd.arg("--member").arg(format!("{mid}={peer}={client}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.children.insert(id, child);
        Ok(())
    }

    fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill()?; // SIGKILL
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<String> {
    let l = cbdc_consensus::network::reserve_loopback_port()?;
    Ok(l.local_addr()?.to_string())
}

async fn status(addr: &str) -> Option<StatusReply> {
    let mut client = GroupClientClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    client
        .status(StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// The leader every live replica agrees on.
async fn wait_leader(procs: &Processes) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut views = Vec::new();
        for id in procs.children.keys() {
            views.push(status(&procs.members[id].1).await);
        }
        if let Some(Some(first)) = views.first() {
            let leader = first.leader_id;
            if leader.is_some_and(|l| procs.children.contains_key(&l))
                && views
                    .iter()
                    .all(|v| v.as_ref().is_some_and(|v| v.leader_id == leader))
            {
                let applied = views
                    .iter()
                    .flatten()
                    .map(|v| v.last_applied)
                    .max()
                    .unwrap_or(0);
                return Ok((leader.unwrap_or_default(), applied));
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no agreed leader in {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_count(acked: &Mutex<Vec<String>>, at_least: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len() < at_least {
        anyhow::ensure!(
            Instant::now() < deadline,
            "fewer than {at_least} writes acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_leader_during_writes_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let result = kill_leader_during_writes(dir.path()).await;
    if result.is_err() {
        dump_logs(dir.path());
    }
    result
}

/// Print the replicas' logs (on failure).
fn dump_logs(dir: &Path) {
    for id in 1..=3 {
        let path = dir.join(format!("node-{id}.log"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- {} (last 40 lines) ----", path.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

async fn kill_leader_during_writes(dir: &Path) -> anyhow::Result<()> {
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        members.insert(id, (free_port()?, free_port()?));
    }
    let mut procs = Processes {
        dir: dir.to_path_buf(),
        members: members.clone(),
        children: BTreeMap::new(),
        snapshot_every: 200,
    };
    for id in 1..=3 {
        procs.spawn(id)?;
    }
    let endpoints: Vec<String> = members.values().map(|(_, c)| c.clone()).collect();
    let client = Arc::new(LeaderClient::new(endpoints.clone()).with_timeout(WAIT));

    // A writer that keeps writing (one key per entry) and records what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k-{i}");
                let cmd = KvCommand::Put {
                    key: key.clone(),
                    value: format!("v-{i}"),
                };
                match client.write::<_, KvResponse>(&[cmd]).await {
                    Ok(_) => {
                        if let Ok(mut a) = acked.lock() {
                            a.push(key);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "write failed"),
                }
                i += 1;
            }
        })
    };

    wait_count(&acked, 30).await?;
    let (leader, _) = wait_leader(&procs).await?;
    procs.kill(leader)?;
    let before = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
    wait_count(&acked, before + 30).await?;
    stop.store(true, Ordering::Relaxed);
    writer.await?;

    // Every acknowledged key is there (read through the log on the new leader).
    let keys = acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let gets: Vec<KvCommand> = keys
        .iter()
        .map(|k| KvCommand::Get { key: k.clone() })
        .collect();
    let values: Vec<KvResponse> = client.write(&gets).await?;
    for (k, v) in keys.iter().zip(&values) {
        let expected = format!("v-{}", &k[2..]);
        assert_eq!(
            v,
            &KvResponse::Value(Some(expected)),
            "lost acknowledged write {k}"
        );
    }

    // The killed replica restarts from its data directory and catches up.
    let (_, applied) = wait_leader(&procs).await?;
    procs.spawn(leader)?;
    let deadline = Instant::now() + WAIT;
    loop {
        if status(&members[&leader].1)
            .await
            .is_some_and(|s| s.last_applied >= applied)
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "restarted replica did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_killed_single_replica_replays_its_log_and_loses_nothing() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let result = kill_single_replica_after_purges(dir.path()).await;
    if result.is_err() {
        dump_logs(dir.path());
    }
    result
}

/// Writes `keys` through `client`, one entry per key, each acknowledged.
async fn put_keys(client: &LeaderClient, keys: std::ops::Range<u64>) -> anyhow::Result<()> {
    for i in keys {
        let put = KvCommand::Put {
            key: format!("k-{i}"),
            value: format!("v-{i}"),
        };
        let answer: Vec<KvResponse> = client.write(&[put]).await?;
        anyhow::ensure!(answer.len() == 1, "one answer per command");
    }
    Ok(())
}

async fn kill_single_replica_after_purges(dir: &Path) -> anyhow::Result<()> {
    const SNAPSHOT_EVERY: u64 = 100;
    const WRITES: u64 = 450;
    let members = BTreeMap::from([(1u64, (free_port()?, free_port()?))]);
    let mut procs = Processes {
        dir: dir.to_path_buf(),
        members: members.clone(),
        children: BTreeMap::new(),
        snapshot_every: SNAPSHOT_EVERY,
    };
    procs.spawn(1)?;
    let client = LeaderClient::new(vec![members[&1].1.clone()]).with_timeout(WAIT);
    // Enough entries for several snapshots, each purging the log up to 10 entries before
    // it: the state of the purged entries must be on disk by then.
    put_keys(&client, 0..WRITES).await?;
    let (_, applied) = wait_leader(&procs).await?;
    anyhow::ensure!(
        applied > 3 * SNAPSHOT_EVERY,
        "only {applied} entries applied"
    );

    procs.kill(1)?;
    procs.spawn(1)?;
    let (_, replayed) = wait_leader(&procs).await?;
    anyhow::ensure!(
        replayed >= applied,
        "restarted at {replayed}, had applied {applied}"
    );
    let gets: Vec<KvCommand> = (0..WRITES)
        .map(|i| KvCommand::Get {
            key: format!("k-{i}"),
        })
        .collect();
    let values: Vec<KvResponse> = client.write(&gets).await?;
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            value,
            &KvResponse::Value(Some(format!("v-{i}"))),
            "lost acknowledged write k-{i}"
        );
    }
    Ok(())
}
