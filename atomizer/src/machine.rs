//! The replicated state of the atomizer: the block being built, the last blocks, and the
//! rules that decide which complete transactions go into a block.
//!
//! The leader's [`crate::Sequencer`] gathers shard notifications in memory until every
//! input of a transaction is attested and then replicates it as a [`Candidate`]; the
//! decisions below run on every replica, in log order, so every replica builds the same
//! blocks.
//!
//! **Double-spend rule.** A shard attests that an input is unspent at its height `h`,
//! i.e. after applying blocks `1..=h`. Any later spend of that input is in a block above
//! `h` or in the block being built. The machine remembers the inputs spent in the last
//! `stxo_cache_depth` blocks, so it can check every candidate whose oldest attestation is
//! at least `height - stxo_cache_depth`; an older one is refused as STALE (the sender may
//! submit again). A candidate with an input in that cache is refused as INPUTS_SPENT.
//!
//! | column family | key | value |
//! |---|---|---|
//! | [`CF_BLOCKS`] | height (u64 big-endian) | bincode [`StoredBlock`] |
//! | [`CF_PENDING`] | `t`/`r` ‖ position (u32 big-endian) | bincode tx / rejection of the block being built |
//! | [`CF_MINTED`] | mint tx id | empty (a mint is applied once, ever) |
//! | [`CF_ATOMIZER_META`] | `height`, `first_held` | u64 little-endian |

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use cbdc_consensus::storage::{cf, clear_cf};
use cbdc_consensus::{encode, ConsensusError, StateMachine};
use cbdc_core::{CompactTransaction, TxId, UhsId};
use rocksdb::{IteratorMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::block::{strip, BlockRejection, RejectCode, StoredBlock};

/// Column family of the blocks still held.
pub const CF_BLOCKS: &str = "atomizer_blocks";
/// Column family of the block being built.
pub const CF_PENDING: &str = "atomizer_pending";
/// Column family of every mint ever applied.
pub const CF_MINTED: &str = "atomizer_minted";
/// Column family of the counters.
pub const CF_ATOMIZER_META: &str = "atomizer_meta";

const KEY_HEIGHT: &[u8] = b"height";
const KEY_FIRST_HELD: &[u8] = b"first_held";
const PENDING_TX: u8 = b't';
const PENDING_REJECTION: u8 = b'r';
const SNAPSHOT_VERSION: u32 = 1;
/// A key range holding every pending key (one kind byte, `r` or `t`, then a position).
const PENDING_KEYS: std::ops::Range<&[u8]> = &[]..&[u8::MAX];

/// The rules' one parameter, the same on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineParams {
    /// Blocks whose spent inputs are remembered; also how many blocks old an attestation
    /// or a partial notification may get.
    pub stxo_cache_depth: u64,
}

/// A transaction whose every input is attested (or a mint, which has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The compact transaction (attestations are dropped when it enters a block).
    pub tx: CompactTransaction,
    /// The lowest shard height among its input attestations (for a mint, the atomizer's
    /// height when it was submitted).
    pub attested_height: u64,
}

/// A command of the atomizer's Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Decide complete transactions, in order, into the block being built.
    Complete(Vec<Candidate>),
    /// Record that these transactions never got every input attested.
    Incomplete(Vec<TxId>),
    /// Close the block being built (if it holds anything) as the next height.
    CutBlock,
    /// Forget blocks below `below` (the archiver holds them), keeping the window.
    Prune {
        /// Blocks below this height may go.
        below: u64,
    },
}

/// What a transaction became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// In the block being built.
    Accepted,
    /// Already in the block being built or a recent block: nothing changed.
    Duplicate,
    /// Refused; the rejection is in the block being built.
    Rejected(RejectCode),
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// One verdict per candidate.
    Verdicts(Vec<Verdict>),
    /// The height of the block cut, or `None` when there was nothing to put in one.
    Cut(Option<u64>),
    /// The lowest block still held.
    Pruned {
        /// That height.
        first_held: u64,
    },
    /// Incomplete transactions recorded.
    Recorded,
}

/// What one of the last blocks spent and confirmed.
#[derive(Debug, Default)]
struct Window {
    height: u64,
    spent: HashSet<UhsId>,
    ids: HashSet<TxId>,
}

impl Window {
    fn of(block: &StoredBlock) -> Self {
        Window {
            height: block.height,
            spent: block
                .transactions
                .iter()
                .flat_map(|tx| tx.inputs.iter().copied())
                .collect(),
            ids: block.transactions.iter().map(|tx| tx.id).collect(),
        }
    }
}

