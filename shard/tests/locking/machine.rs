//! The state machine applied directly (no Raft): Lock, Apply, Discard, outcomes,
//! retention and snapshots.

use cbdc_consensus::StateMachine;
use cbdc_shard::locking::DtxState;
use cbdc_shard::{
    ApplyOutcome, CommandRefusal, DiscardOutcome, LockResult, LockSlot, LockingShardMachine,
    LockingShardParams, OutputStatus, RejectCode, ShardCommand, ShardResponse, TxOutcome,
};
use rocksdb::WriteBatch;

use crate::common::*;

fn applied(outcome: ApplyOutcome) -> ShardResponse {
    ShardResponse::Applied(outcome)
}

#[test]
fn test_lock_apply_discard_happy_path() {
    let mut f = Fixture::low();
    let (a, b) = (uhs(IN, 1), uhs(IN, 2));
    f.seed(&[(a, 10), (b, 20)]);
    let (c, d) = (uhs(IN, 3), uhs(OUT, 4));
    let tx = ctx(txid(IN, 1), &[a, uhs(OUT, 9), b], &[(c, 25), (d, 5)]);

    assert_eq!(
        f.lock_results(1, vec![tx.clone()]),
        vec![LockResult::locked()]
    );
    assert_eq!(
        f.sm.tx_outcomes(&[tx.id]).unwrap(),
        vec![TxOutcome::Pending]
    );
    let statuses = f.sm.output_statuses(&[a, b, c]).unwrap();
    assert!(
        matches!(statuses[0], OutputStatus::Locked(v, o) if v == cents(10) && o == dtx(1).owner(0))
    );
    assert!(matches!(statuses[1], OutputStatus::Locked(..)));
    assert_eq!(statuses[2], OutputStatus::Absent);
    assert_eq!(f.sm.dtx_state(&dtx(1)).unwrap(), Some(DtxState::Locked));

    assert_eq!(f.apply(1, &[true]), applied(ApplyOutcome::Applied));
    assert_eq!(
        f.sm.output_statuses(&[a, b, c, d]).unwrap(),
        vec![
            OutputStatus::Absent,
            OutputStatus::Absent,
            OutputStatus::Unspent(cents(25)),
            // Not this shard's output.
            OutputStatus::Absent,
        ]
    );
    assert_eq!(
        f.sm.tx_outcomes(&[tx.id]).unwrap(),
        vec![TxOutcome::Committed]
    );
    assert_eq!(f.sm.dtx_state(&dtx(1)).unwrap(), Some(DtxState::Applied));

    assert_eq!(
        f.discard(1),
        ShardResponse::Discarded(DiscardOutcome::Discarded)
    );
    assert_eq!(f.sm.dtx_state(&dtx(1)).unwrap(), Some(DtxState::Discarded));
    let audit = f.sm.audit().unwrap();
    assert!(audit.uhs.is_consistent());
    assert_eq!(audit.uhs.recorded.count, 1);
    assert_eq!(audit.uhs.recorded.total, cents(25));
    assert_eq!(audit.locks_held, 0);
    assert_eq!(
        (audit.locked_dtxs, audit.applied_dtxs, audit.tombstones),
        (0, 0, 1)
    );
    assert_eq!(audit.outcomes, 1);
    assert_eq!(
        f.discard(1),
        ShardResponse::Discarded(DiscardOutcome::AlreadyDiscarded)
    );
}

