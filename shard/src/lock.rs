//! Who holds a lock, and what the store knows about a mint.
//!
//! In two-phase commit a shard locks a transaction's inputs when it prepares the
//! distributed transaction (dtx) and keeps them locked until the coordinator tells it to
//! apply or abort. The owner names the exact transaction inside the dtx, so that two
//! transactions of one dtx cannot share an input and a repeated lock by the same owner is
//! harmless.

use cbdc_core::{Amount, IdMap, UhsId};

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

/// An unspent output as a 2PC shard sees it: its value and, while a prepared
/// transaction holds it, the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UhsEntry {
    /// The output's value.
    pub value: Amount,
    /// The prepared transaction holding it, if any.
    pub lock: Option<LockOwner>,
}

/// A lock held on an unspent output, with the output's value: while a prepared
/// transaction holds an output nothing else can spend it, so the value is known without
/// reading the record again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldLock {
    pub owner: LockOwner,
    pub value: Amount,
}

/// The locks prepared 2PC transactions hold on unspent outputs, and the outputs they
/// will create, **in memory**.
///
/// Locks are not written to the database. A lock lives from a `Lock` to the `Apply` of
/// the same distributed transaction, usually a few milliseconds: writing it into the
/// output's record at `Lock` and reading it back at `Apply` was a third of a shard's
/// writes to the `uhs` column family and all of `Apply`'s reads of its inputs. Their
/// durable copy is the owner's record of the prepared transaction (the locking shard's
/// `Locked` dtx records), from which the owner restores them when it starts or installs
/// a snapshot ([`crate::UhsStore::restore_locks`]). Locks on mint ids are rare and stay
/// in the `minted` column family.
///
/// **Reserved outputs** are those a prepare found absent, noted for its owner so that
/// its commit need not read them again (a point read of an absent key goes through every
/// level's filter: it was the last read of `Apply`). The note means only "absent since
/// it was made": creating the output drops it, whoever creates it, so an output two
/// prepared transactions reserved (one transaction carried by two dtxs) is created once
/// and the second commit reads it and finds it taken. Reservations are a cache, not
/// state: none is written or restored, and without one a commit reads the database as
/// before.
#[derive(Debug, Default)]
pub(crate) struct LockTable {
    held: IdMap<UhsId, HeldLock>,
    reserved: IdMap<UhsId, LockOwner>,
}

impl LockTable {
    pub fn get(&self, id: &UhsId) -> Option<HeldLock> {
        self.held.get(id).copied()
    }

    /// The prepared transaction that found output `id` absent, if it is still reserved.
    pub fn reservation(&self, id: &UhsId) -> Option<LockOwner> {
        self.reserved.get(id).copied()
    }

    /// Number of locks held (reservations are not locks).
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Applies what a written batch changed.
    pub fn commit(&mut self, changes: LockChanges) {
        for (id, change) in changes.held {
            match change {
                Some(held) => self.held.insert(id, held),
                None => self.held.remove(&id),
            };
        }
        for (id, change) in changes.reserved {
            match change {
                Some(owner) => self.reserved.insert(id, owner),
                None => self.reserved.remove(&id),
            };
        }
    }

    /// Replaces every lock by `held`, and drops every reservation.
    pub fn replace(&mut self, held: IdMap<UhsId, HeldLock>) {
        self.held = held;
        self.reserved = IdMap::default();
    }
}

/// The lock changes of one staged batch ([`crate::StagedBatch::finish`]): locks taken
/// (`Some`) or released or spent (`None`), and outputs reserved (`Some`) or created or
/// released (`None`). They take effect with [`crate::UhsStore::commit_locks`] once the
/// batch is written, so that a batch that is never written changes no lock.
#[derive(Debug, Default)]
#[must_use = "commit them with UhsStore::commit_locks once the batch is written"]
pub struct LockChanges {
    pub(crate) held: IdMap<UhsId, Option<HeldLock>>,
    pub(crate) reserved: IdMap<UhsId, Option<LockOwner>>,
}

impl LockChanges {
    /// Whether the batch took, released or reserved nothing.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.reserved.is_empty()
    }
}

/// Bytes of an output's record in the `uhs` column family: `value u64 LE`.
const VALUE_LEN: usize = 8;
/// Bytes of a record written by builds that kept the lock in the output's record
/// (`value u64 LE ‖ owner`); its lock part is ignored, the owner's dtx records restore it.
const LEGACY_LOCKED_LEN: usize = VALUE_LEN + LockOwner::LEN;

/// The stored bytes of an output of `value`.
pub(crate) fn encode_value(value: Amount) -> [u8; VALUE_LEN] {
    value.cents().to_le_bytes()
}

/// Reads the value of an output's record stored under `key` (which only names the
/// record in the error).
pub(crate) fn decode_value(key: &[u8], bytes: &[u8]) -> Result<Amount, StoreError> {
    if bytes.len() != VALUE_LEN && bytes.len() != LEGACY_LOCKED_LEN {
        return Err(StoreError::corrupt(
            "uhs",
            key,
            "value is neither 8 nor 24 bytes",
        ));
    }
    let mut value = [0u8; VALUE_LEN];
    value.copy_from_slice(&bytes[..VALUE_LEN]);
    Ok(Amount::from_cents(u64::from_le_bytes(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"output";

    #[test]
    fn test_value_round_trips_and_legacy_locked_records_read_their_value() {
        for cents in [0, 42, u64::MAX] {
            let bytes = encode_value(Amount::from_cents(cents));
            assert_eq!(
                decode_value(KEY, &bytes).unwrap(),
                Amount::from_cents(cents)
            );
            let mut legacy = bytes.to_vec();
            legacy.extend_from_slice(&[7u8; LockOwner::LEN]);
            assert_eq!(
                decode_value(KEY, &legacy).unwrap(),
                Amount::from_cents(cents)
            );
        }
    }

    #[test]
    fn test_record_of_wrong_length_is_corrupt() {
        for len in [0, 7, 9, 16, 23, 25] {
            assert!(matches!(
                decode_value(KEY, &vec![0u8; len]),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn test_lock_table_commits_takes_releases_and_reservations() {
        let id = |b: u8| UhsId(cbdc_core::Hash([b; 32]));
        let held = |dtx: u64| HeldLock {
            owner: LockOwner {
                coordinator: 0,
                dtx,
                tx_index: 0,
            },
            value: Amount::from_cents(5),
        };
        let mut table = LockTable::default();
        table.commit(LockChanges {
            held: IdMap::from_iter([
                (id(1), Some(held(1))),
                (id(2), Some(held(1))),
                (id(3), None),
            ]),
            reserved: IdMap::from_iter([(id(4), Some(held(1).owner))]),
        });
        assert_eq!(table.len(), 2);
        assert_eq!(table.reservation(&id(4)), Some(held(1).owner));
        table.commit(LockChanges {
            held: IdMap::from_iter([(id(1), None), (id(2), Some(held(2)))]),
            reserved: IdMap::from_iter([(id(4), None)]),
        });
        assert_eq!(table.get(&id(1)), None);
        assert_eq!(table.get(&id(2)), Some(held(2)));
        assert_eq!(table.len(), 1);
        assert_eq!(table.reservation(&id(4)), None);
        table.commit(LockChanges {
            held: IdMap::default(),
            reserved: IdMap::from_iter([(id(5), Some(held(3).owner))]),
        });
        table.replace(IdMap::default());
        assert_eq!((table.len(), table.reservation(&id(5))), (0, None));
    }
}
