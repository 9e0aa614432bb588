//! The atomizer-mode shard end to end: the real [`AtomizerShard`] on a temp dir, served
//! over gRPC on 127.0.0.1:0, against small test doubles of its network peers — an
//! atomizer (serving `SubscribeBlocks` from blocks the test pushes, `GetHeight`, and
//! recording `Notify`) and a watchtower (recording `ReportErrors`).
//!
//! Every wait is on a condition with a deadline, never a bare sleep.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cbdc_core::{
    attest_batch, Amount, AttestationVerifier, CompactTransaction, Hash, SecretKey, ShardRange,
    TxId, UhsId,
};
use cbdc_proto::convert::{compact_transactions_to_wire, Block, Notification, Rejection};
use cbdc_proto::v1::atomizer_server::{Atomizer, AtomizerServer};
use cbdc_proto::v1::atomizer_shard_client::AtomizerShardClient;
use cbdc_proto::v1::shard_query_client::ShardQueryClient;
use cbdc_proto::v1::watchtower_server::{Watchtower, WatchtowerServer};
use cbdc_proto::v1::{self, RejectReason};
use cbdc_shard::{seed_atomizer_shard, AtomizerShard, AtomizerShardError, AtomizerShardParams};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

/// Longest wait for anything the shard does.
const DEADLINE: Duration = Duration::from_secs(15);

