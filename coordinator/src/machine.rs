//! The replicated state of a coordinator group: its unfinished dtxs.
//!
//! A dtx lives here from `Prepare` (before any shard is asked to lock) until `Done`
//! (after every shard applied and discarded it), so that whichever replica leads next can
//! finish it. The state is small: at most a few batches per group.
//!
//! | column family | key | value |
//! |---|---|---|
//! | [`CF_DTX_TXS`] | sequence (u64 big-endian) | the dtx's transactions ([`DtxTransactions`]) |
//! | [`CF_DTX_DECISIONS`] | sequence | bincode `Vec<Verdict>`, once decided |
//! | [`CF_COORD_META`] | `next_sequence` | u64 little-endian |

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use cbdc_consensus::storage::{cf, clear_cf};
use cbdc_consensus::{encode, ConsensusError, StateMachine};
use cbdc_core::{decode_compact_batch, encode_compact_batch, CompactTransaction, DecodeError};
use rocksdb::{IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::dtx::Verdict;

/// Column family of the dtxs' transactions.
pub const CF_DTX_TXS: &str = "coord_dtx_txs";
/// Column family of the dtxs' decisions.
pub const CF_DTX_DECISIONS: &str = "coord_dtx_decisions";
/// Column family of the counters.
pub const CF_COORD_META: &str = "coord_meta";

const KEY_NEXT_SEQUENCE: &[u8] = b"next_sequence";
/// Version of the snapshot format, so that an incompatible replica fails loudly.
const SNAPSHOT_VERSION: u32 = 1;

/// A dtx's transactions (attestations included) in their canonical encoding:
/// `u32 count ‖ count × CompactTransaction`.
///
/// Kept encoded so that the state machine stores what the leader encoded once, without
/// decoding and re-encoding a whole batch on every replica; only recovery decodes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtxTransactions(#[serde(with = "cbdc_consensus::byte_string")] Vec<u8>);

impl DtxTransactions {
    /// Encodes `txs` ([`encode_compact_batch`]).
    pub fn encode(txs: &[CompactTransaction]) -> Self {
        Self(encode_compact_batch(txs))
    }

    /// Decodes the transactions (strictly: trailing bytes are an error).
    pub fn decode(&self) -> Result<Vec<CompactTransaction>, DecodeError> {
        decode_compact_batch(&self.0, usize::MAX)
    }

    /// The number of transactions, read from the count prefix.
    pub fn count(&self) -> Option<usize> {
        let prefix: [u8; 4] = self.0.get(..4)?.try_into().ok()?;
        Some(u32::from_le_bytes(prefix) as usize)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps stored bytes (checked only when decoded).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for DtxTransactions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DtxTransactions({:?} txs, {} bytes)",
            self.count(),
            self.0.len()
        )
    }
}

/// A command of the coordinator state machine. Every command is deterministic; `Decide`
/// and `Done` are idempotent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CoordinatorCommand {
    /// Record a new dtx in phase Prepared, with the next sequence number of the group.
    Prepare {
        /// The dtx's transactions.
        txs: DtxTransactions,
    },
    /// Record the verdicts of a prepared dtx (phase Decided). The first decision
    /// recorded wins; a repeated Decide changes nothing and answers the recorded one.
    Decide {
        /// The dtx.
        sequence: u64,
        /// One verdict per transaction of the dtx, in order.
        verdicts: Vec<Verdict>,
    },
    /// Forget finished dtxs (unknown sequences are ignored).
    Done {
        /// The dtxs.
        sequences: Vec<u64>,
    },
}

/// The answer to a [`CoordinatorCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinatorResponse {
    /// The dtx was recorded under `sequence`.
    Prepared {
        /// Its sequence number in the group (from 1).
        sequence: u64,
    },
    /// The dtx is decided. `earlier` is `None` when this command's verdicts were
    /// recorded, or the verdicts recorded by an earlier `Decide` (which stand).
    Decided {
        /// The verdicts that were already recorded, if any.
        earlier: Option<Vec<Verdict>>,
    },
    /// `Decide` named a dtx that is not recorded (finished, or never prepared).
    UnknownDtx {
        /// The sequence named.
        sequence: u64,
    },
    /// `Decide` carried the wrong number of verdicts; nothing was recorded.
    WrongVerdictCount {
        /// Transactions in the dtx.
        expected: usize,
        /// Verdicts given.
        found: usize,
    },
    /// `Prepare` carried transactions whose count cannot be read; nothing was recorded.
    MalformedTransactions,
    /// `Done` was applied; how many of the sequences were still recorded.
    Done {
        /// Records removed.
        removed: usize,
    },
}

