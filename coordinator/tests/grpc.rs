//! `cbdc.v1.Coordinator` over a real socket.

mod common;

use std::time::Duration;

use cbdc_coordinator::{Coordinator, GrpcShardGroups, ShardError, ShardGroups};
use cbdc_proto::v1::coordinator_client::CoordinatorClient;
use cbdc_proto::v1::locking_shard_server::{LockingShard, LockingShardServer};
use cbdc_proto::v1::{self, ExecuteBatchRequest, RejectReason, TxStatus};
use cbdc_proto::{status, MAX_INTERNAL_MESSAGE_BYTES};
use common::*;

#[tokio::test]
async fn test_grpc_execute_batch() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shards = MemoryShards::new(2);
    let sentinel = Sentinel::new();
    let (mut group, coordinator) = single(dir.path(), shards.clone(), &sentinel).await?;

    let listener = group
        .client_listeners
        .remove(&1)
        .ok_or_else(|| anyhow::anyhow!("no client listener"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(coordinator.service().into_server())
            .serve_with_incoming_shutdown(cbdc_proto::incoming(listener), async move {
                let _ = stop_rx.await;
            }),
    );
    let mut client = CoordinatorClient::connect(format!("http://{addr}"))
        .await?
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES);

    // Settles, one result per transaction in order.
    let ins = [uhs(), uhs()];
    for id in &ins {
        shards.fund(*id, 10);
    }
    let txs = sentinel.attest(vec![tx(&ins[..1], &[uhs()]), tx(&ins[1..], &[uhs()])]);
    let request = ExecuteBatchRequest {
        transactions: cbdc_proto::convert::compact_transactions_to_wire(&txs),
        ..Default::default()
    };
    let response = client.execute_batch(request).await?.into_inner();
    assert_eq!(response.results.len(), 2);
    for (tx, result) in txs.iter().zip(&response.results) {
        assert_eq!(result.status(), TxStatus::Confirmed);
        assert_eq!(result.to_tx_id()?, tx.id);
    }
    // Again, in the canonical encoding: the recorded outcome, not a double spend.
    let again = client
        .execute_batch(ExecuteBatchRequest::encoded(&txs))
        .await?
        .into_inner();
    assert!(again
        .results
        .iter()
        .all(|r| r.status() == TxStatus::Confirmed));

    // An empty batch gets an empty answer.
    let empty = client
        .execute_batch(ExecuteBatchRequest::default())
        .await?
        .into_inner();
    assert!(empty.results.is_empty());

    // Malformed: a 31-byte tx id. INVALID_ARGUMENT naming the field, nothing settled.
    let mut wire: v1::CompactTransaction = (&txs[0]).into();
    wire.id.truncate(31);
    let err = client
        .execute_batch(ExecuteBatchRequest {
            transactions: vec![wire],
            ..Default::default()
        })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("compact_transaction.id"), "{err:?}");
    let failure = status::validation_failure_from_status(&err).expect("details");
    assert_eq!(failure.code(), v1::ValidationErrorCode::Malformed);

    // Malformed: an output id of the wrong length in the second transaction.
    let mut wire: v1::CompactTransaction = (&txs[1]).into();
    wire.outputs[0].uhs_id = vec![1; 33].into();
    let err = client
        .execute_batch(ExecuteBatchRequest {
            transactions: vec![(&txs[0]).into(), wire],
            ..Default::default()
        })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Malformed: a truncated canonical encoding, and both forms at once.
    let mut truncated = ExecuteBatchRequest::encoded(&txs);
    truncated.encoded_transactions.truncate(100);
    let err = client
        .execute_batch(truncated)
        .await
        .expect_err("truncated");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("encoded_transactions"), "{err:?}");
    let mut both = ExecuteBatchRequest::encoded(&txs);
    both.transactions = cbdc_proto::convert::compact_transactions_to_wire(&txs);
    let err = client.execute_batch(both).await.expect_err("both forms");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // After shutdown the service answers UNAVAILABLE.
    coordinator.shutdown().await;
    let err = client
        .execute_batch(ExecuteBatchRequest::encoded(&txs))
        .await
        .expect_err("shut down");
    assert_eq!(err.code(), tonic::Code::Unavailable);

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    group.shutdown().await
}

/// A `LockingShard` server over one shard of [`MemoryShards`], so that the driver can
/// be run through [`GrpcShardGroups`] and real sockets.
struct MemoryShardServer {
    shards: std::sync::Arc<MemoryShards>,
    index: usize,
}

fn shard_status(e: ShardError) -> tonic::Status {
    if e.is_retryable() {
        tonic::Status::unavailable(e.to_string())
    } else {
        tonic::Status::invalid_argument(e.to_string())
    }
}

