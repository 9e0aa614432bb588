//! The leader's side of the atomizer: gathering shard notifications into complete
//! transactions, replicating them in batches, and cutting a block every interval.
//!
//! Notifications are not replicated one by one (that would cost a Raft round trip per
//! shard message); the leader keeps the partial transactions in memory and replicates a
//! transaction only once every input is attested. A partial that stays incomplete for
//! `stxo_cache_depth` blocks is dropped and recorded as INCOMPLETE in the next block, so
//! memory stays bounded and the sender learns the outcome. A new leader starts with no
//! partials: the notifications the old leader held are lost with it, and those
//! transactions are never confirmed (their inputs stay unspent; submitting again is safe).
//!
//! ```text
//!  notify / mint ──▶ Gather { partials, ready } ──wake──▶ writer task ──▶ Raft:
//!                                                   (one at a time)     Complete(batch),
//!                   every block_interval ─────────────────────────────▶ Incomplete, CutBlock
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cbdc_consensus::{ConsensusError, ReplicaHandle};
use cbdc_core::{CompactTransaction, TxId};
use cbdc_proto::convert::Notification;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::block::strip;
use crate::machine::{AtomizerMachine, Candidate, Command, Response};

/// How the leader batches and when it cuts blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencerParams {
    /// Time between block cuts.
    pub block_interval: Duration,
    /// Most complete transactions per replicated command.
    pub max_batch: usize,
    /// Blocks a partial transaction may wait for its missing attestations (the machine's
    /// double-spend window: an older attestation would be refused as stale anyway).
    pub stxo_cache_depth: u64,
    /// Most partial transactions held; beyond it, new ones are refused (the shard gets
    /// UNAVAILABLE and sends again later).
    pub max_partials: usize,
}

/// A transaction with some inputs attested.
struct Partial {
    tx: CompactTransaction,
    attested: Vec<bool>,
    missing: usize,
    oldest: u64,
    /// The atomizer height when the first notification arrived.
    seen_at: u64,
}

/// The leader's in-memory state.
#[derive(Default)]
struct Gather {
    partials: HashMap<TxId, Partial>,
    ready: Vec<Candidate>,
    /// The atomizer height as of the last cut this leader made (or saw at start).
    height: u64,
    /// The Raft term this state was gathered in (`None`: not leading).
    term: Option<u64>,
}

impl Gather {
    /// Merges one notification; a transaction whose inputs are now all attested moves to
    /// `ready`.
    fn merge(&mut self, n: Notification) {
        let id = n.transaction.id;
        let partial = self.partials.entry(id).or_insert_with(|| Partial {
            attested: vec![false; n.transaction.inputs.len()],
            missing: n.transaction.inputs.len(),
            oldest: n.height,
            seen_at: self.height,
            tx: n.transaction,
        });
        for i in n.attested_inputs {
            if let Some(slot) = partial.attested.get_mut(i as usize) {
                if !*slot {
                    *slot = true;
                    partial.missing -= 1;
                }
            }
        }
        partial.oldest = partial.oldest.min(n.height);
        if partial.missing == 0 {
            if let Some(done) = self.partials.remove(&id) {
                self.ready.push(Candidate {
                    tx: strip(done.tx),
                    attested_height: done.oldest,
                });
            }
        }
    }

    /// Removes and returns the partials that waited longer than `depth` blocks.
    fn expire(&mut self, depth: u64) -> Vec<TxId> {
        let height = self.height;
        let expired: Vec<TxId> = self
            .partials
            .iter()
            .filter(|(_, p)| p.seen_at + depth < height)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.partials.remove(id);
        }
        expired
    }
}

struct Inner {
    handle: ReplicaHandle<AtomizerMachine>,
    params: SequencerParams,
    gather: Mutex<Gather>,
    wake: Notify,
}

impl Inner {
    fn gather(&self) -> MutexGuard<'_, Gather> {
        // Every critical section leaves the maps consistent, so a poisoned lock is usable.
        self.gather.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gathered state if this replica leads, started afresh (from the replicated
    /// height) when the leadership is new: what an earlier leadership gathered may be
    /// stale, and a new term's first notifications must not be thrown away.
    fn leading(&self) -> Option<MutexGuard<'_, Gather>> {
        // Borrowed, not cloned: this runs for every Notify and every clock tick.
        let (leading, term) = {
            let metrics = self.handle.raft().metrics();
            let m = metrics.borrow();
            let leading = m.current_leader == Some(self.handle.id());
            (leading, leading.then_some(m.current_term))
        };
        let mut gather = self.gather();
        if gather.term != term {
            let height = self.handle.read(|m| m.height()).unwrap_or(gather.height);
            *gather = Gather {
                height,
                term,
                ..Gather::default()
            };
        }
        leading.then_some(gather)
    }

    /// Why a follower refuses work: not the leader, naming the leader it knows.
    fn refusal(&self) -> ConsensusError {
        self.handle
            .require_leader()
            .err()
            .unwrap_or(ConsensusError::NotLeader {
                leader_id: None,
                leader_addr: None,
            })
    }
}

