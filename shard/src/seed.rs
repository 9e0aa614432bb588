//! Genesis seeding: loading millions of outputs into a fresh store, fast.
//!
//! The benchmark and test clusters start from a pre-funded state instead of minting
//! every output through the API. Seeding skips everything a live shard needs — the
//! write-ahead log, per-output existence checks, Raft — so it is only for a store that no
//! replica serves yet: seed every replica of a shard group with the same outputs before
//! the cluster starts.

use cbdc_core::{Amount, UhsId};
use rocksdb::{FlushOptions, WriteBatch, WriteOptions};

use crate::columns::META_SUPPLY;
use crate::error::StoreError;
use crate::store::{read_supply, UhsStore};
use crate::supply::Supply;

/// Outputs per write batch while seeding: large enough to amortise each write, small
/// enough to keep the batch (about 60 bytes per output) a few MiB.
const SEED_BATCH: usize = 50_000;

impl UhsStore {
    /// Bulk-loads `outputs` into a fresh store (before the cluster starts) and returns the
    /// new supply counters, which it keeps up to date.
    ///
    /// Writes in large batches with the WAL off, then flushes to disk so that the result
    /// is durable when this returns; a crash before then leaves a partial store: seed
    /// again into an empty one. Then compacts the outputs into one sorted level: left in
    /// level 0, they would be merged by the first compaction of the live shard, a second
    /// or more of CPU that a benchmark's clock would count against the first seconds of
    /// its run. The ids must be distinct and not yet in the store — this is not checked
    /// (that would cost a lookup per output), and a repeated id would count twice in the
    /// counters ([`UhsStore::audit`] finds that).
    pub fn seed(
        &self,
        outputs: impl IntoIterator<Item = (UhsId, Amount)>,
    ) -> Result<Supply, StoreError> {
        let uhs = self.cf_uhs()?;
        let meta = self.cf_meta()?;
        let mut supply = read_supply(self.db(), meta)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        let mut batch = WriteBatch::default();
        let mut in_batch = 0;
        for (id, value) in outputs {
            supply = supply.with_output(value)?;
            batch.put_cf(uhs, id.as_bytes(), value.cents().to_le_bytes());
            in_batch += 1;
            if in_batch == SEED_BATCH {
                batch.put_cf(meta, META_SUPPLY, supply.to_bytes());
                self.db().write_opt(std::mem::take(&mut batch), &write)?;
                in_batch = 0;
            }
        }
        batch.put_cf(meta, META_SUPPLY, supply.to_bytes());
        self.db().write_opt(batch, &write)?;
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        self.db().flush_cfs_opt(&[uhs, meta], &flush)?;
        self.db()
            .compact_range_cf(uhs, None::<&[u8]>, None::<&[u8]>);
        Ok(supply)
    }
}