/// An unfinished dtx as read for recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtxRecord {
    /// Its sequence number in the group.
    pub sequence: u64,
    /// Its transactions.
    pub txs: DtxTransactions,
    /// Its verdicts, once decided (phase Decided); `None` while Prepared.
    pub verdicts: Option<Vec<Verdict>>,
}

/// What the state machine keeps in memory about a live dtx: enough to answer `Decide`
/// and `Done` without reading the disk.
#[derive(Debug, Clone)]
struct LiveDtx {
    tx_count: usize,
    verdicts: Option<Vec<Verdict>>,
}

/// The whole state, as a snapshot carries it.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    version: u32,
    next_sequence: u64,
    dtxs: Vec<(u64, DtxTransactions, Option<Vec<Verdict>>)>,
}

/// The coordinator group's Raft state machine: the unfinished dtxs and the sequence
/// counter.
pub struct CoordinatorMachine {
    db: Arc<DB>,
    /// The sequence the next `Prepare` gets (from 1).
    next_sequence: u64,
    /// Unfinished dtxs by sequence. Updated in `apply` (a failed write stops the replica,
    /// so it can never run ahead of the disk and still be used).
    live: BTreeMap<u64, LiveDtx>,
}

fn corrupt(what: &'static str, reason: impl ToString) -> ConsensusError {
    ConsensusError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

fn sequence_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

fn sequence_from_key(key: &[u8]) -> Result<u64, ConsensusError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| corrupt("dtx key", format!("{} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

impl CoordinatorMachine {
    /// The state machine over a replica's DB (whose column families include
    /// [`StateMachine::column_families`]), loading what is stored.
    pub fn new(db: Arc<DB>) -> Result<Self, ConsensusError> {
        let mut machine = Self {
            db,
            next_sequence: 1,
            live: BTreeMap::new(),
        };
        machine.load()?;
        Ok(machine)
    }

    fn load(&mut self) -> Result<(), ConsensusError> {
        let db = &self.db;
        self.next_sequence = match db.get_cf(cf(db, CF_COORD_META)?, KEY_NEXT_SEQUENCE)? {
            None => 1,
            Some(bytes) => {
                let bytes: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("next sequence", "not 8 bytes"))?;
                u64::from_le_bytes(bytes)
            }
        };
        let mut live = BTreeMap::new();
        for item in db.iterator_cf(cf(db, CF_DTX_TXS)?, IteratorMode::Start) {
            let (key, value) = item?;
            let txs = DtxTransactions::from_bytes(value.into_vec());
            let tx_count = txs
                .count()
                .ok_or_else(|| corrupt("dtx transactions", "no count"))?;
            live.insert(
                sequence_from_key(&key)?,
                LiveDtx {
                    tx_count,
                    verdicts: None,
                },
            );
        }
        for item in db.iterator_cf(cf(db, CF_DTX_DECISIONS)?, IteratorMode::Start) {
            let (key, value) = item?;
            let sequence = sequence_from_key(&key)?;
            let verdicts: Vec<Verdict> =
                bincode::deserialize(&value).map_err(|e| corrupt("dtx decision", e))?;
            match live.get_mut(&sequence) {
                Some(dtx) => dtx.verdicts = Some(verdicts),
                None => {
                    return Err(corrupt(
                        "dtx decision",
                        format!("dtx {sequence} has a decision but no transactions"),
                    ))
                }
            }
        }
        self.live = live;
        Ok(())
    }

    /// The sequence the next dtx will get.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// How many dtxs are unfinished.
    pub fn unfinished_count(&self) -> usize {
        self.live.len()
    }

    /// The sequences of the unfinished dtxs and whether each is decided, in order.
    pub fn unfinished_phases(&self) -> Vec<(u64, bool)> {
        self.live
            .iter()
            .map(|(s, d)| (*s, d.verdicts.is_some()))
            .collect()
    }

    /// Every unfinished dtx with its transactions and decision, in sequence order (what a
    /// new leader drives to completion).
    pub fn unfinished(&self) -> Result<Vec<DtxRecord>, ConsensusError> {
        let handle = cf(&self.db, CF_DTX_TXS)?;
        let mut out = Vec::with_capacity(self.live.len());
        for (sequence, dtx) in &self.live {
            let bytes = self
                .db
                .get_cf(handle, sequence_key(*sequence))?
                .ok_or_else(|| corrupt("dtx transactions", format!("dtx {sequence} missing")))?;
            out.push(DtxRecord {
                sequence: *sequence,
                txs: DtxTransactions::from_bytes(bytes),
                verdicts: dtx.verdicts.clone(),
            });
        }
        Ok(out)
    }

    fn prepare(
        &mut self,
        batch: &mut WriteBatch,
        txs: DtxTransactions,
    ) -> Result<CoordinatorResponse, ConsensusError> {
        let Some(tx_count) = txs.count() else {
            return Ok(CoordinatorResponse::MalformedTransactions);
        };
        let sequence = self.next_sequence;
        self.next_sequence = sequence.saturating_add(1);
        batch.put_cf(cf(&self.db, CF_DTX_TXS)?, sequence_key(sequence), txs.0);
        batch.put_cf(
            cf(&self.db, CF_COORD_META)?,
            KEY_NEXT_SEQUENCE,
            self.next_sequence.to_le_bytes(),
        );
        self.live.insert(
            sequence,
            LiveDtx {
                tx_count,
                verdicts: None,
            },
        );
        Ok(CoordinatorResponse::Prepared { sequence })
    }

    fn decide(
        &mut self,
        batch: &mut WriteBatch,
        sequence: u64,
        verdicts: Vec<Verdict>,
    ) -> Result<CoordinatorResponse, ConsensusError> {
        let handle = cf(&self.db, CF_DTX_DECISIONS)?;
        let Some(dtx) = self.live.get_mut(&sequence) else {
            return Ok(CoordinatorResponse::UnknownDtx { sequence });
        };
        if let Some(earlier) = &dtx.verdicts {
            return Ok(CoordinatorResponse::Decided {
                earlier: Some(earlier.clone()),
            });
        }
        if verdicts.len() != dtx.tx_count {
            return Ok(CoordinatorResponse::WrongVerdictCount {
                expected: dtx.tx_count,
                found: verdicts.len(),
            });
        }
        batch.put_cf(handle, sequence_key(sequence), encode(&verdicts)?);
        dtx.verdicts = Some(verdicts);
        Ok(CoordinatorResponse::Decided { earlier: None })
    }

    fn done(
        &mut self,
        batch: &mut WriteBatch,
        sequences: Vec<u64>,
    ) -> Result<CoordinatorResponse, ConsensusError> {
        let txs = cf(&self.db, CF_DTX_TXS)?;
        let decisions = cf(&self.db, CF_DTX_DECISIONS)?;
        let mut removed = 0;
        for sequence in sequences {
            if self.live.remove(&sequence).is_some() {
                batch.delete_cf(txs, sequence_key(sequence));
                batch.delete_cf(decisions, sequence_key(sequence));
                removed += 1;
            }
        }
        Ok(CoordinatorResponse::Done { removed })
    }
}

impl StateMachine for CoordinatorMachine {
    type Command = CoordinatorCommand;
    type Response = CoordinatorResponse;

    fn column_families() -> &'static [&'static str] {
        &[CF_DTX_TXS, CF_DTX_DECISIONS, CF_COORD_META]
    }

    fn apply(
        &mut self,
        batch: &mut WriteBatch,
        commands: Vec<CoordinatorCommand>,
    ) -> Result<Vec<CoordinatorResponse>, ConsensusError> {
        // Later commands see earlier ones through `self.live` and `self.next_sequence`,
        // which are updated as each command is staged.
        commands
            .into_iter()
            .map(|command| match command {
                CoordinatorCommand::Prepare { txs } => self.prepare(batch, txs),
                CoordinatorCommand::Decide { sequence, verdicts } => {
                    self.decide(batch, sequence, verdicts)
                }
                CoordinatorCommand::Done { sequences } => self.done(batch, sequences),
            })
            .collect()
    }

    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        let dtxs = self
            .unfinished()?
            .into_iter()
            .map(|r| (r.sequence, r.txs, r.verdicts))
            .collect();
        encode(&SnapshotData {
            version: SNAPSHOT_VERSION,
            next_sequence: self.next_sequence,
            dtxs,
        })
    }

    fn install_snapshot(
        &mut self,
        batch: &mut WriteBatch,
        data: &[u8],
    ) -> Result<(), ConsensusError> {
        let snapshot: SnapshotData =
            bincode::deserialize(data).map_err(|e| corrupt("coordinator snapshot", e))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(corrupt(
                "coordinator snapshot",
                format!(
                    "version {}, this replica reads {SNAPSHOT_VERSION}",
                    snapshot.version
                ),
            ));
        }
        for name in Self::column_families() {
            clear_cf(&self.db, name, batch)?;
        }
        let txs_cf = cf(&self.db, CF_DTX_TXS)?;
        let decisions_cf = cf(&self.db, CF_DTX_DECISIONS)?;
        batch.put_cf(
            cf(&self.db, CF_COORD_META)?,
            KEY_NEXT_SEQUENCE,
            snapshot.next_sequence.to_le_bytes(),
        );
        let mut live = BTreeMap::new();
        for (sequence, txs, verdicts) in snapshot.dtxs {
            let tx_count = txs
                .count()
                .ok_or_else(|| corrupt("coordinator snapshot", "dtx without a count"))?;
            if let Some(v) = &verdicts {
                batch.put_cf(decisions_cf, sequence_key(sequence), encode(v)?);
            }
            batch.put_cf(txs_cf, sequence_key(sequence), txs.0);
            live.insert(sequence, LiveDtx { tx_count, verdicts });
        }
        self.next_sequence = snapshot.next_sequence;
        self.live = live;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_consensus::storage::open_db;
    use cbdc_core::{Amount, Hash, TxId, UhsId};
    use cbdc_proto::v1::RejectReason;

    fn open(dir: &std::path::Path) -> CoordinatorMachine {
        let db = open_db::<CoordinatorMachine>(dir).unwrap();
        CoordinatorMachine::new(db).unwrap()
    }

    fn txs(n: u8) -> Vec<CompactTransaction> {
        (0..n)
            .map(|i| CompactTransaction {
                id: TxId(Hash([i; 32])),
                inputs: vec![UhsId(Hash([i.wrapping_add(100); 32]))],
                outputs: vec![(
                    UhsId(Hash([i.wrapping_add(200); 32])),
                    Amount::from_cents(5),
                )],
                attestations: Vec::new(),
            })
            .collect()
    }

    /// Applies `commands` as one run of entries and writes the batch, as the wrapper does.
    fn run(
        sm: &mut CoordinatorMachine,
        commands: Vec<CoordinatorCommand>,
    ) -> Vec<CoordinatorResponse> {
        let mut batch = WriteBatch::default();
        let responses = sm.apply(&mut batch, commands).unwrap();
        sm.db.write(batch).unwrap();
        sm.on_written().unwrap();
        responses
    }

    fn prepare(n: u8) -> CoordinatorCommand {
        CoordinatorCommand::Prepare {
            txs: DtxTransactions::encode(&txs(n)),
        }
    }

    #[test]
    fn test_dtx_transactions_round_trip_and_strictness() {
        let original = txs(3);
        let encoded = DtxTransactions::encode(&original);
        assert_eq!(encoded.count(), Some(3));
        assert_eq!(encoded.decode().unwrap(), original);
        let bytes = bincode::serialize(&encoded).unwrap();
        let back: DtxTransactions = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, encoded);
        let mut truncated = encoded.as_bytes().to_vec();
        truncated.pop();
        assert!(DtxTransactions::from_bytes(truncated).decode().is_err());
        let mut trailing = encoded.as_bytes().to_vec();
        trailing.push(0);
        assert!(DtxTransactions::from_bytes(trailing).decode().is_err());
        assert!(DtxTransactions::from_bytes(vec![1, 2]).count().is_none());
    }

    #[test]
    fn test_prepare_assigns_sequences_deterministically() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let mut a = open(a_dir.path());
        let mut b = open(b_dir.path());
        let commands = || vec![prepare(2), prepare(1), prepare(3)];
        let ra = run(&mut a, commands());
        let rb = run(&mut b, commands());
        assert_eq!(ra, rb);
        assert_eq!(
            ra,
            vec![
                CoordinatorResponse::Prepared { sequence: 1 },
                CoordinatorResponse::Prepared { sequence: 2 },
                CoordinatorResponse::Prepared { sequence: 3 },
            ]
        );
        assert_eq!(a.next_sequence(), 4);
        assert_eq!(a.unfinished().unwrap(), b.unfinished().unwrap());
        // Sequences are never reused, even after every dtx is done.
        run(
            &mut a,
            vec![CoordinatorCommand::Done {
                sequences: vec![1, 2, 3],
            }],
        );
        assert_eq!(
            run(&mut a, vec![prepare(1)]),
            vec![CoordinatorResponse::Prepared { sequence: 4 }]
        );
    }

    #[test]
    fn test_prepare_malformed_transactions_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        let r = run(
            &mut sm,
            vec![CoordinatorCommand::Prepare {
                txs: DtxTransactions::from_bytes(vec![0]),
            }],
        );
        assert_eq!(r, vec![CoordinatorResponse::MalformedTransactions]);
        assert_eq!(sm.unfinished_count(), 0);
        assert_eq!(sm.next_sequence(), 1);
    }

    #[test]
    fn test_decide_first_decision_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        run(&mut sm, vec![prepare(2)]);
        let first = vec![
            Verdict::Commit,
            Verdict::abort(RejectReason::InputsSpent, Some(0)),
        ];
        let second = vec![Verdict::Commit, Verdict::Commit];
        let r = run(
            &mut sm,
            vec![
                CoordinatorCommand::Decide {
                    sequence: 1,
                    verdicts: first.clone(),
                },
                CoordinatorCommand::Decide {
                    sequence: 1,
                    verdicts: second,
                },
            ],
        );
        assert_eq!(
            r,
            vec![
                CoordinatorResponse::Decided { earlier: None },
                CoordinatorResponse::Decided {
                    earlier: Some(first.clone())
                },
            ]
        );
        let records = sm.unfinished().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].verdicts.as_ref(), Some(&first));
        assert_eq!(sm.unfinished_phases(), vec![(1, true)]);
    }

    #[test]
    fn test_decide_unknown_or_wrong_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        run(&mut sm, vec![prepare(2)]);
        let r = run(
            &mut sm,
            vec![
                CoordinatorCommand::Decide {
                    sequence: 9,
                    verdicts: vec![],
                },
                CoordinatorCommand::Decide {
                    sequence: 1,
                    verdicts: vec![Verdict::Commit],
                },
            ],
        );
        assert_eq!(
            r,
            vec![
                CoordinatorResponse::UnknownDtx { sequence: 9 },
                CoordinatorResponse::WrongVerdictCount {
                    expected: 2,
                    found: 1
                },
            ]
        );
        assert_eq!(sm.unfinished_phases(), vec![(1, false)]);
    }

    #[test]
    fn test_prepare_decide_done_in_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        let r = run(
            &mut sm,
            vec![
                prepare(1),
                CoordinatorCommand::Decide {
                    sequence: 1,
                    verdicts: vec![Verdict::Commit],
                },
                prepare(1),
                CoordinatorCommand::Done {
                    sequences: vec![1, 1, 7],
                },
            ],
        );
        assert_eq!(r[3], CoordinatorResponse::Done { removed: 1 });
        assert_eq!(sm.unfinished_phases(), vec![(2, false)]);
        // Done again changes nothing.
        let r = run(
            &mut sm,
            vec![CoordinatorCommand::Done { sequences: vec![1] }],
        );
        assert_eq!(r, vec![CoordinatorResponse::Done { removed: 0 }]);
    }

    #[test]
    fn test_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let expected = {
            let mut sm = open(dir.path());
            run(&mut sm, vec![prepare(2), prepare(1), prepare(1)]);
            run(
                &mut sm,
                vec![
                    CoordinatorCommand::Decide {
                        sequence: 2,
                        verdicts: vec![Verdict::CommittedBefore],
                    },
                    CoordinatorCommand::Done { sequences: vec![3] },
                ],
            );
            sm.unfinished().unwrap()
        };
        let sm = open(dir.path());
        assert_eq!(sm.unfinished().unwrap(), expected);
        assert_eq!(sm.next_sequence(), 4);
        assert_eq!(sm.unfinished_phases(), vec![(1, false), (2, true)]);
    }

    #[test]
    fn test_snapshot_round_trip() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let mut a = open(a_dir.path());
        run(&mut a, vec![prepare(2), prepare(3)]);
        run(
            &mut a,
            vec![CoordinatorCommand::Decide {
                sequence: 2,
                verdicts: vec![Verdict::Commit; 3],
            }],
        );
        let data = a.snapshot().unwrap();

        // B has other state of its own, which the snapshot replaces.
        let mut b = open(b_dir.path());
        run(&mut b, vec![prepare(1), prepare(1), prepare(1), prepare(1)]);
        let mut batch = WriteBatch::default();
        b.install_snapshot(&mut batch, &data).unwrap();
        b.db.write(batch).unwrap();
        assert_eq!(b.unfinished().unwrap(), a.unfinished().unwrap());
        assert_eq!(b.next_sequence(), 3);
        // And on disk: reopening B shows the same.
        drop(b);
        let b = open(b_dir.path());
        assert_eq!(b.unfinished().unwrap(), a.unfinished().unwrap());
        assert_eq!(b.next_sequence(), 3);
    }

    #[test]
    fn test_install_snapshot_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        let mut batch = WriteBatch::default();
        assert!(sm.install_snapshot(&mut batch, &[1, 2, 3]).is_err());
    }
}
