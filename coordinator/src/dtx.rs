//! The pure decision logic of a dtx: which shards it involves, what each shard's vote
//! means for each transaction, and what the sentinel is told. No I/O, no runtime: the
//! driver calls these between its network steps, and the benchmark times them.

use cbdc_core::{CompactTransaction, ShardMap, TxId};
use cbdc_proto::v1::{self, RejectReason};
use serde::{Deserialize, Serialize};

use crate::shards::LockVote;

/// The part of a dtx one shard group sees: the positions (in the dtx) of the
/// transactions that touch the shard, in dtx order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSlice {
    /// The shard's index in the [`ShardMap`].
    pub shard: usize,
    /// Positions of the slice's transactions in the dtx, ascending.
    pub txs: Vec<u32>,
}

/// The final verdict on one transaction of a dtx, as replicated by `Decide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Every involved shard locked it: commit everywhere, answer CONFIRMED.
    Commit,
    /// The shard owning its tx id recorded it as committed by an earlier dtx (a retry):
    /// answer CONFIRMED, but commit nothing (abort everywhere, releasing any lock).
    CommittedBefore,
    /// A shard refused it: abort everywhere and answer REJECTED with the refusal of the
    /// lowest-indexed refusing shard.
    Abort {
        /// A `cbdc.v1.RejectReason` value (kept as the wire integer so that the record
        /// format does not depend on generated code).
        reason: i32,
        /// The input at fault, when the shard named one.
        input_index: Option<u32>,
    },
}

impl Verdict {
    /// An abort for `reason` (UNSPECIFIED becomes ABORTED: a refusal always has a reason).
    pub fn abort(reason: RejectReason, input_index: Option<u32>) -> Self {
        let reason = match reason {
            RejectReason::Unspecified => RejectReason::Aborted,
            other => other,
        };
        Verdict::Abort {
            reason: reason as i32,
            input_index,
        }
    }

    /// Whether the shards are told to commit the transaction.
    pub fn commits(&self) -> bool {
        matches!(self, Verdict::Commit)
    }

    /// The reason sent with `Apply`: the refusal for an abort, UNSPECIFIED otherwise
    /// (also for [`Verdict::CommittedBefore`], which is not a refusal: the shard owning the
    /// tx id keeps its committed record).
    pub fn apply_reason(&self) -> RejectReason {
        match *self {
            Verdict::Abort { reason, .. } => {
                RejectReason::try_from(reason).unwrap_or(RejectReason::Aborted)
            }
            Verdict::Commit | Verdict::CommittedBefore => RejectReason::Unspecified,
        }
    }

    /// What the sentinel is told about transaction `id`.
    pub fn to_result(&self, id: &TxId) -> v1::TransactionResult {
        match *self {
            Verdict::Commit | Verdict::CommittedBefore => {
                v1::TransactionResult::confirmed(id, None)
            }
            Verdict::Abort { input_index, .. } => {
                let reason = self.apply_reason();
                let message = match input_index {
                    Some(i) => format!("{} (input {i})", reason.as_str_name()),
                    None => String::new(),
                };
                v1::TransactionResult::rejected(id, reason, input_index, message)
            }
        }
    }
}

/// Splits a dtx into per-shard slices, in ascending shard order: a transaction goes to
/// every shard that owns one of its inputs, one of its outputs, or its tx id (that shard
/// records the outcome). Shards the dtx does not touch get no slice.
pub fn split(map: &ShardMap, txs: &[CompactTransaction]) -> Vec<ShardSlice> {
    let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); map.len()];
    for (position, tx) in txs.iter().enumerate() {
        // Positions beyond u32 cannot occur: batches are capped far below (see
        // `CoordinatorParams::validate`).
        let position = u32::try_from(position).unwrap_or(u32::MAX);
        // Every push for this transaction happens before the next one's, so "already
        // added" is "the shard's last entry is this position".
        let mut add = |shard: usize| {
            if let Some(slice) = by_shard.get_mut(shard) {
                if slice.last() != Some(&position) {
                    slice.push(position);
                }
            }
        };
        add(map.shard_for_tx(&tx.id));
        for input in &tx.inputs {
            add(map.shard_for(input));
        }
        for (output, _) in &tx.outputs {
            add(map.shard_for(output));
        }
    }
    by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, txs)| !txs.is_empty())
        .map(|(shard, txs)| ShardSlice { shard, txs })
        .collect()
}

/// Turns the shards' lock votes into one verdict per transaction of a dtx of `tx_count`
/// transactions. `votes[k]` answers `slices[k]` (one vote per slice transaction, which
/// the driver checks), and `slices` are in ascending shard order, so the first refusal
/// met is the lowest-indexed shard's.
///
/// A transaction commits iff every shard locked it. If any shard says it committed
/// before, it is [`Verdict::CommittedBefore`] whatever the others said (a retry of a
/// settled transaction finds its inputs spent, which must not read as a double spend).
pub fn decide(tx_count: usize, slices: &[ShardSlice], votes: &[Vec<LockVote>]) -> Vec<Verdict> {
    let mut verdicts = vec![Verdict::Commit; tx_count];
    for (slice, votes) in slices.iter().zip(votes) {
        for (&position, vote) in slice.txs.iter().zip(votes) {
            let Some(verdict) = verdicts.get_mut(position as usize) else {
                continue;
            };
            if vote.committed_before {
                *verdict = Verdict::CommittedBefore;
            } else if !vote.locked && *verdict == Verdict::Commit {
                *verdict = Verdict::abort(vote.reason, vote.input_index);
            }
        }
    }
    verdicts
}

