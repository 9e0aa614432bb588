//! The recheck list: transactions with an owned input this shard did not find, waiting a
//! grace period before they are reported `INPUTS_NOT_FOUND`.
//!
//! Why wait: a client may spend an output a moment after the watchtower told it the
//! output was confirmed, while this shard has not applied that block yet. Reporting at
//! once would reject a good payment; so the transaction is checked again after every
//! block this shard applies, notified as soon as its inputs appear, and reported only
//! once the [`GraceRule`] says the shard has had its chance to catch up.
//!
//! Pure: the list never reads the store or the clock; the caller passes the values it
//! read, the height and `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cbdc_core::{CompactTransaction, TxId, UhsId};
use cbdc_proto::convert::{Notification, Rejection};
use cbdc_proto::v1::RejectReason;

use super::check::ids_at;

/// Entries the list holds at most; beyond that a missing transaction is reported at once,
/// so that a flood of transactions spending nothing cannot exhaust memory.
pub const RECHECK_CAPACITY: usize = 100_000;

/// When a transaction whose owned input is still missing is reported.
///
/// An entry added at shard height `h0` and time `t0` is reported once **both**
/// - `min_wait` has passed since `t0`, and
/// - `blocks` further blocks were applied (height ≥ `h0 + blocks`) **or** no block was
///   applied during the last `min_wait` (the chain is idle: the atomizer cuts no empty
///   blocks, so with nothing to apply the shard is not behind and waiting longer would
///   only delay the answer forever).
///
/// That is "after the grace blocks or, if no block comes, after `min_wait`, whichever is
/// later". The shard uses `blocks = missing_grace_blocks` and `min_wait = 5 × retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraceRule {
    /// Blocks to apply after the first check.
    pub blocks: u64,
    /// Least time between the first check and the report.
    pub min_wait: Duration,
}

impl GraceRule {
    /// Whether an entry added at `added_height`, `added_at` is due for reporting at
    /// `height`, `now`, the last block having been applied at `last_block_at`.
    pub fn is_due(
        &self,
        added_height: u64,
        added_at: Instant,
        height: u64,
        now: Instant,
        last_block_at: Instant,
    ) -> bool {
        let waited = now.saturating_duration_since(added_at) >= self.min_wait;
        let blocks_passed = height.saturating_sub(added_height) >= self.blocks;
        let idle = now.saturating_duration_since(last_block_at) >= self.min_wait;
        waited && (blocks_passed || idle)
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// An owned input was missing when last checked.
    Missing {
        /// Position (in the transaction's inputs) of the first missing one.
        index: u32,
        /// The height it was last checked at.
        checked_height: u64,
    },
    /// Every owned input was found at `height`; the atomizer has not accepted the
    /// notification yet.
    Found {
        /// The height they were found at.
        height: u64,
    },
}

/// One transaction waiting on the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The whole transaction, attestations included.
    pub tx: CompactTransaction,
    /// Positions of the inputs this shard owns.
    pub positions: Vec<u32>,
    /// The shard's height at the first check.
    pub added_height: u64,
    /// When it was first checked.
    pub added_at: Instant,
    /// Where it stands.
    pub state: EntryState,
}

impl Entry {
    /// A transaction whose owned input at `index` was missing at `height`, `now`.
    pub fn missing(
        tx: CompactTransaction,
        positions: Vec<u32>,
        index: u32,
        height: u64,
        now: Instant,
    ) -> Self {
        Entry {
            tx,
            positions,
            added_height: height,
            added_at: now,
            state: EntryState::Missing {
                index,
                checked_height: height,
            },
        }
    }

    /// The `INPUTS_NOT_FOUND` report of this entry at `height`.
    pub fn rejection(&self, index: u32, height: u64) -> Rejection {
        let id = self.tx.inputs.get(index as usize);
        Rejection {
            tx_id: self.tx.id,
            reason: RejectReason::InputsNotFound,
            input_index: Some(index),
            height,
            message: match id {
                Some(id) => format!(
                    "input {index} ({id}) is not in the unspent set at height {height} \
                     (first checked at height {})",
                    self.added_height
                ),
                None => format!("input {index} is not in the unspent set at height {height}"),
            },
            input_uhs_id: id.copied(),
        }
    }
}

/// The owned inputs of one listed transaction, to read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recheck {
    /// The transaction.
    pub tx_id: TxId,
    /// Positions of its owned inputs.
    pub positions: Vec<u32>,
    /// Their ids, in the same order.
    pub ids: Vec<UhsId>,
}

