//! Atomizer-mode blocks.

use cbdc_core::{Amount, CompactTransaction, ShardRange, UhsId};
use cbdc_shard::{BlockOutcome, StoreError, Supply};
use rocksdb::WriteBatch;

use crate::common::*;

fn block_tx(inputs: &[UhsId], outputs: &[(UhsId, Amount)]) -> CompactTransaction {
    CompactTransaction {
        id: tx(0),
        inputs: inputs.to_vec(),
        outputs: outputs.to_vec(),
        attestations: Vec::new(),
    }
}

#[test]
fn test_apply_block_spends_creates_and_advances_height() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    let block = [block_tx(&[id(1), id(2)], &[(id(3), cents(3))])];
    let outcome = store.update(|s| s.apply_block(1, FULL, &block)).unwrap();
    assert_eq!(outcome, BlockOutcome::Applied);
    assert_eq!(store.height().unwrap(), 1);
    assert_eq!(contents(&store), vec![(id(3), cents(3))]);
    assert_eq!(
        store.supply().unwrap(),
        Supply {
            count: 1,
            total: cents(3)
        }
    );
}

#[test]
fn test_apply_block_only_touches_owned_range() {
    let (_dir, store) = temp_store();
    let low = id_with_prefix(0x0001, 1);
    let high = id_with_prefix(0x9000, 2);
    let new_low = id_with_prefix(0x0002, 3);
    let new_high = id_with_prefix(0x9001, 4);
    seed_ids(&store, &[low]);
    let range = ShardRange {
        start: 0,
        end: 0x7FFF,
    };
    // `high` lives on another shard: this one neither checks nor spends it.
    let block = [block_tx(
        &[low, high],
        &[(new_low, cents(1)), (new_high, cents(1))],
    )];
    store.update(|s| s.apply_block(1, range, &block)).unwrap();
    assert_eq!(contents(&store), vec![(new_low, cents(1))]);
}

#[test]
fn test_apply_block_replay_is_noop() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let block = [block_tx(&[id(1)], &[(id(2), cents(1))])];
    store.update(|s| s.apply_block(1, FULL, &block)).unwrap();
    let again = store.update(|s| s.apply_block(1, FULL, &block)).unwrap();
    assert_eq!(again, BlockOutcome::AlreadyApplied);
    assert_eq!(store.height().unwrap(), 1);
    assert_eq!(contents(&store), vec![(id(2), cents(1))]);
}

#[test]
fn test_apply_block_height_gap() {
    let (_dir, store) = temp_store();
    let result = store.update(|s| s.apply_block(2, FULL, &[]));
    assert!(matches!(
        result,
        Err(StoreError::HeightGap { current: 0, got: 2 })
    ));
    assert_eq!(store.height().unwrap(), 0);
}

#[test]
fn test_apply_block_missing_input_poisons_batch() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let before = contents(&store);
    let block = [
        block_tx(&[id(1)], &[(id(2), cents(1))]),
        block_tx(&[id(9)], &[(id(3), cents(1))]),
    ];
    let mut batch = WriteBatch::default();
    let mut staged = store.stage(&mut batch).unwrap();
    let result = staged.apply_block(1, FULL, &block);
    assert!(matches!(
        result,
        Err(StoreError::BlockInconsistent { height: 1, .. })
    ));
    assert!(matches!(
        staged.apply_block(1, FULL, &[]),
        Err(StoreError::Poisoned)
    ));
    assert!(matches!(staged.finish(), Err(StoreError::Poisoned)));
    drop(batch);
    assert_eq!(contents(&store), before);
    assert_eq!(store.height().unwrap(), 0);
}

#[test]
fn test_apply_block_existing_output_is_inconsistent() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    let block = [block_tx(&[id(1)], &[(id(2), cents(1))])];
    let result = store.update(|s| s.apply_block(1, FULL, &block));
    assert!(matches!(
        result,
        Err(StoreError::BlockInconsistent {
            reason: "output exists",
            ..
        })
    ));
}

#[test]
fn test_apply_block_several_blocks_in_one_batch() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    let first = [block_tx(&[id(1)], &[(id(2), cents(1))])];
    let second = [block_tx(&[id(2)], &[(id(3), cents(1))])];
    store
        .update(|s| {
            s.apply_block(1, FULL, &first)?;
            s.apply_block(2, FULL, &second)
        })
        .unwrap();
    assert_eq!(store.height().unwrap(), 2);
    assert_eq!(contents(&store), vec![(id(3), cents(1))]);
    assert!(store.audit().unwrap().is_consistent());
}

#[test]
fn test_check_inputs_reports_height() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    store
        .update(|s| s.apply_block(1, FULL, &[block_tx(&[id(1)], &[])]))
        .unwrap();
    let (height, values) = store.check_inputs(&[id(1), id(2)]).unwrap();
    assert_eq!(height, 1);
    assert_eq!(values, vec![None, Some(cents(2))]);
}
