//! In-process Raft groups of the key-value test state machine: real RocksDB in temp dirs,
//! real gRPC on 127.0.0.1 with OS-chosen ports. Every wait is on a condition (metrics,
//! applied index) with a timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use cbdc_consensus::testkit::{test_tuning, KvCommand, KvResponse, KvStateMachine, TestGroup};
use cbdc_consensus::{ConsensusError, LeaderClient, NodeId, RaftTuning};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_group_of_three_forwarding_failover_catch_up_and_restart() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let mut group = TestGroup::start(dir.path(), 3, test_tuning()).await?;
    let mut acked: BTreeMap<String, String> = BTreeMap::new();

    // Writes through the leader's handle.
    let leader = group.wait_leader(WAIT).await?;
    let handle = group
        .handle(leader)
        .ok_or_else(|| anyhow::anyhow!("no leader handle"))?;
    for i in 0..10 {
        let (k, v) = kv("leader", i);
        let r = handle.write(put(&k, &v)).await?;
        assert_eq!(r, KvResponse::Put { previous: None });
        acked.insert(k, v);
    }

    // A follower refuses with the leader's client endpoint.
    let follower = other_than(&group, &[leader])?;
    let fh = group
        .handle(follower)
        .ok_or_else(|| anyhow::anyhow!("no follower handle"))?;
    match fh.write(put("x", "y")).await {
        Err(ConsensusError::NotLeader {
            leader_id,
            leader_addr,
        }) => {
            assert_eq!(leader_id, Some(leader));
            assert_eq!(
                leader_addr.as_deref(),
                Some(group.members()[&leader].client_addr.as_str())
            );
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // Through a follower's client endpoint: the LeaderClient follows the hint.
    let via_follower = LeaderClient::new(vec![group.members()[&follower].client_addr.clone()]);
    let batch: Vec<KvCommand> = (0..20)
        .map(|i| {
            let (k, v) = kv("forwarded", i);
            acked.insert(k.clone(), v.clone());
            put(&k, &v)
        })
        .collect();
    let responses: Vec<KvResponse> = via_follower.write(&batch).await?;
    assert_eq!(responses.len(), 20);

    // A read through the log sees the writes.
    let client = LeaderClient::new(group.client_endpoints()).with_timeout(WAIT);
    let got: Vec<KvResponse> = client
        .write(&[KvCommand::Get {
            key: "forwarded-7".into(),
        }])
        .await?;
    assert_eq!(got, vec![KvResponse::Value(Some("v-forwarded-7".into()))]);
    assert_replicas_hold(&group, &acked).await?;

    // Stop the leader: a new one is elected and nothing acknowledged is lost.
    group.stop(leader).await?;
    let new_leader = group.wait_leader(WAIT).await?;
    assert_ne!(new_leader, leader);
    write_keys(&client, "after-failover", 0..30, &mut acked).await?;
    assert_replicas_hold(&group, &acked).await?;

    // Restart the old leader: it catches up by log.
    group.restart(leader).await?;
    assert_replicas_hold(&group, &acked).await?;

    // Restart the whole group from its data directories.
    group.shutdown().await?;
    for id in 1..=3 {
        group.restart(id).await?;
    }
    group.wait_leader(WAIT).await?;
    assert_replicas_hold(&group, &acked).await?;
    write_keys(&client, "after-restart", 0..5, &mut acked).await?;
    assert_replicas_hold(&group, &acked).await?;
    group.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_group_of_three_lagging_replica_catches_up_by_snapshot() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let tuning = RaftTuning {
        snapshot_every: 20,
        keep_logs_after_snapshot: 5,
        ..test_tuning()
    };
    let mut group = TestGroup::start(dir.path(), 3, tuning).await?;
    let mut acked = BTreeMap::new();
    let client = LeaderClient::new(group.client_endpoints()).with_timeout(WAIT);
    write_keys(&client, "before", 0..5, &mut acked).await?;

    let leader = group.wait_leader(WAIT).await?;
    let lagging = other_than(&group, &[leader])?;
    let lagging_applied = group
        .handle(lagging)
        .map(|h| h.applied_index())
        .ok_or_else(|| anyhow::anyhow!("no handle"))?;
    group.stop(lagging).await?;

    // Enough entries (one per write) for several snapshots and purges on the others.
    write_keys(&client, "while-down", 0..80, &mut acked).await?;
    let leader = group.wait_leader(WAIT).await?;
    let lh = group
        .handle(leader)
        .ok_or_else(|| anyhow::anyhow!("no handle"))?;
    let mut metrics = lh.raft().metrics();
    let purged = tokio::time::timeout(
        WAIT,
        metrics.wait_for(|m| m.purged.map(|p| p.index).unwrap_or(0) > lagging_applied + 1),
    )
    .await??
    .purged;
    assert!(purged.is_some(), "the leader purged its log");

    // The entries the lagging replica misses are gone from the leader's log, so it can
    // only catch up by snapshot.
    group.restart(lagging).await?;
    assert_replicas_hold(&group, &acked).await?;
    let lagging_handle = group
        .handle(lagging)
        .ok_or_else(|| anyhow::anyhow!("no handle"))?;
    assert!(lagging_handle.metrics().snapshot.is_some());
    group.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_group_of_one_writes_and_restarts() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let mut group = TestGroup::start(dir.path(), 1, test_tuning()).await?;
    let mut acked = BTreeMap::new();
    let client = LeaderClient::new(group.client_endpoints()).with_timeout(WAIT);
    write_keys(&client, "solo", 0..10, &mut acked).await?;
    assert_replicas_hold(&group, &acked).await?;
    group.stop(1).await?;
    group.restart(1).await?;
    group.wait_leader(WAIT).await?;
    assert_replicas_hold(&group, &acked).await?;
    write_keys(&client, "solo-again", 0..3, &mut acked).await?;
    assert_replicas_hold(&group, &acked).await?;
    group.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_group_of_five_survives_two_failures() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let mut group = TestGroup::start(dir.path(), 5, test_tuning()).await?;
    let mut acked = BTreeMap::new();
    let client = LeaderClient::new(group.client_endpoints()).with_timeout(WAIT);
    write_keys(&client, "five", 0..10, &mut acked).await?;
    assert_replicas_hold(&group, &acked).await?;

    let leader = group.wait_leader(WAIT).await?;
    let follower = other_than(&group, &[leader])?;
    group.stop(leader).await?;
    group.stop(follower).await?;
    write_keys(&client, "three-left", 0..10, &mut acked).await?;
    assert_replicas_hold(&group, &acked).await?;
    group.shutdown().await?;
    Ok(())
}

// ---- helpers ----

fn kv(prefix: &str, i: u32) -> (String, String) {
    (format!("{prefix}-{i}"), format!("v-{prefix}-{i}"))
}

fn put(k: &str, v: &str) -> KvCommand {
    KvCommand::Put {
        key: k.into(),
        value: v.into(),
    }
}

fn other_than(group: &TestGroup, ids: &[NodeId]) -> anyhow::Result<NodeId> {
    group
        .running()
        .into_iter()
        .find(|id| !ids.contains(id))
        .ok_or_else(|| anyhow::anyhow!("no other running replica"))
}

/// Write one key per call (one log entry each), recording what was acknowledged.
async fn write_keys(
    client: &LeaderClient,
    prefix: &str,
    range: std::ops::Range<u32>,
    acked: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for i in range {
        let (k, v) = kv(prefix, i);
        let r: Vec<KvResponse> = client.write(&[put(&k, &v)]).await?;
        assert_eq!(r.len(), 1);
        acked.insert(k, v);
    }
    Ok(())
}

/// Wait until every running replica has applied the leader's last applied entry, then check
/// that each one holds every acknowledged pair.
async fn assert_replicas_hold(
    group: &TestGroup,
    acked: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let leader = group.wait_leader(WAIT).await?;
    let lh = group
        .handle(leader)
        .ok_or_else(|| anyhow::anyhow!("no leader handle"))?;
    lh.ensure_linearizable().await?;
    group.wait_applied(lh.applied_index(), WAIT).await?;
    for id in group.running() {
        let h = group
            .handle(id)
            .ok_or_else(|| anyhow::anyhow!("no handle"))?;
        let all = h.read(|sm: &KvStateMachine| sm.all())??;
        for (k, v) in acked {
            assert_eq!(all.get(k), Some(v), "replica {id} lost {k}");
        }
    }
    Ok(())
}