/// The leader's gathering and block clock on one atomizer replica (idle on followers).
pub struct Sequencer {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sequencer {
    /// Starts the writer task of the replica behind `handle`.
    pub fn start(handle: ReplicaHandle<AtomizerMachine>, params: SequencerParams) -> Self {
        let inner = Arc::new(Inner {
            handle,
            params,
            gather: Mutex::new(Gather::default()),
            wake: Notify::new(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(inner.clone(), stopped));
        Sequencer { inner, stop, task }
    }

    /// A handle for the gRPC service.
    pub fn client(&self) -> SequencerClient {
        SequencerClient {
            inner: self.inner.clone(),
        }
    }

    /// Stops the writer task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the gRPC service uses to hand work to the sequencer.
#[derive(Clone)]
pub struct SequencerClient {
    inner: Arc<Inner>,
}

impl SequencerClient {
    /// The replica this sequencer runs on.
    pub fn handle(&self) -> &ReplicaHandle<AtomizerMachine> {
        &self.inner.handle
    }

    /// Takes verified notifications. On a follower: `NotLeader`, so the shard's client
    /// follows the leader.
    pub fn notify(&self, notifications: Vec<Notification>) -> Result<(), ConsensusError> {
        let Some(mut gather) = self.inner.leading() else {
            return Err(self.inner.refusal());
        };
        let new = notifications
            .iter()
            .filter(|n| !gather.partials.contains_key(&n.transaction.id))
            .count();
        if gather.partials.len() + new > self.inner.params.max_partials {
            return Err(ConsensusError::Network(format!(
                "the atomizer holds {} partial transactions, its limit; send again later",
                gather.partials.len()
            )));
        }
        for n in notifications {
            gather.merge(n);
        }
        let wake = !gather.ready.is_empty();
        drop(gather);
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// Takes verified mints (transactions without inputs).
    pub fn mint(&self, mints: Vec<CompactTransaction>) -> Result<(), ConsensusError> {
        let Some(mut gather) = self.inner.leading() else {
            return Err(self.inner.refusal());
        };
        let height = gather.height;
        gather.ready.extend(mints.into_iter().map(|tx| Candidate {
            tx: strip(tx),
            attested_height: height,
        }));
        drop(gather);
        self.inner.wake.notify_one();
        Ok(())
    }
}

/// The writer: replicates ready transactions as soon as the previous write is done, and
/// cuts a block every interval. One write at a time keeps the log order equal to the
/// order decided here.
async fn run(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
    let mut clock = tokio::time::interval(inner.params.block_interval);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let cut_due = tokio::select! {
            _ = stopped.changed() => return,
            _ = clock.tick() => true,
            _ = inner.wake.notified() => false,
        };
        if *stopped.borrow() {
            return;
        }
        if inner.leading().is_none() {
            continue;
        }
        // A write waits for a quorum, which never comes once the other replicas have
        // stopped: stopping must not wait for it. What it carried is lost with this
        // leader's partials, as on any leader change (the senders submit again).
        tokio::select! {
            _ = stopped.changed() => return,
            result = step(&inner, cut_due) => if let Err(e) = result {
                tracing::warn!(error = %e, "atomizer write failed");
            },
        }
    }
}

/// Replicates what is ready and, when due, expires partials and cuts a block.
async fn step(inner: &Inner, cut_due: bool) -> Result<(), ConsensusError> {
    loop {
        let batch: Vec<Candidate> = {
            let mut gather = inner.gather();
            let n = gather.ready.len().min(inner.params.max_batch);
            gather.ready.drain(..n).collect()
        };
        if batch.is_empty() {
            break;
        }
        inner.handle.write(Command::Complete(batch)).await?;
    }
    if !cut_due {
        return Ok(());
    }
    let expired = inner.gather().expire(inner.params.stxo_cache_depth);
    let mut commands = Vec::with_capacity(2);
    if !expired.is_empty() {
        tracing::debug!(count = expired.len(), "partial transactions expired");
        commands.push(Command::Incomplete(expired));
    }
    commands.push(Command::CutBlock);
    let responses = inner.handle.write_batch(commands).await?;
    if let Some(Response::Cut(Some(height))) = responses.last() {
        inner.gather().height = *height;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::{Amount, UhsId};

    fn tx(id: u8, inputs: usize) -> CompactTransaction {
        CompactTransaction {
            id: TxId::from([id; 32]),
            inputs: (0..inputs)
                .map(|i| UhsId::from([id ^ (i as u8 + 1); 32]))
                .collect(),
            outputs: vec![(
                UhsId::from([id.wrapping_add(100); 32]),
                Amount::from_cents(5),
            )],
            attestations: Vec::new(),
        }
    }

    fn note(tx: &CompactTransaction, inputs: &[u32], height: u64) -> Notification {
        Notification {
            transaction: tx.clone(),
            attested_inputs: inputs.to_vec(),
            height,
        }
    }

    #[test]
    fn test_transaction_is_ready_once_every_input_is_attested() {
        let mut g = Gather::default();
        let t = tx(1, 3);
        g.merge(note(&t, &[0], 7));
        g.merge(note(&t, &[0], 9));
        assert!(g.ready.is_empty());
        g.merge(note(&t, &[1, 2], 8));
        assert_eq!(g.ready.len(), 1);
        assert_eq!(
            g.ready[0].attested_height, 7,
            "the oldest attestation counts"
        );
        assert!(g.partials.is_empty());
    }

    #[test]
    fn test_partials_expire_after_the_window() {
        let mut g = Gather {
            height: 10,
            ..Gather::default()
        };
        g.merge(note(&tx(1, 2), &[0], 10));
        g.height = 12;
        assert!(g.expire(2).is_empty());
        g.height = 13;
        assert_eq!(g.expire(2), vec![TxId::from([1; 32])]);
        assert!(g.partials.is_empty());
    }

    #[test]
    fn test_out_of_range_positions_are_ignored() {
        let mut g = Gather::default();
        let t = tx(2, 1);
        g.merge(note(&t, &[5], 1));
        assert!(g.ready.is_empty());
        g.merge(note(&t, &[0], 1));
        assert_eq!(g.ready.len(), 1);
    }
}
