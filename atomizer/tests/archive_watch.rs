//! The archiver and the watchtower over real sockets, against a fake `cbdc.v1.Atomizer`.
//!
//! The fake atomizer serves `SubscribeBlocks` from a list of blocks the test extends,
//! answers `OUT_OF_RANGE` below the height it has pruned, and records `Prune` calls (and
//! prunes, as the real one does). The archiver stores on RocksDB in a temp dir; the
//! watchtower starts after the prune, so it must read the early heights from the archiver.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use cbdc_atomizer::archiver::{Archiver, ArchiverParams};
use cbdc_atomizer::watchtower::{Watchtower, WatchtowerParams};
use cbdc_core::{Amount, CompactTransaction, Hash, TxId, UhsId};
use cbdc_proto::convert::{Block, Rejection};
use cbdc_proto::v1::archiver_client::ArchiverClient;
use cbdc_proto::v1::atomizer_server::{Atomizer, AtomizerServer};
use cbdc_proto::v1::watchtower_client::WatchtowerClient;
use cbdc_proto::v1::{self, OutputStatus, RejectReason, TxStatus};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Longest any condition in this test is waited for.
const WAIT: Duration = Duration::from_secs(20);

/// A test double of the atomizer's block service.
struct FakeAtomizer {
    /// Every block cut so far (heights 1, 2, ...), as the wire sends them.
    blocks: watch::Sender<Vec<v1::Block>>,
    /// The lowest height still served; below it, `OUT_OF_RANGE`.
    first_held: Mutex<u64>,
    /// The `below` of every Prune call, in order.
    prunes: watch::Sender<Vec<u64>>,
}

#[derive(Clone)]
struct FakeAtomizerService(Arc<FakeAtomizer>);

#[tonic::async_trait]
impl Atomizer for FakeAtomizerService {
    async fn notify(
        &self,
        _: Request<v1::NotifyRequest>,
    ) -> Result<Response<v1::NotifyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn submit_mints(
        &self,
        _: Request<v1::SubmitMintsRequest>,
    ) -> Result<Response<v1::SubmitMintsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type SubscribeBlocksStream = ReceiverStream<Result<v1::Block, Status>>;

