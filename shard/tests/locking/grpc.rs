//! The two gRPC services on in-process groups of 1 and 3 replicas, driven by the
//! generated clients.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use cbdc_consensus::{leader_hint, NodeId};
use cbdc_core::{attest_batch, AttestationVerifier, CompactTransaction, SecretKey, TxId, UhsId};
use cbdc_proto::convert::compact_transactions_to_wire;
use cbdc_proto::v1::locking_shard_client::LockingShardClient;
use cbdc_proto::v1::shard_query_client::ShardQueryClient;
use cbdc_proto::v1::{
    self, ApplyRequest, AuditRequest, DiscardRequest, DtxId, LockRequest, RejectReason,
    ShardOutputStatusRequest, ShardTransactionStatusRequest, TxStatus,
};
use cbdc_shard::LockingShardParams;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::cluster::ShardGroup;
use crate::common::*;

const ELECTION: Duration = Duration::from_secs(30);

type Shard = LockingShardClient<Channel>;
type Query = ShardQueryClient<Channel>;

fn sentinel() -> SecretKey {
    SecretKey::from_bytes(&[7; 32])
}

fn verifier() -> Arc<AttestationVerifier> {
    Arc::new(AttestationVerifier::new([sentinel().public_key()], 1))
}

/// `txs`, attested as one batch by `key`.
fn attested(key: &SecretKey, mut txs: Vec<CompactTransaction>) -> Vec<CompactTransaction> {
    attest_batch(key, &mut txs);
    txs
}

fn dtx_id(sequence: u64) -> Option<DtxId> {
    Some(DtxId {
        coordinator: 0,
        sequence,
    })
}

async fn lock(
    shard: &mut Shard,
    sequence: u64,
    txs: &[CompactTransaction],
) -> Result<Vec<v1::LockResult>, Status> {
    // The canonical encoding, as a coordinator sends it (the message form is tested
    // below and in cbdc-proto).
    let request = LockRequest::encoded(
        DtxId {
            coordinator: 0,
            sequence,
        },
        txs,
    );
    Ok(shard.lock(request).await?.into_inner().results)
}

async fn apply(
    shard: &mut Shard,
    sequence: u64,
    commit: &[bool],
    reasons: &[RejectReason],
) -> Result<(), Status> {
    let request = ApplyRequest {
        dtx_id: dtx_id(sequence),
        commit: commit.to_vec(),
        reasons: reasons.iter().map(|r| *r as i32).collect(),
    };
    shard.apply(request).await.map(|_| ())
}

async fn discard(shard: &mut Shard, sequence: u64) -> Result<(), Status> {
    let request = DiscardRequest {
        dtx_id: dtx_id(sequence),
    };
    shard.discard(request).await.map(|_| ())
}

async fn tx_status(query: &mut Query, ids: &[TxId]) -> Result<Vec<v1::TransactionResult>, Status> {
    let request = ShardTransactionStatusRequest {
        tx_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
    };
    Ok(query
        .get_transaction_status(request)
        .await?
        .into_inner()
        .results)
}

async fn output_status(
    query: &mut Query,
    ids: &[UhsId],
) -> Result<Vec<(v1::OutputStatus, Option<u64>)>, Status> {
    let request = ShardOutputStatusRequest {
        uhs_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
    };
    Ok(query
        .get_output_status(request)
        .await?
        .into_inner()
        .outputs
        .iter()
        .map(|o| (o.status(), o.value))
        .collect())
}

fn statuses(results: &[v1::TransactionResult]) -> Vec<(TxStatus, RejectReason)> {
    results
        .iter()
        .map(|r| (r.status(), r.reject_reason()))
        .collect()
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) {
    match result {
        Err(status) => assert_eq!(status.code(), code, "{status:?}"),
        Ok(value) => panic!("expected {code:?}, got {value:?}"),
    }
}

