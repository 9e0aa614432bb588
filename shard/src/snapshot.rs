//! Snapshot export and import, for Raft: a lagging or new replica installs the leader's
//! whole store, and the log can be purged behind a snapshot.
//!
//! The export reads one consistent RocksDB snapshot and streams it to any
//! [`std::io::Write`] (a file, a buffer the Raft layer sends in chunks), so memory stays
//! bounded however big the store. The import validates everything — format, lengths,
//! key order, the supply counters against the outputs, a SHA-256 checksum — before it
//! changes anything, and then replaces the store's contents in one write batch.
//!
//! # Format, version 2
//!
//! All integers little-endian.
//!
//! | part | bytes |
//! |---|---|
//! | header | magic `CBDCUHS\0` (8) ‖ version `u32` = 2 |
//! | record, repeated | column `u8` ‖ key length `u16` ‖ value length `u16` ‖ key ‖ value |
//! | trailer | `0xFF` ‖ record count `u64` ‖ SHA-256 of every byte before it (32) |
//!
//! Columns are `1` UHS (`UhsId` → value `u64`; records written by builds that kept a
//! lock in its output's record are followed by the [`LockOwner`] bytes, which are
//! ignored), `3` minted (`TxId` → [`MintState`]), `4` meta (`supply` → `count u64 ‖
//! total u64`, `height` → `u64`). Records come column by column in that order, keys
//! strictly increasing within a column. Nothing may follow the trailer. (Version 1 had a
//! column `2` of locks.)
//!
//! Locks on outputs are held in memory ([`crate::lock`]), so a snapshot does not carry
//! them: their owner's records do (the locking shard's snapshot holds its dtx records),
//! and the owner restores them after installing ([`UhsStore::restore_locks`]).
//!
//! [`LockOwner`]: crate::LockOwner
//! [`MintState`]: crate::MintState

use std::io::{BufReader, BufWriter, Read, Write};

use cbdc_consensus::storage::scan_options;
use rocksdb::{ColumnFamily, SnapshotWithThreadMode, WriteBatch, DB};
use sha2::{Digest, Sha256};

use crate::columns::{ID_LEN, KEY_END, META_HEIGHT, META_SUPPLY};
use crate::error::StoreError;
use crate::lock::{decode_value, MintState};
use crate::store::UhsStore;
use crate::supply::{decode_height, Supply};

/// The first eight bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CBDCUHS\0";
/// The format version this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 2;

const TRAILER_TAG: u8 = 0xFF;
const HEADER_LEN: u64 = 12;

/// The logical columns of a snapshot, in record order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Column {
    Uhs = 1,
    Minted = 3,
    Meta = 4,
}

impl Column {
    const ALL: [Column; 3] = [Column::Uhs, Column::Minted, Column::Meta];

    fn from_tag(tag: u8) -> Option<Column> {
        Column::ALL.into_iter().find(|c| *c as u8 == tag)
    }

    fn cf(self, store: &UhsStore) -> Result<&ColumnFamily, StoreError> {
        match self {
            Column::Uhs => store.cf_uhs(),
            Column::Minted => store.cf_minted(),
            Column::Meta => store.cf_meta(),
        }
    }
}

/// What a snapshot holds, as reported by export and import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Records in it (outputs, mints and metadata).
    pub records: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// The supply counters it carries (checked against its outputs on import).
    pub supply: Supply,
    /// The block height it carries.
    pub height: u64,
}

/// A validated snapshot, staged as a write batch that replaces the store's contents.
///
/// The caller may add its own records (a Raft state machine: the snapshot's last-applied
/// log id and membership) and then writes the batch; dropping it changes nothing.
pub struct SnapshotImport {
    /// Clears the store's column families, then writes every record of the snapshot.
    pub batch: WriteBatch,
    /// What the snapshot holds.
    pub info: SnapshotInfo,
}

impl UhsStore {
    /// Streams a snapshot of the store, as it is now, to `writer` (see the module docs for
    /// the format).
    pub fn write_snapshot(&self, writer: impl Write) -> Result<SnapshotInfo, StoreError> {
        let snapshot = self.db().snapshot();
        self.write_snapshot_at(&snapshot, writer)
    }

