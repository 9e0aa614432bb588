//! The 2PC operations: check-and-lock, release, apply, and mint ids.

use cbdc_shard::{MintState, Rejection, Supply};
use rocksdb::WriteBatch;

use crate::common::*;

#[test]
fn test_check_and_lock_locks_every_input() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    let result = store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(1), id(2)], None))
        .unwrap();
    assert_eq!(result, Ok(()));
    assert_eq!(store.lock_owner(&id(1)).unwrap(), Some(owner(1, 0)));
    assert_eq!(store.lock_owner(&id(2)).unwrap(), Some(owner(1, 0)));
    // Locking spends nothing.
    assert_eq!(store.supply().unwrap().count, 2);
}

#[test]
fn test_check_and_lock_conflict() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(2)], None))
        .unwrap()
        .unwrap();
    let result = store
        .update(|s| s.check_and_lock(owner(2, 0), &[id(1), id(2)], None))
        .unwrap();
    assert_eq!(
        result,
        Err(Rejection::InputLocked {
            index: 1,
            id: id(2),
            owner: owner(1, 0)
        })
    );
    assert_eq!(store.lock_owner(&id(1)).unwrap(), None);
}

#[test]
fn test_check_and_lock_missing_input() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let result = store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(1), id(9)], None))
        .unwrap();
    assert_eq!(
        result,
        Err(Rejection::InputMissing {
            index: 1,
            id: id(9)
        })
    );
}

#[test]
fn test_check_and_lock_all_or_nothing() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2), id(3)]);
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(3)], None))
        .unwrap()
        .unwrap();
    // The first two inputs are free, the third is not: none may be locked.
    let result = store
        .update(|s| s.check_and_lock(owner(2, 0), &[id(1), id(2), id(3)], None))
        .unwrap();
    assert!(matches!(
        result,
        Err(Rejection::InputLocked { index: 2, .. })
    ));
    assert_eq!(store.lock_owner(&id(1)).unwrap(), None);
    assert_eq!(store.lock_owner(&id(2)).unwrap(), None);
    assert_eq!(store.lock_count().unwrap(), 1);
}

#[test]
fn test_check_and_lock_same_owner_is_idempotent() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    for _ in 0..2 {
        let result = store
            .update(|s| s.check_and_lock(owner(1, 0), &[id(1)], Some(&tx(1))))
            .unwrap();
        assert_eq!(result, Ok(()));
    }
    assert_eq!(store.lock_count().unwrap(), 2);
}

#[test]
fn test_check_and_lock_duplicate_input() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let result = store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(1), id(1)], None))
        .unwrap();
    assert_eq!(
        result,
        Err(Rejection::DuplicateInput {
            index: 1,
            id: id(1)
        })
    );
    assert_eq!(store.lock_count().unwrap(), 0);
}

#[test]
fn test_check_and_lock_intra_batch_conflict() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    let mut batch = WriteBatch::default();
    let mut staged = store.stage(&mut batch).unwrap();
    // Two transactions of one Lock command share input 1: the second must fail, though
    // the first one's lock is not written yet.
    assert_eq!(
        staged.check_and_lock(owner(1, 0), &[id(1)], None).unwrap(),
        Ok(())
    );
    assert_eq!(
        staged
            .check_and_lock(owner(1, 1), &[id(2), id(1)], None)
            .unwrap(),
        Err(Rejection::InputLocked {
            index: 1,
            id: id(1),
            owner: owner(1, 0)
        })
    );
    assert_eq!(staged.lock_owner(&id(1)).unwrap(), Some(owner(1, 0)));
    // Nothing is visible outside the batch until it is written.
    assert_eq!(store.lock_owner(&id(1)).unwrap(), None);
    let locks = staged.finish().unwrap();
    store.db().write(batch).unwrap();
    store.commit_locks(locks);
    assert_eq!(store.lock_owner(&id(1)).unwrap(), Some(owner(1, 0)));
    assert_eq!(store.lock_owner(&id(2)).unwrap(), None);
}

#[test]
fn test_prepare_refuses_a_taken_or_repeated_output_and_locks_nothing() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    let prepare = |outputs: &[cbdc_core::UhsId]| {
        store
            .update(|s| s.prepare(owner(1, 0), &[id(1)], outputs, None))
            .unwrap()
    };
    assert_eq!(
        prepare(&[id(5), id(2)]),
        Err(Rejection::OutputExists {
            index: 1,
            id: id(2)
        })
    );
    assert_eq!(
        prepare(&[id(5), id(5)]),
        Err(Rejection::DuplicateOutput {
            index: 1,
            id: id(5)
        })
    );
    assert_eq!(store.lock_count().unwrap(), 0);
    assert_eq!(prepare(&[id(5)]), Ok(()));
    assert_eq!(store.lock_owner(&id(1)).unwrap(), Some(owner(1, 0)));
}