#[test]
fn test_reopened_machine_restores_its_locks_from_the_dtx_records() {
    let mut f = Fixture::low();
    let (a, b) = (uhs(IN, 1), uhs(IN, 2));
    f.seed(&[(a, 10), (b, 20)]);
    let tx = ctx(txid(IN, 1), &[a], &[(uhs(IN, 3), 10)]);
    assert_eq!(f.lock_results(1, vec![tx]), vec![LockResult::locked()]);

    // Locks are held in memory: a replica that restarts rebuilds them from its records.
    f.sm = LockingShardMachine::new(f.db.clone(), f.sm.params().clone()).unwrap();
    assert_eq!(
        f.sm.output_statuses(&[a, b]).unwrap(),
        vec![
            OutputStatus::Locked(cents(10), dtx(1).owner(0)),
            OutputStatus::Unspent(cents(20)),
        ]
    );
    assert_eq!(f.sm.audit().unwrap().locks_held, 1);
    let rival = ctx(txid(IN, 2), &[b, a], &[(uhs(IN, 4), 30)]);
    assert_eq!(
        f.lock_results(2, vec![rival]),
        vec![refused(RejectCode::InputsLocked, Some(1))]
    );
    assert_eq!(f.apply(1, &[true]), applied(ApplyOutcome::Applied));
    let audit = f.sm.audit().unwrap();
    assert_eq!(audit.locks_held, 0);
    assert!(audit.uhs.is_consistent());
    assert_eq!(
        f.sm.output_statuses(&[a, uhs(IN, 3)]).unwrap(),
        vec![OutputStatus::Absent, OutputStatus::Unspent(cents(10))]
    );
}

/// One transaction carried by two dtxs (a retry), on the shard that owns only its id:
/// both hold it pending. A replica that restarts between the steps must settle it as one
/// that kept running: from the same dtx records it rebuilds the same pending table.
#[test]
fn test_retry_in_two_dtxs_settles_alike_with_or_without_a_restart() {
    for restart in [false, true] {
        let reopen = |f: &mut Fixture| {
            if restart {
                f.sm = LockingShardMachine::new(f.db.clone(), f.sm.params().clone()).unwrap();
            }
        };
        let abort = |sequence, reason| ShardCommand::Apply {
            dtx: dtx(sequence),
            commit: vec![false],
            reasons: vec![Some(reason)],
        };
        let tx = |n| ctx(txid(IN, n), &[uhs(OUT, n)], &[(uhs(OUT, 100 + n), 1)]);

        // The first dtx commits: the second's abort leaves the commit recorded.
        let mut f = Fixture::low();
        let committed = tx(1);
        f.lock_results(1, vec![committed.clone()]);
        f.lock_results(2, vec![committed.clone()]);
        reopen(&mut f);
        assert_eq!(f.apply(1, &[true]), applied(ApplyOutcome::Applied));
        reopen(&mut f);
        f.one(abort(2, RejectCode::InputsLocked));
        assert_eq!(
            f.sm.tx_outcomes(&[committed.id]).unwrap(),
            vec![TxOutcome::Committed],
            "restart: {restart}"
        );

        // Both abort: pending until the last settles, whose reason is recorded.
        let rejected = tx(2);
        f.lock_results(3, vec![rejected.clone()]);
        f.lock_results(4, vec![rejected.clone()]);
        reopen(&mut f);
        f.one(abort(3, RejectCode::InputsSpent));
        assert_eq!(
            f.sm.tx_outcomes(&[rejected.id]).unwrap(),
            vec![TxOutcome::Pending],
            "restart: {restart}"
        );
        reopen(&mut f);
        f.one(abort(4, RejectCode::InputsLocked));
        assert_eq!(
            f.sm.tx_outcomes(&[rejected.id]).unwrap(),
            vec![TxOutcome::Rejected(RejectCode::InputsLocked)],
            "restart: {restart}"
        );
    }
}

#[test]
fn test_lock_repeated_returns_recorded_results() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let good = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    let bad = ctx(txid(IN, 2), &[uhs(OUT, 7), uhs(IN, 99)], &[(uhs(IN, 3), 1)]);
    let first = f.lock_results(1, vec![good.clone(), bad.clone()]);
    assert_eq!(
        first,
        vec![
            LockResult::locked(),
            refused(RejectCode::InputsSpent, Some(1))
        ]
    );
    let before = f.sm.audit().unwrap();
    // The same dtx again, even with other content, answers what was recorded.
    let other = ctx(txid(IN, 3), &[], &[(uhs(IN, 4), 1)]);
    assert_eq!(
        f.lock(1, vec![other]),
        ShardResponse::Locked {
            results: first,
            repeated: true
        }
    );
    assert_eq!(f.sm.audit().unwrap(), before);
}

