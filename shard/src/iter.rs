//! Iteration over the unspent outputs a shard range owns.
//!
//! Keys are UHS ids, so byte order is routing order: the outputs with prefixes
//! `start..=end` are exactly the keys in `[start_be, (end + 1)_be)`. RocksDB's iterate
//! bounds keep the iterator from ever reading past the range.

use cbdc_consensus::storage::scan_options;
use cbdc_core::{Amount, ShardRange, UhsId};
use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, DB};

use crate::error::StoreError;
use crate::lock::decode_value;

/// Unspent outputs `(id, value)` of one [`ShardRange`], in id order. Yields an error (and
/// then stops) if RocksDB fails or a record is corrupt.
pub struct UhsRangeIter<'a> {
    inner: DBRawIteratorWithThreadMode<'a, DB>,
    /// Whether `inner` already points at the next item to yield (true right after the
    /// first seek; afterwards each call advances first).
    positioned: bool,
    done: bool,
}

impl<'a> UhsRangeIter<'a> {
    pub(crate) fn new(
        db: &'a DB,
        cf: &'a ColumnFamily,
        range: ShardRange,
    ) -> Result<Self, StoreError> {
        let mut opts = scan_options();
        opts.set_iterate_lower_bound(range.start.to_be_bytes().to_vec());
        // Past the last prefix there is no upper bound to set: the range runs to the end.
        if let Some(next) = range.end.checked_add(1) {
            opts.set_iterate_upper_bound(next.to_be_bytes().to_vec());
        }
        let empty = range.start > range.end;
        let mut inner = db.raw_iterator_cf_opt(cf, opts);
        if !empty {
            inner.seek_to_first();
        }
        Ok(UhsRangeIter {
            inner,
            positioned: true,
            done: empty,
        })
    }
}

impl Iterator for UhsRangeIter<'_> {
    type Item = Result<(UhsId, Amount), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.positioned {
            self.inner.next();
        }
        self.positioned = false;
        let item = match (self.inner.key(), self.inner.value()) {
            (Some(key), Some(value)) => match UhsId::from_slice(key) {
                Some(id) => decode_value(key, value).map(|v| (id, v)),
                None => Err(StoreError::corrupt("uhs", key, "key is not 32 bytes")),
            },
            _ => {
                self.done = true;
                return self.inner.status().err().map(|e| Err(e.into()));
            }
        };
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}
