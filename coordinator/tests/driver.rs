//! The coordinator driver over a real Raft group (RocksDB in a temp dir) against
//! in-memory locking shards.

mod common;

use std::time::Duration;

use cbdc_coordinator::{
    split, CoordinatorCommand, CoordinatorError, CoordinatorResponse, DtxTransactions, ShardGroups,
    Verdict,
};
use cbdc_core::CompactTransaction;
use cbdc_proto::v1::{self, DtxId, RejectReason, TxStatus};
use common::*;

const SHARDS: usize = 4;
const WAIT: Duration = Duration::from_secs(30);

fn confirmed(result: &v1::TransactionResult) -> bool {
    result.status() == TxStatus::Confirmed
}

fn rejected_for(result: &v1::TransactionResult, reason: RejectReason, input: Option<u32>) -> bool {
    result.status() == TxStatus::Rejected
        && result.reject_reason() == reason
        && result.input_index == input
}

/// A funded transaction: `inputs` fresh funded outputs, `outputs` fresh outputs.
fn funded(shards: &MemoryShards, inputs: usize, outputs: usize) -> CompactTransaction {
    let ins: Vec<_> = (0..inputs).map(|_| uhs()).collect();
    for id in &ins {
        shards.fund(*id, 10);
    }
    let outs: Vec<_> = (0..outputs).map(|_| uhs()).collect();
    tx(&ins, &outs)
}

/// Waits until every dtx is finished everywhere: no record left, no lock, no shard dtx.
async fn wait_settled(group: &Group, leader: u64, shards: &MemoryShards) -> anyhow::Result<()> {
    let handle = group.handle(leader);
    wait_until("every dtx done", WAIT, || {
        unfinished(&handle) == 0 && shards.total_locks() == 0 && shards.total_dtxs() == 0
    })
    .await
}