#[test]
fn test_apply_twice_changes_nothing() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let tx = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    f.lock_results(1, vec![tx]);
    assert_eq!(f.apply(1, &[true]), applied(ApplyOutcome::Applied));
    let before = f.sm.audit().unwrap();
    assert_eq!(f.apply(1, &[true]), applied(ApplyOutcome::AlreadyApplied));
    // Even with other flags.
    assert_eq!(f.apply(1, &[false]), applied(ApplyOutcome::AlreadyApplied));
    assert_eq!(f.sm.audit().unwrap(), before);
    f.discard(1);
    assert_eq!(f.apply(1, &[true]), applied(ApplyOutcome::AlreadyDiscarded));
    assert_eq!(f.sm.audit().unwrap().uhs, before.uhs);
}

#[test]
fn test_apply_abort_releases_locks_and_records_reason() {
    let mut f = Fixture::low();
    let (a, m) = (uhs(IN, 1), txid(IN, 50));
    f.seed(&[(a, 10)]);
    let tx = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    let mint = ctx(m, &[], &[(uhs(IN, 51), 7)]);
    f.lock_results(1, vec![tx.clone(), mint.clone()]);
    assert_eq!(f.sm.audit().unwrap().locks_held, 2);
    let response = f.one(ShardCommand::Apply {
        dtx: dtx(1),
        commit: vec![false, false],
        reasons: vec![Some(RejectCode::InputsLocked), None],
    });
    assert_eq!(response, applied(ApplyOutcome::Applied));
    let audit = f.sm.audit().unwrap();
    assert_eq!(audit.locks_held, 0);
    assert_eq!(audit.uhs.recorded.count, 1);
    assert_eq!(
        f.sm.output_statuses(&[a]).unwrap(),
        vec![OutputStatus::Unspent(cents(10))]
    );
    assert_eq!(
        f.sm.tx_outcomes(&[tx.id, m]).unwrap(),
        vec![
            TxOutcome::Rejected(RejectCode::InputsLocked),
            // No reason given and none found here.
            TxOutcome::Rejected(RejectCode::Aborted),
        ]
    );
    // Released: a new dtx locks and commits them.
    assert_eq!(
        f.lock_results(2, vec![tx.clone(), mint]),
        vec![LockResult::locked(); 2]
    );
    assert_eq!(
        f.sm.tx_outcomes(&[tx.id]).unwrap(),
        vec![TxOutcome::Pending]
    );
    f.apply(2, &[true, true]);
    assert_eq!(
        f.sm.tx_outcomes(&[tx.id, m]).unwrap(),
        vec![TxOutcome::Committed; 2]
    );
}

#[test]
fn test_lock_conflicting_dtx_gets_inputs_locked() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let tx1 = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    let tx2 = ctx(txid(IN, 2), &[uhs(OUT, 1), a], &[(uhs(IN, 3), 10)]);
    f.lock_results(1, vec![tx1]);
    // input_index is the position in the whole transaction, not among owned inputs.
    assert_eq!(
        f.lock_results(2, vec![tx2.clone()]),
        vec![refused(RejectCode::InputsLocked, Some(1))]
    );
    assert_eq!(
        f.sm.output_statuses(&[a]).unwrap(),
        vec![OutputStatus::Locked(cents(10), dtx(1).owner(0))]
    );
    // The loser's tx id is not pending; its abort records the shard's own reason.
    assert_eq!(
        f.sm.tx_outcomes(&[tx2.id]).unwrap(),
        vec![TxOutcome::Unknown]
    );
    f.apply(2, &[false]);
    assert_eq!(
        f.sm.tx_outcomes(&[tx2.id]).unwrap(),
        vec![TxOutcome::Rejected(RejectCode::InputsLocked)]
    );
}

