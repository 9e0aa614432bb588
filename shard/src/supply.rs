//! The count and total value of a store's unspent outputs, for the central bank's supply
//! audit: the sum of every shard's total is the money in circulation.
//!
//! The store keeps the counters up to date in the same write batch as the change to the
//! unspent set, so reading them costs one key; [`crate::UhsStore::audit`] recomputes them
//! from a full scan to check that they agree.

use cbdc_core::Amount;

use crate::error::StoreError;

/// Count and total value of unspent outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Supply {
    /// Number of unspent outputs.
    pub count: u64,
    /// Sum of their values.
    pub total: Amount,
}

impl Supply {
    /// Bytes of [`Supply::to_bytes`].
    pub(crate) const LEN: usize = 16;

    /// The counters with one more output of `value`; an error if they overflow.
    pub fn with_output(self, value: Amount) -> Result<Supply, StoreError> {
        Ok(Supply {
            count: self
                .count
                .checked_add(1)
                .ok_or(StoreError::SupplyOutOfRange { counter: "count" })?,
            total: self
                .total
                .checked_add(value)
                .ok_or(StoreError::SupplyOutOfRange { counter: "total" })?,
        })
    }

    /// The counters with one output of `value` fewer; an error if they go below zero.
    pub fn without_output(self, value: Amount) -> Result<Supply, StoreError> {
        Ok(Supply {
            count: self
                .count
                .checked_sub(1)
                .ok_or(StoreError::SupplyOutOfRange { counter: "count" })?,
            total: self
                .total
                .checked_sub(value)
                .ok_or(StoreError::SupplyOutOfRange { counter: "total" })?,
        })
    }

    /// `count u64 LE ‖ total u64 LE`.
    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.count.to_le_bytes());
        out[8..].copy_from_slice(&self.total.cents().to_le_bytes());
        out
    }

    /// Reads [`Supply::to_bytes`].
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Supply, StoreError> {
        let bad = || StoreError::corrupt("meta", b"supply", "supply record is not 16 bytes");
        let bytes: &[u8; Self::LEN] = bytes.try_into().map_err(|_| bad())?;
        let (count, total) = bytes.split_at(8);
        Ok(Supply {
            count: u64::from_le_bytes(count.try_into().map_err(|_| bad())?),
            total: Amount::from_cents(u64::from_le_bytes(total.try_into().map_err(|_| bad())?)),
        })
    }
}

/// Reads the block height (`u64 LE`).
pub(crate) fn decode_height(bytes: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt("meta", b"height", "height is not 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes))
}
