//! The three background tasks of an atomizer-mode shard:
//!
//! - [`follow_blocks`] applies the chain of blocks to the store, one write batch per
//!   block, and publishes the height; a block that does not fit the store stops it and
//!   marks the shard unhealthy;
//! - [`learn_target`] asks the atomizer its height once, at start, retrying until it
//!   answers: the shard attests nothing until it has applied that far;
//! - [`run_rechecks`] checks the recheck list again after every block, notifies what it
//!   finds and reports to the watchtower what the grace rule says is due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cbdc_atomizer::{follow, BlockSources};
use cbdc_proto::convert::Block;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::check::first_missing;
use super::error::AtomizerShardError;
use super::recheck::Recheck;
use super::shared::{Shared, MAX_PER_CALL};
use crate::error::StoreError;
use crate::staged::BlockOutcome;

/// Reads blocks from the atomizer (or the archiver, for pruned heights) from the store's
/// height + 1 on and applies each in one write batch with its height, until `shutdown`.
///
/// A block that does not follow the store (`HeightGap`) or does not fit it
/// (`BlockInconsistent`: it spends an owned output the store lacks, or creates one it
/// has) means this shard's state diverged from the atomizer's: applying anything more
/// would only compound it, and attesting from it would be untruthful. So the follower
/// logs an error, marks the shard unhealthy and stops; an operator rebuilds the shard
/// (re-seed and follow from the archiver, or copy a healthy replica of the range). A
/// failing store (a RocksDB error) is treated the same way: a restart resumes from the
/// last block written.
pub(crate) async fn follow_blocks(
    shared: Arc<Shared>,
    sources: BlockSources,
    mut shutdown: watch::Receiver<bool>,
) {
    let from = shared.height().saturating_add(1);
    let mut blocks = follow(sources, from, shutdown.clone());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let block = tokio::select! {
            block = blocks.recv() => match block {
                Some(block) => block,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let height = block.height;
        match apply(&shared, block).await {
            Ok(BlockOutcome::Applied) => {
                tracing::debug!(height, "block applied");
                shared.height.send_replace(height);
            }
            Ok(BlockOutcome::AlreadyApplied) => {
                tracing::debug!(height, "block already applied");
            }
            Err(e) => {
                let reason = match &e {
                    AtomizerShardError::Store(
                        StoreError::HeightGap { .. } | StoreError::BlockInconsistent { .. },
                    ) => format!("diverged from the atomizer's blocks: {e}"),
                    _ => format!("could not apply block {height}: {e}"),
                };
                tracing::error!(
                    height,
                    store_height = shared.height(),
                    %reason,
                    "atomizer shard stops applying blocks and refuses to attest"
                );
                shared.mark_unhealthy(reason);
                return;
            }
        }
    }
}

/// Applies `block` to the store in one write batch (RocksDB work: off the runtime).
async fn apply(shared: &Shared, block: Block) -> Result<BlockOutcome, AtomizerShardError> {
    let store = shared.store.clone();
    let range = shared.range;
    tokio::task::spawn_blocking(move || {
        store.update(|s| s.apply_block(block.height, range, &block.transactions))
    })
    .await
    .map_err(|e| AtomizerShardError::task("block apply", e))?
    .map_err(Into::into)
}

/// Asks the atomizer leader its height, every `retry` until it answers, and records it as
/// the height to reach before attesting.
pub(crate) async fn learn_target(
    shared: Arc<Shared>,
    retry: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let answer = tokio::select! {
            answer = shared.atomizer_height() => answer,
            _ = shutdown.changed() => return,
        };
        match answer {
            Ok(target) => {
                let _ = shared.target.set(target);
                tracing::info!(
                    target,
                    height = shared.height(),
                    "atomizer height known; attesting once caught up"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot learn the atomizer's height; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Works the recheck list after every block applied and every `retry` (for notifications
/// the atomizer did not accept yet and for reports that came due with time).
///
/// Stops working (leaving the list as it is) while the shard is unhealthy: a store that
/// diverged can attest nothing and report nothing truthfully.
pub(crate) async fn run_rechecks(
    shared: Arc<Shared>,
    retry: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut heights = shared.height.subscribe();
    let mut tick = tokio::time::interval(retry);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_height = *heights.borrow_and_update();
    let mut last_block_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = heights.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let height = *heights.borrow_and_update();
        if height != last_height {
            last_height = height;
            last_block_at = Instant::now();
        }
        if shared.unhealthy.get().is_some() || shared.rechecks().is_empty() {
            continue;
        }
        tokio::select! {
            _ = recheck_once(&shared, height, last_block_at) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass over the list at `height`: read again what a block may have changed, notify
/// what was found, report what is due. What the atomizer or the watchtower does not
/// accept stays on the list for the next pass.
async fn recheck_once(shared: &Shared, height: u64, last_block_at: Instant) {
    let work = shared.rechecks().to_recheck(height);
    if !work.is_empty() {
        match read_again(shared, work).await {
            Ok((checked, results)) => {
                let mut list = shared.rechecks();
                for (tx_id, missing) in results {
                    list.record(&tx_id, checked, missing);
                }
            }
            Err(e) => {
                // Without a fresh read nothing may be reported; try again next pass.
                tracing::warn!(error = %e, "recheck read failed");
                return;
            }
        }
    }

    let found = shared.rechecks().found();
    for chunk in found.chunks(MAX_PER_CALL) {
        match shared.notify(chunk).await {
            Ok(()) => {
                tracing::debug!(count = chunk.len(), "rechecked transactions notified");
                shared
                    .rechecks()
                    .remove(chunk.iter().map(|n| &n.transaction.id));
            }
            Err(e) => {
                tracing::warn!(error = %e, count = found.len(), "notifying rechecked transactions failed; retrying");
                break;
            }
        }
    }

    let due = shared
        .rechecks()
        .due(&shared.grace, height, Instant::now(), last_block_at);
    for chunk in due.chunks(MAX_PER_CALL) {
        match shared.report(chunk).await {
            Ok(()) => {
                tracing::info!(
                    count = chunk.len(),
                    height,
                    "reported transactions with inputs not found"
                );
                shared.rechecks().remove(chunk.iter().map(|r| &r.tx_id));
            }
            Err(e) => {
                tracing::warn!(error = %e, count = due.len(), "reporting missing inputs failed; retrying");
                break;
            }
        }
    }
}

/// Reads the owned inputs of `work` from one snapshot: its height, and per transaction
/// the first missing position (`None` when all were found).
async fn read_again(
    shared: &Shared,
    work: Vec<Recheck>,
) -> Result<(u64, Vec<(cbdc_core::TxId, Option<u32>)>), AtomizerShardError> {
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || {
        let ids: Vec<_> = work.iter().flat_map(|r| r.ids.iter().copied()).collect();
        let (height, values) = store.check_inputs(&ids)?;
        let mut offset = 0usize;
        let results = work
            .into_iter()
            .map(|r| {
                let end = (offset + r.ids.len()).min(values.len());
                let slice = values.get(offset..end).unwrap_or(&[]);
                offset += r.ids.len();
                (r.tx_id, first_missing(&r.positions, slice))
            })
            .collect();
        Ok((height, results))
    })
    .await
    .map_err(|e| AtomizerShardError::task("recheck read", e))?
}