#[test]
fn test_lock_in_one_dtx_second_spender_locked_out() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let tx1 = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    let tx2 = ctx(txid(IN, 2), &[a], &[(uhs(IN, 3), 10)]);
    assert_eq!(
        f.lock_results(1, vec![tx1, tx2]),
        vec![
            LockResult::locked(),
            refused(RejectCode::InputsLocked, Some(0))
        ]
    );
}

#[test]
fn test_lock_double_spend_after_commit_gets_inputs_spent_with_full_index() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    f.lock_results(1, vec![ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)])]);
    f.apply(1, &[true]);
    let spend_again = ctx(
        txid(IN, 2),
        &[uhs(OUT, 1), uhs(OUT, 2), a],
        &[(uhs(IN, 3), 10)],
    );
    assert_eq!(
        f.lock_results(2, vec![spend_again]),
        vec![refused(RejectCode::InputsSpent, Some(2))]
    );
}

#[test]
fn test_lock_output_exists_refused() {
    let mut f = Fixture::low();
    let (a, b, existing) = (uhs(IN, 1), uhs(IN, 2), uhs(IN, 3));
    f.seed(&[(a, 10), (b, 10), (existing, 5)]);
    let tx = ctx(txid(OUT, 1), &[a], &[(uhs(OUT, 4), 5), (existing, 5)]);
    let twice = ctx(txid(OUT, 2), &[b], &[(uhs(IN, 5), 5), (uhs(IN, 5), 5)]);
    assert_eq!(
        f.lock_results(1, vec![tx, twice]),
        vec![refused(RejectCode::OutputExists, None); 2]
    );
    // Nothing was locked for them.
    assert_eq!(f.sm.audit().unwrap().locks_held, 0);
}

#[test]
fn test_lock_committed_before_on_tx_id_shard() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let tx = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    f.lock_results(1, vec![tx.clone()]);
    f.apply(1, &[true]);
    f.discard(1);
    // A retry of the settled transaction in a new dtx.
    assert_eq!(
        f.lock_results(2, vec![tx.clone()]),
        vec![LockResult::committed_before()]
    );
    assert_eq!(f.sm.audit().unwrap().locks_held, 0);
    // The coordinator aborts it in the new dtx; the commit stays recorded.
    f.one(ShardCommand::Apply {
        dtx: dtx(2),
        commit: vec![false],
        reasons: vec![Some(RejectCode::InputsSpent)],
    });
    assert_eq!(
        f.sm.tx_outcomes(&[tx.id]).unwrap(),
        vec![TxOutcome::Committed]
    );
    // A shard that does not own the tx id answers from its inputs.
    let mut other = Fixture::new(LockingShardParams::new(LOW));
    other.seed(&[(a, 10)]);
    let elsewhere = ctx(txid(OUT, 1), &[a], &[(uhs(IN, 2), 10)]);
    other.lock_results(1, vec![elsewhere.clone()]);
    other.apply(1, &[true]);
    assert_eq!(
        other.lock_results(2, vec![elsewhere.clone()]),
        vec![refused(RejectCode::OutputExists, None)]
    );
    // Nor does it record outcomes of ids it does not own.
    assert_eq!(
        other.sm.tx_outcomes(&[elsewhere.id]).unwrap(),
        vec![TxOutcome::Unknown]
    );
}

#[test]
fn test_lock_committed_before_in_the_same_batch() {
    // The outcomes of a batch's `Lock`s are read ahead, before any command runs; a
    // commit earlier in the same batch must still be seen by a later retry.
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let tx = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    let responses = f.run(vec![
        lock_command(1, vec![tx.clone()]),
        ShardCommand::Apply {
            dtx: dtx(1),
            commit: vec![true],
            reasons: Vec::new(),
        },
        lock_command(2, vec![tx.clone()]),
    ]);
    match &responses[2] {
        ShardResponse::Locked { results, .. } => {
            assert_eq!(results, &vec![LockResult::committed_before()])
        }
        other => panic!("unexpected response {other:?}"),
    }
    assert_eq!(
        f.sm.tx_outcomes(&[tx.id]).unwrap(),
        vec![TxOutcome::Committed]
    );
}

