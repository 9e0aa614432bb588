//! The archiver: every block, forever, on RocksDB, served over `cbdc.v1.Archiver`.
//!
//! The atomizer keeps only the recent blocks its double-spend window needs; a shard that
//! restarts or lags far behind, and the watchtower, read older heights here (through
//! [`follow`](crate::follow), which falls back to the archiver on `OUT_OF_RANGE`). The
//! archiver is what lets the atomizer forget: once blocks are durably stored here it
//! sends `Atomizer.Prune` to the atomizer leader.
//!
//! ```text
//!  atomizer replicas ──SubscribeBlocks──▶ follower task ──synced write batch──▶ RocksDB
//!         ▲                                    │ highest height (watch)           │
//!         └──────────── Prune(below) ◀── pruner task                ArchiverService (gRPC)
//! ```
//!
//! Storage: one RocksDB directory with one column family, [`CF_ARCHIVE_BLOCKS`]: the key
//! is the height as a big-endian `u64` (so byte order is height order and the first and
//! last keys are the lowest and highest heights), the value a bincode [`ArchivedBlock`].
//! Blocks are written in write batches synced to disk before the highest height is
//! published, so a height that a Prune request or a reader sees is never lost by a crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cbdc_consensus::client::LeaderClient;
use cbdc_consensus::ConsensusError;
use cbdc_core::{CompactTransaction, TxId};
use cbdc_proto::convert::{Block, Rejection};
use cbdc_proto::v1::archiver_server::{Archiver as ArchiverRpc, ArchiverServer};
use cbdc_proto::v1::atomizer_client::AtomizerClient;
use cbdc_proto::{v1, MAX_INTERNAL_MESSAGE_BYTES};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::feed::{follow, BlockSources};

/// The column family holding the blocks, by big-endian height.
pub const CF_ARCHIVE_BLOCKS: &str = "archive_blocks";

/// Most blocks written in one write batch (the feed buffers fewer, so this only bounds a
/// batch should that change).
const MAX_WRITE_BATCH_BLOCKS: usize = 256;

/// Blocks read from RocksDB at a time for a `GetBlocks` stream, and blocks buffered
/// between that reader and a slow client: bounds the memory one stream holds.
const STREAM_CHUNK_BLOCKS: u64 = 16;