#[test]
fn test_output_reserved_by_two_prepares_is_created_once() {
    // One transaction carried by two dtxs, on a shard that owns only its output: both
    // prepares find the output absent and reserve it. Whichever commits first creates
    // it; the other's commit must then find it taken, not trust its reservation.
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    for (dtx, input) in [(1, id(1)), (2, id(2))] {
        store
            .update(|s| s.prepare(owner(dtx, 0), &[input], &[id(9)], None))
            .unwrap()
            .unwrap();
    }
    for (dtx, input) in [(2, id(2)), (1, id(1))] {
        let result = store
            .update(|s| s.apply(owner(dtx, 0), &[input], &[(id(9), cents(1))], None))
            .unwrap();
        let expected = match dtx {
            2 => Ok(()),
            _ => Err(Rejection::OutputExists {
                index: 0,
                id: id(9),
            }),
        };
        assert_eq!(result, expected, "dtx {dtx}");
    }
    assert_eq!(store.get(&id(9)).unwrap(), Some(cents(1)));
    assert!(store.audit().unwrap().is_consistent());
}

#[test]
fn test_release_frees_only_own_locks() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    store
        .update(|s| {
            s.check_and_lock(owner(1, 0), &[id(1)], None)?.unwrap();
            s.check_and_lock(owner(2, 0), &[id(2)], None)
        })
        .unwrap()
        .unwrap();
    let released = store
        .update(|s| s.release(owner(1, 0), &[id(1), id(2)], &[], None))
        .unwrap();
    assert_eq!(released, 1);
    assert_eq!(store.lock_owner(&id(1)).unwrap(), None);
    assert_eq!(store.lock_owner(&id(2)).unwrap(), Some(owner(2, 0)));
    // The output stays unspent and can be locked again.
    assert_eq!(
        store
            .update(|s| s.check_and_lock(owner(3, 0), &[id(1)], None))
            .unwrap(),
        Ok(())
    );
}

#[test]
fn test_release_is_idempotent() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(1)], None))
        .unwrap()
        .unwrap();
    let first = store
        .update(|s| s.release(owner(1, 0), &[id(1)], &[], None))
        .unwrap();
    let second = store
        .update(|s| s.release(owner(1, 0), &[id(1)], &[], None))
        .unwrap();
    assert_eq!((first, second), (1, 0));
    assert_eq!(store.lock_count().unwrap(), 0);
}

#[test]
fn test_apply_creates_deletes_and_clears_locks() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(1), id(2)], None))
        .unwrap()
        .unwrap();
    let result = store
        .update(|s| {
            s.apply(
                owner(1, 0),
                &[id(1), id(2)],
                &[(id(3), cents(2)), (id(4), cents(1))],
                None,
            )
        })
        .unwrap();
    assert_eq!(result, Ok(()));
    assert!(!store.contains(&id(1)).unwrap());
    assert!(!store.contains(&id(2)).unwrap());
    assert_eq!(store.get(&id(3)).unwrap(), Some(cents(2)));
    assert_eq!(store.get(&id(4)).unwrap(), Some(cents(1)));
    assert_eq!(store.lock_count().unwrap(), 0);
    assert_eq!(
        store.supply().unwrap(),
        Supply {
            count: 2,
            total: cents(3)
        }
    );
}

#[test]
fn test_apply_duplicate_output_refused() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    let before = contents(&store);
    let result = store
        .update(|s| s.apply(owner(1, 0), &[id(1)], &[(id(2), cents(1))], None))
        .unwrap();
    assert_eq!(
        result,
        Err(Rejection::OutputExists {
            index: 0,
            id: id(2)
        })
    );
    assert_eq!(contents(&store), before);
    assert_eq!(store.supply().unwrap().count, 2);
}

#[test]
fn test_apply_output_twice_in_one_tx_refused() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let result = store
        .update(|s| {
            s.apply(
                owner(1, 0),
                &[id(1)],
                &[(id(5), cents(1)), (id(5), cents(1))],
                None,
            )
        })
        .unwrap();
    assert_eq!(
        result,
        Err(Rejection::DuplicateOutput {
            index: 1,
            id: id(5)
        })
    );
    assert!(store.contains(&id(1)).unwrap());
}

#[test]
fn test_apply_missing_input_refused() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let result = store
        .update(|s| s.apply(owner(1, 0), &[id(1), id(9)], &[(id(5), cents(1))], None))
        .unwrap();
    assert_eq!(
        result,
        Err(Rejection::InputMissing {
            index: 1,
            id: id(9)
        })
    );
    assert!(store.contains(&id(1)).unwrap());
    assert!(!store.contains(&id(5)).unwrap());
}