#[test]
fn test_mint_lock_conflict_and_replay() {
    let params = LockingShardParams {
        outcome_retention: 1,
        ..LockingShardParams::new(LOW)
    };
    let mut f = Fixture::new(params);
    let m = txid(IN, 7);
    let mint = ctx(m, &[], &[(uhs(IN, 70), 100)]);
    f.lock_results(1, vec![mint.clone()]);
    // The same mint in a concurrent dtx: the mint id is held.
    assert_eq!(
        f.lock_results(2, vec![mint.clone()]),
        vec![refused(RejectCode::InputsLocked, None)]
    );
    f.apply(2, &[false]);
    f.apply(1, &[true]);
    assert_eq!(f.sm.supply().unwrap().total, cents(100));
    // While the outcome is kept, a retry hears it committed.
    assert_eq!(
        f.lock_results(3, vec![mint.clone()]),
        vec![LockResult::committed_before()]
    );
    // Once another outcome pushes it out (retention 1), a replay is refused as such:
    // the mint record is kept forever.
    let other = ctx(txid(IN, 8), &[], &[(uhs(IN, 80), 1)]);
    f.lock_results(4, vec![other]);
    f.apply(4, &[true]);
    assert_eq!(f.sm.tx_outcomes(&[m]).unwrap(), vec![TxOutcome::Unknown]);
    let replay = ctx(m, &[], &[(uhs(IN, 71), 100)]);
    assert_eq!(
        f.lock_results(5, vec![replay]),
        vec![refused(RejectCode::MintReplay, None)]
    );
    // The first mint and the other one; not the replay.
    assert_eq!(f.sm.supply().unwrap().total, cents(101));
}

#[test]
fn test_outcome_retention_prunes_oldest() {
    let params = LockingShardParams {
        outcome_retention: 2,
        ..LockingShardParams::new(LOW)
    };
    let mut f = Fixture::new(params);
    let mints: Vec<_> = (0..3)
        .map(|i| ctx(txid(IN, 100 + i), &[], &[(uhs(IN, 200 + i), 1)]))
        .collect();
    for (i, mint) in mints.iter().enumerate() {
        let seq = i as u64 + 1;
        f.lock_results(seq, vec![mint.clone()]);
        f.apply(seq, &[true]);
        f.discard(seq);
    }
    let ids: Vec<_> = mints.iter().map(|m| m.id).collect();
    assert_eq!(
        f.sm.tx_outcomes(&ids).unwrap(),
        vec![
            TxOutcome::Unknown,
            TxOutcome::Committed,
            TxOutcome::Committed
        ]
    );
    assert_eq!(f.sm.audit().unwrap().outcomes, 2);
    // The pruned one's money is safe: a retry is a replay, not a second issuance.
    assert_eq!(
        f.lock_results(10, vec![mints[0].clone()]),
        vec![refused(RejectCode::MintReplay, None)]
    );
    assert_eq!(
        f.lock_results(11, vec![mints[2].clone()]),
        vec![LockResult::committed_before()]
    );
}

#[test]
fn test_lock_after_apply_or_discard_refused() {
    let mut f = Fixture::low();
    let tx = ctx(txid(IN, 1), &[], &[(uhs(IN, 2), 1)]);
    f.lock_results(1, vec![tx.clone()]);
    f.apply(1, &[false]);
    assert_eq!(
        f.lock(1, vec![tx.clone()]),
        ShardResponse::Refused(CommandRefusal::DtxFinished { dtx: dtx(1) })
    );
    f.discard(1);
    assert_eq!(
        f.lock(1, vec![tx.clone()]),
        ShardResponse::Refused(CommandRefusal::DtxFinished { dtx: dtx(1) })
    );
    // A Lock that arrives after the coordinator gave up on it (Apply or Discard of a dtx
    // this shard never saw) takes no locks either.
    assert_eq!(f.apply(2, &[false]), applied(ApplyOutcome::UnknownDtx));
    assert_eq!(
        f.lock(2, vec![tx.clone()]),
        ShardResponse::Refused(CommandRefusal::DtxFinished { dtx: dtx(2) })
    );
    assert_eq!(
        f.discard(3),
        ShardResponse::Discarded(DiscardOutcome::UnknownDtx)
    );
    assert_eq!(
        f.lock(3, vec![tx]),
        ShardResponse::Refused(CommandRefusal::DtxFinished { dtx: dtx(3) })
    );
    assert_eq!(f.sm.audit().unwrap().locks_held, 0);
}

