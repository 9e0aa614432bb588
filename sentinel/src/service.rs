//! The public `cbdc.v1.Sentinel` gRPC service and [`serve`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cbdc_core::{HasTxId, IdentifiedTransaction};

use cbdc_proto::v1;
use cbdc_proto::v1::sentinel_server::{Sentinel, SentinelServer};
use cbdc_proto::{CONNECTION_WINDOW_BYTES, MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::{Backend, Outcome};
use crate::params::{ParamsError, SentinelParams};
use crate::pipeline::{Pipeline, SubmitError};

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The parameters are unusable.
    #[error("invalid sentinel parameters: {0}")]
    Params(#[from] ParamsError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The `cbdc.v1.Sentinel` service over a [`Pipeline`].
#[derive(Clone)]
pub struct SentinelService {
    pipeline: Pipeline,
    info: v1::GetInfoResponse,
    max_stream_in_flight: usize,
}

impl SentinelService {
    /// The service answering from `pipeline`, describing itself from `params`.
    pub fn new(params: &SentinelParams, pipeline: Pipeline) -> Self {
        let mut info = v1::GetInfoResponse {
            issuer_public_key: params
                .validator
                .issuer
                .map(|k| k.0.to_vec().into())
                .unwrap_or_default(),
            limits: Some((&params.validator.limits).into()),
            attestation_threshold: params.attestation_threshold,
            shard_count: params.shard_map.len() as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            sentinel_public_key: params.key.public_key().0.to_vec().into(),
            max_message_bytes: MAX_MESSAGE_BYTES as u64,
            ..Default::default()
        };
        info.set_architecture(pipeline.architecture());
        SentinelService {
            pipeline,
            info,
            max_stream_in_flight: params.max_stream_in_flight.max(1),
        }
    }

    /// As a tonic service with the public message size limits.
    pub fn into_server(self) -> SentinelServer<Self> {
        SentinelServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Longest wait a caller may ask for with `SubmitOptions.wait_timeout_ms`.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Submits `tx` and, when the back end answers PENDING (atomizer) and the caller asked to
/// wait, waits for the final status up to the caller's timeout (the sentinel's request
/// timeout when 0); a wait that expires is answered PENDING.
async fn submit_and_wait(
    pipeline: &Pipeline,
    tx: IdentifiedTransaction,
    options: Option<&v1::SubmitOptions>,
) -> Result<v1::TransactionResult, SubmitError> {
    let id = tx.id();
    let outcome = pipeline.submit(tx).await?;
    match options {
        Some(options) if options.wait && outcome == Outcome::Pending => {
            let timeout = match options.wait_timeout_ms {
                0 => pipeline.request_timeout(),
                ms => Duration::from_millis(u64::from(ms)).min(MAX_WAIT),
            };
            let state = pipeline.await_final(id, timeout).await?;
            Ok(state.to_result(&id))
        }
        _ => Ok(outcome.to_result(&id)),
    }
}

/// Answers one stream request: a result, or the status that ends the stream (the back
/// end is unreachable or broken).
async fn answer_stream_request(
    pipeline: &Pipeline,
    request: v1::SubmitTransactionsRequest,
) -> Result<v1::SubmitTransactionsResponse, Status> {
    let result = match request.to_transaction() {
        Err(e) => v1::TransactionResult::malformed(&e),
        Ok(tx) => {
            let tx = IdentifiedTransaction::new(tx);
            let id = tx.id();
            match submit_and_wait(pipeline, tx, request.options.as_ref()).await {
                Ok(result) => result,
                Err(SubmitError::Invalid(e)) => v1::TransactionResult::invalid(&id, &e),
                Err(e) => return Err(e.to_status()),
            }
        }
    };
    Ok(v1::SubmitTransactionsResponse {
        request_id: request.request_id,
        result: Some(result),
    })
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<v1::SubmitTransactionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Sentinel for SentinelService {
    async fn submit_transaction(
        &self,
        request: Request<v1::SubmitTransactionRequest>,
    ) -> Result<Response<v1::SubmitTransactionResponse>, Status> {
        let tx = IdentifiedTransaction::new(request.get_ref().to_transaction()?);
        let result = submit_and_wait(&self.pipeline, tx, request.get_ref().options.as_ref())
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(v1::SubmitTransactionResponse {
            result: Some(result),
        }))
    }

    type SubmitTransactionsStream = ResponseStream;

    /// Reads requests while fewer than `max_stream_in_flight` are unanswered, works on
    /// them concurrently and sends answers in completion order. The response stream
    /// ends after the last answer once the client closes its side, or with an error
    /// status when the back end is unreachable.
    ///
    /// The requests of one stream are futures polled by the stream's own task, not a
    /// task each: a spawn per request (its allocation, scheduling and wake-ups) cost
    /// 1–2 % of a loaded cluster's CPU, and the work of a request before it waits on the
    /// pipeline is a hash of the transaction, cheap to run in line.
    async fn submit_transactions(
        &self,
        request: Request<Streaming<v1::SubmitTransactionsRequest>>,
    ) -> Result<Response<Self::SubmitTransactionsStream>, Status> {
        let mut inbound = request.into_inner();
        let limit = self.max_stream_in_flight;
        let (answers, outbound) = mpsc::channel(limit);
        let pipeline = self.pipeline.clone();
        tokio::spawn(async move {
            let mut in_flight = FuturesUnordered::new();
            let mut reading = true;
            while reading || !in_flight.is_empty() {
                tokio::select! {
                    Some(response) = in_flight.next() => {
                        if answers.send(response).await.is_err() {
                            // The client has gone; nothing to answer.
                            break;
                        }
                    }
                    next = inbound.message(), if reading && in_flight.len() < limit => {
                        match next {
                            Ok(Some(request)) => {
                                in_flight.push(answer_stream_request(&pipeline, request));
                            }
                            Ok(None) => reading = false,
                            Err(status) => {
                                tracing::debug!(%status, "submission stream broke");
                                reading = false;
                            }
                        }
                    }
                    _ = answers.closed() => break,
                }
            }
        });
        let stream: ResponseStream = Box::pin(ReceiverStream::new(outbound));
        Ok(Response::new(stream))
    }

    async fn get_transaction_status(
        &self,
        request: Request<v1::GetTransactionStatusRequest>,
    ) -> Result<Response<v1::GetTransactionStatusResponse>, Status> {
        let id = request.get_ref().to_tx_id()?;
        let state = self
            .pipeline
            .tx_status(id)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(v1::GetTransactionStatusResponse {
            result: Some(state.to_result(&id)),
        }))
    }

    async fn get_output_status(
        &self,
        request: Request<v1::GetOutputStatusRequest>,
    ) -> Result<Response<v1::GetOutputStatusResponse>, Status> {
        let ids = request.get_ref().to_uhs_ids()?;
        let states = self
            .pipeline
            .output_status(ids.clone())
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(v1::GetOutputStatusResponse {
            outputs: ids
                .iter()
                .zip(&states)
                .map(|(id, state)| state.to_entry(id))
                .collect(),
        }))
    }

    async fn get_info(
        &self,
        _request: Request<v1::GetInfoRequest>,
    ) -> Result<Response<v1::GetInfoResponse>, Status> {
        Ok(Response::new(self.info.clone()))
    }
}

/// Runs a sentinel on `listener` in front of `backend` until `shutdown` completes, then
/// stops accepting calls and returns once the calls in progress are answered.
pub async fn serve(
    listener: TcpListener,
    params: SentinelParams,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    params.validate()?;
    let pipeline = Pipeline::new(&params, backend);
    serve_pipeline(listener, &params, pipeline, shutdown).await
}

/// [`serve`] with a pipeline the caller made (and may keep a clone of, to watch it).
pub async fn serve_pipeline(
    listener: TcpListener,
    params: &SentinelParams,
    pipeline: Pipeline,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    params.validate()?;
    let service = SentinelService::new(params, pipeline);
    tracing::info!(addr = ?listener.local_addr().ok(), "sentinel serving");
    tonic::transport::Server::builder()
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(cbdc_proto::incoming(listener), shutdown)
        .await?;
    Ok(())
}