#[test]
fn test_apply_input_locked_by_other_refused() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(1)], None))
        .unwrap()
        .unwrap();
    let result = store
        .update(|s| s.apply(owner(2, 0), &[id(1)], &[(id(5), cents(1))], None))
        .unwrap();
    assert!(matches!(
        result,
        Err(Rejection::InputLocked { index: 0, .. })
    ));
    assert!(store.contains(&id(1)).unwrap());
}

#[test]
fn test_apply_intra_batch_create_then_spend() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let mut batch = WriteBatch::default();
    let mut staged = store.stage(&mut batch).unwrap();
    staged
        .apply(owner(1, 0), &[id(1)], &[(id(2), cents(1))], None)
        .unwrap()
        .unwrap();
    // The output created above is unspent for the rest of the batch...
    staged
        .check_and_lock(owner(1, 1), &[id(2)], None)
        .unwrap()
        .unwrap();
    staged
        .apply(owner(1, 1), &[id(2)], &[(id(3), cents(1))], None)
        .unwrap()
        .unwrap();
    // ...and the spent one is gone.
    assert_eq!(
        staged.apply(owner(1, 2), &[id(1)], &[], None).unwrap(),
        Err(Rejection::InputMissing {
            index: 0,
            id: id(1)
        })
    );
    assert_eq!(staged.supply().count, 1);
    let locks = staged.finish().unwrap();
    store.db().write(batch).unwrap();
    store.commit_locks(locks);
    assert_eq!(contents(&store), vec![(id(3), cents(1))]);
    assert_eq!(store.lock_count().unwrap(), 0);
    assert!(store.audit().unwrap().is_consistent());
}

#[test]
fn test_mint_lock_then_apply_records_it() {
    let (_dir, store) = temp_store();
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[], Some(&tx(1))))
        .unwrap()
        .unwrap();
    assert_eq!(
        store.mint_state(&tx(1)).unwrap(),
        Some(MintState::Locked(owner(1, 0)))
    );
    store
        .update(|s| s.apply(owner(1, 0), &[], &[(id(1), cents(100))], Some(&tx(1))))
        .unwrap()
        .unwrap();
    assert_eq!(store.mint_state(&tx(1)).unwrap(), Some(MintState::Recorded));
    assert_eq!(store.lock_count().unwrap(), 0);
    assert_eq!(store.supply().unwrap().total, cents(100));
}

#[test]
fn test_mint_replay_refused() {
    let (_dir, store) = temp_store();
    store
        .update(|s| s.apply(owner(1, 0), &[], &[(id(1), cents(100))], Some(&tx(1))))
        .unwrap()
        .unwrap();
    // Even after its output is spent, the mint cannot be replayed.
    store
        .update(|s| s.apply(owner(2, 0), &[id(1)], &[(id(2), cents(100))], None))
        .unwrap()
        .unwrap();
    let lock = store
        .update(|s| s.check_and_lock(owner(3, 0), &[], Some(&tx(1))))
        .unwrap();
    assert_eq!(lock, Err(Rejection::MintReplayed { tx_id: tx(1) }));
    let apply = store
        .update(|s| s.apply(owner(3, 0), &[], &[(id(3), cents(100))], Some(&tx(1))))
        .unwrap();
    assert_eq!(apply, Err(Rejection::MintReplayed { tx_id: tx(1) }));
    assert_eq!(store.supply().unwrap().total, cents(100));
}

#[test]
fn test_mint_locked_by_other_refused() {
    let (_dir, store) = temp_store();
    let mut batch = WriteBatch::default();
    let mut staged = store.stage(&mut batch).unwrap();
    staged
        .check_and_lock(owner(1, 0), &[], Some(&tx(1)))
        .unwrap()
        .unwrap();
    assert_eq!(
        staged
            .check_and_lock(owner(2, 0), &[], Some(&tx(1)))
            .unwrap(),
        Err(Rejection::MintLocked {
            tx_id: tx(1),
            owner: owner(1, 0)
        })
    );
    let _unwritten = staged.finish().unwrap();
}

#[test]
fn test_release_mint_lock() {
    let (_dir, store) = temp_store();
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[], Some(&tx(1))))
        .unwrap()
        .unwrap();
    let released = store
        .update(|s| s.release(owner(1, 0), &[], &[], Some(&tx(1))))
        .unwrap();
    assert_eq!(released, 1);
    assert_eq!(store.mint_state(&tx(1)).unwrap(), None);
    // An aborted mint may be tried again.
    assert_eq!(
        store
            .update(|s| s.check_and_lock(owner(2, 0), &[], Some(&tx(1))))
            .unwrap(),
        Ok(())
    );
}