#[test]
fn test_tombstone_retention_prunes_oldest() {
    let params = LockingShardParams {
        dtx_tombstone_retention: 2,
        ..LockingShardParams::new(LOW)
    };
    let mut f = Fixture::new(params);
    for seq in 1..=3 {
        f.lock_results(seq, vec![]);
        f.apply(seq, &[]);
        f.discard(seq);
    }
    assert_eq!(f.sm.dtx_state(&dtx(1)).unwrap(), None);
    assert_eq!(f.sm.dtx_state(&dtx(2)).unwrap(), Some(DtxState::Discarded));
    assert_eq!(f.sm.dtx_state(&dtx(3)).unwrap(), Some(DtxState::Discarded));
    assert_eq!(f.sm.audit().unwrap().tombstones, 2);
}

#[test]
fn test_apply_commit_of_unlocked_tx_refused_whole() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let good = ctx(txid(IN, 1), &[a], &[(uhs(IN, 2), 10)]);
    let bad = ctx(txid(IN, 2), &[uhs(IN, 99)], &[(uhs(IN, 3), 1)]);
    f.lock_results(1, vec![good, bad]);
    let before = f.sm.audit().unwrap();
    assert_eq!(
        f.apply(1, &[true, true]),
        ShardResponse::Refused(CommandRefusal::CommitNotLocked {
            dtx: dtx(1),
            tx_index: 1
        })
    );
    assert_eq!(
        f.apply(1, &[true]),
        ShardResponse::Refused(CommandRefusal::FlagCount {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        f.one(ShardCommand::Apply {
            dtx: dtx(1),
            commit: vec![true, false],
            reasons: vec![None],
        }),
        ShardResponse::Refused(CommandRefusal::ReasonCount {
            expected: 2,
            got: 1
        })
    );
    // Refused whole: nothing changed, the dtx is still locked and can be applied.
    assert_eq!(f.sm.audit().unwrap(), before);
    assert_eq!(f.sm.dtx_state(&dtx(1)).unwrap(), Some(DtxState::Locked));
    assert_eq!(f.apply(1, &[true, false]), applied(ApplyOutcome::Applied));
    assert_eq!(f.sm.audit().unwrap().uhs.recorded.count, 1);
}

#[test]
fn test_discard_of_locked_dtx_refused() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    f.lock_results(1, vec![ctx(txid(IN, 1), &[a], &[])]);
    assert_eq!(
        f.discard(1),
        ShardResponse::Refused(CommandRefusal::NotApplied { dtx: dtx(1) })
    );
    assert_eq!(f.sm.audit().unwrap().locks_held, 1);
    f.apply(1, &[false]);
    assert_eq!(
        f.discard(1),
        ShardResponse::Discarded(DiscardOutcome::Discarded)
    );
}

#[test]
fn test_refused_slot_locks_nothing_and_records_reason() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let unattested = txid(IN, 1);
    let good = ctx(txid(IN, 2), &[a], &[(uhs(IN, 3), 10)]);
    let response = f.one(ShardCommand::Lock {
        dtx: dtx(1),
        txs: vec![
            LockSlot::Refused {
                id: unattested,
                reason: RejectCode::Attestation,
            },
            LockSlot::Check(good),
        ],
    });
    assert_eq!(
        response,
        ShardResponse::Locked {
            results: vec![refused(RejectCode::Attestation, None), LockResult::locked()],
            repeated: false
        }
    );
    f.apply(1, &[false, true]);
    assert_eq!(
        f.sm.tx_outcomes(&[unattested]).unwrap(),
        vec![TxOutcome::Rejected(RejectCode::Attestation)]
    );
}

