//! Snapshot export and import.

use cbdc_shard::{StoreError, UhsStore};

use crate::common::*;

/// A store with outputs, locks, a recorded and a locked mint, and a height.
fn populated() -> (tempfile::TempDir, UhsStore) {
    let (dir, store) = temp_store();
    seed_ids(&store, &(0..50).map(id).collect::<Vec<_>>());
    store
        .update(|s| {
            s.check_and_lock(owner(1, 0), &[id(1), id(2)], None)?
                .unwrap();
            s.apply(owner(1, 1), &[id(3)], &[(id(100), cents(4))], Some(&tx(1)))?
                .unwrap();
            s.check_and_lock(owner(1, 2), &[], Some(&tx(2)))?.unwrap();
            s.apply_block(1, FULL, &[]).map(|_| ())
        })
        .unwrap();
    (dir, store)
}

/// Everything a snapshot carries, for equality checks.
fn fingerprint(store: &UhsStore) -> (Vec<u8>, u64) {
    // The snapshot bytes cover every column; the height double-checks reads.
    (store.snapshot_bytes().unwrap(), store.height().unwrap())
}

#[test]
fn test_snapshot_round_trip_into_fresh_store() {
    let (_a, source) = populated();
    let bytes = source.snapshot_bytes().unwrap();
    let (_b, target) = temp_store();
    let info = target.install_snapshot(&bytes[..]).unwrap();
    assert_eq!(info.bytes, bytes.len() as u64);
    assert_eq!(info.supply, source.supply().unwrap());
    assert_eq!(fingerprint(&target), fingerprint(&source));
    assert_eq!(contents(&target), contents(&source));
    assert_eq!(
        target.mint_state(&tx(1)).unwrap(),
        source.mint_state(&tx(1)).unwrap()
    );
    assert!(target.audit().unwrap().is_consistent());
    // Locks on outputs live in memory: the snapshot carries the mint lock (a record) but
    // not those, which their owner restores from its own records.
    assert_eq!(target.lock_owner(&id(1)).unwrap(), None);
    assert_eq!(target.lock_count().unwrap(), 1);
    target
        .restore_locks([(id(1), owner(1, 0)), (id(2), owner(1, 0))])
        .unwrap();
    assert_eq!(target.lock_owner(&id(1)).unwrap(), Some(owner(1, 0)));
    assert_eq!(target.lock_count().unwrap(), source.lock_count().unwrap());
}

#[test]
fn test_restoring_a_lock_on_an_output_that_is_not_unspent_is_corruption() {
    let (_a, store) = populated();
    // id(3) was spent.
    assert!(matches!(
        store.restore_locks([(id(1), owner(1, 0)), (id(3), owner(1, 1))]),
        Err(StoreError::Corrupt { .. })
    ));
    // Nothing changed.
    assert_eq!(store.lock_owner(&id(1)).unwrap(), Some(owner(1, 0)));
    assert_eq!(store.lock_owner(&id(2)).unwrap(), Some(owner(1, 0)));
}

#[test]
fn test_snapshot_replaces_existing_contents() {
    let (_a, source) = populated();
    let bytes = source.snapshot_bytes().unwrap();
    let (_b, target) = temp_store();
    seed_ids(&target, &[id(1000), id(1001)]);
    target
        .update(|s| s.check_and_lock(owner(9, 9), &[id(1000)], Some(&tx(9))))
        .unwrap()
        .unwrap();
    target.install_snapshot(&bytes[..]).unwrap();
    assert!(!target.contains(&id(1000)).unwrap());
    assert_eq!(target.lock_owner(&id(1000)).unwrap(), None);
    assert_eq!(target.mint_state(&tx(9)).unwrap(), None);
    assert_eq!(fingerprint(&target), fingerprint(&source));
}

#[test]
fn test_snapshot_of_empty_store_round_trips() {
    let (_a, source) = temp_store();
    let bytes = source.snapshot_bytes().unwrap();
    let (_b, target) = populated();
    target.install_snapshot(&bytes[..]).unwrap();
    assert!(contents(&target).is_empty());
    assert_eq!(target.lock_count().unwrap(), 0);
    assert_eq!(target.supply().unwrap(), source.supply().unwrap());
}

#[test]
fn test_snapshot_truncated_refused_store_unchanged() {
    let (_a, source) = populated();
    let bytes = source.snapshot_bytes().unwrap();
    let (_b, target) = temp_store();
    seed_ids(&target, &[id(1000)]);
    let before = fingerprint(&target);
    for len in 0..bytes.len() {
        let result = target.install_snapshot(&bytes[..len]);
        assert!(
            matches!(result, Err(StoreError::SnapshotTruncated)),
            "length {len}: {result:?}"
        );
    }
    assert_eq!(fingerprint(&target), before);
}

#[test]
fn test_snapshot_corrupt_refused_store_unchanged() {
    let (_a, source) = populated();
    let bytes = source.snapshot_bytes().unwrap();
    let (_b, target) = temp_store();
    seed_ids(&target, &[id(1000)]);
    let before = fingerprint(&target);
    for position in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[position] ^= 0x01;
        let result = target.read_snapshot(&corrupt[..]);
        assert!(result.is_err(), "flipped byte {position} was accepted");
    }
    assert_eq!(fingerprint(&target), before);
}

#[test]
fn test_snapshot_trailing_bytes_refused() {
    let (_a, source) = populated();
    let mut bytes = source.snapshot_bytes().unwrap();
    bytes.push(0);
    let (_b, target) = temp_store();
    assert!(matches!(
        target.install_snapshot(&bytes[..]),
        Err(StoreError::SnapshotMalformed { .. })
    ));
}

#[test]
fn test_snapshot_bad_version_refused() {
    let (_a, source) = populated();
    let mut bytes = source.snapshot_bytes().unwrap();
    // Version 1 kept locks in a column of their own.
    bytes[8] = 1;
    let (_b, target) = temp_store();
    assert!(matches!(
        target.install_snapshot(&bytes[..]),
        Err(StoreError::SnapshotVersion {
            found: 1,
            expected: 2
        })
    ));
}

#[test]
fn test_snapshot_counters_disagreeing_with_outputs_refused() {
    // A store whose counters are wrong exports faithfully; the import catches it.
    let (_a, source) = populated();
    let meta = source.db().cf_handle("uhs_meta").unwrap();
    source.db().put_cf(meta, b"supply", [0u8; 16]).unwrap();
    let bytes = source.snapshot_bytes().unwrap();
    let (_b, target) = temp_store();
    assert!(matches!(
        target.install_snapshot(&bytes[..]),
        Err(StoreError::SnapshotMalformed { .. })
    ));
    assert!(contents(&target).is_empty());
}

#[test]
fn test_snapshot_streams_to_writer() {
    let (_a, source) = populated();
    let mut streamed = Vec::new();
    let info = source.write_snapshot(&mut streamed).unwrap();
    assert_eq!(streamed, source.snapshot_bytes().unwrap());
    // 50 seeded − 1 spent + 1 created outputs (2 of them locked, in the same
    // records), 2 mints, supply and height.
    assert_eq!(info.records, 50 + 2 + 2);
    assert_eq!(info.height, 1);
}
