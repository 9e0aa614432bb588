//! Snapshots of the whole locking shard, for Raft: the UHS store (outputs, locks, mint
//! records, counters) in its own checksummed format, plus the machine's tables.
//!
//! # Format, version 1
//!
//! All integers little-endian.
//!
//! | part | bytes |
//! |---|---|
//! | header | magic `CBDCLKS\0` (8) ‖ version `u32` = 1 |
//! | UHS | length `u64` ‖ a UHS store snapshot ([`crate::snapshot`]) |
//! | tables, in order `shard_dtxs`, `shard_dtx_order`, `shard_outcomes`, `shard_outcome_order`, `shard_meta` | record count `u64` ‖ records: key length `u32` ‖ key ‖ value length `u32` ‖ value, keys strictly increasing |
//! | trailer | SHA-256 of every byte before it (32) |
//!
//! Written from one RocksDB snapshot, in key order, so the same state always gives the
//! same bytes. Installing validates everything before it stages anything, then replaces
//! the whole state.

use cbdc_consensus::storage::scan_options;
use rocksdb::WriteBatch;
use sha2::{Digest, Sha256};

use super::error::LockingError;
use super::machine::LockingShardMachine;
use super::tables::Table;

const MAGIC: [u8; 8] = *b"CBDCLKS\0";
const VERSION: u32 = 1;
const DIGEST_LEN: usize = 32;
/// An exclusive upper bound above every key of the machine's tables (all at most 32
/// bytes), to clear a table with one range tombstone.
const KEY_END: [u8; 33] = [0xFF; 33];

/// The whole state as snapshot bytes.
pub(crate) fn write(machine: &LockingShardMachine) -> Result<Vec<u8>, LockingError> {
    let db = machine.db();
    let snapshot = db.snapshot();
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());

    let mut uhs = Vec::new();
    machine.store().write_snapshot_at(&snapshot, &mut uhs)?;
    out.extend_from_slice(&(uhs.len() as u64).to_le_bytes());
    out.extend_from_slice(&uhs);
    drop(uhs);

    for table in Table::ALL {
        let cf = db
            .cf_handle(table.name())
            .ok_or(LockingError::MissingColumnFamily(table.name()))?;
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        let mut it = snapshot.raw_iterator_cf_opt(cf, scan_options());
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            for part in [key, value] {
                let len = u32::try_from(part.len()).map_err(|_| LockingError::Corrupt {
                    table: table.name(),
                    reason: "record longer than 4 GiB".into(),
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(part);
            }
            count += 1;
            it.next();
        }
        it.status()?;
        out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Validates `data` and stages into `batch` (which must be empty: the UHS import brings
/// its own batch) the replacement of the whole state by it.
pub(crate) fn install(
    machine: &LockingShardMachine,
    batch: &mut WriteBatch,
    data: &[u8],
) -> Result<(), LockingError> {
    if !batch.is_empty() {
        return Err(LockingError::SnapshotMalformed(
            "install_snapshot needs an empty write batch".into(),
        ));
    }
    let body_len = data
        .len()
        .checked_sub(DIGEST_LEN)
        .ok_or_else(|| malformed("shorter than its checksum"))?;
    let (body, digest) = data.split_at(body_len);
    if Sha256::digest(body).as_slice() != digest {
        return Err(malformed("checksum mismatch"));
    }
    let mut r = Reader { data: body, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(malformed("bad magic"));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(LockingError::SnapshotMalformed(format!(
            "format version {version} is not supported (expected {VERSION})"
        )));
    }
    let uhs_len = usize::try_from(r.u64()?).map_err(|_| malformed("UHS part too long"))?;
    let uhs = r.take(uhs_len)?;

    let mut tables = Vec::with_capacity(Table::ALL.len());
    for table in Table::ALL {
        let count = r.u64()?;
        let mut records = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for _ in 0..count {
            let key_len = r.u32()? as usize;
            let key = r.take(key_len)?;
            let value_len = r.u32()? as usize;
            let value = r.take(value_len)?;
            if previous.is_some_and(|p| p >= key) {
                return Err(malformed("records out of order"));
            }
            if key.len() >= KEY_END.len() {
                return Err(malformed("key too long"));
            }
            table.validate(key, value)?;
            records.push((key, value));
            previous = Some(key);
        }
        tables.push((table, records));
    }
    if r.at != body.len() {
        return Err(malformed("bytes after the last table"));
    }

    // Validated: the UHS import (which checks its own part) clears and refills the
    // store's column families; then the machine's tables are cleared and refilled.
    let import = machine.store().read_snapshot(uhs)?;
    *batch = import.batch;
    for (table, records) in tables {
        let cf = machine
            .db()
            .cf_handle(table.name())
            .ok_or(LockingError::MissingColumnFamily(table.name()))?;
        batch.delete_range_cf(cf, &[][..], &KEY_END[..]);
        for (key, value) in records {
            batch.put_cf(cf, key, value);
        }
    }
    Ok(())
}

fn malformed(reason: &str) -> LockingError {
    LockingError::SnapshotMalformed(reason.to_string())
}

/// Reads the snapshot's fields, failing (never panicking) at its end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], LockingError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| malformed("truncated"))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, LockingError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(
            bytes.try_into().map_err(|_| malformed("truncated"))?,
        ))
    }

    fn u64(&mut self) -> Result<u64, LockingError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(
            bytes.try_into().map_err(|_| malformed("truncated"))?,
        ))
    }
}
