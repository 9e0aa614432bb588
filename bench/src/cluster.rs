//! Talking to a cluster through its public API only (`cbdc.v1.Sentinel`): connecting,
//! reading `GetInfo`, preparing funds (mints, or checking that a genesis is in place),
//! and asking for the final status of transactions still pending after a run.
//!
//! Nothing here assumes an architecture: mints and benchmark transactions are sent with
//! `wait` set, so a 2PC cluster answers as it always does and an atomizer cluster
//! answers once the watchtower knows; whatever is still `PENDING` is polled with
//! `GetTransactionStatus`.

use std::time::Duration;

use cbdc_core::{Limits, PublicKey, Transaction, TxId, UhsId};
use cbdc_proto::convert::MAX_QUERY_ITEMS;
use cbdc_proto::v1::sentinel_client::SentinelClient;
use cbdc_proto::v1::{self, OutputStatus, RejectReason, TxStatus};
use cbdc_proto::{CONNECTION_WINDOW_BYTES, MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::answers::{reject_reason_name, validation_code_name, Answer};
use crate::error::{error_chain, BenchError};
use crate::workload::FundingKind;

/// How long connecting to a sentinel may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one unary call (info, status) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Status queries in flight at once when resolving pending transactions.
const STATUS_CONCURRENCY: usize = 32;
/// First and largest pause between polls of something not final yet.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(500);
/// Funding outputs checked before a run: enough to catch a cluster that was not seeded
/// (or seeded from another seed) without reading millions back.
const FUNDING_SAMPLE: usize = 4096;

/// What the harness asks every submission: wait for the final status where the
/// architecture answers `PENDING` first (the atomizer), with the sentinel's own timeout.
pub(crate) fn submit_options() -> v1::SubmitOptions {
    v1::SubmitOptions {
        wait: true,
        wait_timeout_ms: 0,
    }
}

/// `host:port` becomes `http://host:port`; a URL is kept as it is.
fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Opens a new HTTP/2 connection to `endpoint` (every call opens its own, so that
/// `--connections` really means connections).
pub(crate) async fn connect(endpoint: &str) -> Result<Channel, BenchError> {
    let target = Endpoint::from_shared(endpoint_url(endpoint))
        .map_err(|e| BenchError::Endpoint {
            endpoint: endpoint.to_string(),
            detail: error_chain(&e),
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Answers arrive as many small DATA frames while the harness is busy: a fixed,
        // large window keeps h2 from taking them for a flood (see the constant).
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .initial_stream_window_size(STREAM_WINDOW_BYTES);
    target.connect().await.map_err(|e| BenchError::Connect {
        endpoint: endpoint.to_string(),
        detail: error_chain(&e),
    })
}

/// A sentinel client with the public message size limits.
pub(crate) fn client(channel: Channel) -> SentinelClient<Channel> {
    SentinelClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn rpc_error(call: &'static str, endpoint: &str, detail: String) -> BenchError {
    BenchError::Rpc {
        call,
        endpoint: endpoint.to_string(),
        detail,
    }
}

/// What `GetInfo` says about a cluster, as the report records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The sentinels driven.
    pub endpoints: Vec<String>,
    /// `two_phase_commit` or `atomizer`.
    pub architecture: String,
    /// Shard ranges.
    pub shard_count: u32,
    /// Sentinel attestations the back ends require.
    pub attestation_threshold: u32,
    /// The sentinel's software version.
    pub version: String,
    /// Most inputs per transaction.
    pub max_inputs: usize,
    /// Most outputs per transaction.
    pub max_outputs: usize,
    /// The issuer key, hex.
    pub issuer: String,
}

impl ClusterInfo {
    /// The issuer key, if `GetInfo` gave a well-formed one.
    pub fn issuer_key(&self) -> Option<PublicKey> {
        PublicKey::from_hex(&self.issuer)
    }
}

/// Asks the sentinel at `endpoint` for its `GetInfo`.
pub(crate) async fn get_info(
    channel: Channel,
    endpoint: &str,
    endpoints: &[String],
) -> Result<ClusterInfo, BenchError> {
    let mut client = client(channel);
    let call = client.get_info(v1::GetInfoRequest {});
    let info = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| rpc_error("GetInfo", endpoint, "timed out".into()))?
        .map_err(|s| rpc_error("GetInfo", endpoint, s.to_string()))?
        .into_inner();
    let limits = info
        .limits
        .as_ref()
        .ok_or_else(|| BenchError::Cluster("GetInfo has no limits".into()))
        .and_then(|l| {
            Limits::try_from(l).map_err(|e| BenchError::Cluster(format!("GetInfo limits: {e}")))
        })?;
    let architecture = match v1::Architecture::try_from(info.architecture) {
        Ok(v1::Architecture::TwoPhaseCommit) => "two_phase_commit".to_string(),
        Ok(v1::Architecture::Atomizer) => "atomizer".to_string(),
        _ => format!("unknown ({})", info.architecture),
    };
    Ok(ClusterInfo {
        endpoints: endpoints.to_vec(),
        architecture,
        shard_count: info.shard_count,
        attestation_threshold: info.attestation_threshold,
        version: info.version,
        max_inputs: limits.max_inputs,
        max_outputs: limits.max_outputs,
        issuer: hex_string(&info.issuer_public_key),
    })
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Submits every mint on one stream and waits until each is confirmed.
///
/// A seed can fund a cluster only once: its mints are the same transactions every time.
/// Submitting one again is answered with its first outcome (confirmed) while its outputs
/// are long spent, or rejected as a replay, so the first mint's status is asked before
/// anything is sent.
pub(crate) async fn mint(
    channel: Channel,
    endpoint: &str,
    mints: &[Transaction],
    seed: u64,
    timeout: Duration,
) -> Result<(), BenchError> {
    let Some(first) = mints.first() else {
        return Ok(());
    };
    let deadline = Instant::now() + timeout;
    let used_before = || {
        BenchError::Funding(format!(
            "seed {seed} was used on this cluster before (its mints are already settled): \
             run with another --seed"
        ))
    };
    let mut status_client = client(channel.clone());
    let call = status_client.get_transaction_status(v1::GetTransactionStatusRequest {
        tx_id: first.tx_id().as_bytes().to_vec().into(),
    });
    let known = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| rpc_error("GetTransactionStatus", endpoint, "timed out".into()))?
        .map_err(|s| rpc_error("GetTransactionStatus", endpoint, s.to_string()))?
        .into_inner()
        .result;
    if known.is_some_and(|r| r.status() == TxStatus::Confirmed) {
        return Err(used_before());
    }
    let requests: Vec<v1::SubmitTransactionsRequest> = mints
        .iter()
        .enumerate()
        .map(|(i, tx)| v1::SubmitTransactionsRequest {
            request_id: i as u64,
            transaction: Some(tx.into()),
            options: Some(submit_options()),
        })
        .collect();
    let ids: Vec<TxId> = mints.iter().map(Transaction::tx_id).collect();
    let mut answers = vec![Answer::Unanswered; mints.len()];
    let mut client = client(channel.clone());
    let call = client.submit_transactions(futures::stream::iter(requests));
    let mut stream = tokio::time::timeout_at(deadline, call)
        .await
        .map_err(|_| rpc_error("SubmitTransactions", endpoint, "timed out".into()))?
        .map_err(|s| rpc_error("SubmitTransactions", endpoint, s.to_string()))?
        .into_inner();
    let mut answered = 0;
    while answered < mints.len() {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .map_err(|_| {
                BenchError::Funding(format!(
                    "{} of {} mints unanswered after {timeout:?}",
                    mints.len() - answered,
                    mints.len()
                ))
            })?
            .map_err(|s| rpc_error("SubmitTransactions", endpoint, s.to_string()))?;
        let Some(response) = message else { break };
        let Some(i) = usize::try_from(response.request_id)
            .ok()
            .filter(|&i| i < mints.len())
        else {
            return Err(BenchError::Funding(format!(
                "answer for unknown mint {}",
                response.request_id
            )));
        };
        if answers[i] == Answer::Unanswered {
            answered += 1;
        }
        answers[i] = Answer::from_result(response.result.as_ref(), &ids[i]);
    }
    resolve_pending(channel, endpoint, &ids, &mut answers, deadline).await?;
    for (i, answer) in answers.iter().enumerate() {
        match *answer {
            Answer::Confirmed => {}
            Answer::Rejected(r) if r == RejectReason::MintReplay as i32 => {
                return Err(used_before())
            }
            Answer::Rejected(r) => {
                return Err(BenchError::Funding(format!(
                    "mint {i} was rejected ({})",
                    reject_reason_name(r)
                )))
            }
            Answer::Invalid(c) => {
                return Err(BenchError::Funding(format!(
                    "mint {i} is invalid ({}): is the issuer key the cluster's?",
                    validation_code_name(c)
                )))
            }
            other => {
                return Err(BenchError::Funding(format!(
                    "mint {i} got no final answer ({other:?})"
                )))
            }
        }
    }
    Ok(())
}

/// Waits until every output in `ids` is unspent (mints on an atomizer cluster reach
/// the shards a little after they are confirmed). Returns how many still are not when
/// `deadline` passes.
pub(crate) async fn wait_unspent(
    channel: Channel,
    endpoint: &str,
    ids: &[UhsId],
    deadline: Instant,
) -> Result<usize, BenchError> {
    let mut missing = 0;
    for chunk in ids.chunks(MAX_QUERY_ITEMS) {
        let mut pause = POLL_FIRST;
        loop {
            let request = v1::GetOutputStatusRequest {
                outputs: chunk.iter().map(Into::into).collect(),
            };
            let mut client = client(channel.clone());
            let call = client.get_output_status(request);
            let entries = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| rpc_error("GetOutputStatus", endpoint, "timed out".into()))?
                .map_err(|s| rpc_error("GetOutputStatus", endpoint, s.to_string()))?
                .into_inner()
                .outputs;
            let absent = chunk.len().saturating_sub(
                entries
                    .iter()
                    .filter(|e| e.status() == OutputStatus::Unspent)
                    .count(),
            );
            if absent == 0 {
                break;
            }
            if Instant::now() + pause > deadline {
                missing += absent;
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }
    Ok(missing)
}

/// Checks that a sample of the funding outputs is unspent, so that a cluster that was not
/// seeded with this workload's genesis (or whose mints did not take) is caught before
/// the clock starts rather than reported as a run of rejections.
pub(crate) async fn check_funded(
    channel: Channel,
    endpoint: &str,
    funding: &[(UhsId, cbdc_core::Amount)],
    kind: FundingKind,
    timeout: Duration,
) -> Result<(), BenchError> {
    let step = funding.len().div_ceil(FUNDING_SAMPLE).max(1);
    let sample: Vec<UhsId> = funding.iter().step_by(step).map(|(id, _)| *id).collect();
    let missing = wait_unspent(channel, endpoint, &sample, Instant::now() + timeout).await?;
    if missing > 0 {
        let hint = match kind {
            FundingKind::Genesis => {
                "write Workload::genesis() into the shard stores of a fresh cluster before it \
                 starts"
            }
            FundingKind::Mint => "the mints were confirmed but their outputs are not there",
        };
        return Err(BenchError::Funding(format!(
            "{missing} of {} sampled funding outputs are not unspent on the cluster: {hint}",
            sample.len()
        )));
    }
    Ok(())
}

/// Asks `GetTransactionStatus` for every transaction whose answer is
/// [`Answer::Pending`] until it is final or `deadline` passes; final answers replace
/// the pending ones.
pub(crate) async fn resolve_pending(
    channel: Channel,
    endpoint: &str,
    ids: &[TxId],
    answers: &mut [Answer],
    deadline: Instant,
) -> Result<usize, BenchError> {
    let pending: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| **a == Answer::Pending)
        .map(|(i, _)| i)
        .collect();
    if pending.is_empty() {
        return Ok(0);
    }
    let resolved: Vec<(usize, Result<Answer, BenchError>)> =
        futures::stream::iter(pending.into_iter().map(|i| {
            let channel = channel.clone();
            let id = ids[i];
            async move { (i, poll_status(channel, endpoint, id, deadline).await) }
        }))
        .buffer_unordered(STATUS_CONCURRENCY)
        .collect()
        .await;
    let mut count = 0;
    for (i, answer) in resolved {
        let answer = answer?;
        if answer.is_final() {
            count += 1;
        }
        answers[i] = answer;
    }
    Ok(count)
}

async fn poll_status(
    channel: Channel,
    endpoint: &str,
    id: TxId,
    deadline: Instant,
) -> Result<Answer, BenchError> {
    let mut pause = POLL_FIRST;
    loop {
        let mut client = client(channel.clone());
        let call = client.get_transaction_status(v1::GetTransactionStatusRequest {
            tx_id: id.as_bytes().to_vec().into(),
        });
        let result = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| rpc_error("GetTransactionStatus", endpoint, "timed out".into()))?
            .map_err(|s| rpc_error("GetTransactionStatus", endpoint, s.to_string()))?
            .into_inner()
            .result;
        let answer = match &result {
            // Still on its way: the status is not final yet, keep asking.
            Some(r) if matches!(r.status(), TxStatus::Pending | TxStatus::Unknown) => {
                Answer::Pending
            }
            r => Answer::from_result(r.as_ref(), &id),
        };
        if answer != Answer::Pending || Instant::now() + pause > deadline {
            return Ok(answer);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}