    async fn subscribe_blocks(
        &self,
        request: Request<v1::SubscribeBlocksRequest>,
    ) -> Result<Response<Self::SubscribeBlocksStream>, Status> {
        let from = request.get_ref().from_height.max(1);
        let first_held = *self
            .0
            .first_held
            .lock()
            .map_err(|_| Status::internal("lock"))?;
        if from < first_held {
            return Err(Status::out_of_range(format!(
                "blocks below {first_held} are pruned"
            )));
        }
        let mut blocks = self.0.blocks.subscribe();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut next = from;
            loop {
                let ready: Vec<v1::Block> = blocks
                    .borrow_and_update()
                    .iter()
                    .filter(|b| b.height >= next)
                    .cloned()
                    .collect();
                for block in ready {
                    next = block.height + 1;
                    if tx.send(Ok(block)).await.is_err() {
                        return;
                    }
                }
                if blocks.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_height(
        &self,
        _: Request<v1::GetHeightRequest>,
    ) -> Result<Response<v1::GetHeightResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn prune(
        &self,
        request: Request<v1::PruneRequest>,
    ) -> Result<Response<v1::PruneResponse>, Status> {
        let below = request.get_ref().below;
        let held_up_to = self.0.blocks.borrow().len() as u64;
        let first_held = {
            let mut first_held = self
                .0
                .first_held
                .lock()
                .map_err(|_| Status::internal("lock"))?;
            *first_held = (*first_held).max(below.min(held_up_to + 1));
            *first_held
        };
        self.0.prunes.send_modify(|p| p.push(below));
        Ok(Response::new(v1::PruneResponse { first_held }))
    }
}

impl FakeAtomizer {
    fn new(blocks: &[Block]) -> Arc<Self> {
        let (blocks, _) = watch::channel(blocks.iter().map(v1::Block::from).collect());
        let (prunes, _) = watch::channel(Vec::new());
        Arc::new(FakeAtomizer {
            blocks,
            first_held: Mutex::new(1),
            prunes,
        })
    }

    /// Cuts the next block.
    fn push(&self, block: &Block) {
        self.blocks.send_modify(|b| b.push(block.into()));
    }
}

/// A gRPC server on 127.0.0.1:0; stopped by dropping or sending on the returned sender.
struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Served {
    async fn start(routes: Routes) -> anyhow::Result<Served> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(cbdc_proto::incoming(listener), async move {
                    let _ = stopped.await;
                }),
        );
        Ok(Served {
            addr,
            stop: Some(stop),
            task,
        })
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Stops at once (open streams included).
    fn abort(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

/// A distinct 32-byte value per `n`.
fn hash(n: u8) -> Hash {
    let mut bytes = [0xA5; 32];
    bytes[0] = n;
    Hash(bytes)
}

fn tx_id(n: u8) -> TxId {
    TxId(hash(n))
}

fn uhs(n: u8) -> UhsId {
    UhsId(hash(100 + n))
}

fn tx(id: u8, inputs: &[u8], outputs: &[(u8, u64)]) -> CompactTransaction {
    CompactTransaction {
        id: tx_id(id),
        inputs: inputs.iter().map(|&n| uhs(n)).collect(),
        outputs: outputs
            .iter()
            .map(|&(n, cents)| (uhs(n), Amount::from_cents(cents)))
            .collect(),
        attestations: Vec::new(),
    }
}

fn rejection(id: u8, reason: RejectReason, height: u64) -> Rejection {
    Rejection {
        tx_id: tx_id(id),
        reason,
        input_index: Some(0),
        height,
        message: format!("{reason:?}"),
        input_uhs_id: None,
    }
}

fn block(height: u64, transactions: Vec<CompactTransaction>, rejections: Vec<Rejection>) -> Block {
    Block {
        height,
        transactions,
        rejections,
    }
}

/// Blocks 1-5: a mint of outputs 1 and 2, spends of each, a refused transaction (20),
/// another mint, an empty block.
fn first_blocks() -> Vec<Block> {
    vec![
        block(1, vec![tx(1, &[], &[(1, 100), (2, 50)])], vec![]),
        block(2, vec![tx(2, &[1], &[(3, 100)])], vec![]),
        block(
            3,
            vec![tx(3, &[2], &[(4, 50)])],
            vec![rejection(20, RejectReason::Stale, 3)],
        ),
        block(4, vec![tx(4, &[], &[(5, 7)])], vec![]),
        block(5, vec![], vec![]),
    ]
}

async fn wait_until<T>(
    what: &str,
    rx: &mut watch::Receiver<T>,
    condition: impl FnMut(&T) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(WAIT, rx.wait_for(condition))
        .await
        .with_context(|| format!("timed out waiting for {what}"))?
        .map_err(|_| anyhow!("channel closed while waiting for {what}"))?;
    Ok(())
}

fn ids(ids: &[TxId]) -> Vec<tonic::codegen::Bytes> {
    ids.iter().map(|id| id.as_bytes().to_vec().into()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_archiver_and_watchtower_follow_blocks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let blocks = first_blocks();
    let atomizer = FakeAtomizer::new(&blocks);
    let atomizer_server = Served::start(Routes::new(AtomizerServer::new(FakeAtomizerService(
        atomizer.clone(),
    ))))
    .await?;
    let params = ArchiverParams {
        data_dir: dir.path().join("archive"),
        atomizer: vec![atomizer_server.endpoint()],
        prune_every: 3,
        retry: Duration::from_millis(20),
    };

    // The archiver stores blocks 1-5 and asks the atomizer to prune what it holds.
    let archiver = Archiver::start(params.clone()).await?;
    let archiver_server = Served::start(Routes::new(archiver.service())).await?;
    wait_until("blocks 1-5 archived", &mut archiver.watch_highest(), |h| {
        *h >= 5
    })
    .await?;
    assert_eq!(archiver.highest(), 5);
    let mut prunes = atomizer.prunes.subscribe();
    wait_until("a prune", &mut prunes, |p| !p.is_empty()).await?;
    assert!(
        prunes
            .borrow()
            .iter()
            .all(|&below| (4..=6).contains(&below)),
        "prunes: {:?}",
        *prunes.borrow()
    );

    // It serves them.
    let mut client = ArchiverClient::new(channel(archiver_server.addr).await?);
    let got = client
        .get_block(v1::GetBlockRequest { height: 3 })
        .await?
        .into_inner();
    assert_eq!(got.block, Some(v1::Block::from(&blocks[2])));
    let missing = client
        .get_block(v1::GetBlockRequest { height: 9 })
        .await
        .expect_err("block 9 does not exist");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let zero = client
        .get_block(v1::GetBlockRequest { height: 0 })
        .await
        .expect_err("height 0");
    assert_eq!(zero.code(), tonic::Code::InvalidArgument);

    let mut stream = client
        .get_blocks(v1::GetBlocksRequest {
            from_height: 2,
            to_height: u64::MAX,
        })
        .await?
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(block) = stream.message().await? {
        streamed.push(Block::try_from(&block)?);
    }
    assert_eq!(
        streamed,
        blocks[1..].to_vec(),
        "ends at the highest stored block"
    );
    let mut stream = client
        .get_blocks(v1::GetBlocksRequest {
            from_height: 2,
            to_height: 3,
        })
        .await?
        .into_inner();
    let mut heights = Vec::new();
    while let Some(block) = stream.message().await? {
        heights.push(block.height);
    }
    assert_eq!(heights, vec![2, 3]);
    let bad = client
        .get_blocks(v1::GetBlocksRequest {
            from_height: 0,
            to_height: 3,
        })
        .await
        .expect_err("from_height 0");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let info = client
        .get_archive_info(v1::GetArchiveInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(
        (info.lowest_height, info.highest_height),
        (Some(1), Some(5))
    );

    // The watchtower starts after the prune: heights 1-5 come from the archiver.
    let watchtower = Watchtower::start(WatchtowerParams {
        atomizer: vec![atomizer_server.endpoint()],
        archiver: archiver_server.endpoint(),
        retention: 1000,
        retry: Duration::from_millis(20),
    });
    let watchtower_server = Served::start(Routes::new(watchtower.service())).await?;
    let mut updates = watchtower.watch_updates();
    wait_until("the watchtower at height 5", &mut updates, |_| {
        watchtower.height() >= 5
    })
    .await?;
    let mut wt = WatchtowerClient::new(channel(watchtower_server.addr).await?);

    let statuses = wt
        .get_transaction_status(v1::WatchtowerTxStatusRequest {
            tx_ids: ids(&[tx_id(2), tx_id(20), tx_id(99)]),
        })
        .await?
        .into_inner()
        .results;
    assert_eq!(statuses.len(), 3);
    assert_eq!(statuses[0].status(), TxStatus::Confirmed);
    assert_eq!(statuses[0].block_height, Some(2));
    assert_eq!(statuses[0].to_tx_id()?, tx_id(2));
    assert_eq!(statuses[1].status(), TxStatus::Rejected);
    assert_eq!(statuses[1].reject_reason(), RejectReason::Stale);
    assert_eq!(statuses[1].input_index, Some(0));
    assert_eq!(statuses[2].status(), TxStatus::Unknown);
    let malformed = wt
        .get_transaction_status(v1::WatchtowerTxStatusRequest {
            tx_ids: vec![vec![1; 31].into()],
        })
        .await
        .expect_err("a 31-byte id");
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);

    let outputs = wt
        .get_output_status(v1::ShardOutputStatusRequest {
            uhs_ids: [uhs(1), uhs(3), uhs(77)]
                .iter()
                .map(|id| id.as_bytes().to_vec().into())
                .collect(),
        })
        .await?
        .into_inner()
        .outputs;
    assert_eq!(outputs.len(), 3);
    assert_eq!(outputs[0].status(), OutputStatus::SpentOrAbsent);
    assert_eq!(outputs[0].block_height, Some(2));
    assert_eq!(outputs[1].status(), OutputStatus::Unspent);
    assert_eq!(outputs[1].value, Some(100));
    assert_eq!(outputs[2].status(), OutputStatus::Unspecified);

    // Reports: recorded for unknown transactions only; a bad reason is refused.
    let report = |id: u8, reason: RejectReason| v1::ReportErrorsRequest {
        rejections: vec![v1::TxRejection::from(&rejection(id, reason, 5))],
    };
    wt.report_errors(report(30, RejectReason::InputsNotFound))
        .await?;
    wt.report_errors(report(2, RejectReason::InputsNotFound))
        .await?;
    let mut unspecified = report(31, RejectReason::InputsNotFound);
    unspecified.rejections[0].reason = 0;
    let refused = wt.report_errors(unspecified).await.expect_err("no reason");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let statuses = wt
        .get_transaction_status(v1::WatchtowerTxStatusRequest {
            tx_ids: ids(&[tx_id(30), tx_id(2), tx_id(31)]),
        })
        .await?
        .into_inner()
        .results;
    assert_eq!(statuses[0].status(), TxStatus::Rejected);
    assert_eq!(statuses[0].reject_reason(), RejectReason::InputsNotFound);
    assert_eq!(statuses[1].status(), TxStatus::Confirmed);
    assert_eq!(statuses[2].status(), TxStatus::Unknown);

    // Waiting: a short wait for transactions not in any block answers PENDING...
    let early = wt
        .await_transaction_status(v1::AwaitTransactionStatusRequest {
            tx_ids: ids(&[tx_id(6), tx_id(1)]),
            timeout_ms: 50,
        })
        .await?
        .into_inner()
        .results;
    assert_eq!(early[0].status(), TxStatus::Pending);
    assert_eq!(early[1].status(), TxStatus::Confirmed);
    // ...and a long one completes as soon as block 6 settles them (the atomizer also
    // reports the reports' transaction 30 confirmed: a block overrides a report).
    let mut waiter = wt.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .await_transaction_status(v1::AwaitTransactionStatusRequest {
                tx_ids: ids(&[tx_id(6), tx_id(21), tx_id(30)]),
                timeout_ms: 30_000,
            })
            .await
    });
    atomizer.push(&block(
        6,
        vec![tx(6, &[3], &[(6, 100)]), tx(30, &[5], &[(7, 7)])],
        vec![rejection(21, RejectReason::InputsSpent, 6)],
    ));
    let settled = tokio::time::timeout(WAIT, waiting)
        .await
        .context("the wait did not end with block 6")??
        .map_err(|s| anyhow!("await failed: {s}"))?
        .into_inner()
        .results;
    assert_eq!(settled[0].status(), TxStatus::Confirmed);
    assert_eq!(settled[0].block_height, Some(6));
    assert_eq!(settled[1].status(), TxStatus::Rejected);
    assert_eq!(settled[1].reject_reason(), RejectReason::InputsSpent);
    assert_eq!(settled[2].status(), TxStatus::Confirmed);
    assert_eq!(watchtower.height(), 6);

    watchtower_server.abort();
    watchtower.shutdown().await;

    // The archiver got block 6 too; it survives a restart from the same directory.
    wait_until("block 6 archived", &mut archiver.watch_highest(), |h| {
        *h >= 6
    })
    .await?;
    archiver_server.abort();
    archiver.shutdown().await?;
    let pruned_before = atomizer.prunes.borrow().len();

    let archiver = Archiver::start(params).await?;
    assert_eq!(
        archiver.highest(),
        6,
        "the stored height is read back at start"
    );
    let archiver_server = Served::start(Routes::new(archiver.service())).await?;
    atomizer.push(&block(7, vec![tx(7, &[6], &[(8, 100)])], vec![]));
    wait_until("block 7 archived", &mut archiver.watch_highest(), |h| {
        *h >= 7
    })
    .await?;
    // Restarted, it asks again for what it holds (Prune is idempotent).
    wait_until("a prune after the restart", &mut prunes, |p| {
        p.len() > pruned_before && p.last().is_some_and(|&below| below >= 7)
    })
    .await?;

    let mut client = ArchiverClient::new(channel(archiver_server.addr).await?);
    let mut stream = client
        .get_blocks(v1::GetBlocksRequest {
            from_height: 1,
            to_height: 100,
        })
        .await?
        .into_inner();
    let mut heights = Vec::new();
    while let Some(block) = stream.message().await? {
        heights.push(block.height);
    }
    assert_eq!(heights, (1..=7).collect::<Vec<_>>());
    let info = client
        .get_archive_info(v1::GetArchiveInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(
        (info.lowest_height, info.highest_height),
        (Some(1), Some(7))
    );

    archiver_server.abort();
    archiver.shutdown().await?;
    atomizer_server.abort();
    Ok(())
}

#[tokio::test]
async fn test_archiver_empty_and_bad_params() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // No atomizer endpoints: refused before anything is opened.
    let refused = Archiver::start(ArchiverParams {
        data_dir: dir.path().join("none"),
        atomizer: Vec::new(),
        prune_every: 1,
        retry: Duration::from_millis(20),
    })
    .await;
    assert!(refused.is_err());
    assert!(!dir.path().join("none").exists());

    // An unreachable atomizer: the archive opens empty and answers so.
    let archiver = Archiver::start(ArchiverParams {
        data_dir: dir.path().join("empty"),
        atomizer: vec!["127.0.0.1:9".into()],
        prune_every: 1,
        retry: Duration::from_millis(20),
    })
    .await?;
    assert_eq!(archiver.highest(), 0);
    let server = Served::start(Routes::new(archiver.service())).await?;
    let mut client = ArchiverClient::new(channel(server.addr).await?);
    let info = client
        .get_archive_info(v1::GetArchiveInfoRequest {})
        .await?
        .into_inner();
    assert_eq!((info.lowest_height, info.highest_height), (None, None));
    let mut stream = client
        .get_blocks(v1::GetBlocksRequest {
            from_height: 1,
            to_height: u64::MAX,
        })
        .await?
        .into_inner();
    assert!(
        stream.message().await?.is_none(),
        "an empty archive streams nothing"
    );
    // The directory is locked while open, and free again after shutdown.
    let second = Archiver::start(ArchiverParams {
        data_dir: dir.path().join("empty"),
        atomizer: vec!["127.0.0.1:9".into()],
        prune_every: 1,
        retry: Duration::from_millis(20),
    })
    .await;
    assert!(second.is_err(), "the directory is in use");
    server.abort();
    archiver.shutdown().await?;
    let again = Archiver::start(ArchiverParams {
        data_dir: dir.path().join("empty"),
        atomizer: vec!["127.0.0.1:9".into()],
        prune_every: 0,
        retry: Duration::from_millis(20),
    })
    .await?;
    again.shutdown().await?;
    Ok(())
}