/// What [`RecheckList::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The entry is on the list now.
    Added,
    /// The transaction was on the list already; the earlier entry is kept, so that the
    /// grace period counts from the first sighting (a sentinel's retry resets nothing).
    AlreadyListed,
    /// The list is full: report the entry now.
    Full(Entry),
}

/// Transactions waiting for a missing input, by tx id (so that a resubmission is not
/// listed twice), at most `capacity` of them.
#[derive(Debug)]
pub struct RecheckList {
    entries: HashMap<TxId, Entry>,
    capacity: usize,
}

impl Default for RecheckList {
    fn default() -> Self {
        RecheckList::new(RECHECK_CAPACITY)
    }
}

impl RecheckList {
    /// An empty list holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        RecheckList {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `tx_id` waits.
    pub fn contains(&self, tx_id: &TxId) -> bool {
        self.entries.contains_key(tx_id)
    }

    /// Lists `entry` unless its transaction is listed already or the list is full.
    pub fn insert(&mut self, entry: Entry) -> Inserted {
        if self.entries.contains_key(&entry.tx.id) {
            return Inserted::AlreadyListed;
        }
        if self.entries.len() >= self.capacity {
            return Inserted::Full(entry);
        }
        self.entries.insert(entry.tx.id, entry);
        Inserted::Added
    }

    /// The owned inputs of every entry still missing an input and last checked below
    /// `height`: after a block, only those can have changed.
    pub fn to_recheck(&self, height: u64) -> Vec<Recheck> {
        self.entries
            .values()
            .filter(|e| {
                matches!(e.state, EntryState::Missing { checked_height, .. } if checked_height < height)
            })
            .map(|e| Recheck {
                tx_id: e.tx.id,
                positions: e.positions.clone(),
                ids: ids_at(&e.tx, &e.positions),
            })
            .collect()
    }

    /// Records a recheck of `tx_id` at `height`: `None` if every owned input was found,
    /// else the position of the first missing one. Unknown ids (notified or reported
    /// meanwhile) and entries already found are left alone.
    pub fn record(&mut self, tx_id: &TxId, height: u64, missing: Option<u32>) {
        let Some(entry) = self.entries.get_mut(tx_id) else {
            return;
        };
        if let EntryState::Missing { .. } = entry.state {
            entry.state = match missing {
                None => EntryState::Found { height },
                Some(index) => EntryState::Missing {
                    index,
                    checked_height: height,
                },
            };
        }
    }

    /// The notifications of every entry whose inputs were found (sorted by tx id, so that
    /// the order does not depend on the hash map).
    pub fn found(&self) -> Vec<Notification> {
        let mut out: Vec<Notification> = self
            .entries
            .values()
            .filter_map(|e| match e.state {
                EntryState::Found { height } => Some(Notification {
                    transaction: e.tx.clone(),
                    attested_inputs: e.positions.clone(),
                    height,
                }),
                EntryState::Missing { .. } => None,
            })
            .collect();
        out.sort_by_key(|n| n.transaction.id);
        out
    }

    /// The reports of every entry still missing an input that `rule` says is due at
    /// `height`, `now` (sorted by tx id).
    pub fn due(
        &self,
        rule: &GraceRule,
        height: u64,
        now: Instant,
        last_block_at: Instant,
    ) -> Vec<Rejection> {
        let mut out: Vec<Rejection> = self
            .entries
            .values()
            .filter_map(|e| match e.state {
                EntryState::Missing { index, .. }
                    if rule.is_due(e.added_height, e.added_at, height, now, last_block_at) =>
                {
                    Some(e.rejection(index, height))
                }
                _ => None,
            })
            .collect();
        out.sort_by_key(|r| r.tx_id);
        out
    }

