//! Point queries, counters, reopening, corruption and seeding.

use std::sync::Arc;

use cbdc_shard::{
    ColumnFamilyNames, MintState, OutputStatus, StoreError, StoreOptions, Supply, UhsStore,
};
use rocksdb::{WriteBatch, DB};

use crate::common::*;

#[test]
fn test_get_missing_is_none() {
    let (_dir, store) = temp_store();
    assert_eq!(store.get(&id(1)).unwrap(), None);
    assert!(!store.contains(&id(1)).unwrap());
    assert_eq!(store.status(&id(1)).unwrap(), OutputStatus::Absent);
    assert_eq!(store.supply().unwrap(), Supply::default());
    assert_eq!(store.height().unwrap(), 0);
}

#[test]
fn test_get_after_seed() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    assert_eq!(store.get(&id(1)).unwrap(), Some(cents(1)));
    assert_eq!(store.get(&id(2)).unwrap(), Some(cents(2)));
    assert!(store.contains(&id(2)).unwrap());
    assert!(!store.contains(&id(3)).unwrap());
}

#[test]
fn test_multi_get_keeps_order() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2), id(3)]);
    let got = store.multi_get(&[id(3), id(9), id(1), id(3)]).unwrap();
    assert_eq!(
        got,
        vec![Some(cents(3)), None, Some(cents(1)), Some(cents(3))]
    );
    assert!(store.multi_get(&[]).unwrap().is_empty());
    // Sorted ids take RocksDB's path for sorted keys; the answers are the same.
    let got = store.multi_get(&[id(1), id(2), id(5), id(9)]).unwrap();
    assert_eq!(got, vec![Some(cents(1)), Some(cents(2)), None, None]);
    assert_eq!(store.multi_get(&[id(2)]).unwrap(), vec![Some(cents(2))]);
}

#[test]
fn test_status_unspent_locked_absent() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2)]);
    store
        .update(|s| s.check_and_lock(owner(1, 0), &[id(2)], None))
        .unwrap()
        .unwrap();
    assert_eq!(
        store.status(&id(1)).unwrap(),
        OutputStatus::Unspent(cents(1))
    );
    assert_eq!(
        store.status(&id(2)).unwrap(),
        OutputStatus::Locked(cents(2), owner(1, 0))
    );
    assert_eq!(store.status(&id(3)).unwrap(), OutputStatus::Absent);
    assert_eq!(store.lock_owner(&id(2)).unwrap(), Some(owner(1, 0)));
    assert_eq!(store.lock_count().unwrap(), 1);
}

#[test]
fn test_supply_counts_and_audit_agree() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1), id(2), id(3)]);
    store
        .update(|s| s.apply(owner(1, 0), &[id(1)], &[(id(4), cents(10))], None))
        .unwrap()
        .unwrap();
    let expected = Supply {
        count: 3,
        total: cents(2 + 3 + 10),
    };
    assert_eq!(store.supply().unwrap(), expected);
    let audit = store.audit().unwrap();
    assert_eq!(audit.scanned, expected);
    assert!(audit.is_consistent());
}

#[test]
fn test_reopen_keeps_everything_but_the_locks_on_outputs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_at(&dir);
        seed_ids(&store, &[id(1), id(2), id(3)]);
        store
            .update(|s| {
                s.check_and_lock(owner(7, 1), &[id(2)], None)?.unwrap();
                s.apply(owner(7, 0), &[id(1)], &[(id(10), cents(1))], Some(&tx(1)))?
                    .unwrap();
                s.check_and_lock(owner(7, 2), &[], Some(&tx(2)))
            })
            .unwrap()
            .unwrap();
        store.update(|s| s.apply_block(1, FULL, &[])).unwrap();
    }
    let store = open_at(&dir);
    assert_eq!(contents(&store), {
        let mut v = vec![(id(2), cents(2)), (id(3), cents(3)), (id(10), cents(1))];
        v.sort();
        v
    });
    // A lock on an output is held in memory: its owner (the locking shard, from its
    // dtx records) restores it. A mint lock is a record and survives by itself.
    assert_eq!(store.lock_owner(&id(2)).unwrap(), None);
    store.restore_locks([(id(2), owner(7, 1))]).unwrap();
    assert_eq!(store.lock_owner(&id(2)).unwrap(), Some(owner(7, 1)));
    assert_eq!(store.mint_state(&tx(1)).unwrap(), Some(MintState::Recorded));
    assert_eq!(
        store.mint_state(&tx(2)).unwrap(),
        Some(MintState::Locked(owner(7, 2)))
    );
    assert_eq!(store.height().unwrap(), 1);
    assert_eq!(
        store.supply().unwrap(),
        Supply {
            count: 3,
            total: cents(6)
        }
    );
    assert!(store.audit().unwrap().is_consistent());
}