#[test]
fn test_commands_in_one_batch_see_each_other() {
    let mut f = Fixture::low();
    let a = uhs(IN, 1);
    f.seed(&[(a, 10)]);
    let (b, c) = (uhs(IN, 2), uhs(IN, 3));
    let tx1 = ctx(txid(IN, 1), &[a], &[(b, 10)]);
    let rival = ctx(txid(IN, 2), &[a], &[(uhs(IN, 9), 10)]);
    let tx2 = ctx(txid(IN, 3), &[b], &[(c, 10)]);
    let responses = f.run(vec![
        lock_command(1, vec![tx1]),
        lock_command(2, vec![rival]),
        ShardCommand::Apply {
            dtx: dtx(2),
            commit: vec![false],
            reasons: vec![],
        },
        ShardCommand::Apply {
            dtx: dtx(1),
            commit: vec![true],
            reasons: vec![],
        },
        // Spends the output created two commands earlier.
        lock_command(3, vec![tx2]),
        ShardCommand::Apply {
            dtx: dtx(3),
            commit: vec![true],
            reasons: vec![],
        },
        ShardCommand::Discard { dtx: dtx(1) },
        ShardCommand::Discard { dtx: dtx(1) },
    ]);
    assert_eq!(
        responses,
        vec![
            ShardResponse::Locked {
                results: vec![LockResult::locked()],
                repeated: false
            },
            ShardResponse::Locked {
                results: vec![refused(RejectCode::InputsLocked, Some(0))],
                repeated: false
            },
            applied(ApplyOutcome::Applied),
            applied(ApplyOutcome::Applied),
            ShardResponse::Locked {
                results: vec![LockResult::locked()],
                repeated: false
            },
            applied(ApplyOutcome::Applied),
            ShardResponse::Discarded(DiscardOutcome::Discarded),
            ShardResponse::Discarded(DiscardOutcome::AlreadyDiscarded),
        ]
    );
    assert_eq!(
        f.sm.output_statuses(&[a, b, c]).unwrap(),
        vec![
            OutputStatus::Absent,
            OutputStatus::Absent,
            OutputStatus::Unspent(cents(10))
        ]
    );
    let audit = f.sm.audit().unwrap();
    assert!(audit.uhs.is_consistent());
    assert_eq!(audit.locks_held, 0);
}

/// A machine with a bit of everything: committed, rejected and pending outcomes, an
/// applied dtx, a locked dtx, tombstones, a recorded mint.
fn busy_fixture() -> Fixture {
    let mut f = Fixture::new(LockingShardParams {
        outcome_retention: 3,
        dtx_tombstone_retention: 2,
        ..LockingShardParams::new(LOW)
    });
    let (a, b, c) = (uhs(IN, 1), uhs(IN, 2), uhs(IN, 3));
    f.seed(&[(a, 10), (b, 20), (c, 30)]);
    f.lock_results(1, vec![ctx(txid(IN, 1), &[a], &[(uhs(IN, 11), 10)])]);
    f.apply(1, &[true]);
    f.discard(1);
    f.lock_results(2, vec![ctx(txid(IN, 2), &[], &[(uhs(IN, 12), 5)])]);
    f.apply(2, &[true]);
    f.discard(2);
    f.lock_results(3, vec![ctx(txid(IN, 3), &[b], &[(uhs(OUT, 13), 20)])]);
    f.apply(3, &[false]);
    f.discard(3);
    f.lock_results(4, vec![ctx(txid(IN, 4), &[c], &[(uhs(IN, 14), 30)])]);
    f.lock_results(5, vec![]);
    f.apply(5, &[]);
    f
}

