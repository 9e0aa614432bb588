//! Who holds a lock, and what the store knows about a mint.
//!
//! In two-phase commit a shard locks a transaction's inputs when it prepares the
//! distributed transaction (dtx) and keeps them locked until the coordinator tells it to
//! apply or abort. The owner names the exact transaction inside the dtx, so that two
//! transactions of one dtx cannot share an input and a repeated lock by the same owner is
//! harmless.

use cbdc_core::Amount;

use crate::error::StoreError;

/// The transaction holding a lock: a coordinator group, one of its distributed
/// transactions, and the transaction's position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockOwner {
    /// The coordinator group that issued the dtx (dtx ids are only unique per group).
    pub coordinator: u32,
    /// The distributed transaction's id.
    pub dtx: u64,
    /// The transaction's index in the dtx.
    pub tx_index: u32,
}

impl LockOwner {
    /// Bytes of [`LockOwner::to_bytes`].
    pub const LEN: usize = 16;

    /// `coordinator u32 LE ‖ dtx u64 LE ‖ tx_index u32 LE`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.coordinator.to_le_bytes());
        out[4..12].copy_from_slice(&self.dtx.to_le_bytes());
        out[12..].copy_from_slice(&self.tx_index.to_le_bytes());
        out
    }

    /// Reads [`LockOwner::to_bytes`]; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let (c, rest) = bytes.split_at(4);
        let (d, t) = rest.split_at(8);
        Some(LockOwner {
            coordinator: u32::from_le_bytes(c.try_into().ok()?),
            dtx: u64::from_le_bytes(d.try_into().ok()?),
            tx_index: u32::from_le_bytes(t.try_into().ok()?),
        })
    }
}

/// What the store knows about a mint transaction id it owns.
///
/// A signed mint can be replayed by anyone who saw it, so the shard that owns a mint's tx
/// id treats the id like an input that must be *absent*: it is locked at prepare (so two
/// dtxs cannot both carry the same mint) and recorded forever at apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MintState {
    /// A prepared transaction holds the id; released on abort, recorded on commit.
    Locked(LockOwner),
    /// The mint settled: any later transaction with this id is a replay.
    Recorded,
}

const MINT_RECORDED: u8 = 0;
const MINT_LOCKED: u8 = 1;

impl MintState {
    /// `0x00` (recorded) or `0x01 ‖ owner` (locked).
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            MintState::Recorded => vec![MINT_RECORDED],
            MintState::Locked(owner) => {
                let mut out = Vec::with_capacity(1 + LockOwner::LEN);
                out.push(MINT_LOCKED);
                out.extend_from_slice(&owner.to_bytes());
                out
            }
        }
    }

    /// Reads [`MintState::encode`]; `key` only names the record in the error.
    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.split_first() {
            Some((&MINT_RECORDED, [])) => Ok(MintState::Recorded),
            Some((&MINT_LOCKED, owner)) => LockOwner::from_bytes(owner)
                .map(MintState::Locked)
                .ok_or_else(|| StoreError::corrupt("minted", key, "bad lock owner length")),
            _ => Err(StoreError::corrupt("minted", key, "unknown mint state")),
        }
    }
}

/// The record of an unspent output in the `uhs` column family: its value and, while a
/// prepared 2PC transaction holds it, the lock.
///
/// Stored as `value u64 LE` (unlocked) or `value u64 LE ‖ owner` (locked,
/// [`LockOwner::to_bytes`]). The lock lives in the output's own record rather than in a
/// column family of its own, so that one lookup reads both, taking or releasing a lock
/// rewrites one record, and a commit deletes one: the 2PC hot path does about half the
/// random-key reads and memtable inserts it would with separate lock records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UhsEntry {
    /// The output's value.
    pub value: Amount,
    /// The prepared transaction holding it, if any.
    pub lock: Option<LockOwner>,
}

/// Bytes of an unlocked [`UhsEntry`].
const VALUE_LEN: usize = 8;
/// Bytes of a locked [`UhsEntry`].
const LOCKED_LEN: usize = VALUE_LEN + LockOwner::LEN;

/// An encoded [`UhsEntry`], without a heap allocation.
pub(crate) struct EntryBytes {
    buf: [u8; LOCKED_LEN],
    len: usize,
}

impl AsRef<[u8]> for EntryBytes {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl UhsEntry {
    /// An unlocked output of `value`.
    pub fn unlocked(value: Amount) -> Self {
        UhsEntry { value, lock: None }
    }

    /// The stored bytes (see the type's docs).
    pub fn to_bytes(self) -> EntryBytes {
        let mut buf = [0u8; LOCKED_LEN];
        buf[..VALUE_LEN].copy_from_slice(&self.value.cents().to_le_bytes());
        let len = match self.lock {
            Some(owner) => {
                buf[VALUE_LEN..].copy_from_slice(&owner.to_bytes());
                LOCKED_LEN
            }
            None => VALUE_LEN,
        };
        EntryBytes { buf, len }
    }

    /// Reads [`UhsEntry::to_bytes`] stored under `key` (which only names the record in
    /// the error).
    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::corrupt("uhs", key, "value is neither 8 nor 24 bytes");
        if bytes.len() != VALUE_LEN && bytes.len() != LOCKED_LEN {
            return Err(corrupt());
        }
        let (value, owner) = bytes.split_at(VALUE_LEN);
        let value =
            Amount::from_cents(u64::from_le_bytes(value.try_into().map_err(|_| corrupt())?));
        let lock = match owner {
            [] => None,
            owner => Some(LockOwner::from_bytes(owner).ok_or_else(corrupt)?),
        };
        Ok(UhsEntry { value, lock })
    }
}

/// Reads the value of an output's record stored under `key`, locked or not.
pub(crate) fn decode_value(key: &[u8], bytes: &[u8]) -> Result<Amount, StoreError> {
    UhsEntry::decode(key, bytes).map(|entry| entry.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"output";

    #[test]
    fn test_entry_round_trips_locked_and_unlocked() {
        let owner = LockOwner {
            coordinator: 7,
            dtx: u64::MAX - 1,
            tx_index: 3,
        };
        for entry in [
            UhsEntry::unlocked(Amount::from_cents(0)),
            UhsEntry::unlocked(Amount::from_cents(u64::MAX)),
            UhsEntry {
                value: Amount::from_cents(42),
                lock: Some(owner),
            },
        ] {
            let bytes = entry.to_bytes();
            let expected_len = if entry.lock.is_some() { 24 } else { 8 };
            assert_eq!(bytes.as_ref().len(), expected_len);
            assert_eq!(UhsEntry::decode(KEY, bytes.as_ref()).unwrap(), entry);
        }
    }

    #[test]
    fn test_entry_of_wrong_length_is_corrupt() {
        for len in [0, 7, 9, 16, 23, 25] {
            assert!(matches!(
                UhsEntry::decode(KEY, &vec![0u8; len]),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }
}