/// How long a Prune call may look for the atomizer leader before it counts as failed
/// (and is tried again after [`ArchiverParams::retry`]).
const PRUNE_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong in the archiver.
#[derive(Debug, thiserror::Error)]
pub enum ArchiverError {
    /// The parameters cannot work.
    #[error("invalid archiver parameters: {0}")]
    Config(String),
    /// The RocksDB directory could not be opened (missing permissions, or still open in
    /// this or another process).
    #[error("opening the archive at {path}: {source}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// RocksDB's complaint.
        source: rocksdb::Error,
    },
    /// RocksDB failed reading or writing.
    #[error("archive storage: {0}")]
    Storage(#[from] rocksdb::Error),
    /// A stored key or block could not be decoded.
    #[error("corrupt archive record {what}: {reason}")]
    Corrupt {
        /// Which record (the key or the height).
        what: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// A block could not be encoded for storage.
    #[error("encoding block {height}: {reason}")]
    Encode {
        /// The block's height.
        height: u64,
        /// The encoder's complaint.
        reason: String,
    },
    /// The block feed skipped heights (it must not: the archive would have a hole).
    #[error("block feed skipped heights: expected {expected}, got {got}")]
    Gap {
        /// The next height the archive needs.
        expected: u64,
        /// The height that came.
        got: u64,
    },
    /// The archiver is shutting down (its database is being closed).
    #[error("the archiver is shutting down")]
    ShuttingDown,
    /// A background task panicked or was cancelled.
    #[error("archiver task failed: {0}")]
    Task(String),
}

impl ArchiverError {
    /// The gRPC answer for a failure while serving a read.
    fn to_status(&self) -> Status {
        match self {
            ArchiverError::ShuttingDown => Status::unavailable(self.to_string()),
            ArchiverError::Corrupt { .. } => Status::data_loss(self.to_string()),
            _ => Status::internal(self.to_string()),
        }
    }
}

/// How to run an archiver.
#[derive(Debug, Clone)]
pub struct ArchiverParams {
    /// The RocksDB directory (created when missing). The archive is the only copy of
    /// pruned blocks: put it on durable storage.
    pub data_dir: PathBuf,
    /// Client endpoints (`host:port`) of the atomizer replicas: blocks are read from any
    /// of them, and Prune is sent to their leader.
    pub atomizer: Vec<String>,
    /// After this many blocks are stored durably and not yet acknowledged as prunable,
    /// ask the atomizer to prune below the archive's highest height + 1. `0` never asks
    /// (the atomizer then keeps every block).
    pub prune_every: u64,
    /// Pause before trying a block source or a failed Prune again.
    pub retry: Duration,
}

impl ArchiverParams {
    /// Refuses parameters that cannot work.
    pub fn validate(&self) -> Result<(), ArchiverError> {
        if self.atomizer.is_empty() {
            return Err(ArchiverError::Config(
                "no atomizer endpoints to read blocks from".into(),
            ));
        }
        if let Some(bad) = self.atomizer.iter().find(|e| e.trim().is_empty()) {
            return Err(ArchiverError::Config(format!(
                "empty atomizer endpoint {bad:?}"
            )));
        }
        if self.retry.is_zero() {
            return Err(ArchiverError::Config(
                "retry must be longer than 0 (a failing source would be retried in a tight loop)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A block as the archive stores it (bincode). A mirror of [`Block`] with the reject
/// reason as its wire number, because the generated enum has no serde support; the
/// reason is checked again when the block is read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedBlock {
    /// The block's height.
    pub height: u64,
    /// Confirmed transactions, in order.
    pub transactions: Vec<CompactTransaction>,
    /// Rejections decided while the block was built.
    pub rejections: Vec<ArchivedRejection>,
}

/// One rejection of an [`ArchivedBlock`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedRejection {
    /// The refused transaction.
    pub tx_id: TxId,
    /// The [`v1::RejectReason`] as its wire number.
    pub reason: i32,
    /// The input at fault, when known.
    pub input_index: Option<u32>,
    /// The height at which it was refused.
    pub height: u64,
    /// The reason in words.
    pub message: String,
}

impl From<&Block> for ArchivedBlock {
    fn from(block: &Block) -> Self {
        ArchivedBlock {
            height: block.height,
            transactions: block.transactions.clone(),
            rejections: block
                .rejections
                .iter()
                .map(|r| ArchivedRejection {
                    tx_id: r.tx_id,
                    reason: r.reason.into(),
                    input_index: r.input_index,
                    height: r.height,
                    message: r.message.clone(),
                })
                .collect(),
        }
    }
}

impl ArchivedBlock {
    /// The core form; refuses an unknown or unspecified reject reason.
    pub fn to_block(&self) -> Result<Block, ArchiverError> {
        let rejections = self
            .rejections
            .iter()
            .map(|r| {
                let reason = cbdc_proto::status::reject_reason("rejection.reason", r.reason)
                    .map_err(|e| ArchiverError::Corrupt {
                        what: format!("block {}", self.height),
                        reason: e.to_string(),
                    })?;
                Ok(Rejection {
                    tx_id: r.tx_id,
                    reason,
                    input_index: r.input_index,
                    height: r.height,
                    message: r.message.clone(),
                    input_uhs_id: None,
                })
            })
            .collect::<Result<Vec<_>, ArchiverError>>()?;
        Ok(Block {
            height: self.height,
            transactions: self.transactions.clone(),
            rejections,
        })
    }
}

/// The RocksDB key of `height`.
fn key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

/// The height of a stored key.
fn height_of(key: &[u8]) -> Result<u64, ArchiverError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| ArchiverError::Corrupt {
        what: format!("key {key:02x?}"),
        reason: format!("{} bytes, not 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn encode(block: &Block) -> Result<Vec<u8>, ArchiverError> {
    bincode::serialize(&ArchivedBlock::from(block)).map_err(|e| ArchiverError::Encode {
        height: block.height,
        reason: e.to_string(),
    })
}

/// Decodes the value stored under `height` into a wire block.
fn decode(height: u64, value: &[u8]) -> Result<v1::Block, ArchiverError> {
    let archived: ArchivedBlock =
        bincode::deserialize(value).map_err(|e| ArchiverError::Corrupt {
            what: format!("block {height}"),
            reason: e.to_string(),
        })?;
    if archived.height != height {
        return Err(ArchiverError::Corrupt {
            what: format!("block {height}"),
            reason: format!("stored under height {height} but says {}", archived.height),
        });
    }
    Ok(v1::Block::from(&archived.to_block()?))
}

fn blocks_cf(db: &DB) -> Result<&rocksdb::ColumnFamily, ArchiverError> {
    db.cf_handle(CF_ARCHIVE_BLOCKS)
        .ok_or_else(|| ArchiverError::Corrupt {
            what: "column families".into(),
            reason: format!("column family {CF_ARCHIVE_BLOCKS:?} is missing"),
        })
}

/// Opens (creates) the archive at `path`; answers the lowest and highest stored
/// heights (0 and 0 when empty).
fn open(path: &Path) -> Result<(DB, u64, u64), ArchiverError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let mut cf_opts = Options::default();
    cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let db = DB::open_cf_descriptors(
        &opts,
        path,
        [ColumnFamilyDescriptor::new(CF_ARCHIVE_BLOCKS, cf_opts)],
    )
    .map_err(|source| ArchiverError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let (lowest, highest) = {
        let cf = blocks_cf(&db)?;
        let first = db.iterator_cf(cf, IteratorMode::Start).next().transpose()?;
        let last = db.iterator_cf(cf, IteratorMode::End).next().transpose()?;
        match (first, last) {
            (Some((first, _)), Some((last, _))) => (height_of(&first)?, height_of(&last)?),
            _ => (0, 0),
        }
    };
    Ok((db, lowest, highest))
}

/// Writes `blocks` (consecutive, in order) in one write batch, synced to disk.
fn write_blocks(db: &DB, blocks: &[Block]) -> Result<(), ArchiverError> {
    let cf = blocks_cf(db)?;
    let mut batch = WriteBatch::default();
    for block in blocks {
        batch.put_cf(cf, key(block.height), encode(block)?);
    }
    let mut options = WriteOptions::default();
    options.set_sync(true);
    db.write_opt(batch, &options)?;
    Ok(())
}

/// Reads the stored block at `height`, if any.
fn read_block(db: &DB, height: u64) -> Result<Option<v1::Block>, ArchiverError> {
    let cf = blocks_cf(db)?;
    match db.get_pinned_cf(cf, key(height))? {
        Some(value) => decode(height, &value).map(Some),
        None => Ok(None),
    }
}

/// Reads blocks `from..=to`; every height must be stored (the archive has no holes).
fn read_range(db: &DB, from: u64, to: u64) -> Result<Vec<v1::Block>, ArchiverError> {
    let cf = blocks_cf(db)?;
    let start = key(from);
    let mut blocks = Vec::new();
    let mut expected = from;
    let iter = db.iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward));
    for item in iter {
        if expected > to {
            break;
        }
        let (k, value) = item?;
        let height = height_of(&k)?;
        if height != expected {
            return Err(ArchiverError::Corrupt {
                what: format!("block {expected}"),
                reason: format!("missing (the next stored height is {height})"),
            });
        }
        blocks.push(decode(height, &value)?);
        expected += 1;
    }
    if expected <= to {
        return Err(ArchiverError::Corrupt {
            what: format!("block {expected}"),
            reason: "missing (the archive ends before it)".into(),
        });
    }
    Ok(blocks)
}

/// What the gRPC service and the background tasks share.
struct Inner {
    /// Weak, so that a gRPC service still held by a running server does not keep
    /// RocksDB open past [`Archiver::shutdown`]; a read upgrades it for its duration.
    db: Weak<DB>,
    /// The lowest stored height; 0 while the archive is empty.
    lowest: AtomicU64,
    /// The highest height stored durably (0 when empty), published after each synced
    /// write. The pruner waits on it; tests and callers may too.
    highest: watch::Sender<u64>,
}

impl Inner {
    fn db(&self) -> Result<Arc<DB>, ArchiverError> {
        self.db.upgrade().ok_or(ArchiverError::ShuttingDown)
    }

    fn highest(&self) -> u64 {
        *self.highest.borrow()
    }
}

/// A running archiver: a follower task storing blocks, a pruner task, and the state its
/// [`ArchiverService`] reads.
pub struct Archiver {
    inner: Arc<Inner>,
    /// Our own reference to the database, dropped last by [`Archiver::shutdown`] on a
    /// thread we wait for, so that RocksDB is closed (and its directory lock released)
    /// when `shutdown` returns: a restart in the same process can open it again, and no
    /// close races the process's exit.
    db: Arc<DB>,
    shutdown_tx: watch::Sender<bool>,
    follower: JoinHandle<Result<(), ArchiverError>>,
    pruner: Option<JoinHandle<()>>,
}

impl Archiver {
    /// Opens (creates) the archive and starts following blocks from the height after its
    /// highest, and (unless [`ArchiverParams::prune_every`] is 0) asking the atomizer to
    /// prune what is stored.
    pub async fn start(params: ArchiverParams) -> Result<Archiver, ArchiverError> {
        params.validate()?;
        let path = params.data_dir.clone();
        let (db, lowest, highest) = tokio::task::spawn_blocking(move || open(&path))
            .await
            .map_err(|e| ArchiverError::Task(e.to_string()))??;
        let db = Arc::new(db);
        let (highest_tx, _) = watch::channel(highest);
        let inner = Arc::new(Inner {
            db: Arc::downgrade(&db),
            lowest: AtomicU64::new(lowest),
            highest: highest_tx,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let sources = BlockSources {
            atomizer: params.atomizer.clone(),
            archiver: None,
            retry: params.retry,
        };
        let blocks = follow(sources, highest + 1, shutdown_rx.clone());
        let follower = tokio::spawn(store_blocks(
            db.clone(),
            inner.clone(),
            blocks,
            shutdown_rx.clone(),
        ));
        let pruner = (params.prune_every > 0).then(|| {
            tokio::spawn(prune(
                LeaderClient::new(params.atomizer.clone()).with_timeout(PRUNE_TIMEOUT),
                inner.highest.subscribe(),
                params.prune_every,
                params.retry,
                shutdown_rx,
            ))
        });
        tracing::info!(dir = %params.data_dir.display(), lowest, highest, "archiver started");
        Ok(Archiver {
            inner,
            db,
            shutdown_tx,
            follower,
            pruner,
        })
    }

    /// The `cbdc.v1.Archiver` tonic service, accepting and sending messages up to
    /// [`MAX_INTERNAL_MESSAGE_BYTES`]. It stops answering (UNAVAILABLE) once the archiver
    /// is shut down.
    pub fn service(&self) -> ArchiverServer<ArchiverService> {
        ArchiverServer::new(ArchiverService {
            inner: self.inner.clone(),
        })
        .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
    }

    /// The highest height stored durably; 0 while the archive is empty.
    pub fn highest(&self) -> u64 {
        self.inner.highest()
    }

    /// The highest stored height as it changes, for waiting until a height is archived.
    pub fn watch_highest(&self) -> watch::Receiver<u64> {
        self.inner.highest.subscribe()
    }

    /// Stops following and pruning, waits for both tasks, then closes RocksDB and waits
    /// for the close (at most about 10 s for reads in flight to finish), so that the
    /// data directory can be opened again. Answers the follower's error, if it stopped
    /// on one.
    pub async fn shutdown(self) -> Result<(), ArchiverError> {
        let _ = self.shutdown_tx.send(true);
        let followed = match self.follower.await {
            Ok(result) => result,
            Err(e) => Err(ArchiverError::Task(e.to_string())),
        };
        if let Some(pruner) = self.pruner {
            if let Err(e) = pruner.await {
                tracing::warn!(error = %e, "archive pruner task failed");
            }
        }
        // gRPC reads hold the database only while they read; let them finish.
        cbdc_consensus::storage::close_db(self.db, "archiver").await;
        tracing::info!("archiver stopped");
        followed
    }
}

/// The follower task: stores each block as it comes (with those already waiting, in one
/// synced write batch), then publishes the new highest height.
async fn store_blocks(
    db: Arc<DB>,
    inner: Arc<Inner>,
    mut blocks: mpsc::Receiver<Block>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ArchiverError> {
    loop {
        let first = tokio::select! {
            block = blocks.recv() => block,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut batch = vec![first];
        while batch.len() < MAX_WRITE_BATCH_BLOCKS {
            match blocks.try_recv() {
                Ok(block) => batch.push(block),
                Err(_) => break,
            }
        }
        // The feed yields every height once, in order; check anyway, as a hole here
        // would be served to every shard that catches up.
        let next = inner.highest() + 1;
        batch.retain(|b| b.height >= next);
        for (expected, block) in (next..).zip(&batch) {
            if block.height != expected {
                tracing::error!(expected, got = block.height, "block feed skipped heights");
                return Err(ArchiverError::Gap {
                    expected,
                    got: block.height,
                });
            }
        }
        let (Some(low), Some(high)) = (batch.first(), batch.last()) else {
            continue;
        };
        let (low, high) = (low.height, high.height);
        let writer = db.clone();
        tokio::task::spawn_blocking(move || write_blocks(&writer, &batch))
            .await
            .map_err(|e| ArchiverError::Task(e.to_string()))??;
        let _ = inner
            .lowest
            .compare_exchange(0, low, Ordering::AcqRel, Ordering::Acquire);
        inner.highest.send_replace(high);
        tracing::debug!(from = low, to = high, "archived blocks");
    }
}

/// The pruner task: whenever `prune_every` stored blocks are not yet acknowledged by the
/// atomizer as prunable, asks its leader to prune below the highest stored height + 1.
///
/// It starts counting from nothing acknowledged, so after a restart it asks at once if
/// enough blocks are stored (Prune is idempotent, and this repairs a crash between a
/// write and its Prune). Failures are logged and retried after `retry`; they never stop
/// the archiver, they only make the atomizer keep blocks longer.
async fn prune(
    leader: LeaderClient,
    mut highest: watch::Receiver<u64>,
    prune_every: u64,
    retry: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Everything below this is acknowledged as prunable.
    let mut acknowledged: u64 = 1;
    loop {
        let ready = tokio::select! {
            ready = highest.wait_for(|h| h.saturating_add(1).saturating_sub(acknowledged) >= prune_every) => ready.map(|h| *h),
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Ok(high) = ready else {
            return;
        };
        let below = high.saturating_add(1);
        let result = tokio::select! {
            result = send_prune(&leader, below) => result,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match result {
            Ok(first_held) => {
                tracing::debug!(below, first_held, "atomizer pruned archived blocks");
                acknowledged = below;
            }
            Err(e) => {
                tracing::warn!(below, error = %e, "asking the atomizer to prune failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// One `Atomizer.Prune` call through the leader client; answers the lowest height the
/// atomizer still holds.
async fn send_prune(leader: &LeaderClient, below: u64) -> Result<u64, ConsensusError> {
    let response = leader
        .call(|channel| async move {
            AtomizerClient::new(channel)
                .max_decoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_INTERNAL_MESSAGE_BYTES)
                .prune(v1::PruneRequest { below })
                .await
                .map(|r| r.into_inner())
        })
        .await?;
    Ok(response.first_held)
}

/// Serves `cbdc.v1.Archiver` from an [`Archiver`]'s store. Read-only; every answer
/// reflects the blocks stored durably when the request arrived.
pub struct ArchiverService {
    inner: Arc<Inner>,
}

/// Runs a blocking read against the database off the async threads.
async fn blocking_read<T: Send + 'static>(
    inner: &Inner,
    read: impl FnOnce(&DB) -> Result<T, ArchiverError> + Send + 'static,
) -> Result<T, ArchiverError> {
    let db = inner.db()?;
    tokio::task::spawn_blocking(move || read(&db))
        .await
        .map_err(|e| ArchiverError::Task(e.to_string()))?
}

#[tonic::async_trait]
impl ArchiverRpc for ArchiverService {
    async fn get_block(
        &self,
        request: Request<v1::GetBlockRequest>,
    ) -> Result<Response<v1::GetBlockResponse>, Status> {
        let height = request.get_ref().height;
        if height == 0 {
            return Err(Status::invalid_argument(
                "get_block_request.height: heights start at 1",
            ));
        }
        let block = blocking_read(&self.inner, move |db| read_block(db, height))
            .await
            .map_err(|e| e.to_status())?;
        match block {
            Some(block) => Ok(Response::new(v1::GetBlockResponse { block: Some(block) })),
            None => Err(Status::not_found(format!(
                "block {height} is not archived (highest stored: {})",
                self.inner.highest()
            ))),
        }
    }

    type GetBlocksStream = ReceiverStream<Result<v1::Block, Status>>;

    async fn get_blocks(
        &self,
        request: Request<v1::GetBlocksRequest>,
    ) -> Result<Response<Self::GetBlocksStream>, Status> {
        let v1::GetBlocksRequest {
            from_height,
            to_height,
        } = *request.get_ref();
        if from_height == 0 {
            return Err(Status::invalid_argument(
                "get_blocks_request.from_height: heights start at 1",
            ));
        }
        if to_height < from_height {
            return Err(Status::invalid_argument(format!(
                "get_blocks_request.to_height {to_height} is below from_height {from_height}"
            )));
        }
        let lowest = self.inner.lowest.load(Ordering::Acquire);
        if lowest > 1 && from_height < lowest {
            return Err(Status::not_found(format!(
                "blocks below {lowest} are not archived"
            )));
        }
        // Ends at the highest block stored now; blocks stored later are not waited for.
        let end = to_height.min(self.inner.highest());
        let (tx, rx) = mpsc::channel(STREAM_CHUNK_BLOCKS as usize);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut next = from_height;
            while next <= end {
                let last = end.min(next.saturating_add(STREAM_CHUNK_BLOCKS - 1));
                let blocks = blocking_read(&inner, move |db| read_range(db, next, last)).await;
                let blocks = match blocks {
                    Ok(blocks) => blocks,
                    Err(e) => {
                        tracing::error!(from = next, to = last, error = %e, "archive read failed");
                        let _ = tx.send(Err(e.to_status())).await;
                        return;
                    }
                };
                for block in blocks {
                    if tx.send(Ok(block)).await.is_err() {
                        return; // The client went away.
                    }
                }
                match last.checked_add(1) {
                    Some(after) => next = after,
                    None => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_archive_info(
        &self,
        _request: Request<v1::GetArchiveInfoRequest>,
    ) -> Result<Response<v1::GetArchiveInfoResponse>, Status> {
        let highest = self.inner.highest();
        let lowest = self.inner.lowest.load(Ordering::Acquire);
        let stored = highest > 0 && lowest > 0;
        Ok(Response::new(v1::GetArchiveInfoResponse {
            lowest_height: stored.then_some(lowest),
            highest_height: stored.then_some(highest),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::{Amount, Hash, UhsId};

    fn id(n: u8) -> Hash {
        Hash([n; 32])
    }

    fn block(height: u64) -> Block {
        Block {
            height,
            transactions: vec![CompactTransaction {
                id: TxId(id(height as u8)),
                inputs: vec![UhsId(id(100 + height as u8))],
                outputs: vec![(UhsId(id(200 - height as u8)), Amount::from_cents(height))],
                attestations: Vec::new(),
            }],
            rejections: vec![Rejection {
                tx_id: TxId(id(50 + height as u8)),
                reason: v1::RejectReason::Stale,
                input_index: Some(0),
                height,
                message: "stale".into(),
                input_uhs_id: None,
            }],
        }
    }

    #[test]
    fn test_archived_block_round_trip() -> Result<(), ArchiverError> {
        let original = block(3);
        let bytes = encode(&original)?;
        let wire = decode(3, &bytes)?;
        assert_eq!(Block::try_from(&wire).ok(), Some(original));
        Ok(())
    }

    #[test]
    fn test_decode_wrong_height_is_corrupt() -> Result<(), ArchiverError> {
        let bytes = encode(&block(3))?;
        assert!(matches!(
            decode(4, &bytes),
            Err(ArchiverError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(3, &bytes[..bytes.len() / 2]),
            Err(ArchiverError::Corrupt { .. })
        ));
        Ok(())
    }

    #[test]
    fn test_decode_unspecified_reason_is_corrupt() -> Result<(), ArchiverError> {
        let mut archived = ArchivedBlock::from(&block(2));
        archived.rejections[0].reason = 0;
        let bytes = bincode::serialize(&archived).map_err(|e| ArchiverError::Encode {
            height: 2,
            reason: e.to_string(),
        })?;
        assert!(matches!(
            decode(2, &bytes),
            Err(ArchiverError::Corrupt { .. })
        ));
        Ok(())
    }

    #[test]
    fn test_store_and_read_range() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (db, lowest, highest) = open(dir.path())?;
        assert_eq!((lowest, highest), (0, 0));
        write_blocks(&db, &[block(1), block(2), block(3)])?;
        let blocks = read_range(&db, 2, 3)?;
        assert_eq!(
            blocks.iter().map(|b| b.height).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(read_block(&db, 4)?.is_none());
        assert!(matches!(
            read_range(&db, 2, 4),
            Err(ArchiverError::Corrupt { .. })
        ));
        drop(db);
        let (_db, lowest, highest) = open(dir.path())?;
        assert_eq!((lowest, highest), (1, 3));
        Ok(())
    }

    #[test]
    fn test_validate_params() {
        let mut params = ArchiverParams {
            data_dir: PathBuf::from("x"),
            atomizer: vec!["127.0.0.1:1".into()],
            prune_every: 10,
            retry: Duration::from_millis(10),
        };
        assert!(params.validate().is_ok());
        params.retry = Duration::ZERO;
        assert!(matches!(params.validate(), Err(ArchiverError::Config(_))));
        params.retry = Duration::from_millis(10);
        params.atomizer.clear();
        assert!(matches!(params.validate(), Err(ArchiverError::Config(_))));
    }
}
