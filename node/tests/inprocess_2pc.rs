//! A whole 2PC cluster in this process (2 shard groups, 1 coordinator group, 2 sentinels,
//! 1 replica each, RocksDB in a temp dir, real gRPC on loopback), driven through the
//! public API.

mod support;

use cbdc_core::Transaction;
use cbdc_node::cluster::DevOptions;
use cbdc_proto::v1::{self, RejectReason, TxStatus};
use support::*;

async fn start() -> Harness {
    start_dev(&DevOptions {
        sentinels: 2,
        ..DevOptions::default()
    })
    .await
}

impl Harness {
    async fn client(
        &self,
        index: usize,
    ) -> v1::sentinel_client::SentinelClient<tonic::transport::Channel> {
        sentinel(self.cluster.sentinel_endpoints()[index]).await
    }

    async fn audit(&self) -> (u64, u64) {
        let endpoints: Vec<String> = self
            .cluster
            .config()
            .shard_endpoints()
            .into_iter()
            .map(|g| g[0].clone())
            .collect();
        audit(&endpoints).await
    }
}

fn assert_status(result: &v1::TransactionResult, status: TxStatus) {
    assert_eq!(result.status(), status, "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_mint_spend_double_spend_and_retry() {
    let h = start().await;
    let mut client = h.client(0).await;
    let (mint_tx, coins) = mint(&h.issuer, &[10_000, 5_000]);
    assert_status(
        &submit(&mut client, &mint_tx).await.unwrap(),
        TxStatus::Confirmed,
    );
    assert_eq!(h.audit().await, (2, 15_000));

    let (pay, paid) = transfer(&coins, &[12_000, 3_000]);
    assert_status(
        &submit(&mut client, &pay).await.unwrap(),
        TxStatus::Confirmed,
    );
    assert_eq!(
        output_status(&mut client, &coins).await,
        vec![v1::OutputStatus::SpentOrAbsent; 2]
    );
    assert_eq!(
        output_status(&mut client, &paid).await,
        vec![v1::OutputStatus::Unspent; 2]
    );

    // Spending the second coin again, alone: refused, naming input 0.
    let (again, _) = transfer(&coins[1..], &[5_000]);
    let result = submit(&mut client, &again).await.unwrap();
    assert_status(&result, TxStatus::Rejected);
    assert_eq!(result.reject_reason(), RejectReason::InputsSpent);
    assert_eq!(result.input_index, Some(0));

    // The client retries the settled payment: it gets the real outcome, and nothing moves.
    assert_status(
        &submit(&mut client, &pay).await.unwrap(),
        TxStatus::Confirmed,
    );
    // A replayed mint is refused.
    let result = submit(&mut client, &mint_tx).await.unwrap();
    assert!(
        result.status() == TxStatus::Confirmed
            || result.reject_reason() == RejectReason::MintReplay,
        "{result:?}"
    );
    assert_eq!(h.audit().await, (2, 15_000));

    // Status by tx id.
    let status = client
        .get_transaction_status(v1::GetTransactionStatusRequest {
            tx_id: pay.tx_id().as_bytes().to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_status(status.result.as_ref().unwrap(), TxStatus::Confirmed);
    let status = client
        .get_transaction_status(v1::GetTransactionStatusRequest {
            tx_id: again.tx_id().as_bytes().to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_status(status.result.as_ref().unwrap(), TxStatus::Rejected);
    h.cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_conflicting_transactions_through_two_sentinels_exactly_one_commits() {
    let h = start().await;
    let mut a = h.client(0).await;
    let mut b = h.client(1).await;
    for _round in 0..5 {
        let (mint_tx, coins) = mint(&h.issuer, &[1_000]);
        assert_status(
            &submit(&mut a, &mint_tx).await.unwrap(),
            TxStatus::Confirmed,
        );
        let (first, _) = transfer(&coins, &[1_000]);
        let (second, _) = transfer(&coins, &[600, 400]);
        let (ra, rb) = tokio::join!(submit(&mut a, &first), submit(&mut b, &second));
        let statuses = [ra.unwrap(), rb.unwrap()];
        let confirmed = statuses
            .iter()
            .filter(|r| r.status() == TxStatus::Confirmed)
            .count();
        assert_eq!(confirmed, 1, "{statuses:?}");
        for r in &statuses {
            if r.status() != TxStatus::Confirmed {
                assert_status(r, TxStatus::Rejected);
                assert!(matches!(
                    r.reject_reason(),
                    RejectReason::InputsSpent | RejectReason::InputsLocked
                ));
            }
        }
    }
    let (count, value) = h.audit().await;
    assert_eq!(value, 5_000);
    assert!((5..=10).contains(&count));
    h.cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_transaction_spanning_both_shards() {
    let h = start().await;
    let map = h.cluster.config().shard_map().unwrap();
    let mut client = h.client(0).await;
    // Mint until two coins live on different shards.
    let coins = loop {
        let (mint_tx, coins) = mint(&h.issuer, &[700, 300]);
        if shard_of(&map, &coins[0]) != shard_of(&map, &coins[1]) {
            assert_status(
                &submit(&mut client, &mint_tx).await.unwrap(),
                TxStatus::Confirmed,
            );
            break coins;
        }
    };
    let (pay, paid) = transfer(&coins, &[250, 250, 250, 250]);
    assert_status(
        &submit(&mut client, &pay).await.unwrap(),
        TxStatus::Confirmed,
    );
    assert_eq!(
        output_status(&mut client, &paid).await,
        vec![v1::OutputStatus::Unspent; 4]
    );
    assert_eq!(
        output_status(&mut client, &coins).await,
        vec![v1::OutputStatus::SpentOrAbsent; 2]
    );
    assert_eq!(h.audit().await, (4, 1_000));
    h.cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_invalid_malformed_and_unauthorized_are_refused() {
    let h = start().await;
    let mut client = h.client(0).await;
    let (mint_tx, coins) = mint(&h.issuer, &[1_000]);
    assert_status(
        &submit(&mut client, &mint_tx).await.unwrap(),
        TxStatus::Confirmed,
    );

    // A bad signature: a typed validation error naming the input.
    let (mut pay, _) = transfer(&coins, &[1_000]);
    pay.witnesses[0].signature = cbdc_core::Signature([7u8; 64]);
    match submit(&mut client, &pay).await {
        Ok(result) => {
            assert_status(&result, TxStatus::Invalid);
            assert!(result.validation_error.is_some(), "{result:?}");
        }
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}"),
    }
    // Value not conserved.
    let (unbalanced, _) = transfer(&coins, &[1_001]);
    match submit(&mut client, &unbalanced).await {
        Ok(result) => assert_status(&result, TxStatus::Invalid),
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}"),
    }
    // A mint signed by someone else.
    let (forged, _) = mint(&fresh_key(), &[1_000_000]);
    match submit(&mut client, &forged).await {
        Ok(result) => assert_status(&result, TxStatus::Invalid),
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}"),
    }
    // Malformed protobuf content: a 5-byte tx id in an outpoint.
    let mut wire: v1::Transaction = (&pay as &Transaction).into();
    if let Some(input) = wire.inputs.first_mut() {
        if let Some(outpoint) = input.outpoint.as_mut() {
            outpoint.tx_id = vec![1, 2, 3, 4, 5].into();
        }
    }
    let status = client
        .submit_transaction(v1::SubmitTransactionRequest {
            transaction: Some(wire),
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    // A missing transaction.
    let status = client
        .submit_transaction(v1::SubmitTransactionRequest {
            transaction: None,
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // Nothing moved.
    assert_eq!(
        output_status(&mut client, &coins).await,
        vec![v1::OutputStatus::Unspent]
    );
    assert_eq!(h.audit().await, (1, 1_000));
    h.cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_demo_script_and_restart_from_disk() {
    let Harness {
        dir,
        cluster,
        issuer,
        ..
    } = start_dev(&DevOptions::default()).await;
    let endpoint = cluster.sentinel_endpoints()[0].to_string();
    let transcript = cbdc_node::demo::run_demo(&endpoint, &issuer).await.unwrap();
    assert!(transcript.contains("REJECTED"), "{transcript}");
    let shard_endpoints: Vec<String> = cluster
        .config()
        .shard_endpoints()
        .into_iter()
        .map(|g| g[0].clone())
        .collect();
    let before = audit(&shard_endpoints).await;
    assert_eq!(before.1, 15_000);
    cluster.shutdown().await.unwrap();

    // Same directory again: the cluster restarts from its data.
    let h = start_dev_in(dir, &DevOptions::default()).await;
    assert!(!h.created);
    let cluster = h.cluster;
    assert_eq!(audit(&shard_endpoints).await, before);
    let transcript = cbdc_node::demo::run_demo(&endpoint, &issuer).await.unwrap();
    assert!(transcript.contains("CONFIRMED"));
    assert_eq!(audit(&shard_endpoints).await.1, 30_000);
    cluster.shutdown().await.unwrap();
}
