//! [`GrpcLedger`]: the [`Ledger`] over a cluster's public gRPC API (`cbdc.v1.Sentinel`).

use std::time::Duration;

use cbdc_core::{Amount, Limits, Transaction, TxId, UhsId};
use cbdc_proto::convert::MAX_QUERY_ITEMS;
use cbdc_proto::status::{self, validation_failure_from_status};
use cbdc_proto::v1;
use cbdc_proto::v1::sentinel_client::SentinelClient;
use cbdc_proto::MAX_MESSAGE_BYTES;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::ledger::{Final, Ledger, LedgerError, LedgerInfo, OutputStatus, Rejection, TxStatus};

/// How long connecting to a sentinel may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a status query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// First and largest pause between status polls while a submitted transaction is
/// pending (atomizer clusters answer PENDING until the block that settles it).
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);

/// A sentinel client. Cloning the channel is cheap, so each call uses its own client
/// handle and `&self` methods need no lock.
#[derive(Clone, Debug)]
pub struct GrpcLedger {
    client: SentinelClient<Channel>,
    endpoint: String,
    /// Longest [`Ledger::submit`] waits for a final answer before it reports a timeout.
    submit_timeout: Duration,
}

/// `host:port` becomes `http://host:port`; a URL is kept as it is.
fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

impl GrpcLedger {
    /// Connects to the sentinel at `endpoint` (`host:port` or `http://host:port`), so that
    /// an unreachable sentinel is reported before anything is recorded or submitted.
    /// `submit_timeout` bounds the wait for a transaction's final answer.
    pub async fn connect(endpoint: &str, submit_timeout: Duration) -> Result<Self, LedgerError> {
        let url = endpoint_url(endpoint);
        let invalid = |detail: String| LedgerError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            detail,
        };
        let target = Endpoint::from_shared(url.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = target
            .connect()
            .await
            .map_err(|e| LedgerError::Unreachable {
                endpoint: url.clone(),
                detail: error_chain(&e),
            })?;
        let client = SentinelClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(GrpcLedger {
            client,
            endpoint: url,
            submit_timeout,
        })
    }