#[test]
fn test_new_missing_column_family() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = Arc::new(DB::open(&opts, dir.path()).unwrap());
    match UhsStore::new(db, ColumnFamilyNames::default()) {
        Err(StoreError::MissingColumnFamily { name }) => assert_eq!(name, "uhs"),
        other => panic!("expected MissingColumnFamily, got {:?}", other.err()),
    }
}

#[test]
fn test_new_shares_db_with_prefixed_names() {
    let dir = tempfile::tempdir().unwrap();
    let options = test_options();
    let cache = options.new_block_cache();
    let a = ColumnFamilyNames::with_prefix("a_");
    let b = ColumnFamilyNames::with_prefix("b_");
    let mut cfs = options.column_families(&a, &cache);
    cfs.extend(options.column_families(&b, &cache));
    let db = Arc::new(DB::open_cf_descriptors(&options.db_options(), dir.path(), cfs).unwrap());
    let store_a = UhsStore::new(db.clone(), a).unwrap();
    let store_b = UhsStore::new(db, b).unwrap();
    seed_ids(&store_a, &[id(1)]);
    assert!(store_a.contains(&id(1)).unwrap());
    assert!(!store_b.contains(&id(1)).unwrap());
    assert_eq!(store_b.supply().unwrap(), Supply::default());
}

#[test]
fn test_get_corrupt_value_is_error() {
    let (_dir, store) = temp_store();
    let cf = store.db().cf_handle("uhs").unwrap();
    store
        .db()
        .put_cf(cf, id(1).as_bytes(), [1u8, 2, 3])
        .unwrap();
    assert!(matches!(
        store.get(&id(1)),
        Err(StoreError::Corrupt { column: "uhs", .. })
    ));
    assert!(matches!(store.audit(), Err(StoreError::Corrupt { .. })));
    let mut items = store.iter_range(FULL).unwrap();
    assert!(matches!(
        items.next(),
        Some(Err(StoreError::Corrupt { .. }))
    ));
    assert!(items.next().is_none());
}

#[test]
fn test_stage_corrupt_supply_is_error() {
    let (_dir, store) = temp_store();
    let cf = store.db().cf_handle("uhs_meta").unwrap();
    store.db().put_cf(cf, b"supply", [0u8; 3]).unwrap();
    let mut batch = WriteBatch::default();
    assert!(matches!(
        store.stage(&mut batch),
        Err(StoreError::Corrupt { column: "meta", .. })
    ));
}

#[test]
fn test_apply_supply_underflow_is_error() {
    let (_dir, store) = temp_store();
    seed_ids(&store, &[id(1)]);
    // Counters that claim less than the outputs hold: spending must not wrap them.
    let cf = store.db().cf_handle("uhs_meta").unwrap();
    store.db().put_cf(cf, b"supply", [0u8; 16]).unwrap();
    let result = store.update(|s| s.apply(owner(1, 0), &[id(1)], &[], None));
    assert!(matches!(result, Err(StoreError::SupplyOutOfRange { .. })));
    assert!(store.contains(&id(1)).unwrap());
    assert!(!store.audit().unwrap().is_consistent());
}

#[test]
fn test_seed_100k_outputs() {
    let (_dir, store) = temp_store();
    let n = 100_000u64;
    let supply = store
        .seed((0..n).map(|i| (id(i), cents(i % 1000 + 1))))
        .unwrap();
    let total: u64 = (0..n).map(|i| i % 1000 + 1).sum();
    let expected = Supply {
        count: n,
        total: cents(total),
    };
    assert_eq!(supply, expected);
    assert_eq!(store.supply().unwrap(), expected);
    let audit = store.audit().unwrap();
    assert_eq!(audit.scanned, expected);
    assert_eq!(store.get(&id(12_345)).unwrap(), Some(cents(346)));
    assert_eq!(store.get(&id(n)).unwrap(), None);
    // Compacted out of level 0: a live shard's first compaction has nothing of it to merge.
    let db = store.db();
    let uhs = db.cf_handle(&store.names().uhs).unwrap();
    let level0 = db
        .property_int_value_cf(uhs, "rocksdb.num-files-at-level0")
        .unwrap();
    assert_eq!(level0, Some(0));
}

#[test]
fn test_seed_adds_to_existing_counters() {
    let (_dir, store) = temp_store();
    store.seed([(id(1), cents(5))]).unwrap();
    let supply = store.seed([(id(2), cents(7))]).unwrap();
    assert_eq!(
        supply,
        Supply {
            count: 2,
            total: cents(12)
        }
    );
    assert!(store.audit().unwrap().is_consistent());
}

#[test]
fn test_options_defaults_are_bounded() {
    let options = StoreOptions::default();
    assert_eq!(options.block_cache_bytes, 256 << 20);
    assert!(options.write_buffer_bytes * options.max_write_buffers as usize <= 256 << 20);
}
