//! Builders shared by the tests.

use cbdc_core::{Amount, Hash, ShardRange, TxId, UhsId};
use cbdc_shard::{ColumnFamilyNames, LockOwner, StoreOptions, UhsStore};
use tempfile::TempDir;

/// Small caches and memtables: tests hold little data and run in parallel.
pub fn test_options() -> StoreOptions {
    StoreOptions {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 4 << 20,
        db_write_buffer_bytes: 32 << 20,
        ..StoreOptions::default()
    }
}

/// A fresh store in its own temporary directory (kept alive by the returned guard).
pub fn temp_store() -> (TempDir, UhsStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_at(&dir);
    (dir, store)
}

/// Opens (or reopens) the store in `dir`.
pub fn open_at(dir: &TempDir) -> UhsStore {
    UhsStore::open_with(dir.path(), &test_options(), ColumnFamilyNames::default())
        .expect("open store")
}

/// A deterministic, well-spread UHS id.
pub fn id(n: u64) -> UhsId {
    UhsId(Hash::digest_parts(&[b"uhs", &n.to_le_bytes()]))
}

/// A UHS id with routing prefix `prefix`.
pub fn id_with_prefix(prefix: u16, n: u64) -> UhsId {
    let mut bytes = *id(n).as_bytes();
    bytes[..2].copy_from_slice(&prefix.to_be_bytes());
    UhsId::from(bytes)
}

/// A deterministic mint id.
pub fn tx(n: u64) -> TxId {
    TxId(Hash::digest_parts(&[b"tx", &n.to_le_bytes()]))
}

/// Owner of transaction `tx_index` in dtx `dtx` of coordinator group 0.
pub fn owner(dtx: u64, tx_index: u32) -> LockOwner {
    LockOwner {
        coordinator: 0,
        dtx,
        tx_index,
    }
}

/// `cents` as an amount.
pub fn cents(cents: u64) -> Amount {
    Amount::from_cents(cents)
}

/// Every prefix.
pub const FULL: ShardRange = ShardRange {
    start: 0,
    end: u16::MAX,
};

/// Seeds `ids` with values 1, 2, 3, ….
pub fn seed_ids(store: &UhsStore, ids: &[UhsId]) {
    store
        .seed(
            ids.iter()
                .enumerate()
                .map(|(i, id)| (*id, cents(i as u64 + 1))),
        )
        .expect("seed");
}

/// Every unspent output, in id order.
pub fn contents(store: &UhsStore) -> Vec<(UhsId, Amount)> {
    store
        .iter_range(FULL)
        .expect("iter")
        .collect::<Result<Vec<_>, _>>()
        .expect("scan")
}