#[test]
fn test_snapshot_install_gives_identical_state() {
    let source = busy_fixture();
    let bytes = source.sm.snapshot().unwrap();
    // Deterministic: the same state gives the same bytes.
    assert_eq!(source.sm.snapshot().unwrap(), bytes);

    // Installing replaces everything, including what the target held before.
    let mut target = Fixture::new(source.sm.params().clone());
    target.seed(&[(uhs(IN, 500), 1)]);
    target.lock_results(9, vec![ctx(txid(IN, 9), &[uhs(IN, 500)], &[])]);
    let mut batch = WriteBatch::default();
    target.sm.install_snapshot(&mut batch, &bytes).unwrap();
    target.db.write(batch).unwrap();
    target.sm.on_written().unwrap();
    assert_eq!(target.sm.snapshot().unwrap(), bytes);

    assert_eq!(target.sm.audit().unwrap(), source.sm.audit().unwrap());
    let ids: Vec<_> = (1..=4).map(|n| txid(IN, n)).collect();
    assert_eq!(
        target.sm.tx_outcomes(&ids).unwrap(),
        source.sm.tx_outcomes(&ids).unwrap()
    );
    let outputs: Vec<_> = [1, 2, 3, 11, 12, 14, 500]
        .iter()
        .map(|&n| uhs(IN, n))
        .collect();
    assert_eq!(
        target.sm.output_statuses(&outputs).unwrap(),
        source.sm.output_statuses(&outputs).unwrap()
    );
    for seq in 1..=9 {
        assert_eq!(
            target.sm.dtx_state(&dtx(seq)).unwrap(),
            source.sm.dtx_state(&dtx(seq)).unwrap(),
            "dtx {seq}"
        );
    }
    // The installed machine carries on where the source was: the pending dtx commits.
    assert_eq!(target.apply(4, &[true]), applied(ApplyOutcome::Applied));
    assert_eq!(target.sm.audit().unwrap().locks_held, 0);
    assert_eq!(
        target.sm.tx_outcomes(&[txid(IN, 4)]).unwrap(),
        vec![TxOutcome::Committed]
    );
}

#[test]
fn test_install_snapshot_refuses_corrupt_data() {
    let source = busy_fixture();
    let bytes = source.sm.snapshot().unwrap();
    let mut target = Fixture::low();
    target.seed(&[(uhs(IN, 500), 1)]);
    let before = target.sm.snapshot().unwrap();
    let mut flipped = bytes.clone();
    flipped[20] ^= 1;
    for bad in [
        &bytes[..bytes.len() - 1],
        &flipped[..],
        &[][..],
        &bytes[..40],
    ] {
        let mut batch = WriteBatch::default();
        assert!(target.sm.install_snapshot(&mut batch, bad).is_err());
    }
    assert_eq!(target.sm.snapshot().unwrap(), before);
}

/// A replica database in which an older build left the column family `uhs_locks`,
/// holding one lock or none.
fn legacy_database(with_lock: bool) -> (tempfile::TempDir, std::sync::Arc<rocksdb::DB>) {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let old = rocksdb::DB::open_cf(&opts, dir.path(), ["uhs_locks"]).unwrap();
        if with_lock {
            let cf = old.cf_handle("uhs_locks").unwrap();
            old.put_cf(cf, uhs(IN, 1).as_bytes(), [0u8; 16]).unwrap();
        }
    }
    let db =
        cbdc_consensus::storage::open_db::<cbdc_shard::LockingShardMachine>(dir.path()).unwrap();
    (dir, db)
}

#[test]
fn test_database_with_locks_of_an_older_build_is_refused() {
    let params = || LockingShardParams::new(LOW);
    // Empty: nothing can be lost.
    let (_dir, db) = legacy_database(false);
    assert!(cbdc_shard::LockingShardMachine::new(db, params()).is_ok());
    // A lock this build would not see.
    let (_dir, db) = legacy_database(true);
    let refused = cbdc_shard::LockingShardMachine::new(db, params());
    assert!(
        matches!(&refused, Err(cbdc_consensus::ConsensusError::Config(m)) if m.contains("uhs_locks")),
        "{:?}",
        refused.err()
    );
}