/// The atomizer's state machine.
pub struct AtomizerMachine {
    db: Arc<DB>,
    params: MachineParams,
    height: u64,
    first_held: u64,
    pending_txs: Vec<CompactTransaction>,
    pending_rejections: Vec<BlockRejection>,
    /// Inputs spent and ids confirmed by the block being built.
    pending: Window,
    /// The last `stxo_cache_depth` blocks, oldest first.
    recent: VecDeque<Window>,
    minted: HashSet<TxId>,
    heights: watch::Sender<u64>,
}

fn corrupt(what: &'static str, reason: impl ToString) -> ConsensusError {
    ConsensusError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ConsensusError> {
    bincode::deserialize(bytes).map_err(|e| corrupt(what, e))
}

fn pending_key(kind: u8, position: usize) -> [u8; 5] {
    let mut key = [kind; 5];
    key[1..].copy_from_slice(&(position as u32).to_be_bytes());
    key
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    version: u32,
    height: u64,
    first_held: u64,
    blocks: Vec<StoredBlock>,
    pending_txs: Vec<CompactTransaction>,
    pending_rejections: Vec<BlockRejection>,
    minted: Vec<TxId>,
}

impl AtomizerMachine {
    /// Loads the state from `db` (empty on a fresh replica).
    pub fn open(db: Arc<DB>, params: MachineParams) -> Result<Self, ConsensusError> {
        if params.stxo_cache_depth == 0 {
            return Err(ConsensusError::Config(
                "stxo_cache_depth must be at least 1".into(),
            ));
        }
        let (heights, _) = watch::channel(0);
        let mut machine = AtomizerMachine {
            db,
            params,
            height: 0,
            first_held: 1,
            pending_txs: Vec::new(),
            pending_rejections: Vec::new(),
            pending: Window::default(),
            recent: VecDeque::new(),
            minted: HashSet::new(),
            heights,
        };
        machine.load()?;
        Ok(machine)
    }

    fn load(&mut self) -> Result<(), ConsensusError> {
        let db = self.db.clone();
        let meta = cf(&db, CF_ATOMIZER_META)?;
        let read_u64 = |key: &[u8]| -> Result<Option<u64>, ConsensusError> {
            match db.get_cf(meta, key)? {
                Some(v) => {
                    Ok(Some(u64::from_le_bytes(v.as_slice().try_into().map_err(
                        |_| corrupt("atomizer meta", "counter is not 8 bytes"),
                    )?)))
                }
                None => Ok(None),
            }
        };
        self.height = read_u64(KEY_HEIGHT)?.unwrap_or(0);
        self.first_held = read_u64(KEY_FIRST_HELD)?.unwrap_or(1);
        self.pending_txs.clear();
        self.pending_rejections.clear();
        self.pending = Window::default();
        for item in db.iterator_cf(cf(&db, CF_PENDING)?, IteratorMode::Start) {
            let (key, value) = item?;
            match key.first() {
                Some(&PENDING_TX) => {
                    let tx: CompactTransaction = decode("atomizer pending tx", &value)?;
                    self.pending.spent.extend(tx.inputs.iter().copied());
                    self.pending.ids.insert(tx.id);
                    self.pending_txs.push(tx);
                }
                Some(&PENDING_REJECTION) => self
                    .pending_rejections
                    .push(decode("atomizer pending rejection", &value)?),
                _ => return Err(corrupt("atomizer pending", "unknown key kind")),
            }
        }
        self.recent.clear();
        let from = self.window_start();
        for height in from..=self.height {
            if let Some(block) = self.block(height)? {
                self.recent.push_back(Window::of(&block));
            }
        }
        self.minted.clear();
        for item in db.iterator_cf(cf(&db, CF_MINTED)?, IteratorMode::Start) {
            let (key, _) = item?;
            let id: [u8; 32] = key
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("atomizer minted", "key is not 32 bytes"))?;
            self.minted.insert(TxId::from(id));
        }
        self.heights.send_replace(self.height);
        Ok(())
    }

    /// The first height of the double-spend window ending at the current height.
    fn window_start(&self) -> u64 {
        (self.height + 1)
            .saturating_sub(self.params.stxo_cache_depth)
            .max(1)
    }

    /// The height of the last block cut (0 before the first).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The lowest block still held (`height + 1` when none is).
    pub fn first_held(&self) -> u64 {
        self.first_held
    }

    /// Transactions in the block being built.
    pub fn pending_len(&self) -> usize {
        self.pending_txs.len()
    }

    /// A receiver that sees the height change each time a block is cut (and written).
    pub fn subscribe_heights(&self) -> watch::Receiver<u64> {
        self.heights.subscribe()
    }

    /// Block `height`, if it is held.
    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, ConsensusError> {
        match self
            .db
            .get_cf(cf(&self.db, CF_BLOCKS)?, height.to_be_bytes())?
        {
            Some(bytes) => Ok(Some(decode("atomizer block", &bytes)?)),
            None => Ok(None),
        }
    }

    fn decide(
        &mut self,
        batch: &mut WriteBatch,
        candidate: Candidate,
    ) -> Result<Verdict, ConsensusError> {
        let tx = candidate.tx;
        if self.pending.ids.contains(&tx.id) || self.recent.iter().any(|w| w.ids.contains(&tx.id)) {
            return Ok(Verdict::Duplicate);
        }
        let rejection = if tx.inputs.is_empty() {
            self.minted.contains(&tx.id).then(|| {
                (
                    RejectCode::MintReplay,
                    None,
                    "this mint was applied before".to_string(),
                )
            })
        } else if candidate.attested_height + self.params.stxo_cache_depth < self.height {
            Some((
                RejectCode::Stale,
                None,
                format!(
                    "inputs attested at height {}, older than the {}-block window at height {}",
                    candidate.attested_height, self.params.stxo_cache_depth, self.height
                ),
            ))
        } else {
            tx.inputs
                .iter()
                .position(|input| {
                    self.pending.spent.contains(input)
                        || self.recent.iter().any(|w| w.spent.contains(input))
                })
                .map(|i| {
                    (
                        RejectCode::InputsSpent,
                        Some(i as u32),
                        format!("input {i} was spent in a recent block"),
                    )
                })
        };
        if let Some((code, input_index, message)) = rejection {
            self.stage_rejection(
                batch,
                BlockRejection {
                    tx_id: tx.id,
                    code,
                    input_index,
                    message,
                },
            )?;
            return Ok(Verdict::Rejected(code));
        }
        let tx = strip(tx);
        if tx.inputs.is_empty() {
            batch.put_cf(cf(&self.db, CF_MINTED)?, tx.id.as_bytes(), []);
            self.minted.insert(tx.id);
        }
        batch.put_cf(
            cf(&self.db, CF_PENDING)?,
            pending_key(PENDING_TX, self.pending_txs.len()),
            encode(&tx)?,
        );
        self.pending.spent.extend(tx.inputs.iter().copied());
        self.pending.ids.insert(tx.id);
        self.pending_txs.push(tx);
        Ok(Verdict::Accepted)
    }

    fn stage_rejection(
        &mut self,
        batch: &mut WriteBatch,
        rejection: BlockRejection,
    ) -> Result<(), ConsensusError> {
        batch.put_cf(
            cf(&self.db, CF_PENDING)?,
            pending_key(PENDING_REJECTION, self.pending_rejections.len()),
            encode(&rejection)?,
        );
        self.pending_rejections.push(rejection);
        Ok(())
    }

    fn cut(&mut self, batch: &mut WriteBatch) -> Result<Option<u64>, ConsensusError> {
        if self.pending_txs.is_empty() && self.pending_rejections.is_empty() {
            return Ok(None);
        }
        let height = self.height + 1;
        let block = StoredBlock {
            height,
            transactions: std::mem::take(&mut self.pending_txs),
            rejections: std::mem::take(&mut self.pending_rejections),
        };
        batch.put_cf(
            cf(&self.db, CF_BLOCKS)?,
            height.to_be_bytes(),
            encode(&block)?,
        );
        // Every pending key, including those staged in this very batch: Raft applies
        // several entries per write, so the block's last transactions may not be in the
        // database yet, and a deletion bounded by what is there (`clear_cf`) would leave
        // them to come back as pending after a restart.
        batch.delete_range_cf(
            cf(&self.db, CF_PENDING)?,
            PENDING_KEYS.start,
            PENDING_KEYS.end,
        );
        self.height = height;
        self.put_counter(batch, KEY_HEIGHT, height)?;
        let window = std::mem::take(&mut self.pending);
        self.recent.push_back(Window { height, ..window });
        while self
            .recent
            .front()
            .is_some_and(|w| w.height < self.window_start())
        {
            self.recent.pop_front();
        }
        Ok(Some(height))
    }

    fn prune(&mut self, batch: &mut WriteBatch, below: u64) -> Result<u64, ConsensusError> {
        let below = below.min(self.window_start());
        if below > self.first_held {
            batch.delete_range_cf(
                cf(&self.db, CF_BLOCKS)?,
                self.first_held.to_be_bytes(),
                below.to_be_bytes(),
            );
            self.first_held = below;
            self.put_counter(batch, KEY_FIRST_HELD, below)?;
        }
        Ok(self.first_held)
    }

    fn put_counter(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        value: u64,
    ) -> Result<(), ConsensusError> {
        batch.put_cf(cf(&self.db, CF_ATOMIZER_META)?, key, value.to_le_bytes());
        Ok(())
    }
}

