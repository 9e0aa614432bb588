//! An atomizer cluster in this process (atomizer, archiver, watchtower, shards, a
//! sentinel, on loopback ports), driven through the public API like a bank would.

mod support;

use std::time::Duration;

use cbdc_node::cluster::DevOptions;
use cbdc_node::config::Architecture;
use cbdc_proto::v1::archiver_client::ArchiverClient;
use cbdc_proto::v1::shard_query_client::ShardQueryClient;
use cbdc_proto::v1::{self, RejectReason, TxStatus};
use support::{
    connect, mint, output_status, sentinel, start_dev, start_dev_in, submit, transfer, Coin,
    Harness,
};

fn atomizer(shard_copies: usize) -> DevOptions {
    DevOptions {
        architecture: Architecture::Atomizer,
        shard_copies,
        ..DevOptions::default()
    }
}

async fn start(shard_copies: usize) -> Harness {
    start_dev(&atomizer(shard_copies)).await
}

impl Harness {
    async fn client(&self) -> v1::sentinel_client::SentinelClient<tonic::transport::Channel> {
        sentinel(self.cluster.sentinel_endpoints()[0]).await
    }

    /// Every shard's audit: (outputs, value, height), per range, per copy.
    async fn audits(&self) -> Vec<Vec<(u64, u64, u64)>> {
        let mut all = Vec::new();
        for group in self.cluster.config().shard_endpoints() {
            let mut copies = Vec::new();
            for endpoint in group {
                let audit = ShardQueryClient::new(connect(&endpoint).await)
                    .audit(v1::AuditRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                copies.push((
                    audit.output_count,
                    audit.total_value,
                    audit.block_height.unwrap_or(0),
                ));
            }
            all.push(copies);
        }
        all
    }

    /// Waits until every shard has applied block `height`; returns the total
    /// (outputs, value) over one shard per range.
    async fn settled_supply(&self, height: u64) -> (u64, u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let audits = self.audits().await;
            if audits.iter().flatten().all(|a| a.2 >= height) {
                return audits
                    .iter()
                    .map(|copies| copies[0])
                    .fold((0, 0), |acc, a| (acc.0 + a.0, acc.1 + a.1));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "shards did not reach height {height}: {audits:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn assert_status(result: &v1::TransactionResult, status: TxStatus) {
    assert_eq!(result.status(), status, "{result:?}");
}

fn confirmed_height(result: &v1::TransactionResult) -> u64 {
    assert_status(result, TxStatus::Confirmed);
    result
        .block_height
        .expect("a confirmed atomizer transaction has a height")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_mint_spend_double_spend_across_blocks_and_retry() {
    let h = start(1).await;
    let mut client = h.client().await;
    let info = client
        .get_info(v1::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.architecture(), v1::Architecture::Atomizer);

    let (mint_tx, coins) = mint(&h.issuer, &[10_000, 5_000]);
    let minted_at = confirmed_height(&submit(&mut client, &mint_tx).await.unwrap());
    assert_eq!(h.settled_supply(minted_at).await, (2, 15_000));

    let (pay, paid) = transfer(&coins, &[12_000, 3_000]);
    let paid_at = confirmed_height(&submit(&mut client, &pay).await.unwrap());
    assert!(paid_at > minted_at);
    assert_eq!(
        output_status(&mut client, &coins).await,
        vec![v1::OutputStatus::SpentOrAbsent; 2]
    );
    assert_eq!(
        output_status(&mut client, &paid).await,
        vec![v1::OutputStatus::Unspent; 2]
    );

    // Spending the second coin again, in a later block: refused, naming input 0.
    let (again, _) = transfer(&coins[1..], &[5_000]);
    let result = submit(&mut client, &again).await.unwrap();
    assert_status(&result, TxStatus::Rejected);
    assert_eq!(
        result.reject_reason(),
        RejectReason::InputsSpent,
        "{result:?}"
    );
    assert_eq!(result.input_index, Some(0));

    // A coin that never existed (its mint was never submitted).
    let (_, unsent) = mint(&h.issuer, &[7]);
    let (ghost, _) = transfer(&unsent, &[7]);
    let result = submit(&mut client, &ghost).await.unwrap();
    assert_status(&result, TxStatus::Rejected);
    assert_eq!(
        result.reject_reason(),
        RejectReason::InputsNotFound,
        "{result:?}"
    );
    assert_eq!(result.input_index, Some(0));

    // Retrying the settled payment gets its real outcome; a replayed mint moves nothing.
    let retry = submit(&mut client, &pay).await.unwrap();
    assert_eq!(confirmed_height(&retry), paid_at);
    let replay = submit(&mut client, &mint_tx).await.unwrap();
    assert_eq!(confirmed_height(&replay), minted_at);

    let status = client
        .get_transaction_status(v1::GetTransactionStatusRequest {
            tx_id: again.tx_id().as_bytes().to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_status(status.result.as_ref().unwrap(), TxStatus::Rejected);
    // Without `wait`, the answer is PENDING at once; the status becomes CONFIRMED.
    let (mint2, _) = mint(&h.issuer, &[1]);
    let answer = client
        .submit_transaction(v1::SubmitTransactionRequest {
            transaction: Some((&mint2).into()),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_status(answer.result.as_ref().unwrap(), TxStatus::Pending);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let last = loop {
        let status = client
            .get_transaction_status(v1::GetTransactionStatusRequest {
                tx_id: mint2.tx_id().as_bytes().to_vec().into(),
            })
            .await
            .unwrap()
            .into_inner();
        let result = status.result.unwrap();
        if result.status() == TxStatus::Confirmed {
            break confirmed_height(&result);
        }
        assert!(tokio::time::Instant::now() < deadline, "{result:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Nothing was created or destroyed by the refused and replayed transactions.
    assert_eq!(h.settled_supply(last).await, (3, 15_001));

    // The archive holds every block, contiguous from 1.
    let archiver = h.cluster.config().archiver.as_ref().unwrap().endpoint;
    let info = ArchiverClient::new(connect(archiver).await)
        .get_archive_info(v1::GetArchiveInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.lowest_height, Some(1));
    assert!(info.highest_height.unwrap() >= last);
    h.cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_double_spend_in_one_block_exactly_one_confirms() {
    let h = start(1).await;
    let mut client = h.client().await;
    let (mint_tx, coins) = mint(&h.issuer, &[100, 200, 300, 400, 500]);
    confirmed_height(&submit(&mut client, &mint_tx).await.unwrap());
    for coin in &coins {
        let one = std::slice::from_ref(coin);
        let (a, _) = transfer(one, &[coin.value()]);
        let (b, _) = transfer(one, &[1, coin.value() - 1]);
        let (mut ca, mut cb) = (client.clone(), client.clone());
        let (ra, rb) = tokio::join!(submit(&mut ca, &a), submit(&mut cb, &b));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let statuses = [ra.status(), rb.status()];
        assert!(
            statuses.contains(&TxStatus::Confirmed) && statuses.contains(&TxStatus::Rejected),
            "{ra:?} {rb:?}"
        );
        let rejected = if ra.status() == TxStatus::Rejected {
            &ra
        } else {
            &rb
        };
        assert!(
            matches!(
                rejected.reject_reason(),
                RejectReason::InputsSpent | RejectReason::InputsNotFound
            ),
            "{rejected:?}"
        );
    }
    h.cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_inputs_on_both_shards_and_redundant_shards_agree() {
    let h = start(2).await;
    let mut client = h.client().await;
    let map = h.cluster.config().shard_map().unwrap();
    // Mint until there is a coin owned by each range.
    let mut owned: [Option<Coin>; 2] = [None, None];
    while owned.iter().any(Option::is_none) {
        let (m, coins) = mint(&h.issuer, &[1_000, 1_000, 1_000, 1_000]);
        confirmed_height(&submit(&mut client, &m).await.unwrap());
        for coin in coins {
            let range = support::shard_of(&map, &coin);
            owned[range].get_or_insert(coin);
        }
    }
    let both: Vec<Coin> = owned.into_iter().flatten().collect();
    let (pay, paid) = transfer(&both, &[1_500, 500]);
    let height = confirmed_height(&submit(&mut client, &pay).await.unwrap());
    assert_eq!(
        output_status(&mut client, &both).await,
        vec![v1::OutputStatus::SpentOrAbsent; 2]
    );
    assert_eq!(
        output_status(&mut client, &paid).await,
        vec![v1::OutputStatus::Unspent; 2]
    );
    h.settled_supply(height).await;
    // Both copies of each range hold the same set at the same height.
    for copies in h.audits().await {
        assert_eq!(copies.len(), 2);
        let (count, value, _) = copies[0];
        assert!(
            copies.iter().all(|c| (c.0, c.1) == (count, value)),
            "{copies:?}"
        );
    }
    h.cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_restart_from_disk_keeps_blocks_and_balances() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let h = start(1).await;
    let mut client = h.client().await;
    let (m, coins) = mint(&h.issuer, &[40, 60]);
    let first = confirmed_height(&submit(&mut client, &m).await.unwrap());
    h.cluster.shutdown().await.unwrap();

    let h = start_dev_in(h.dir, &atomizer(1)).await;
    assert!(!h.created);
    let mut client = h.client().await;
    let (pay, _) = transfer(&coins, &[100]);
    let second = confirmed_height(&submit(&mut client, &pay).await.unwrap());
    assert!(second > first, "heights continue after a restart");
    assert_eq!(h.settled_supply(second).await, (1, 100));
    h.cluster.shutdown().await.unwrap();
}