    /// [`UhsStore::write_snapshot`] from a RocksDB snapshot the caller took, so that it
    /// can export its own state (the last-applied log id) from the same point in time.
    pub fn write_snapshot_at(
        &self,
        snapshot: &SnapshotWithThreadMode<'_, DB>,
        writer: impl Write,
    ) -> Result<SnapshotInfo, StoreError> {
        let mut out = HashingWriter {
            inner: BufWriter::with_capacity(1 << 16, writer),
            hasher: Sha256::new(),
            bytes: 0,
        };
        out.put(&SNAPSHOT_MAGIC)?;
        out.put(&SNAPSHOT_VERSION.to_le_bytes())?;
        let mut records = 0u64;
        let mut supply = Supply::default();
        let mut height = 0;
        for column in Column::ALL {
            let mut it = snapshot.raw_iterator_cf_opt(column.cf(self)?, scan_options());
            it.seek_to_first();
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                let (Ok(key_len), Ok(value_len)) =
                    (u16::try_from(key.len()), u16::try_from(value.len()))
                else {
                    return Err(StoreError::corrupt("snapshot", key, "record too long"));
                };
                if column == Column::Meta && key == META_SUPPLY {
                    supply = Supply::from_bytes(value)?;
                }
                if column == Column::Meta && key == META_HEIGHT {
                    height = decode_height(value)?;
                }
                out.put(&[column as u8])?;
                out.put(&key_len.to_le_bytes())?;
                out.put(&value_len.to_le_bytes())?;
                out.put(key)?;
                out.put(value)?;
                records += 1;
                it.next();
            }
            it.status()?;
        }
        out.put(&[TRAILER_TAG])?;
        out.put(&records.to_le_bytes())?;
        let digest: [u8; 32] = out.hasher.clone().finalize().into();
        out.put(&digest)?;
        out.inner.flush().map_err(StoreError::SnapshotIo)?;
        Ok(SnapshotInfo {
            records,
            bytes: out.bytes,
            supply,
            height,
        })
    }

    /// The whole snapshot as one byte vector. Holds the store in memory: for tests and
    /// small stores; large ones stream with [`UhsStore::write_snapshot`].
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.write_snapshot(&mut out)?;
        Ok(out)
    }

    /// Reads and validates a whole snapshot from `reader` and stages a batch that replaces
    /// the store's contents with it. Nothing is written: a truncated, corrupt or
    /// inconsistent snapshot is an error and leaves the store as it was.
    ///
    /// The batch holds the whole snapshot in memory (about 50 bytes per output).
    pub fn read_snapshot(&self, reader: impl Read) -> Result<SnapshotImport, StoreError> {
        let mut input = HashingReader {
            inner: BufReader::with_capacity(1 << 16, reader),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut header = [0u8; HEADER_LEN as usize];
        input.take(&mut header)?;
        let (magic, version) = header.split_at(8);
        if magic != SNAPSHOT_MAGIC {
            return Err(malformed(0, "bad magic"));
        }
        let version = u32::from_le_bytes(version.try_into().map_err(|_| malformed(8, "header"))?);
        if version != SNAPSHOT_VERSION {
            return Err(StoreError::SnapshotVersion {
                found: version,
                expected: SNAPSHOT_VERSION,
            });
        }

        let mut batch = WriteBatch::default();
        for column in Column::ALL {
            // One range tombstone per column clears what was there; the records that
            // follow in the batch are newer and survive it.
            batch.delete_range_cf(column.cf(self)?, &[][..], &KEY_END[..]);
        }

        let mut records = 0u64;
        let mut scanned = Supply::default();
        let mut recorded = Supply::default();
        let mut height = 0;
        let mut previous: Option<(Column, Vec<u8>)> = None;
        let mut key = Vec::with_capacity(64);
        let mut value = Vec::with_capacity(64);
        loop {
            let offset = input.bytes;
            let mut tag = [0u8; 1];
            input.take(&mut tag)?;
            if tag[0] == TRAILER_TAG {
                break;
            }
            let column =
                Column::from_tag(tag[0]).ok_or_else(|| malformed(offset, "unknown column"))?;
            let mut lens = [0u8; 4];
            input.take(&mut lens)?;
            let key_len = u16::from_le_bytes([lens[0], lens[1]]) as usize;
            let value_len = u16::from_le_bytes([lens[2], lens[3]]) as usize;
            key.resize(key_len, 0);
            value.resize(value_len, 0);
            input.take(&mut key)?;
            input.take(&mut value)?;

            // Columns in order, keys strictly increasing within a column.
            match &mut previous {
                Some((prev_column, prev_key)) => {
                    if column < *prev_column
                        || (column == *prev_column && key.as_slice() <= prev_key.as_slice())
                    {
                        return Err(malformed(offset, "records out of order"));
                    }
                    *prev_column = column;
                    prev_key.clear();
                    prev_key.extend_from_slice(&key);
                }
                None => previous = Some((column, key.clone())),
            }

            match column {
                Column::Uhs => {
                    if key_len != ID_LEN {
                        return Err(malformed(offset, "output record has the wrong size"));
                    }
                    let amount = decode_value(&key, &value)
                        .map_err(|_| malformed(offset, "output record has the wrong size"))?;
                    scanned = scanned
                        .with_output(amount)
                        .map_err(|_| malformed(offset, "outputs overflow the supply"))?;
                }
                Column::Minted => {
                    if key_len != ID_LEN || MintState::decode(&key, &value).is_err() {
                        return Err(malformed(offset, "bad mint record"));
                    }
                }
                Column::Meta => {
                    if key == META_SUPPLY {
                        recorded = Supply::from_bytes(&value)
                            .map_err(|_| malformed(offset, "bad supply record"))?;
                    } else if key == META_HEIGHT {
                        height = decode_height(&value)
                            .map_err(|_| malformed(offset, "bad height record"))?;
                    } else {
                        return Err(malformed(offset, "unknown metadata key"));
                    }
                }
            }
            batch.put_cf(column.cf(self)?, &key, &value);
            records += 1;
        }

        let trailer_offset = input.bytes - 1;
        let mut count = [0u8; 8];
        input.take(&mut count)?;
        if u64::from_le_bytes(count) != records {
            return Err(malformed(trailer_offset, "record count does not match"));
        }
        let expected: [u8; 32] = input.hasher.clone().finalize().into();
        let mut digest = [0u8; 32];
        input.take(&mut digest)?;
        if digest != expected {
            return Err(StoreError::SnapshotChecksum);
        }
        let mut extra = [0u8; 1];
        match input.inner.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(malformed(input.bytes, "bytes after the trailer")),
            Err(e) => return Err(StoreError::SnapshotIo(e)),
        }
        if scanned != recorded {
            return Err(malformed(
                trailer_offset,
                "supply counters disagree with the outputs",
            ));
        }
        Ok(SnapshotImport {
            batch,
            info: SnapshotInfo {
                records,
                bytes: input.bytes,
                supply: recorded,
                height,
            },
        })
    }

    /// Validates the snapshot from `reader` and replaces the store's contents with it in
    /// one write, releasing every lock on an output (they belonged to the replaced
    /// state); on any error the store is unchanged.
    pub fn install_snapshot(&self, reader: impl Read) -> Result<SnapshotInfo, StoreError> {
        let import = self.read_snapshot(reader)?;
        self.db().write(import.batch)?;
        self.restore_locks([])?;
        Ok(import.info)
    }
}

fn malformed(offset: u64, reason: &'static str) -> StoreError {
    StoreError::SnapshotMalformed { offset, reason }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W: Write> {
    inner: BufWriter<W>,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.inner.write_all(data).map_err(StoreError::SnapshotIo)
    }
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R: Read> {
    inner: BufReader<R>,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Fills `buf` exactly; the end of the stream here means a truncated snapshot.
    fn take(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => StoreError::SnapshotTruncated,
            _ => StoreError::SnapshotIo(e),
        })?;
        self.hasher.update(&*buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }
}