#[tonic::async_trait]
impl LockingShard for MemoryShardServer {
    async fn lock(
        &self,
        request: tonic::Request<v1::LockRequest>,
    ) -> Result<tonic::Response<v1::LockResponse>, tonic::Status> {
        let (dtx, txs) = request.get_ref().to_parts()?;
        let refs: Vec<_> = txs.iter().collect();
        let votes = self
            .shards
            .lock(self.index, dtx, &refs)
            .await
            .map_err(shard_status)?;
        let results = votes
            .iter()
            .map(|v| v1::LockResult {
                locked: v.locked,
                reason: v.reason as i32,
                input_index: v.input_index,
                committed_before: v.committed_before,
            })
            .collect();
        Ok(tonic::Response::new(v1::LockResponse { results }))
    }

    async fn apply(
        &self,
        request: tonic::Request<v1::ApplyRequest>,
    ) -> Result<tonic::Response<v1::ApplyResponse>, tonic::Status> {
        let request = request.into_inner();
        let dtx = request.to_dtx_id()?;
        let reasons: Vec<RejectReason> = request
            .reasons
            .iter()
            .map(|r| RejectReason::try_from(*r).unwrap_or(RejectReason::Unspecified))
            .collect();
        self.shards
            .apply(self.index, dtx, &request.commit, &reasons)
            .await
            .map_err(shard_status)?;
        Ok(tonic::Response::new(v1::ApplyResponse {}))
    }

    async fn discard(
        &self,
        request: tonic::Request<v1::DiscardRequest>,
    ) -> Result<tonic::Response<v1::DiscardResponse>, tonic::Status> {
        let dtx = request.get_ref().to_dtx_id()?;
        self.shards
            .discard(self.index, dtx)
            .await
            .map_err(shard_status)?;
        Ok(tonic::Response::new(v1::DiscardResponse {}))
    }
}

#[tokio::test]
async fn test_grpc_shard_groups_drive_dtxs() -> anyhow::Result<()> {
    const COUNT: usize = 2;
    let dir = tempfile::tempdir()?;
    let memory = MemoryShards::new(COUNT);
    let sentinel = Sentinel::new();

    // One LockingShard server per shard.
    let mut endpoints = Vec::new();
    let mut servers = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for index in 0..COUNT {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        endpoints.push(vec![listener.local_addr()?.to_string()]);
        let service = LockingShardServer::new(MemoryShardServer {
            shards: memory.clone(),
            index,
        });
        let mut stop = stop_rx.clone();
        servers.push(tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(cbdc_proto::incoming(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                }),
        ));
    }
    let grpc = GrpcShardGroups::new(
        memory.shard_map().clone(),
        endpoints,
        Duration::from_millis(300),
    )?;

    let group = Group::start(dir.path(), 1).await?;
    group.wait_leader(Duration::from_secs(20)).await?;
    let coordinator = Coordinator::start(
        group.handle(1),
        params(),
        sentinel.verifier.clone(),
        std::sync::Arc::new(grpc),
    )?;
    wait_until(
        "the coordinator to accept work",
        Duration::from_secs(20),
        || coordinator.is_accepting(),
    )
    .await?;

    // Commits, a double spend with its reason and input, a retry of a settled tx.
    let spent = uhs_on(1, COUNT);
    let other = uhs_on(0, COUNT);
    memory.fund(spent, 10);
    memory.fund(other, 10);
    let first = sentinel.attest(vec![tx(&[spent], &[uhs(), uhs()])]);
    let results = coordinator.execute(first.clone()).await?;
    assert_eq!(results[0].status(), TxStatus::Confirmed, "{:?}", results[0]);
    let double = sentinel.attest(vec![tx(&[other, spent], &[uhs()])]);
    let results = coordinator.execute(double.clone()).await?;
    assert_eq!(results[0].status(), TxStatus::Rejected);
    assert_eq!(results[0].reject_reason(), RejectReason::InputsSpent);
    assert_eq!(results[0].input_index, Some(1));
    assert_eq!(
        memory.recorded(&double[0].id),
        Some(Recorded::Aborted(RejectReason::InputsSpent)),
        "the reason travelled in ApplyRequest.reasons"
    );
    assert!(memory.is_unspent(&other));
    let retry = coordinator.execute(first).await?;
    assert_eq!(retry[0].status(), TxStatus::Confirmed);

    // A shard answering UNAVAILABLE for a while: retried until it is back.
    let txs = sentinel.attest(
        (0..10)
            .map(|_| {
                let input = uhs();
                memory.fund(input, 10);
                tx(&[input], &[uhs()])
            })
            .collect(),
    );
    memory.set_down(0, true);
    let mut pending = Box::pin(coordinator.execute(txs));
    assert!(futures::poll!(&mut pending).is_pending());
    wait_until("retries", Duration::from_secs(30), || {
        memory.attempts(0) >= 5
    })
    .await?;
    memory.set_down(0, false);
    let results = pending.await?;
    assert!(results.iter().all(|r| r.status() == TxStatus::Confirmed));
    let handle = group.handle(1);
    wait_until("every dtx done", Duration::from_secs(30), || {
        unfinished(&handle) == 0 && memory.total_locks() == 0 && memory.total_dtxs() == 0
    })
    .await?;

    coordinator.shutdown().await;
    let _ = stop_tx.send(true);
    for server in servers {
        server.await??;
    }
    group.shutdown().await
}