impl StateMachine for AtomizerMachine {
    type Command = Command;
    type Response = Response;

    fn column_families() -> &'static [&'static str] {
        &[CF_BLOCKS, CF_PENDING, CF_MINTED, CF_ATOMIZER_META]
    }

    fn apply(
        &mut self,
        batch: &mut WriteBatch,
        commands: Vec<Command>,
    ) -> Result<Vec<Response>, ConsensusError> {
        commands
            .into_iter()
            .map(|command| match command {
                Command::Complete(candidates) => candidates
                    .into_iter()
                    .map(|c| self.decide(batch, c))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Response::Verdicts),
                Command::Incomplete(ids) => {
                    for tx_id in ids {
                        if self.pending.ids.contains(&tx_id) {
                            continue;
                        }
                        self.stage_rejection(
                            batch,
                            BlockRejection {
                                tx_id,
                                code: RejectCode::Incomplete,
                                input_index: None,
                                message: format!(
                                    "not every input was attested within {} blocks",
                                    self.params.stxo_cache_depth
                                ),
                            },
                        )?;
                    }
                    Ok(Response::Recorded)
                }
                Command::CutBlock => self.cut(batch).map(Response::Cut),
                Command::Prune { below } => self
                    .prune(batch, below)
                    .map(|first_held| Response::Pruned { first_held }),
            })
            .collect()
    }

    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        let blocks = (self.first_held..=self.height)
            .map(|h| {
                self.block(h)?
                    .ok_or_else(|| corrupt("atomizer blocks", format!("block {h} is missing")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut minted: Vec<TxId> = self.minted.iter().copied().collect();
        minted.sort_unstable();
        encode(&SnapshotData {
            version: SNAPSHOT_VERSION,
            height: self.height,
            first_held: self.first_held,
            blocks,
            pending_txs: self.pending_txs.clone(),
            pending_rejections: self.pending_rejections.clone(),
            minted,
        })
    }

    fn install_snapshot(
        &mut self,
        batch: &mut WriteBatch,
        data: &[u8],
    ) -> Result<(), ConsensusError> {
        let snapshot: SnapshotData = decode("atomizer snapshot", data)?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(corrupt(
                "atomizer snapshot",
                format!(
                    "version {}, this replica reads {SNAPSHOT_VERSION}",
                    snapshot.version
                ),
            ));
        }
        for name in [CF_BLOCKS, CF_PENDING, CF_MINTED, CF_ATOMIZER_META] {
            clear_cf(&self.db, name, batch)?;
        }
        let blocks_cf = cf(&self.db, CF_BLOCKS)?;
        for block in &snapshot.blocks {
            batch.put_cf(blocks_cf, block.height.to_be_bytes(), encode(block)?);
        }
        let pending_cf = cf(&self.db, CF_PENDING)?;
        for (i, tx) in snapshot.pending_txs.iter().enumerate() {
            batch.put_cf(pending_cf, pending_key(PENDING_TX, i), encode(tx)?);
        }
        for (i, r) in snapshot.pending_rejections.iter().enumerate() {
            batch.put_cf(pending_cf, pending_key(PENDING_REJECTION, i), encode(r)?);
        }
        let minted_cf = cf(&self.db, CF_MINTED)?;
        for id in &snapshot.minted {
            batch.put_cf(minted_cf, id.as_bytes(), []);
        }
        self.put_counter(batch, KEY_HEIGHT, snapshot.height)?;
        self.put_counter(batch, KEY_FIRST_HELD, snapshot.first_held)?;
        self.height = snapshot.height;
        self.first_held = snapshot.first_held;
        self.pending = Window::default();
        for tx in &snapshot.pending_txs {
            self.pending.spent.extend(tx.inputs.iter().copied());
            self.pending.ids.insert(tx.id);
        }
        self.pending_txs = snapshot.pending_txs;
        self.pending_rejections = snapshot.pending_rejections;
        let from = self.window_start();
        self.recent = snapshot
            .blocks
            .iter()
            .filter(|b| b.height >= from)
            .map(Window::of)
            .collect();
        self.minted = snapshot.minted.into_iter().collect();
        Ok(())
    }

    fn on_written(&mut self) -> Result<(), ConsensusError> {
        self.heights.send_if_modified(|h| {
            let changed = *h != self.height;
            *h = self.height;
            changed
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_consensus::storage::open_db;
    use cbdc_core::Amount;

    struct Fixture {
        _dir: tempfile::TempDir,
        db: Arc<DB>,
        machine: AtomizerMachine,
    }

    const DEPTH: u64 = 2;

    fn fixture() -> Fixture {
        let dir = tempfile::TempDir::new().unwrap();
        let db = open_db::<AtomizerMachine>(dir.path()).unwrap();
        let machine = AtomizerMachine::open(
            db.clone(),
            MachineParams {
                stxo_cache_depth: DEPTH,
            },
        )
        .unwrap();
        Fixture {
            _dir: dir,
            db,
            machine,
        }
    }

    impl Fixture {
        fn run(&mut self, commands: Vec<Command>) -> Vec<Response> {
            let mut batch = WriteBatch::default();
            let out = self.machine.apply(&mut batch, commands).unwrap();
            self.db.write(batch).unwrap();
            self.machine.on_written().unwrap();
            out
        }

        fn decide(&mut self, candidates: Vec<Candidate>) -> Vec<Verdict> {
            match self.run(vec![Command::Complete(candidates)]).pop() {
                Some(Response::Verdicts(v)) => v,
                other => panic!("{other:?}"),
            }
        }

        fn cut(&mut self) -> Option<u64> {
            match self.run(vec![Command::CutBlock]).pop() {
                Some(Response::Cut(h)) => h,
                other => panic!("{other:?}"),
            }
        }

        fn reopen(&mut self) {
            self.machine = AtomizerMachine::open(
                self.db.clone(),
                MachineParams {
                    stxo_cache_depth: DEPTH,
                },
            )
            .unwrap();
        }
    }

    fn uhs(n: u8) -> UhsId {
        UhsId::from([n; 32])
    }

    fn tx(id: u8, inputs: &[u8]) -> CompactTransaction {
        CompactTransaction {
            id: TxId::from([id; 32]),
            inputs: inputs.iter().map(|&i| uhs(i)).collect(),
            outputs: vec![(uhs(id.wrapping_add(128)), Amount::from_cents(1))],
            attestations: Vec::new(),
        }
    }

    fn at(tx: CompactTransaction, attested_height: u64) -> Candidate {
        Candidate {
            tx,
            attested_height,
        }
    }

    #[test]
    fn test_double_spend_in_one_block_and_across_blocks() {
        let mut f = fixture();
        assert_eq!(
            f.decide(vec![at(tx(1, &[10, 11]), 0), at(tx(2, &[11]), 0)]),
            vec![
                Verdict::Accepted,
                Verdict::Rejected(RejectCode::InputsSpent)
            ]
        );
        assert_eq!(f.cut(), Some(1));
        // Attested at height 0, before block 1 spent input 10.
        assert_eq!(
            f.decide(vec![at(tx(3, &[12, 10]), 0)]),
            vec![Verdict::Rejected(RejectCode::InputsSpent)]
        );
        let block = f.machine.block(1).unwrap().unwrap();
        assert_eq!(block.transactions.len(), 1);
        assert_eq!(block.rejections.len(), 1);
        assert_eq!(block.rejections[0].input_index, Some(0));
        assert_eq!(f.cut(), Some(2));
        let block = f.machine.block(2).unwrap().unwrap();
        assert_eq!(block.rejections[0].input_index, Some(1));
    }

    #[test]
    fn test_stale_attestations_are_refused_and_the_window_slides() {
        let mut f = fixture();
        for (i, h) in (1..=4u8).zip(1..=4u64) {
            f.decide(vec![at(tx(i, &[i + 20]), h - 1)]);
            assert_eq!(f.cut(), Some(h));
        }
        // Height 4, depth 2: an attestation at height 1 may miss a spend in block 2.
        assert_eq!(
            f.decide(vec![at(tx(9, &[99]), 1)]),
            vec![Verdict::Rejected(RejectCode::Stale)]
        );
        assert_eq!(
            f.decide(vec![at(tx(10, &[98]), 2)]),
            vec![Verdict::Accepted]
        );
        // Block 1's input left the window: the machine no longer catches it (the shard
        // cannot attest it any more, having applied block 1).
        assert!(f.machine.recent.iter().all(|w| w.height >= 3));
    }

    #[test]
    fn test_duplicates_mints_and_incomplete() {
        let mut f = fixture();
        let mint = tx(5, &[]);
        assert_eq!(f.decide(vec![at(mint.clone(), 0)]), vec![Verdict::Accepted]);
        assert_eq!(
            f.decide(vec![at(mint.clone(), 0)]),
            vec![Verdict::Duplicate]
        );
        f.run(vec![Command::Incomplete(vec![TxId::from([7; 32])])]);
        assert_eq!(f.cut(), Some(1));
        assert_eq!(f.cut(), None, "nothing to put in a block");
        for i in 60..63 {
            f.decide(vec![at(tx(i, &[i]), f.machine.height())]);
            f.cut();
        }
        // Long after its window, the same mint is a replay, not a duplicate.
        assert_eq!(
            f.decide(vec![at(mint, 0)]),
            vec![Verdict::Rejected(RejectCode::MintReplay)]
        );
        let first = f.machine.block(1).unwrap().unwrap();
        assert_eq!(first.rejections[0].code, RejectCode::Incomplete);
    }

    #[test]
    fn test_state_survives_reopen_and_snapshot() {
        let mut f = fixture();
        f.decide(vec![at(tx(1, &[10]), 0)]);
        f.cut();
        f.decide(vec![at(tx(2, &[11]), 1)]);
        f.reopen();
        assert_eq!(f.machine.height(), 1);
        assert_eq!(f.machine.pending_len(), 1);
        assert_eq!(
            f.decide(vec![at(tx(3, &[10]), 0), at(tx(4, &[11]), 1)]),
            vec![
                Verdict::Rejected(RejectCode::InputsSpent),
                Verdict::Rejected(RejectCode::InputsSpent)
            ]
        );
        let snapshot = f.machine.snapshot().unwrap();
        let mut g = fixture();
        let mut batch = WriteBatch::default();
        g.machine.install_snapshot(&mut batch, &snapshot).unwrap();
        g.db.write(batch).unwrap();
        assert_eq!(g.machine.height(), 1);
        assert_eq!(g.machine.pending_len(), 1);
        g.reopen();
        assert_eq!(g.machine.snapshot().unwrap(), snapshot);
    }

    #[test]
    fn test_a_cut_in_the_same_write_as_its_transactions_leaves_nothing_pending_on_disk() {
        // Raft applies several log entries in one write batch, so a block's last
        // transactions (and rejections) may be staged in the batch that cuts it. After a
        // restart the block being built must be empty, not hold them again: a block with
        // them twice would spend their inputs twice at the shards.
        let mut f = fixture();
        f.decide(vec![at(tx(1, &[10]), 0)]);
        f.run(vec![
            Command::Complete(vec![at(tx(2, &[11]), 0), at(tx(3, &[12]), 0)]),
            Command::Incomplete(vec![TxId::from([7; 32])]),
            Command::CutBlock,
        ]);
        f.run(vec![
            Command::Incomplete(vec![TxId::from([8; 32])]),
            Command::CutBlock,
        ]);
        // The same when nothing of the block was written before the cut.
        f.run(vec![
            Command::Complete(vec![at(tx(4, &[13]), 2)]),
            Command::Incomplete(vec![TxId::from([9; 32])]),
            Command::CutBlock,
        ]);
        assert_eq!(f.machine.height(), 3);
        let before = f.machine.snapshot().unwrap();
        f.reopen();
        assert_eq!(f.machine.pending_len(), 0);
        assert_eq!(f.machine.snapshot().unwrap(), before);
        assert_eq!(f.cut(), None, "nothing is pending after the restart");
    }

    #[test]
    fn test_prune_keeps_the_window() {
        let mut f = fixture();
        for i in 1..=5u8 {
            f.decide(vec![at(tx(i, &[i + 20]), f.machine.height())]);
            f.cut();
        }
        match f.run(vec![Command::Prune { below: 100 }]).pop() {
            // Height 5, depth 2: blocks 4 and 5 stay.
            Some(Response::Pruned { first_held }) => assert_eq!(first_held, 4),
            other => panic!("{other:?}"),
        }
        assert!(f.machine.block(3).unwrap().is_none());
        assert!(f.machine.block(4).unwrap().is_some());
        f.reopen();
        assert_eq!(f.machine.first_held(), 4);
    }
}