    /// The endpoint this ledger talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Maps a failed call: `UNAVAILABLE` (transport or back end down) is unreachable,
    /// `DEADLINE_EXCEEDED` a timeout, anything else an unexpected answer.
    fn status_error(&self, status: tonic::Status, waited: Duration) -> LedgerError {
        match status.code() {
            tonic::Code::Unavailable => LedgerError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: status.message().to_string(),
            },
            // A connection that broke mid-call surfaces as UNKNOWN from the transport.
            tonic::Code::Unknown if is_transport(&status) => LedgerError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: status.message().to_string(),
            },
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                LedgerError::Timeout { after: waited }
            }
            code => LedgerError::Protocol(format!("{code:?}: {}", status.message())),
        }
    }

    async fn poll_until_final(&self, id: TxId, deadline: Instant) -> Result<Final, LedgerError> {
        let mut pause = POLL_FIRST;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(LedgerError::Timeout {
                    after: self.submit_timeout,
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(POLL_MAX);
            match self.tx_status(id).await {
                Ok(TxStatus::Final(f)) => return Ok(f),
                Ok(TxStatus::Pending | TxStatus::Unknown) => {}
                // A sentinel restarting under us: keep trying until the deadline.
                Err(LedgerError::Unreachable { .. } | LedgerError::Timeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a status came from the transport (no connection) rather than the server.
fn is_transport(status: &tonic::Status) -> bool {
    let message = status.message();
    message.contains("transport error") || message.contains("connection")
}

/// An error with its sources, which for connection errors hold the useful part
/// ("Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        // Transport errors often repeat their source's words; say each thing once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Reads a [`v1::TransactionResult`].
fn read_result(result: &v1::TransactionResult) -> Result<TxStatus, LedgerError> {
    let s = status::tx_status("transaction_result.status", result.status)
        .map_err(|e| LedgerError::Protocol(e.to_string()))?;
    Ok(match s {
        v1::TxStatus::Pending => TxStatus::Pending,
        v1::TxStatus::Confirmed => TxStatus::Final(Final::Confirmed),
        v1::TxStatus::Rejected => {
            let reason = v1::RejectReason::try_from(result.reject_reason)
                .map(|r| {
                    r.as_str_name()
                        .trim_start_matches("REJECT_REASON_")
                        .to_string()
                })
                .unwrap_or_else(|_| format!("UNKNOWN_REASON_{}", result.reject_reason));
            TxStatus::Final(Final::Rejected(Rejection {
                reason,
                message: result.message.clone(),
                input_index: result.input_index,
            }))
        }
        v1::TxStatus::Invalid => TxStatus::Final(Final::Invalid {
            message: result.message.clone(),
        }),
        v1::TxStatus::Unknown | v1::TxStatus::Unspecified => TxStatus::Unknown,
    })
}

impl Ledger for GrpcLedger {
    /// Submits with `wait` set (so an atomizer cluster answers when the block settles
    /// it), then polls the transaction's status while it is still pending, until
    /// `submit_timeout`.
    fn submit<'a>(&'a self, tx: &'a Transaction) -> BoxFuture<'a, Result<Final, LedgerError>> {
        Box::pin(async move {
            let started = Instant::now();
            let deadline = started + self.submit_timeout;
            let id = tx.tx_id();
            let wait_ms = u32::try_from(self.submit_timeout.as_millis()).unwrap_or(u32::MAX);
            let mut request = tonic::Request::new(v1::SubmitTransactionRequest {
                transaction: Some(tx.into()),
                options: Some(v1::SubmitOptions {
                    wait: true,
                    wait_timeout_ms: wait_ms,
                }),
            });
            request.set_timeout(self.submit_timeout);
            let mut client = self.client.clone();
            let answer =
                tokio::time::timeout(self.submit_timeout, client.submit_transaction(request)).await;
            let response = match answer {
                Err(_) => {
                    return Err(LedgerError::Timeout {
                        after: self.submit_timeout,
                    })
                }
                Ok(Err(status)) => {
                    if let Some(failure) = validation_failure_from_status(&status) {
                        return Ok(Final::Invalid {
                            message: failure.message,
                        });
                    }
                    return Err(self.status_error(status, self.submit_timeout));
                }
                Ok(Ok(response)) => response.into_inner(),
            };
            let result = response
                .result
                .ok_or_else(|| LedgerError::Protocol("submit answer without a result".into()))?;
            match read_result(&result)? {
                TxStatus::Final(f) => Ok(f),
                TxStatus::Pending | TxStatus::Unknown => self.poll_until_final(id, deadline).await,
            }
        })
    }

    fn tx_status(&self, id: TxId) -> BoxFuture<'_, Result<TxStatus, LedgerError>> {
        Box::pin(async move {
            let mut request = tonic::Request::new(v1::GetTransactionStatusRequest {
                tx_id: id.as_bytes().to_vec().into(),
            });
            request.set_timeout(QUERY_TIMEOUT);
            let mut client = self.client.clone();
            let response = client
                .get_transaction_status(request)
                .await
                .map_err(|s| self.status_error(s, QUERY_TIMEOUT))?
                .into_inner();
            let result = response
                .result
                .ok_or_else(|| LedgerError::Protocol("status answer without a result".into()))?;
            read_result(&result)
        })
    }

    /// Asks in chunks of at most [`MAX_QUERY_ITEMS`], the sentinel's cap per request.
    fn output_status<'a>(
        &'a self,
        ids: &'a [UhsId],
    ) -> BoxFuture<'a, Result<Vec<OutputStatus>, LedgerError>> {
        Box::pin(async move {
            let mut statuses = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(MAX_QUERY_ITEMS) {
                let mut request = tonic::Request::new(v1::GetOutputStatusRequest {
                    outputs: chunk.iter().map(v1::OutputRef::from).collect(),
                });
                request.set_timeout(QUERY_TIMEOUT);
                let mut client = self.client.clone();
                let entries = client
                    .get_output_status(request)
                    .await
                    .map_err(|s| self.status_error(s, QUERY_TIMEOUT))?
                    .into_inner()
                    .outputs;
                if entries.len() != chunk.len() {
                    return Err(LedgerError::Protocol(format!(
                        "asked about {} outputs, got {} answers",
                        chunk.len(),
                        entries.len()
                    )));
                }
                for (id, entry) in chunk.iter().zip(&entries) {
                    if entry.uhs_id[..] != id.as_bytes()[..] {
                        return Err(LedgerError::Protocol(
                            "output status answers out of order".into(),
                        ));
                    }
                    let s = status::output_status("output_status_entry.status", entry.status)
                        .map_err(|e| LedgerError::Protocol(e.to_string()))?;
                    let value = || {
                        entry.value.map(Amount::from_cents).ok_or_else(|| {
                            LedgerError::Protocol("unspent output without a value".into())
                        })
                    };
                    statuses.push(match s {
                        v1::OutputStatus::Unspent => OutputStatus::Unspent(value()?),
                        v1::OutputStatus::Locked => OutputStatus::Locked(value()?),
                        _ => OutputStatus::SpentOrAbsent,
                    });
                }
            }
            Ok(statuses)
        })
    }

    fn info(&self) -> BoxFuture<'_, Result<LedgerInfo, LedgerError>> {
        Box::pin(async move {
            let mut request = tonic::Request::new(v1::GetInfoRequest {});
            request.set_timeout(QUERY_TIMEOUT);
            let mut client = self.client.clone();
            let info = client
                .get_info(request)
                .await
                .map_err(|s| self.status_error(s, QUERY_TIMEOUT))?
                .into_inner();
            let architecture = match v1::Architecture::try_from(info.architecture) {
                Ok(v1::Architecture::TwoPhaseCommit) => "2pc",
                Ok(v1::Architecture::Atomizer) => "atomizer",
                _ => "unknown",
            }
            .to_string();
            let issuer = if info.issuer_public_key.is_empty() {
                None
            } else {
                Some(
                    cbdc_proto::convert::public_key(
                        "get_info_response.issuer_public_key",
                        &info.issuer_public_key,
                    )
                    .map_err(|e| LedgerError::Protocol(e.to_string()))?,
                )
            };
            let limits = match &info.limits {
                Some(l) => Limits::try_from(l).map_err(|e| LedgerError::Protocol(e.to_string()))?,
                None => Limits::default(),
            };
            Ok(LedgerInfo {
                architecture,
                issuer,
                limits,
                version: info.version,
            })
        })
    }
}