/// The lower half of the prefix space: the shard under test.
const LOW: ShardRange = ShardRange {
    start: 0,
    end: 0x7FFF,
};
/// A prefix the shard owns.
const IN: u16 = 0x1000;
/// A prefix it does not.
const OUT: u16 = 0x9000;

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_blocks_advance_height_and_uhs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b, c) = (uhs(IN, 1), uhs(IN, 2), uhs(IN, 3));
    seed_atomizer_shard(dir.path(), [(a, cents(10)), (b, cents(20))])?;
    let peers = Peers::start().await?;
    // Block 1 spends `a` (and an input of another shard), creates `c` here and an
    // output on another shard.
    peers.push(vec![ctx(
        txid(1),
        &[a, uhs(OUT, 5)],
        &[(c, 7), (uhs(OUT, 4), 3)],
    )]);
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    node.wait_height(1).await?;

    let mut query = node.query().await?;
    let statuses = output_status(&mut query, &[a, b, c]).await?;
    ensure!(
        statuses
            == vec![
                (v1::OutputStatus::SpentOrAbsent, None, Some(1)),
                (v1::OutputStatus::Unspent, Some(20), Some(1)),
                (v1::OutputStatus::Unspent, Some(7), Some(1)),
            ],
        "{statuses:?}"
    );
    ensure!(audit(&mut query).await? == (2, 27, Some(1)));

    // Outputs of other shards are misrouted queries; outcomes live at the watchtower.
    let status = output_status(&mut query, &[uhs(OUT, 4)]).await.unwrap_err();
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    let status = query
        .get_transaction_status(v1::ShardTransactionStatusRequest {
            tx_ids: vec![txid(1).as_bytes().to_vec().into()],
        })
        .await
        .unwrap_err();
    ensure!(status.code() == Code::Unimplemented, "{status:?}");
    ensure!(status.message().contains("watchtower"), "{status:?}");

    peers.push(vec![ctx(txid(2), &[b], &[(uhs(OUT, 6), 20)])]);
    node.wait_height(2).await?;
    ensure!(audit(&mut query).await? == (1, 7, Some(2)));
    drop(query);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_submit_notifies_owned_positions_at_height() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b, c) = (uhs(IN, 1), uhs(IN, 2), uhs(IN, 3));
    seed_atomizer_shard(dir.path(), [(a, cents(10)), (b, cents(20))])?;
    let peers = Peers::start().await?;
    peers.push(vec![ctx(txid(1), &[uhs(OUT, 1)], &[(c, 5)])]);
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    node.wait_caught_up().await?;
    ensure!(node.shard.height() == 1);

    // Inputs 1 and 2 are this shard's; input 0 is another's.
    let spend = ctx(txid(2), &[uhs(OUT, 9), a, c], &[(uhs(OUT, 10), 15)]);
    // Nothing of this shard's: ignored.
    let foreign = ctx(txid(3), &[uhs(OUT, 11)], &[(uhs(IN, 12), 1)]);
    let batch = attested(&sentinel(), vec![spend, foreign]);
    // Attested by a key the cluster does not trust: dropped.
    let forged = attested(
        &SecretKey::from_bytes(&[9; 32]),
        vec![ctx(txid(4), &[b], &[(uhs(IN, 13), 20)])],
    );
    let mut all = batch.clone();
    all.extend(forged);

    let mut client = node.client().await?;
    submit(&mut client, &all).await?;
    // The shard answers only once the atomizer accepted the notifications.
    let notified = peers.atomizer.notified();
    let expected = Notification {
        transaction: batch[0].clone(),
        attested_inputs: vec![1, 2],
        height: 1,
    };
    ensure!(notified == vec![expected.clone()], "{notified:?}");

    // Sending again notifies again: harmless, and the sentinel may retry.
    submit(&mut client, &all).await?;
    ensure!(peers.atomizer.notified() == vec![expected.clone(), expected]);
    ensure!(peers.watchtower.reports().is_empty());
    drop(client);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_submit_missing_input_reported_after_grace_blocks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, missing) = (uhs(IN, 1), uhs(IN, 99));
    seed_atomizer_shard(dir.path(), [(a, cents(10))])?;
    let peers = Peers::start().await?;
    // A long minimum wait (5 × 200 ms): both grace blocks are applied well before it.
    let node = Node::start(params(dir.path(), &peers, SLOW)).await?;
    node.wait_caught_up().await?;

    let tx = attested(
        &sentinel(),
        vec![ctx(txid(1), &[a, missing], &[(uhs(IN, 2), 10)])],
    );
    let mut client = node.client().await?;
    submit(&mut client, &tx).await?;
    ensure!(peers.atomizer.notified().is_empty());

    peers.push(vec![ctx(txid(2), &[uhs(OUT, 1)], &[(uhs(IN, 3), 1)])]);
    peers.push(vec![ctx(txid(3), &[uhs(OUT, 2)], &[(uhs(OUT, 4), 1)])]);
    node.wait_height(2).await?;
    let reports = peers.watchtower.wait_reports(1).await?;
    ensure!(reports.len() == 1, "{reports:?}");
    let report = &reports[0];
    ensure!(report.tx_id == txid(1));
    ensure!(report.reason == RejectReason::InputsNotFound);
    ensure!(report.input_index == Some(1), "{report:?}");
    ensure!(report.height == 2, "{report:?}");
    ensure!(peers.atomizer.notified().is_empty());
    drop(client);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_input_created_during_grace_is_notified() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let peers = Peers::start().await?;
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    // A fresh shard whose atomizer has cut nothing is caught up at once.
    node.wait_caught_up().await?;
    ensure!(node.shard.height() == 0);

    // `late` is created by a block the shard has not applied yet (as when a client spends
    // an output the watchtower already confirmed); `never` is never created.
    let (late, never) = (uhs(IN, 1), uhs(IN, 2));
    let txs = attested(
        &sentinel(),
        vec![
            ctx(txid(1), &[uhs(OUT, 3), late], &[(uhs(IN, 4), 5)]),
            ctx(txid(2), &[never], &[(uhs(IN, 5), 5)]),
        ],
    );
    let mut client = node.client().await?;
    submit(&mut client, &txs).await?;
    ensure!(peers.atomizer.notified().is_empty());

    peers.push(vec![ctx(txid(9), &[uhs(OUT, 6)], &[(late, 5)])]);
    let notified = peers.atomizer.wait_notified(1).await?;
    ensure!(
        notified
            == vec![Notification {
                transaction: txs[0].clone(),
                attested_inputs: vec![1],
                height: 1,
            }],
        "{notified:?}"
    );

    // Once the grace is over for both, only the one still missing is reported.
    peers.push(vec![ctx(txid(10), &[uhs(OUT, 7)], &[(uhs(OUT, 8), 1)])]);
    node.wait_height(2).await?;
    let reports = peers.watchtower.wait_reports(1).await?;
    let ids: Vec<TxId> = reports.iter().map(|r| r.tx_id).collect();
    ensure!(ids == vec![txid(2)], "{reports:?}");
    ensure!(reports[0].input_index == Some(0));
    ensure!(peers.atomizer.notified().len() == 1);
    drop(client);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_catching_up_refuses_submissions_until_height_reached() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = uhs(IN, 1);
    seed_atomizer_shard(dir.path(), [(a, cents(10))])?;
    let peers = Peers::start().await?;
    // The atomizer says it is at 3 but serves only block 1 for now.
    peers.atomizer.set_height(Some(3));
    peers.push(vec![ctx(txid(1), &[uhs(OUT, 1)], &[(uhs(IN, 2), 1)])]);
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    node.wait_height(1).await?;

    let tx = attested(&sentinel(), vec![ctx(txid(5), &[a], &[(uhs(IN, 6), 10)])]);
    let mut client = node.client().await?;
    // Until the shard has learnt the atomizer's height it says it is waiting for it; then
    // it says how far it is.
    let status = wait_for("catching-up refusal", || {
        let mut client = client.clone();
        let tx = tx.clone();
        async move {
            match submit(&mut client, &tx).await {
                Err(s) if s.message().contains("of 3") => Ok(Some(s)),
                Err(s) if s.code() == Code::Unavailable => Ok(None),
                other => bail!("expected UNAVAILABLE, got {other:?}"),
            }
        }
    })
    .await?;
    ensure!(status.code() == Code::Unavailable);
    ensure!(
        status.message().contains("catching up: at 1 of 3"),
        "{status:?}"
    );
    ensure!(!node.shard.is_caught_up());
    ensure!(peers.atomizer.notified().is_empty());

    peers.push(vec![ctx(txid(2), &[uhs(OUT, 2)], &[(uhs(IN, 3), 1)])]);
    peers.push(vec![ctx(txid(3), &[uhs(OUT, 3)], &[(uhs(IN, 4), 1)])]);
    node.wait_caught_up().await?;
    ensure!(node.shard.height() == 3);
    submit(&mut client, &tx).await?;
    let notified = peers.atomizer.notified();
    ensure!(
        notified.len() == 1 && notified[0].height == 3,
        "{notified:?}"
    );
    drop(client);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_restart_keeps_height_and_resumes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (x, y, z) = (uhs(IN, 1), uhs(IN, 2), uhs(IN, 3));
    let peers = Peers::start().await?;
    peers.push(vec![ctx(txid(1), &[uhs(OUT, 1)], &[(x, 1)])]);
    peers.push(vec![ctx(txid(2), &[uhs(OUT, 2)], &[(y, 2)])]);
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    node.wait_height(2).await?;
    node.stop().await?;

    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    // The height is the store's, before any block arrives.
    ensure!(node.shard.height() == 2);
    node.wait_caught_up().await?;
    let mut query = node.query().await?;
    ensure!(audit(&mut query).await? == (2, 3, Some(2)));

    peers.push(vec![ctx(txid(3), &[x], &[(z, 1)])]);
    node.wait_height(3).await?;
    ensure!(node.shard.is_healthy());
    let statuses = output_status(&mut query, &[x, y, z]).await?;
    ensure!(
        statuses
            == vec![
                (v1::OutputStatus::SpentOrAbsent, None, Some(3)),
                (v1::OutputStatus::Unspent, Some(2), Some(3)),
                (v1::OutputStatus::Unspent, Some(1), Some(3)),
            ],
        "{statuses:?}"
    );
    drop(query);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notify_failure_answers_unavailable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = uhs(IN, 1);
    seed_atomizer_shard(dir.path(), [(a, cents(10))])?;
    let peers = Peers::start().await?;
    peers.atomizer.fail_notify.store(true, Ordering::SeqCst);
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    node.wait_caught_up().await?;

    let tx = attested(&sentinel(), vec![ctx(txid(1), &[a], &[(uhs(IN, 2), 10)])]);
    let mut client = node.client().await?;
    let status = submit(&mut client, &tx).await.unwrap_err();
    ensure!(status.code() == Code::Unavailable, "{status:?}");
    ensure!(status.message().contains("atomizer"), "{status:?}");

    // The sentinel's retry goes through once the atomizer accepts again.
    peers.atomizer.fail_notify.store(false, Ordering::SeqCst);
    submit(&mut client, &tx).await?;
    ensure!(peers.atomizer.notified().len() == 1);
    drop(client);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_malformed_submission_is_invalid_argument() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let peers = Peers::start().await?;
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    node.wait_caught_up().await?;
    let mut wire = compact_transactions_to_wire(&[ctx(txid(1), &[uhs(IN, 1)], &[])]);
    wire[0].id = vec![1, 2, 3].into();
    let mut client = node.client().await?;
    let status = client
        .submit_transactions(v1::ShardSubmitRequest { transactions: wire })
        .await
        .unwrap_err();
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    ensure!(
        status.message().contains("compact_transaction.id"),
        "{status:?}"
    );
    drop(client);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_inconsistent_block_marks_shard_unhealthy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = uhs(IN, 1);
    seed_atomizer_shard(dir.path(), [(a, cents(10))])?;
    let peers = Peers::start().await?;
    // Spends an output of this shard's range that it never held: the shard diverged.
    peers.push(vec![ctx(txid(1), &[uhs(IN, 77)], &[(uhs(IN, 2), 1)])]);
    let node = Node::start(params(dir.path(), &peers, FAST)).await?;
    wait_for("the shard to stop", || async {
        Ok((!node.shard.is_healthy()).then_some(()))
    })
    .await?;
    ensure!(node.shard.height() == 0);

    let tx = attested(&sentinel(), vec![ctx(txid(5), &[a], &[(uhs(IN, 6), 10)])]);
    let mut client = node.client().await?;
    let status = submit(&mut client, &tx).await.unwrap_err();
    ensure!(status.code() == Code::Unavailable, "{status:?}");
    ensure!(status.message().contains("diverged"), "{status:?}");
    let mut query = node.query().await?;
    let status = audit(&mut query).await.unwrap_err();
    ensure!(status.code() == Code::Unavailable, "{status:?}");
    ensure!(peers.atomizer.notified().is_empty());
    drop((client, query));
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_start_rejects_bad_params() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let peers = Peers::start().await?;
    let mut p = params(dir.path(), &peers, FAST);
    p.atomizer.clear();
    match AtomizerShard::start(p).await {
        Err(AtomizerShardError::InvalidParams(_)) => {}
        Err(e) => bail!("unexpected error {e}"),
        Ok(_) => bail!("started without atomizer endpoints"),
    }
    let mut p = params(dir.path(), &peers, FAST);
    p.watchtower = "not a host:port at all".into();
    match AtomizerShard::start(p).await {
        Err(AtomizerShardError::Endpoint { .. }) => Ok(()),
        Err(e) => bail!("unexpected error {e}"),
        Ok(_) => bail!("started with a bad watchtower endpoint"),
    }
}