/// The `Apply` arguments of one slice: a commit flag and a reason per slice transaction.
pub fn apply_args(slice: &ShardSlice, verdicts: &[Verdict]) -> (Vec<bool>, Vec<RejectReason>) {
    slice
        .txs
        .iter()
        .map(|&position| {
            let verdict = verdicts
                .get(position as usize)
                .copied()
                .unwrap_or(Verdict::abort(RejectReason::Aborted, None));
            (verdict.commits(), verdict.apply_reason())
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::{Amount, Hash, ShardRange, UhsId};

    /// Two shards: 0 owns prefixes 0x0000..=0x7fff, 1 owns the rest.
    fn two_shards() -> ShardMap {
        ShardMap::new(vec![
            ShardRange {
                start: 0,
                end: 0x7fff,
            },
            ShardRange {
                start: 0x8000,
                end: 0xffff,
            },
        ])
        .unwrap()
    }

    fn id(first: u8, n: u8) -> Hash {
        let mut bytes = [0u8; 32];
        bytes[0] = first;
        bytes[31] = n;
        Hash(bytes)
    }

    fn tx(tx_id: Hash, inputs: &[Hash], outputs: &[Hash]) -> CompactTransaction {
        CompactTransaction {
            id: TxId(tx_id),
            inputs: inputs.iter().map(|h| UhsId(*h)).collect(),
            outputs: outputs
                .iter()
                .map(|h| (UhsId(*h), Amount::from_cents(1)))
                .collect(),
            attestations: Vec::new(),
        }
    }

    fn locked() -> LockVote {
        LockVote::locked()
    }

    #[test]
    fn test_split_routes_inputs_outputs_and_tx_id() {
        let map = two_shards();
        let txs = vec![
            // Everything on shard 0.
            tx(id(0x00, 1), &[id(0x10, 1)], &[id(0x20, 1)]),
            // Tx id on shard 1, input on shard 0, output on shard 1.
            tx(id(0x90, 2), &[id(0x10, 2)], &[id(0xa0, 2)]),
            // A mint: tx id and output on shard 1 only.
            tx(id(0xff, 3), &[], &[id(0xf0, 3)]),
        ];
        let slices = split(&map, &txs);
        assert_eq!(
            slices,
            vec![
                ShardSlice {
                    shard: 0,
                    txs: vec![0, 1]
                },
                ShardSlice {
                    shard: 1,
                    txs: vec![1, 2]
                },
            ]
        );
    }

    #[test]
    fn test_split_skips_untouched_shards() {
        let map = ShardMap::even(4).unwrap();
        let txs = vec![tx(id(0x00, 1), &[id(0x01, 1)], &[id(0x02, 1)])];
        let slices = split(&map, &txs);
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].shard, 0);
    }

    #[test]
    fn test_decide_commits_only_when_every_shard_locked() {
        let slices = vec![
            ShardSlice {
                shard: 0,
                txs: vec![0, 1],
            },
            ShardSlice {
                shard: 1,
                txs: vec![1],
            },
        ];
        let votes = vec![
            vec![locked(), locked()],
            vec![LockVote::refused(RejectReason::InputsSpent, Some(1))],
        ];
        let verdicts = decide(2, &slices, &votes);
        assert_eq!(verdicts[0], Verdict::Commit);
        assert_eq!(
            verdicts[1],
            Verdict::abort(RejectReason::InputsSpent, Some(1))
        );
    }

    #[test]
    fn test_decide_takes_lowest_shard_reason() {
        let slices = vec![
            ShardSlice {
                shard: 0,
                txs: vec![0],
            },
            ShardSlice {
                shard: 3,
                txs: vec![0],
            },
        ];
        let votes = vec![
            vec![LockVote::refused(RejectReason::InputsLocked, Some(0))],
            vec![LockVote::refused(RejectReason::InputsSpent, Some(2))],
        ];
        assert_eq!(
            decide(1, &slices, &votes),
            vec![Verdict::abort(RejectReason::InputsLocked, Some(0))]
        );
    }

    #[test]
    fn test_decide_committed_before_wins_over_refusals() {
        let slices = vec![
            ShardSlice {
                shard: 0,
                txs: vec![0],
            },
            ShardSlice {
                shard: 1,
                txs: vec![0],
            },
        ];
        let votes = vec![
            vec![LockVote::refused(RejectReason::InputsSpent, Some(0))],
            vec![LockVote::committed_before()],
        ];
        let verdicts = decide(1, &slices, &votes);
        assert_eq!(verdicts, vec![Verdict::CommittedBefore]);
        assert!(!verdicts[0].commits());
        assert_eq!(verdicts[0].apply_reason(), RejectReason::Unspecified);
        let result = verdicts[0].to_result(&TxId(id(0, 0)));
        assert_eq!(result.status(), v1::TxStatus::Confirmed);
    }

    #[test]
    fn test_verdict_unspecified_refusal_becomes_aborted() {
        let v = Verdict::abort(RejectReason::Unspecified, None);
        assert_eq!(v.apply_reason(), RejectReason::Aborted);
        let result = v.to_result(&TxId(id(1, 1)));
        assert_eq!(result.status(), v1::TxStatus::Rejected);
        assert_eq!(result.reject_reason(), RejectReason::Aborted);
    }

    #[test]
    fn test_apply_args_follow_slice_order() {
        let slice = ShardSlice {
            shard: 0,
            txs: vec![0, 2],
        };
        let verdicts = vec![
            Verdict::Commit,
            Verdict::Commit,
            Verdict::abort(RejectReason::OutputExists, None),
        ];
        let (commit, reasons) = apply_args(&slice, &verdicts);
        assert_eq!(commit, vec![true, false]);
        assert_eq!(
            reasons,
            vec![RejectReason::Unspecified, RejectReason::OutputExists]
        );
    }
}
