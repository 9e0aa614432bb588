//! The `cbdc.v1.Sentinel` service on a real tonic server (127.0.0.1, port 0) with a real
//! client, in front of the in-memory back end (or an unreachable 2PC back end).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cbdc_core::{
    p2pk_output, sign_mint, sign_transfer, AttestationVerifier, Hash, Input, Limits, SecretKey,
    ShardMap, Transaction, Validator,
};
use cbdc_proto::status::validation_failure_from_status;
use cbdc_proto::v1::sentinel_client::SentinelClient;
use cbdc_proto::v1::{self, TxStatus, ValidationErrorCode};
use cbdc_sentinel::{
    serve_pipeline, Backend, MemoryBackend, Pipeline, SentinelParams, TwoPhaseBackend,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

fn key(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[seed; 32])
}

fn params() -> SentinelParams {
    let validator = Validator::new(Limits::default(), Some(key(1).public_key()));
    let mut params = SentinelParams::new(key(9), validator, ShardMap::even(4).unwrap());
    params.max_batch_delay = Duration::from_millis(1);
    params
}

/// A running sentinel; the server stops when this is dropped.
struct Running {
    addr: SocketAddr,
    client: SentinelClient<Channel>,
    pipeline: Pipeline,
    _stop: oneshot::Sender<()>,
}

async fn start(params: SentinelParams, backend: Arc<dyn Backend>) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let pipeline = Pipeline::new(&params, backend);
    let (stop, stopped) = oneshot::channel::<()>();
    let served = pipeline.clone();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = serve_pipeline(listener, &params, served, shutdown).await {
            eprintln!("sentinel stopped: {e}");
        }
    });
    let client = SentinelClient::connect(format!("http://{addr}")).await?;
    Ok(Running {
        addr,
        client,
        pipeline,
        _stop: stop,
    })
}

async fn start_memory() -> anyhow::Result<(Running, Arc<MemoryBackend>)> {
    let backend = Arc::new(MemoryBackend::default());
    Ok((start(params(), backend.clone()).await?, backend))
}

fn mint(owner: &SecretKey, cents: u64, nonce: u8) -> Transaction {
    sign_mint(&key(1), vec![p2pk_output(owner, cents)], Hash([nonce; 32]))
}

fn spend(from: &Transaction, owner: &SecretKey, to: &SecretKey) -> Transaction {
    let input = Input {
        outpoint: from.outpoint(0),
        spent: from.outputs[0],
    };
    sign_transfer(
        &[(input, owner)],
        vec![p2pk_output(to, from.outputs[0].value.cents())],
    )
}

fn submit_request(tx: &Transaction) -> v1::SubmitTransactionRequest {
    v1::SubmitTransactionRequest {
        transaction: Some(tx.into()),
        options: None,
    }
}

async fn submit(
    client: &mut SentinelClient<Channel>,
    tx: &Transaction,
) -> Result<v1::TransactionResult, tonic::Status> {
    let response = tokio::time::timeout(WAIT, client.submit_transaction(submit_request(tx)))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("test wait"))??;
    Ok(response.into_inner().result.unwrap_or_default())
}

