//! Who holds a lock, and what the store knows about a mint.
//!
//! In two-phase commit a shard locks a transaction's inputs when it prepares the
//! distributed transaction (dtx) and keeps them locked until the coordinator tells it to
//! apply or abort. The owner names the exact transaction inside the dtx, so that two
//! transactions of one dtx cannot share an input and a repeated lock by the same owner is
//! harmless.

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

/// Reads a lock owner stored under `key` in the locks column family.
pub(crate) fn decode_owner(key: &[u8], bytes: &[u8]) -> Result<LockOwner, StoreError> {
    LockOwner::from_bytes(bytes)
        .ok_or_else(|| StoreError::corrupt("locks", key, "lock owner is not 16 bytes"))
}
