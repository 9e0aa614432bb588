//! The load driver's wire: `SubmitTransactions` requests encoded before the clock starts.
//!
//! The embedded cluster runs in the harness's own process, so whatever the harness does
//! per transaction while the clock runs is CPU taken from the cluster it measures.
//! Encoding each request as it was sent cost about 1 % of a run's CPU (`perf`, 2PC, one
//! replica); like signing, it is now done during preparation, and the stream copies the
//! prepared bytes into its frames. Answers are decoded as any client decodes them.

use cbdc_proto::v1;
use futures::Stream;
use prost::bytes::{BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::GrpcMethod;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use tonic_prost::ProstDecoder;

/// The service and method of the stream, as the generated client names them.
const SERVICE: &str = "cbdc.v1.Sentinel";
const METHOD: &str = "SubmitTransactions";
const PATH: &str = "/cbdc.v1.Sentinel/SubmitTransactions";

/// One `SubmitTransactionsRequest`, protobuf-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRequest(Bytes);

impl EncodedRequest {
    /// Encodes `request`.
    pub fn new(request: &v1::SubmitTransactionsRequest) -> Self {
        EncodedRequest(request.encode_to_vec().into())
    }

    /// The encoded message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Opens a `SubmitTransactions` stream on `channel` that sends `requests` as they are
/// and yields the decoded answers.
pub async fn submit_transactions(
    channel: Channel,
    requests: impl Stream<Item = EncodedRequest> + Send + 'static,
) -> Result<Streaming<v1::SubmitTransactionsResponse>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("the channel was not ready: {e}")))?;
    let mut request = tonic::Request::new(requests);
    request
        .extensions_mut()
        .insert(GrpcMethod::new(SERVICE, METHOD));
    let response = grpc
        .streaming(request, PathAndQuery::from_static(PATH), PreEncoded)
        .await?;
    Ok(response.into_inner())
}

/// Sends [`EncodedRequest`]s as they are; decodes answers with prost.
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = EncodedRequest;
    type Decode = v1::SubmitTransactionsResponse;
    type Encoder = CopyBytes;
    type Decoder = ProstDecoder<v1::SubmitTransactionsResponse>;

    fn encoder(&mut self) -> CopyBytes {
        CopyBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Copies an already encoded message into the frame.
struct CopyBytes;

impl Encoder for CopyBytes {
    type Item = EncodedRequest;
    type Error = Status;

    fn encode(&mut self, item: EncodedRequest, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(item.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_encoded_request_decodes_to_the_request() {
        let request = v1::SubmitTransactionsRequest {
            request_id: 42,
            transaction: Some(v1::Transaction {
                nonce: vec![7u8; 32].into(),
                ..Default::default()
            }),
            options: Some(v1::SubmitOptions::default()),
        };
        let encoded = EncodedRequest::new(&request);
        let decoded = v1::SubmitTransactionsRequest::decode(encoded.as_bytes()).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn test_path_names_the_generated_method() {
        assert_eq!(PATH, format!("/{SERVICE}/{METHOD}"));
    }
}