#[test]
fn test_seed_refuses_a_used_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let supply = seed_atomizer_shard(
        dir.path(),
        [(uhs(IN, 1), cents(10)), (uhs(IN, 2), cents(5))],
    )?;
    ensure!(supply.count == 2 && supply.total == cents(15));
    ensure!(seed_atomizer_shard(dir.path(), [(uhs(IN, 3), cents(1))]).is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The shard under test
// ---------------------------------------------------------------------------------------

/// Retry period (and so a fifth of the minimum wait before a report).
const FAST: Duration = Duration::from_millis(50);
const SLOW: Duration = Duration::from_millis(200);

fn params(dir: &Path, peers: &Peers, retry: Duration) -> AtomizerShardParams {
    AtomizerShardParams {
        data_dir: dir.to_path_buf(),
        range: LOW,
        atomizer: vec![peers.atomizer_addr.clone()],
        // Nothing is pruned in these tests; the archiver is never needed.
        archiver: "127.0.0.1:1".into(),
        watchtower: peers.watchtower_addr.clone(),
        verifier: Arc::new(AttestationVerifier::new([sentinel().public_key()], 1)),
        request_timeout: Duration::from_secs(2),
        missing_grace_blocks: 2,
        retry,
    }
}

/// A running shard and the server for its two services.
struct Node {
    shard: AtomizerShard,
    addr: String,
    server: Served,
}

impl Node {
    async fn start(params: AtomizerShardParams) -> Result<Node> {
        let shard = AtomizerShard::start(params).await?;
        let router = Server::builder()
            .add_service(shard.submit_service())
            .add_service(shard.query_service());
        let (addr, server) = serve(router).await?;
        Ok(Node {
            shard,
            addr,
            server,
        })
    }

    async fn channel(&self) -> Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }

    async fn client(&self) -> Result<AtomizerShardClient<Channel>> {
        Ok(AtomizerShardClient::new(self.channel().await?))
    }

    async fn query(&self) -> Result<ShardQueryClient<Channel>> {
        Ok(ShardQueryClient::new(self.channel().await?))
    }

    async fn wait_height(&self, height: u64) -> Result<()> {
        wait_for(&format!("height {height}"), || async {
            ensure!(self.shard.is_healthy(), "the shard stopped applying blocks");
            Ok((self.shard.height() >= height).then_some(()))
        })
        .await
    }

    async fn wait_caught_up(&self) -> Result<()> {
        wait_for("catching up", || async {
            Ok(self.shard.is_caught_up().then_some(()))
        })
        .await
    }

    /// Stops the server (its services share the store), then the shard.
    async fn stop(self) -> Result<()> {
        self.server.stop().await?;
        self.shard.shutdown().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Test doubles of the shard's peers
// ---------------------------------------------------------------------------------------

/// The atomizer and watchtower doubles, each on its own port.
struct Peers {
    atomizer: Arc<FakeAtomizer>,
    watchtower: Arc<FakeWatchtower>,
    atomizer_addr: String,
    watchtower_addr: String,
    // The servers run until the test's runtime ends.
    _servers: Vec<Served>,
}

impl Peers {
    async fn start() -> Result<Peers> {
        let atomizer = Arc::new(FakeAtomizer::default());
        let watchtower = Arc::new(FakeWatchtower::default());
        let (atomizer_addr, a) =
            serve(Server::builder().add_service(AtomizerServer::from_arc(atomizer.clone())))
                .await?;
        let (watchtower_addr, w) =
            serve(Server::builder().add_service(WatchtowerServer::from_arc(watchtower.clone())))
                .await?;
        Ok(Peers {
            atomizer,
            watchtower,
            atomizer_addr,
            watchtower_addr,
            _servers: vec![a, w],
        })
    }

    /// Cuts the next block with `transactions`.
    fn push(&self, transactions: Vec<CompactTransaction>) {
        self.atomizer.blocks.send_modify(|blocks| {
            let block = Block {
                height: blocks.len() as u64 + 1,
                transactions,
                rejections: Vec::new(),
            };
            blocks.push(v1::Block::from(&block));
        });
    }
}

/// The atomizer double: blocks pushed by the test, its height, the notifications it got.
#[derive(Default)]
struct FakeAtomizer {
    /// Every block cut, height `i + 1` at index `i`.
    blocks: watch::Sender<Vec<v1::Block>>,
    /// What `GetHeight` answers; `None`: the last block pushed.
    height: Mutex<Option<u64>>,
    /// Every notification accepted, in order.
    notified: watch::Sender<Vec<Notification>>,
    /// Refuse `Notify` (with `INTERNAL`, which the leader client does not retry).
    fail_notify: AtomicBool,
}

impl FakeAtomizer {
    fn set_height(&self, height: Option<u64>) {
        *self.height.lock().expect("height lock") = height;
    }

    fn notified(&self) -> Vec<Notification> {
        self.notified.borrow().clone()
    }

    async fn wait_notified(&self, count: usize) -> Result<Vec<Notification>> {
        wait_watch(&self.notified, "notifications", |n| n.len() >= count).await
    }
}

type BlockStream = Pin<Box<dyn Stream<Item = Result<v1::Block, Status>> + Send>>;

#[tonic::async_trait]
impl Atomizer for FakeAtomizer {
    async fn notify(
        &self,
        request: Request<v1::NotifyRequest>,
    ) -> Result<Response<v1::NotifyResponse>, Status> {
        if self.fail_notify.load(Ordering::SeqCst) {
            return Err(Status::internal("test double refuses notifications"));
        }
        let notifications = request
            .get_ref()
            .notifications
            .iter()
            .map(Notification::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.notified.send_modify(|n| n.extend(notifications));
        Ok(Response::new(v1::NotifyResponse {}))
    }

    async fn submit_mints(
        &self,
        _request: Request<v1::SubmitMintsRequest>,
    ) -> Result<Response<v1::SubmitMintsResponse>, Status> {
        Err(Status::unimplemented("not in the test double"))
    }

    type SubscribeBlocksStream = BlockStream;

    async fn subscribe_blocks(
        &self,
        request: Request<v1::SubscribeBlocksRequest>,
    ) -> Result<Response<Self::SubscribeBlocksStream>, Status> {
        let mut next = request.get_ref().from_height.max(1);
        let mut blocks = self.blocks.subscribe();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let pending: Vec<v1::Block> = blocks
                    .borrow_and_update()
                    .iter()
                    .filter(|b| b.height >= next)
                    .cloned()
                    .collect();
                for block in pending {
                    next = block.height + 1;
                    if tx.send(Ok(block)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = blocks.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_height(
        &self,
        _request: Request<v1::GetHeightRequest>,
    ) -> Result<Response<v1::GetHeightResponse>, Status> {
        let pushed = self.blocks.borrow().len() as u64;
        let height = self.height.lock().expect("height lock").unwrap_or(pushed);
        Ok(Response::new(v1::GetHeightResponse {
            height,
            first_held: 1,
        }))
    }

    async fn prune(
        &self,
        _request: Request<v1::PruneRequest>,
    ) -> Result<Response<v1::PruneResponse>, Status> {
        Err(Status::unimplemented("not in the test double"))
    }
}

/// The watchtower double: records reports.
#[derive(Default)]
struct FakeWatchtower {
    reports: watch::Sender<Vec<Rejection>>,
}

impl FakeWatchtower {
    fn reports(&self) -> Vec<Rejection> {
        self.reports.borrow().clone()
    }

    async fn wait_reports(&self, count: usize) -> Result<Vec<Rejection>> {
        wait_watch(&self.reports, "reports", |r| r.len() >= count).await
    }
}

#[tonic::async_trait]
impl Watchtower for FakeWatchtower {
    async fn report_errors(
        &self,
        request: Request<v1::ReportErrorsRequest>,
    ) -> Result<Response<v1::ReportErrorsResponse>, Status> {
        let rejections = request
            .get_ref()
            .rejections
            .iter()
            .map(Rejection::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.reports.send_modify(|r| r.extend(rejections));
        Ok(Response::new(v1::ReportErrorsResponse {}))
    }

    async fn get_transaction_status(
        &self,
        _request: Request<v1::WatchtowerTxStatusRequest>,
    ) -> Result<Response<v1::WatchtowerTxStatusResponse>, Status> {
        Err(Status::unimplemented("not in the test double"))
    }

    async fn get_output_status(
        &self,
        _request: Request<v1::ShardOutputStatusRequest>,
    ) -> Result<Response<v1::GetOutputStatusResponse>, Status> {
        Err(Status::unimplemented("not in the test double"))
    }

    async fn await_transaction_status(
        &self,
        _request: Request<v1::AwaitTransactionStatusRequest>,
    ) -> Result<Response<v1::WatchtowerTxStatusResponse>, Status> {
        Err(Status::unimplemented("not in the test double"))
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A gRPC server on 127.0.0.1:0 and the means to stop it.
struct Served {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Served {
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .context("server did not stop")???;
        Ok(())
    }
}

async fn serve(router: tonic::transport::server::Router) -> Result<(String, Served)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(router.serve_with_incoming_shutdown(
        cbdc_proto::incoming(listener),
        async move {
            let _ = stopped.await;
        },
    ));
    Ok((addr, Served { stop, task }))
}

/// Polls `check` until it yields a value, fails, or [`DEADLINE`] passes.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the value in `sender` satisfies `ready`; returns it.
async fn wait_watch<T: Clone>(
    sender: &watch::Sender<Vec<T>>,
    what: &str,
    ready: impl Fn(&Vec<T>) -> bool,
) -> Result<Vec<T>> {
    let mut rx = sender.subscribe();
    let value = tokio::time::timeout(DEADLINE, rx.wait_for(|v| ready(v)))
        .await
        .with_context(|| format!("timed out waiting for {what}"))??
        .clone();
    Ok(value)
}

async fn submit(
    client: &mut AtomizerShardClient<Channel>,
    txs: &[CompactTransaction],
) -> Result<(), Status> {
    client
        .submit_transactions(v1::ShardSubmitRequest {
            transactions: compact_transactions_to_wire(txs),
        })
        .await
        .map(|_| ())
}

async fn output_status(
    query: &mut ShardQueryClient<Channel>,
    ids: &[UhsId],
) -> Result<Vec<(v1::OutputStatus, Option<u64>, Option<u64>)>, Status> {
    let request = v1::ShardOutputStatusRequest {
        uhs_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
    };
    Ok(query
        .get_output_status(request)
        .await?
        .into_inner()
        .outputs
        .iter()
        .map(|o| (o.status(), o.value, o.block_height))
        .collect())
}

/// `(output_count, total_value, block_height)`.
async fn audit(query: &mut ShardQueryClient<Channel>) -> Result<(u64, u64, Option<u64>), Status> {
    let a = query.audit(v1::AuditRequest {}).await?.into_inner();
    Ok((a.output_count, a.total_value, a.block_height))
}

/// The cluster's one sentinel.
fn sentinel() -> SecretKey {
    SecretKey::from_bytes(&[7; 32])
}

/// `txs`, attested as one batch by `key`.
fn attested(key: &SecretKey, mut txs: Vec<CompactTransaction>) -> Vec<CompactTransaction> {
    attest_batch(key, &mut txs);
    txs
}

/// A deterministic 32-byte value with routing prefix `prefix`.
fn bytes(tag: &[u8], prefix: u16, n: u64) -> [u8; 32] {
    let mut bytes = *Hash::digest_parts(&[tag, &prefix.to_be_bytes(), &n.to_le_bytes()]).as_bytes();
    bytes[..2].copy_from_slice(&prefix.to_be_bytes());
    bytes
}

/// A UHS id with routing prefix `prefix`.
fn uhs(prefix: u16, n: u64) -> UhsId {
    UhsId::from(bytes(b"uhs", prefix, n))
}

/// A tx id.
fn txid(n: u64) -> TxId {
    TxId::from(bytes(b"tx", 0, n))
}

fn cents(n: u64) -> Amount {
    Amount::from_cents(n)
}

/// A compact transaction without attestations.
fn ctx(id: TxId, inputs: &[UhsId], outputs: &[(UhsId, u64)]) -> CompactTransaction {
    CompactTransaction {
        id,
        inputs: inputs.to_vec(),
        outputs: outputs.iter().map(|(id, v)| (*id, cents(*v))).collect(),
        attestations: Vec::new(),
    }
}