#[tokio::test]
async fn test_execute_batch_settles() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let (group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let txs = sentinel.attest((0..200).map(|_| funded(&shards, 2, 2)).collect());
    let results = coordinator.execute(txs.clone()).await?;
    assert_eq!(results.len(), txs.len());
    for (tx, result) in txs.iter().zip(&results) {
        assert!(confirmed(result), "{result:?}");
        assert_eq!(result.tx_id, tx.id.as_bytes().to_vec());
        assert!(tx.inputs.iter().all(|i| !shards.is_unspent(i)));
        assert!(tx.outputs.iter().all(|(o, _)| shards.is_unspent(o)));
        assert_eq!(shards.recorded(&tx.id), Some(Recorded::Committed));
    }
    // 200 transactions in dtxs of at most 64.
    let prepared = group.handle(1).read(|sm| sm.next_sequence())? - 1;
    assert!((4..=200).contains(&prepared), "{prepared} dtxs");
    wait_settled(&group, 1, &shards).await?;

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_execute_batch_conflicting_txs_in_one_dtx() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let (group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let shared = uhs();
    shards.fund(shared, 10);
    let own = uhs();
    shards.fund(own, 10);
    let txs = sentinel.attest(vec![tx(&[shared], &[uhs()]), tx(&[own, shared], &[uhs()])]);
    let results = coordinator.execute(txs).await?;
    assert!(confirmed(&results[0]), "{:?}", results[0]);
    assert!(
        rejected_for(&results[1], RejectReason::InputsLocked, Some(1)),
        "{:?}",
        results[1]
    );
    // The loser's other input was released, not spent.
    assert!(shards.is_unspent(&own));
    assert!(!shards.is_unspent(&shared));
    assert_eq!(group.handle(1).read(|sm| sm.next_sequence())?, 2, "one dtx");
    wait_settled(&group, 1, &shards).await?;

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_execute_batch_double_spend_rejected_with_reason_and_index() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let (group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let spent = uhs_on(3, SHARDS);
    shards.fund(spent, 10);
    let first = sentinel.attest(vec![tx(&[spent], &[uhs()])]);
    assert!(confirmed(&coordinator.execute(first).await?[0]));

    // Input 0 (shard 3) was spent above; input 1 (shard 0) never existed. Both shards
    // refuse; the lowest shard's reason and input index win.
    let unknown = uhs_on(0, SHARDS);
    let fresh = uhs_on(2, SHARDS);
    shards.fund(fresh, 10);
    let mut double = tx(&[spent, unknown, fresh], &[uhs()]);
    double.id = tx_id_on(1, SHARDS);
    let double = sentinel.attest(vec![double]);
    let results = coordinator.execute(double.clone()).await?;
    assert!(
        rejected_for(&results[0], RejectReason::InputsSpent, Some(1)),
        "{:?}",
        results[0]
    );
    assert!(shards.is_unspent(&fresh), "the good input is released");
    assert_eq!(
        shards.recorded(&double[0].id),
        Some(Recorded::Aborted(RejectReason::InputsSpent)),
        "the tx-id shard records the reason"
    );
    wait_settled(&group, 1, &shards).await?;

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_execute_batch_committed_before_is_confirmed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let (group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let txs = sentinel.attest(vec![funded(&shards, 2, 2)]);
    assert!(confirmed(&coordinator.execute(txs.clone()).await?[0]));
    wait_settled(&group, 1, &shards).await?;

    // The retry goes through a new dtx: the shard owning the tx id says it committed
    // before; the inputs (spent) must not turn it into a double spend.
    let before = shards.total_lock_calls();
    let results = coordinator.execute(txs.clone()).await?;
    assert!(confirmed(&results[0]), "{:?}", results[0]);
    assert!(shards.total_lock_calls() > before);
    assert_eq!(shards.recorded(&txs[0].id), Some(Recorded::Committed));
    assert!(txs[0].outputs.iter().all(|(o, _)| shards.is_unspent(o)));
    wait_settled(&group, 1, &shards).await?;

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_execute_batch_attestation_failure() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let (group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let good = sentinel.attest(vec![funded(&shards, 1, 1)]);
    let unattested = funded(&shards, 1, 1);
    let mut forged = sentinel.attest(vec![funded(&shards, 1, 1)]);
    forged[0].outputs[0].1 = cbdc_core::Amount::from_cents(1_000_000); // no longer the attested leaf
    let batch = vec![unattested.clone(), good[0].clone(), forged[0].clone()];
    let results = coordinator.execute(batch).await?;
    assert!(
        rejected_for(&results[0], RejectReason::Attestation, None),
        "{:?}",
        results[0]
    );
    assert!(confirmed(&results[1]));
    assert!(
        rejected_for(&results[2], RejectReason::Attestation, None),
        "{:?}",
        results[2]
    );
    // Never forwarded: the shards know nothing of them.
    assert!(shards.is_unspent(&unattested.inputs[0]));
    assert!(shards.is_unspent(&forged[0].inputs[0]));
    assert_eq!(shards.recorded(&unattested.id), None);
    assert_eq!(shards.recorded(&forged[0].id), None);

    // A big batch (verified on the blocking pool) gives the same answers.
    let mut big = sentinel.attest((0..100).map(|_| funded(&shards, 1, 1)).collect());
    big[50].attestations.clear();
    let results = coordinator.execute(big).await?;
    for (i, r) in results.iter().enumerate() {
        if i == 50 {
            assert!(rejected_for(r, RejectReason::Attestation, None));
        } else {
            assert!(confirmed(r), "{i}: {r:?}");
        }
    }

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_execute_batch_dedupes_concurrent_submissions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let (group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let mut one = funded(&shards, 1, 1);
    one.id = tx_id_on(2, SHARDS);
    let txs = sentinel.attest(vec![one]);
    // Hold the dtx in its Lock phase while the duplicate arrives.
    shards.set_down(2, true);
    let mut first = Box::pin(coordinator.execute(txs.clone()));
    assert!(futures::poll!(&mut first).is_pending());
    wait_until("lock attempts on the down shard", WAIT, || {
        shards.attempts(2) >= 2
    })
    .await?;
    // One poll registers the duplicate (it joins the waiter; nothing is queued).
    let mut second = Box::pin(coordinator.execute(vec![txs[0].clone(), txs[0].clone()]));
    assert!(futures::poll!(&mut second).is_pending());
    shards.set_down(2, false);
    let (first, second) = futures::join!(first, second);
    let (first, second) = (first?, second?);
    assert!(confirmed(&first[0]));
    assert!(second.iter().all(confirmed), "{second:?}");
    assert_eq!(
        group.handle(1).read(|sm| sm.next_sequence())?,
        2,
        "settled in one dtx"
    );
    wait_settled(&group, 1, &shards).await?;

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_execute_batch_shard_down_then_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let (group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let txs = sentinel.attest((0..20).map(|_| funded(&shards, 2, 2)).collect());
    shards.set_down(1, true);
    let mut pending = Box::pin(coordinator.execute(txs.clone()));
    assert!(futures::poll!(&mut pending).is_pending());
    wait_until("retries against the down shard", WAIT, || {
        shards.attempts(1) >= 3
    })
    .await?;
    assert!(unfinished(&group.handle(1)) >= 1, "the dtx is prepared");
    shards.set_down(1, false);
    let results = pending.await?;
    assert!(results.iter().all(confirmed), "{results:?}");
    wait_settled(&group, 1, &shards).await?;

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_recovery_finishes_prepared_and_decided_dtxs_before_new_work() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let group = Group::start(dir.path(), 1).await?;
    group.wait_leader(WAIT).await?;
    let handle = group.handle(1);
    let group_id = params().group;

    // A dtx left Prepared (maybe partly locked) by a previous leader.
    let prepared = sentinel.attest((0..5).map(|_| funded(&shards, 2, 1)).collect());
    let r = handle
        .write(CoordinatorCommand::Prepare {
            txs: DtxTransactions::encode(&prepared),
        })
        .await?;
    assert_eq!(r, CoordinatorResponse::Prepared { sequence: 1 });
    let slices = split(shards.shard_map(), &prepared);
    let dtx1 = DtxId {
        coordinator: group_id,
        sequence: 1,
    };
    let first = &slices[0];
    let refs: Vec<_> = first.txs.iter().map(|&i| &prepared[i as usize]).collect();
    shards.lock(first.shard, dtx1, &refs).await?;

    // A dtx left Decided: locked everywhere, decision replicated, not applied.
    let decided = sentinel.attest((0..3).map(|_| funded(&shards, 1, 2)).collect());
    handle
        .write(CoordinatorCommand::Prepare {
            txs: DtxTransactions::encode(&decided),
        })
        .await?;
    let dtx2 = DtxId {
        coordinator: group_id,
        sequence: 2,
    };
    for slice in split(shards.shard_map(), &decided) {
        let refs: Vec<_> = slice.txs.iter().map(|&i| &decided[i as usize]).collect();
        shards.lock(slice.shard, dtx2, &refs).await?;
    }
    // The decision aborts the second transaction: recovery must apply it as recorded.
    let verdicts = vec![
        Verdict::Commit,
        Verdict::abort(RejectReason::Aborted, None),
        Verdict::Commit,
    ];
    handle
        .write(CoordinatorCommand::Decide {
            sequence: 2,
            verdicts,
        })
        .await?;
    assert!(shards.total_locks() > 0);

    // Hold recovery on a down shard: no new work meanwhile.
    let held = slices.last().map(|s| s.shard).unwrap_or(0);
    shards.set_down(held, true);
    let coordinator = start_coordinator(&group, 1, &sentinel, shards.clone()).await?;
    wait_until("recovery retrying the down shard", WAIT, || {
        shards.attempts(held) >= 2
    })
    .await?;
    assert!(!coordinator.is_accepting());
    let early = sentinel.attest(vec![funded(&shards, 1, 1)]);
    assert!(matches!(
        coordinator.execute(early.clone()).await,
        Err(CoordinatorError::Recovering)
    ));

    shards.set_down(held, false);
    wait_until("recovery done", WAIT, || coordinator.is_accepting()).await?;
    assert_eq!(
        unfinished(&handle),
        0,
        "recovered dtxs are done before new work"
    );
    assert_eq!(shards.total_locks(), 0);
    assert_eq!(shards.total_dtxs(), 0);
    for tx in &prepared {
        assert_eq!(shards.recorded(&tx.id), Some(Recorded::Committed));
        assert!(tx.inputs.iter().all(|i| !shards.is_unspent(i)));
    }
    assert_eq!(shards.recorded(&decided[0].id), Some(Recorded::Committed));
    assert_eq!(
        shards.recorded(&decided[1].id),
        Some(Recorded::Aborted(RejectReason::Aborted))
    );
    assert!(shards.is_unspent(&decided[1].inputs[0]));
    assert_eq!(shards.recorded(&decided[2].id), Some(Recorded::Committed));

    // New work now: a retry of a recovered transaction gets its real outcome, a spend
    // of an input recovery consumed is a double spend.
    let retry = coordinator.execute(vec![prepared[0].clone()]).await?;
    assert!(confirmed(&retry[0]), "{:?}", retry[0]);
    let double = sentinel.attest(vec![tx(&[prepared[1].inputs[0]], &[uhs()])]);
    let results = coordinator.execute(double).await?;
    assert!(
        rejected_for(&results[0], RejectReason::InputsSpent, Some(0)),
        "{:?}",
        results[0]
    );
    assert!(confirmed(&coordinator.execute(early).await?[0]));
    wait_settled(&group, 1, &shards).await?;

    coordinator.shutdown().await;
    group.shutdown().await
}

#[tokio::test]
async fn test_leader_change_mid_dtx_new_leader_finishes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(SHARDS);
    let sentinel = Sentinel::new();
    let mut group = Group::start(dir.path(), 3).await?;
    let leader = group.wait_leader(WAIT).await?;
    let mut coordinators = std::collections::BTreeMap::new();
    for id in 1..=3 {
        coordinators.insert(
            id,
            start_coordinator(&group, id, &sentinel, shards.clone()).await?,
        );
    }
    wait_until("the leader to accept work", WAIT, || {
        coordinators[&leader].is_accepting()
    })
    .await?;

    // A follower refuses with the leader's endpoint.
    let follower = (1..=3).find(|id| *id != leader).unwrap_or(1);
    let txs = sentinel.attest(vec![funded(&shards, 2, 2)]);
    match coordinators[&follower].execute(txs.clone()).await {
        Err(CoordinatorError::NotLeader { leader_addr, .. }) => {
            assert_eq!(
                leader_addr.as_deref(),
                Some(group.members[&leader].client_addr.as_str())
            );
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // The dtx hangs in Lock on a down shard; then the leader goes away.
    let held = split(shards.shard_map(), &txs)[0].shard;
    shards.set_down(held, true);
    let old = coordinators.remove(&leader).expect("leader's coordinator");
    let mut pending = Box::pin(old.execute(txs.clone()));
    assert!(futures::poll!(&mut pending).is_pending());
    wait_until("lock attempts", WAIT, || shards.attempts(held) >= 2).await?;
    group.stop(leader).await?;
    assert!(matches!(
        pending.await,
        Err(CoordinatorError::LeadershipLost)
    ));
    old.shutdown().await;

    // The new leader recovers the dtx once the shard is back, and the retry is answered
    // with the real outcome.
    let new_leader = group.wait_leader(WAIT).await?;
    shards.set_down(held, false);
    wait_until("the new leader to accept work", WAIT, || {
        coordinators[&new_leader].is_accepting()
    })
    .await?;
    assert_eq!(shards.recorded(&txs[0].id), Some(Recorded::Committed));
    let retry = coordinators[&new_leader].execute(txs.clone()).await?;
    assert!(confirmed(&retry[0]), "{:?}", retry[0]);
    wait_settled(&group, new_leader, &shards).await?;

    for (_, c) in coordinators {
        c.shutdown().await;
    }
    group.shutdown().await
}

/// Rough throughput of one group (1 replica, RocksDB) against in-memory shards: run with
/// `cargo test -p cbdc-coordinator --test driver -- --ignored --nocapture throughput`
/// (58k tx/s on the 2-core dev machine with batches of 2000, debug profile).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check"]
async fn test_throughput_in_memory_shards() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(8);
    let sentinel = Sentinel::new();
    let group = Group::start(dir.path(), 1).await?;
    group.wait_leader(WAIT).await?;
    let params = cbdc_coordinator::CoordinatorParams {
        batch_size: 2000,
        batch_delay: Duration::from_millis(2),
        max_in_flight: 8,
        ..params()
    };
    let coordinator = std::sync::Arc::new(cbdc_coordinator::Coordinator::start(
        group.handle(1),
        params,
        sentinel.verifier.clone(),
        shards.clone(),
    )?);
    wait_until("accepting", WAIT, || coordinator.is_accepting()).await?;

    const REQUESTS: usize = 100;
    const PER_REQUEST: usize = 500;
    let batches: Vec<Vec<CompactTransaction>> = (0..REQUESTS)
        .map(|_| sentinel.attest((0..PER_REQUEST).map(|_| funded(&shards, 2, 2)).collect()))
        .collect();
    let start = std::time::Instant::now();
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let coordinator = coordinator.clone();
            tokio::spawn(async move { coordinator.execute(batch).await })
        })
        .collect();
    for task in tasks {
        let results = task.await??;
        assert!(results.iter().all(confirmed));
    }
    let elapsed = start.elapsed();
    let total = REQUESTS * PER_REQUEST;
    println!(
        "{total} txs in {elapsed:?}: {:.0} tx/s",
        total as f64 / elapsed.as_secs_f64()
    );
    if let Ok(coordinator) = std::sync::Arc::try_unwrap(coordinator) {
        coordinator.shutdown().await;
    }
    group.shutdown().await
}