/// A one-replica group in `dir` owning `LOW`, once it leads, and its leader.
async fn single_replica(dir: &std::path::Path) -> Result<(ShardGroup, NodeId)> {
    let group = ShardGroup::start(dir, 1, LockingShardParams::new(LOW), verifier()).await?;
    let leader = group.wait_leader(ELECTION).await?;
    Ok((group, leader))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_grpc_single_replica_settles_and_answers_queries() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut group, leader) = single_replica(dir.path()).await?;
    let mut shard = Shard::connect(group.url(leader)?).await?;
    let mut query = Query::connect(group.url(leader)?).await?;
    let key = sentinel();

    // Mint two outputs.
    let (a, b) = (uhs(IN, 1), uhs(IN, 2));
    let mint = attested(&key, vec![ctx(txid(IN, 1), &[], &[(a, 10), (b, 20)])]);
    let results = lock(&mut shard, 1, &mint).await?;
    ensure!(results.len() == 1 && results[0].locked, "{results:?}");
    assert_eq!(
        statuses(&tx_status(&mut query, &[mint[0].id]).await?),
        vec![(TxStatus::Pending, RejectReason::Unspecified)]
    );
    apply(&mut shard, 1, &[true], &[]).await?;
    discard(&mut shard, 1).await?;
    assert_eq!(
        statuses(&tx_status(&mut query, &[mint[0].id]).await?),
        vec![(TxStatus::Confirmed, RejectReason::Unspecified)]
    );
    assert_eq!(
        output_status(&mut query, &[a, b, uhs(IN, 3)]).await?,
        vec![
            (v1::OutputStatus::Unspent, Some(10)),
            (v1::OutputStatus::Unspent, Some(20)),
            (v1::OutputStatus::SpentOrAbsent, None),
        ]
    );

    // One well-attested transfer and one attested by an unknown sentinel, in one dtx:
    // the forged one is refused, the other proceeds.
    let good = attested(&key, vec![ctx(txid(IN, 2), &[a], &[(uhs(IN, 3), 10)])]);
    let forged = attested(
        &SecretKey::from_bytes(&[9; 32]),
        vec![ctx(txid(IN, 3), &[b], &[(uhs(IN, 4), 20)])],
    );
    let slice = [good[0].clone(), forged[0].clone()];
    let results = lock(&mut shard, 2, &slice).await?;
    ensure!(results[0].locked, "{results:?}");
    assert!(!results[1].locked);
    assert_eq!(results[1].reason(), RejectReason::Attestation);
    assert_eq!(
        output_status(&mut query, &[a, b]).await?,
        vec![
            (v1::OutputStatus::Locked, Some(10)),
            (v1::OutputStatus::Unspent, Some(20)),
        ]
    );
    // The same Lock again answers the same results.
    assert_eq!(lock(&mut shard, 2, &slice).await?, results);
    apply(
        &mut shard,
        2,
        &[true, false],
        &[RejectReason::Unspecified, RejectReason::Attestation],
    )
    .await?;
    discard(&mut shard, 2).await?;
    assert_eq!(
        statuses(&tx_status(&mut query, &[good[0].id, forged[0].id, txid(IN, 99)]).await?),
        vec![
            (TxStatus::Confirmed, RejectReason::Unspecified),
            (TxStatus::Rejected, RejectReason::Attestation),
            (TxStatus::Unknown, RejectReason::Unspecified),
        ]
    );
    let audit = query.audit(AuditRequest {}).await?.into_inner();
    assert_eq!((audit.output_count, audit.total_value), (2, 30));
    assert_eq!(audit.block_height, None);

    // A double spend names the input in the whole transaction.
    let double = attested(
        &key,
        vec![ctx(txid(IN, 4), &[uhs(OUT, 1), a], &[(uhs(IN, 5), 10)])],
    );
    let results = lock(&mut shard, 3, &double).await?;
    assert!(!results[0].locked);
    assert_eq!(results[0].reason(), RejectReason::InputsSpent);
    assert_eq!(results[0].input_index, Some(1));

    // Refusals of whole commands.
    assert_code(
        apply(&mut shard, 3, &[true, true], &[]).await,
        Code::InvalidArgument,
    );
    assert_code(
        apply(&mut shard, 3, &[true], &[]).await,
        Code::FailedPrecondition,
    );
    assert_code(discard(&mut shard, 3).await, Code::FailedPrecondition);
    apply(&mut shard, 3, &[false], &[RejectReason::InputsSpent]).await?;
    discard(&mut shard, 3).await?;
    assert_code(lock(&mut shard, 3, &double).await, Code::FailedPrecondition);

    // Malformed requests.
    let no_dtx = LockRequest {
        dtx_id: None,
        transactions: compact_transactions_to_wire(&double),
        ..Default::default()
    };
    assert_code(shard.lock(no_dtx).await, Code::InvalidArgument);
    let mut short_id = compact_transactions_to_wire(&double);
    short_id[0].id.truncate(31);
    let bad_tx = LockRequest {
        dtx_id: dtx_id(4),
        transactions: short_id,
        ..Default::default()
    };
    assert_code(shard.lock(bad_tx).await, Code::InvalidArgument);
    let mut cut = LockRequest::encoded(
        DtxId {
            coordinator: 0,
            sequence: 4,
        },
        &double,
    );
    cut.encoded_transactions.truncate(40);
    assert_code(shard.lock(cut).await, Code::InvalidArgument);
    let bad_reason = ApplyRequest {
        dtx_id: dtx_id(4),
        commit: vec![false],
        reasons: vec![999],
    };
    assert_code(shard.apply(bad_reason).await, Code::InvalidArgument);
    assert_code(
        shard.discard(DiscardRequest { dtx_id: None }).await,
        Code::InvalidArgument,
    );
    assert_code(
        output_status(&mut query, &[uhs(OUT, 1)]).await,
        Code::InvalidArgument,
    );
    assert_code(
        tx_status(&mut query, &[txid(OUT, 1)]).await,
        Code::InvalidArgument,
    );
    let short = ShardOutputStatusRequest {
        uhs_ids: vec![vec![0; 5].into()],
    };
    assert_code(query.get_output_status(short).await, Code::InvalidArgument);

    let audit = group
        .handle(leader)?
        .read(|sm| sm.audit())?
        .context("audit")?;
    assert_eq!(audit.locks_held, 0);
    assert!(audit.uhs.is_consistent());
    drop((shard, query));
    group.shutdown().await
}

