//! Following the chain of blocks: every role that applies or records blocks (shards, the
//! archiver, the watchtower) reads them through [`follow`].
//!
//! Blocks come from any atomizer replica (blocks are replicated state, so a follower
//! serves them as well as the leader). Heights the atomizer has pruned come from the
//! archiver. The receiver gets every block from the first height asked for, in order and
//! without gaps, however often sources fail or the leader changes.

use std::time::Duration;

use cbdc_consensus::network::lazy_channel;
use cbdc_proto::convert::Block;
use cbdc_proto::v1::archiver_client::ArchiverClient;
use cbdc_proto::v1::atomizer_client::AtomizerClient;
use cbdc_proto::{v1, MAX_INTERNAL_MESSAGE_BYTES};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// Where blocks come from.
#[derive(Debug, Clone)]
pub struct BlockSources {
    /// Client endpoints (`host:port`) of the atomizer replicas.
    pub atomizer: Vec<String>,
    /// The archiver's endpoint; `None` for the archiver itself.
    pub archiver: Option<String>,
    /// Pause before trying a source again after a failure.
    pub retry: Duration,
}

/// Blocks buffered between the network and a slow consumer.
const FEED_BUFFER: usize = 64;

/// Streams blocks from `from_height` on into the returned receiver until `shutdown` is
/// set or the receiver is dropped.
pub fn follow(
    sources: BlockSources,
    from_height: u64,
    shutdown: watch::Receiver<bool>,
) -> mpsc::Receiver<Block> {
    let (tx, rx) = mpsc::channel(FEED_BUFFER);
    tokio::spawn(run(sources, from_height.max(1), tx, shutdown));
    rx
}

/// What ended one attempt to read from a source.
enum Ended {
    /// The consumer or the process is going away.
    Stop,
    /// The atomizer no longer holds the next height: read it from the archiver.
    Pruned,
    /// The source failed or closed; try again (another replica) after a pause.
    Retry,
}

async fn run(
    sources: BlockSources,
    mut next: u64,
    out: mpsc::Sender<Block>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut replica = 0usize;
    let mut from_archive = false;
    loop {
        if *shutdown.borrow() || out.is_closed() {
            return;
        }
        let ended = if from_archive {
            match &sources.archiver {
                Some(archiver) => read_archive(archiver, &mut next, &out).await,
                None => Ended::Retry,
            }
        } else if let Some(endpoint) = sources
            .atomizer
            .get(replica % sources.atomizer.len().max(1))
        {
            read_atomizer(endpoint, &mut next, &out, &mut shutdown).await
        } else {
            return;
        };
        match ended {
            Ended::Stop => return,
            Ended::Pruned => {
                if sources.archiver.is_none() {
                    tracing::error!(height = next, "the atomizer pruned blocks this follower has not read, and there is no archiver");
                }
                from_archive = true;
                continue;
            }
            Ended::Retry => {
                // After an archive read, the atomizer is tried again for the newest blocks.
                if !from_archive {
                    replica += 1;
                }
                from_archive = false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(sources.retry) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn channel(endpoint: &str) -> Option<Channel> {
    match lazy_channel(endpoint) {
        Ok(channel) => Some(channel),
        Err(e) => {
            tracing::error!(%endpoint, error = %e, "bad block source endpoint");
            None
        }
    }
}

/// Forwards one wire block if it is the next height; `false` when the stream must be
/// abandoned (a gap, a malformed block or a gone consumer).
async fn forward(
    block: &v1::Block,
    next: &mut u64,
    out: &mpsc::Sender<Block>,
) -> Result<(), Ended> {
    if block.height < *next {
        return Ok(());
    }
    if block.height > *next {
        tracing::warn!(
            expected = *next,
            got = block.height,
            "block source skipped heights"
        );
        return Err(Ended::Retry);
    }
    let block = Block::try_from(block).map_err(|e| {
        tracing::warn!(height = *next, error = %e, "malformed block from source");
        Ended::Retry
    })?;
    out.send(block).await.map_err(|_| Ended::Stop)?;
    *next += 1;
    Ok(())
}

async fn read_atomizer(
    endpoint: &str,
    next: &mut u64,
    out: &mpsc::Sender<Block>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let Some(channel) = channel(endpoint) else {
        return Ended::Retry;
    };
    let mut client = AtomizerClient::new(channel)
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES);
    let request = v1::SubscribeBlocksRequest { from_height: *next };
    let mut stream = match client.subscribe_blocks(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::OutOfRange => return Ended::Pruned,
        Err(status) => {
            tracing::debug!(%endpoint, %status, "atomizer block stream refused");
            return Ended::Retry;
        }
    };
    loop {
        let message = tokio::select! {
            message = stream.message() => message,
            _ = shutdown.changed() => return Ended::Stop,
        };
        match message {
            Ok(Some(block)) => {
                if let Err(ended) = forward(&block, next, out).await {
                    return ended;
                }
            }
            Ok(None) => return Ended::Retry,
            Err(status) if status.code() == tonic::Code::OutOfRange => return Ended::Pruned,
            Err(status) => {
                tracing::debug!(%endpoint, %status, "atomizer block stream broke");
                return Ended::Retry;
            }
        }
    }
}

/// Reads everything the archiver holds from `next` on; then the caller goes back to the
/// atomizer.
async fn read_archive(endpoint: &str, next: &mut u64, out: &mpsc::Sender<Block>) -> Ended {
    let Some(channel) = channel(endpoint) else {
        return Ended::Retry;
    };
    let mut client = ArchiverClient::new(channel)
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES);
    let request = v1::GetBlocksRequest {
        from_height: *next,
        to_height: u64::MAX,
    };
    let mut stream = match client.get_blocks(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            tracing::debug!(%endpoint, %status, "archive unavailable");
            return Ended::Retry;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(block)) => {
                if let Err(ended) = forward(&block, next, out).await {
                    return ended;
                }
            }
            Ok(None) => return Ended::Retry,
            Err(status) => {
                tracing::debug!(%endpoint, %status, "archive stream broke");
                return Ended::Retry;
            }
        }
    }
}