    /// Forgets `ids` (notified or reported).
    pub fn remove<'a>(&mut self, ids: impl IntoIterator<Item = &'a TxId>) {
        for id in ids {
            self.entries.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::Hash;

    const RULE: GraceRule = GraceRule {
        blocks: 2,
        min_wait: Duration::from_secs(5),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn tx(n: u8) -> CompactTransaction {
        CompactTransaction {
            id: TxId::from(*Hash::digest_parts(&[b"tx", &[n]]).as_bytes()),
            inputs: vec![
                UhsId::from(*Hash::digest_parts(&[b"a", &[n]]).as_bytes()),
                UhsId::from(*Hash::digest_parts(&[b"b", &[n]]).as_bytes()),
            ],
            outputs: Vec::new(),
            attestations: Vec::new(),
        }
    }

    fn entry(n: u8, height: u64, at: Instant) -> Entry {
        Entry::missing(tx(n), vec![0, 1], 1, height, at)
    }

    #[test]
    fn test_grace_rule_waits_for_blocks_and_time() {
        let t0 = Instant::now();
        // Blocks keep coming (the last one just now): both conditions must hold.
        assert!(!RULE.is_due(10, t0, 12, t0 + secs(4), t0 + secs(4)));
        assert!(!RULE.is_due(10, t0, 11, t0 + secs(6), t0 + secs(6)));
        assert!(RULE.is_due(10, t0, 12, t0 + secs(5), t0 + secs(5)));
        assert!(RULE.is_due(10, t0, 20, t0 + secs(9), t0 + secs(9)));
    }

    #[test]
    fn test_grace_rule_idle_chain_reports_after_min_wait() {
        let t0 = Instant::now();
        // No block since the entry was added.
        assert!(!RULE.is_due(10, t0, 10, t0 + secs(4), t0 - secs(100)));
        assert!(RULE.is_due(10, t0, 10, t0 + secs(5), t0 - secs(100)));
        // One block, then quiet for min_wait.
        assert!(!RULE.is_due(10, t0, 11, t0 + secs(7), t0 + secs(3)));
        assert!(RULE.is_due(10, t0, 11, t0 + secs(8), t0 + secs(3)));
    }

    #[test]
    fn test_grace_rule_zero_blocks_is_time_only() {
        let rule = GraceRule {
            blocks: 0,
            min_wait: secs(1),
        };
        let t0 = Instant::now();
        assert!(!rule.is_due(3, t0, 3, t0, t0));
        assert!(rule.is_due(3, t0, 3, t0 + secs(1), t0 + secs(1)));
    }

    #[test]
    fn test_insert_is_idempotent_by_tx_id() {
        let t0 = Instant::now();
        let mut list = RecheckList::new(10);
        assert_eq!(list.insert(entry(1, 5, t0)), Inserted::Added);
        assert_eq!(
            list.insert(entry(1, 9, t0 + secs(9))),
            Inserted::AlreadyListed
        );
        assert_eq!(list.len(), 1);
        // The first sighting counts: due from height 7 on.
        let due = list.due(&RULE, 7, t0 + secs(5), t0 + secs(5));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].input_index, Some(1));
        assert_eq!(due[0].reason, RejectReason::InputsNotFound);
        assert_eq!(due[0].height, 7);
    }

    #[test]
    fn test_insert_full_hands_the_entry_back() {
        let t0 = Instant::now();
        let mut list = RecheckList::new(1);
        assert_eq!(list.insert(entry(1, 0, t0)), Inserted::Added);
        match list.insert(entry(2, 0, t0)) {
            Inserted::Full(e) => assert_eq!(e.tx.id, tx(2).id),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn test_found_entry_is_notified_not_reported() {
        let t0 = Instant::now();
        let mut list = RecheckList::new(10);
        list.insert(entry(1, 5, t0));
        list.insert(entry(2, 5, t0));
        let to_check = list.to_recheck(6);
        assert_eq!(to_check.len(), 2);
        list.record(&tx(1).id, 6, None);
        list.record(&tx(2).id, 6, Some(0));
        let found = list.found();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].transaction.id, tx(1).id);
        assert_eq!(found[0].attested_inputs, vec![0, 1]);
        assert_eq!(found[0].height, 6);
        // Only the missing one is ever due, and with its new first missing position.
        let due = list.due(&RULE, 100, t0 + secs(60), t0 + secs(60));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].tx_id, tx(2).id);
        assert_eq!(due[0].input_index, Some(0));
        // Checked at 6: nothing to recheck until a higher height.
        assert!(list.to_recheck(6).is_empty());
        assert_eq!(list.to_recheck(7).len(), 1);
    }

    #[test]
    fn test_recheck_skips_entries_checked_at_current_height() {
        let t0 = Instant::now();
        let mut list = RecheckList::new(10);
        list.insert(entry(1, 5, t0));
        assert!(list.to_recheck(5).is_empty());
        let again = list.to_recheck(6);
        assert_eq!(
            again,
            vec![Recheck {
                tx_id: tx(1).id,
                positions: vec![0, 1],
                ids: tx(1).inputs.clone()
            }]
        );
    }

    #[test]
    fn test_remove_forgets_and_record_ignores_unknown() {
        let t0 = Instant::now();
        let mut list = RecheckList::new(10);
        list.insert(entry(1, 5, t0));
        list.remove([&tx(1).id]);
        assert!(list.is_empty());
        list.record(&tx(1).id, 6, None);
        assert!(list.found().is_empty());
    }
}