#[tokio::test]
async fn test_grpc_transfer_confirmed_and_status_queries() -> anyhow::Result<()> {
    let (mut s, backend) = start_memory().await?;
    let m = mint(&key(2), 1_000, 1);
    let result = submit(&mut s.client, &m).await?;
    assert_eq!(result.status(), TxStatus::Confirmed);
    assert_eq!(result.tx_id, m.tx_id().as_bytes().to_vec());
    let t = spend(&m, &key(2), &key(3));
    assert_eq!(
        submit(&mut s.client, &t).await?.status(),
        TxStatus::Confirmed
    );
    let again = spend(&m, &key(2), &key(4));
    let rejected = submit(&mut s.client, &again).await?;
    assert_eq!(rejected.status(), TxStatus::Rejected);
    assert_eq!(rejected.reject_reason(), v1::RejectReason::InputsSpent);

    let status = s
        .client
        .get_transaction_status(v1::GetTransactionStatusRequest {
            tx_id: t.tx_id().as_bytes().to_vec().into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        status.result.unwrap_or_default().status(),
        TxStatus::Confirmed
    );
    let spent = Input {
        outpoint: m.outpoint(0),
        spent: m.outputs[0],
    };
    let created = t.compact().outputs[0].0;
    let outputs = s
        .client
        .get_output_status(v1::GetOutputStatusRequest {
            outputs: vec![(&spent).into(), (&created).into()],
        })
        .await?
        .into_inner()
        .outputs;
    assert_eq!(outputs[0].status(), v1::OutputStatus::SpentOrAbsent);
    assert_eq!(outputs[1].status(), v1::OutputStatus::Unspent);
    assert_eq!(outputs[1].value, Some(1_000));

    // What reached the back end carries this sentinel's verifiable attestations.
    let verifier = AttestationVerifier::new([key(9).public_key()], 1);
    let received = backend.received();
    assert_eq!(received.len(), 3);
    for tx in &received {
        verifier.verify(tx)?;
    }
    Ok(())
}

#[tokio::test]
async fn test_grpc_invalid_signature_invalid_argument_with_code_and_index() -> anyhow::Result<()> {
    let (mut s, backend) = start_memory().await?;
    let m = mint(&key(2), 1_000, 1);
    let mut t = spend(&m, &key(2), &key(3));
    t.witnesses[0].signature = key(3).sign(t.tx_id().as_bytes());
    let status = submit(&mut s.client, &t).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let failure = validation_failure_from_status(&status).expect("validation failure details");
    assert_eq!(failure.code(), ValidationErrorCode::InvalidSignature);
    assert_eq!(failure.index, Some(0));
    assert!(backend.received().is_empty());
    Ok(())
}

#[tokio::test]
async fn test_grpc_malformed_hash_length_invalid_argument() -> anyhow::Result<()> {
    let (mut s, _backend) = start_memory().await?;
    let m = mint(&key(2), 1_000, 1);
    let mut request = submit_request(&m);
    if let Some(tx) = request.transaction.as_mut() {
        tx.nonce.truncate(31);
    }
    let status = s.client.submit_transaction(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let failure = validation_failure_from_status(&status).expect("validation failure details");
    assert_eq!(failure.code(), ValidationErrorCode::Malformed);

    let status = s
        .client
        .get_transaction_status(v1::GetTransactionStatusRequest {
            tx_id: vec![1; 5].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    Ok(())
}

#[tokio::test]
async fn test_grpc_unauthorized_mint_refused() -> anyhow::Result<()> {
    let (mut s, backend) = start_memory().await?;
    let forged = sign_mint(
        &key(5),
        vec![p2pk_output(&key(5), 1_000_000)],
        Hash([3; 32]),
    );
    let status = submit(&mut s.client, &forged).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let failure = validation_failure_from_status(&status).expect("validation failure details");
    assert_eq!(failure.code(), ValidationErrorCode::UnauthorizedMint);
    assert!(backend.received().is_empty());
    Ok(())
}

#[tokio::test]
async fn test_grpc_stream_answers_each_request_once() -> anyhow::Result<()> {
    let (mut s, _backend) = start_memory().await?;
    let mut requests = Vec::new();
    for i in 0..100u64 {
        let tx = mint(&key(2), 10 + i, i as u8 + 1);
        let mut transaction: v1::Transaction = (&tx).into();
        if i % 10 == 7 {
            // Malformed: answered INVALID, the stream goes on.
            transaction.nonce.truncate(3);
        }
        requests.push(v1::SubmitTransactionsRequest {
            request_id: 1_000 + i,
            transaction: Some(transaction),
            options: None,
        });
    }
    let response = s
        .client
        .submit_transactions(tokio_stream::iter(requests))
        .await?;
    let mut answers = response.into_inner();
    let mut seen = std::collections::HashMap::new();
    while let Some(answer) = tokio::time::timeout(WAIT, answers.message()).await?? {
        let status = answer.result.unwrap_or_default().status();
        assert!(seen.insert(answer.request_id, status).is_none());
    }
    assert_eq!(seen.len(), 100);
    for i in 0..100u64 {
        let expected = if i % 10 == 7 {
            TxStatus::Invalid
        } else {
            TxStatus::Confirmed
        };
        assert_eq!(seen.get(&(1_000 + i)), Some(&expected), "request {i}");
    }
    Ok(())
}

#[tokio::test]
async fn test_grpc_duplicate_in_flight_joined() -> anyhow::Result<()> {
    let (s, backend) = start_memory().await?;
    backend.hold();
    let m = mint(&key(2), 1_000, 1);
    let id = m.tx_id();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let mut client = s.client.clone();
            let m = m.clone();
            tokio::spawn(async move { submit(&mut client, &m).await })
        })
        .collect();
    tokio::time::timeout(WAIT, async {
        while s.pipeline.waiters(&id) < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await?;
    backend.release();
    for call in calls {
        assert_eq!(call.await??.status(), TxStatus::Confirmed);
    }
    assert_eq!(backend.received().len(), 1);
    Ok(())
}

#[tokio::test]
async fn test_grpc_backend_unavailable() -> anyhow::Result<()> {
    // A 2PC back end whose coordinator and shards do not listen. The socket stays bound
    // (but never listens) for the whole test, so no other test's server can take the
    // port and answer in their place: a connection to it is refused.
    let reserved = tokio::net::TcpSocket::new_v4()?;
    reserved.bind("127.0.0.1:0".parse()?)?;
    let nowhere = reserved.local_addr()?.to_string();
    let mut p = params();
    p.request_timeout = Duration::from_millis(300);
    p.coordinator_groups = vec![vec![nowhere.clone()]];
    p.shard_groups = vec![vec![nowhere]; 4];
    let backend = Arc::new(TwoPhaseBackend::new(&p)?);
    let mut s = start(p, backend).await?;
    let status = submit(&mut s.client, &mint(&key(2), 10, 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let status = s
        .client
        .get_transaction_status(v1::GetTransactionStatusRequest {
            tx_id: vec![7; 32].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    Ok(())
}

#[tokio::test]
async fn test_grpc_get_info() -> anyhow::Result<()> {
    let (mut s, _backend) = start_memory().await?;
    let info = s.client.get_info(v1::GetInfoRequest {}).await?.into_inner();
    assert_eq!(info.architecture(), v1::Architecture::TwoPhaseCommit);
    assert_eq!(info.issuer_public_key, key(1).public_key().0.to_vec());
    assert_eq!(info.sentinel_public_key, key(9).public_key().0.to_vec());
    assert_eq!(info.shard_count, 4);
    assert_eq!(info.attestation_threshold, 1);
    assert_eq!(info.limits.map(|l| l.max_inputs), Some(64));
    assert_eq!(info.max_message_bytes, cbdc_proto::MAX_MESSAGE_BYTES as u64);
    Ok(())
}

/// `bytes` as one gRPC message (uncompressed flag, big-endian length, bytes).
fn grpc_frame(bytes: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    framed.extend_from_slice(bytes);
    framed
}

/// A client streaming to a sentinel that has stopped reading (its in-flight limit is
/// reached) keeps its connection while small DATA frames pile up unread. With hyper's
/// default 1 MiB connection window h2 answers about 2,000 such frames with GOAWAY
/// "too_many_data_frames", and every answer in flight on the connection is lost.
#[tokio::test]
async fn test_grpc_stream_survives_many_small_frames_while_the_sentinel_is_busy(
) -> anyhow::Result<()> {
    use prost::Message;
    const SMALL_FRAMES: usize = 4_000;

    let backend = Arc::new(MemoryBackend::default());
    backend.hold();
    let mut p = params();
    p.max_stream_in_flight = 1;
    let s = start(p, backend.clone()).await?;

    let tcp = tokio::net::TcpStream::connect(s.addr).await?;
    // The answers come back as small DATA frames too: the client needs the same room.
    let (client, connection) = h2::client::Builder::new()
        .initial_connection_window_size(cbdc_proto::CONNECTION_WINDOW_BYTES)
        .handshake(tcp)
        .await?;
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/cbdc.v1.Sentinel/SubmitTransactions",
            s.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (response, mut send) = client.send_request(request, false)?;

    // One whole transaction: the sentinel reads it, the held back end keeps it in flight,
    // and at its limit of one the sentinel reads no more.
    let tx = mint(&key(2), 10, 1);
    let first = v1::SubmitTransactionsRequest {
        request_id: 1,
        transaction: Some((&tx).into()),
        options: None,
    };
    send.send_data(grpc_frame(&first.encode_to_vec()).into(), false)?;
    tokio::time::timeout(WAIT, async {
        while s.pipeline.waiters(&tx.tx_id()) < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await?;

    // Then one byte per DATA frame. Every 5 bytes form an empty request (flag 0, length 0),
    // answered as malformed once the sentinel reads again.
    for _ in 0..SMALL_FRAMES {
        send.send_data(bytes::Bytes::from_static(&[0]), false)?;
    }
    send.send_data(bytes::Bytes::new(), true)?;
    // Give h2 time to put the frames on the wire before the sentinel reads again (the
    // answers below prove only that the connection survived them, not when they left).
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.release();

    let mut body = tokio::time::timeout(WAIT, response).await??.into_body();
    let mut received = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, body.data()).await? {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    let trailers = tokio::time::timeout(WAIT, body.trailers()).await??;
    assert_eq!(
        trailers.as_ref().and_then(|t| t.get("grpc-status")),
        Some(&http::HeaderValue::from_static("0"))
    );
    let mut answers = Vec::new();
    let mut rest = &received[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[1..5].try_into()?) as usize;
        answers.push(v1::SubmitTransactionsResponse::decode(&rest[5..5 + len])?);
        rest = &rest[5 + len..];
    }
    assert_eq!(answers.len(), 1 + SMALL_FRAMES / 5);
    let confirmed = answers
        .iter()
        .filter(|a| a.result.as_ref().map(|r| r.status()) == Some(TxStatus::Confirmed))
        .count();
    assert_eq!(confirmed, 1);
    drop(client);
    connection.abort();
    Ok(())
}