/// A slice long enough to have its attestations checked off the async runtime is judged
/// exactly as short ones are: each forged transaction refused in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_grpc_long_slice_refuses_forged_attestations_in_place() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut group, leader) = single_replica(dir.path()).await?;
    let mut shard = Shard::connect(group.url(leader)?).await?;
    let mints = |key: &SecretKey, from: u64, count: u64| {
        let txs = (from..from + count)
            .map(|n| ctx(txid(IN, n), &[], &[(uhs(IN, n), 1)]))
            .collect();
        attested(key, txs)
    };
    let mut slice = mints(&sentinel(), 1, 100);
    let forged = mints(&SecretKey::from_bytes(&[9; 32]), 1_000, 2);
    slice.insert(10, forged[0].clone());
    slice.push(forged[1].clone());
    let results = lock(&mut shard, 1, &slice).await?;
    ensure!(results.len() == slice.len(), "{results:?}");
    for (i, result) in results.iter().enumerate() {
        if i == 10 || i == slice.len() - 1 {
            ensure!(!result.locked, "position {i}: {result:?}");
            assert_eq!(result.reason(), RejectReason::Attestation);
        } else {
            ensure!(result.locked, "position {i}: {result:?}");
        }
    }
    group.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_grpc_three_replicas_follower_redirects_and_locks_survive_leader_stop() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut group =
        ShardGroup::start(dir.path(), 3, LockingShardParams::new(FULL), verifier()).await?;
    let leader = group.wait_leader(ELECTION).await?;
    let key = sentinel();
    let (a, b) = (uhs(IN, 1), uhs(OUT, 2));
    let mint = attested(&key, vec![ctx(txid(IN, 1), &[], &[(a, 10), (b, 20)])]);

    // A follower refuses writes and names the leader.
    let follower = group
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .context("a follower")?;
    let mut at_follower = Shard::connect(group.url(follower)?).await?;
    let status = lock(&mut at_follower, 1, &mint)
        .await
        .expect_err("a follower must not accept a write");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(leader_hint(&status), Some(group.client_addr(leader)?));

    let mut shard = Shard::connect(group.url(leader)?).await?;
    ensure!(lock(&mut shard, 1, &mint).await?[0].locked);
    apply(&mut shard, 1, &[true], &[]).await?;
    discard(&mut shard, 1).await?;

    // Lock a transfer, then lose the leader before it is applied.
    let transfer = attested(&key, vec![ctx(txid(OUT, 2), &[a, b], &[(uhs(IN, 3), 30)])]);
    let locked = lock(&mut shard, 2, &transfer).await?;
    ensure!(locked[0].locked, "{locked:?}");
    group.wait_caught_up(leader, ELECTION).await?;
    drop(shard);
    group.stop(leader).await?;
    let new_leader = group.wait_leader(ELECTION).await?;
    ensure!(new_leader != leader);

    // The new leader holds the same locks.
    let mut shard = Shard::connect(group.url(new_leader)?).await?;
    let mut query = Query::connect(group.url(new_leader)?).await?;
    assert_eq!(
        output_status(&mut query, &[a, b]).await?,
        vec![
            (v1::OutputStatus::Locked, Some(10)),
            (v1::OutputStatus::Locked, Some(20)),
        ]
    );
    let rival = attested(&key, vec![ctx(txid(IN, 4), &[b], &[(uhs(IN, 5), 20)])]);
    let results = lock(&mut shard, 3, &rival).await?;
    assert!(!results[0].locked);
    assert_eq!(results[0].reason(), RejectReason::InputsLocked);
    assert_eq!(results[0].input_index, Some(0));
    // A coordinator retrying its Lock at the new leader hears the recorded results.
    assert_eq!(lock(&mut shard, 2, &transfer).await?, locked);

    apply(&mut shard, 2, &[true], &[]).await?;
    apply(&mut shard, 3, &[false], &[RejectReason::InputsLocked]).await?;
    discard(&mut shard, 2).await?;
    discard(&mut shard, 3).await?;
    group.wait_caught_up(new_leader, ELECTION).await?;

    // Every remaining replica has the same settled state. Status queries are answered by
    // the leader only; a follower names the leader.
    for id in group.running() {
        let mut query = Query::connect(group.url(id)?).await?;
        let answer = tx_status(&mut query, &[transfer[0].id, rival[0].id]).await;
        if id == new_leader {
            assert_eq!(
                statuses(&answer?),
                vec![
                    (TxStatus::Confirmed, RejectReason::Unspecified),
                    (TxStatus::Rejected, RejectReason::InputsLocked),
                ],
                "replica {id}"
            );
        } else {
            let refused = answer.expect_err("a follower does not answer status");
            assert_eq!(refused.code(), tonic::Code::Unavailable, "replica {id}");
            assert!(
                cbdc_consensus::leader_hint(&refused).is_some(),
                "{refused:?}"
            );
        }
        let audit = group.handle(id)?.read(|sm| sm.audit())?.context("audit")?;
        assert_eq!(audit.locks_held, 0, "replica {id}");
        assert!(audit.uhs.is_consistent());
        assert_eq!(audit.uhs.recorded.count, 1);
        assert_eq!(audit.uhs.recorded.total, cents(30));
    }
    drop((shard, query, at_follower));
    group.shutdown().await
}
