//! The pure part of checking submitted transactions: which inputs this shard owns, which
//! ids to read in one snapshot, and what the values read mean for each transaction.
//!
//! No I/O here: the caller reads the values with [`crate::UhsStore::check_inputs`]
//! (one snapshot, one height) and hands them back.

use cbdc_core::{Amount, CompactTransaction, ShardRange, UhsId};

/// Positions in `inputs` of the inputs `range` owns, in order.
pub fn owned_positions(range: ShardRange, inputs: &[UhsId]) -> Vec<u32> {
    inputs
        .iter()
        .enumerate()
        .filter(|(_, id)| range.owns(id))
        // At most `MAX_LIST_ITEMS` inputs pass decoding, so a position fits in a u32.
        .map(|(i, _)| i as u32)
        .collect()
}

/// The ids at `positions` of `tx`'s inputs.
pub fn ids_at(tx: &CompactTransaction, positions: &[u32]) -> Vec<UhsId> {
    positions
        .iter()
        .filter_map(|&p| tx.inputs.get(p as usize).copied())
        .collect()
}

/// The first position of `positions` whose value (`values[i]` for `positions[i]`) is
/// missing, or `None` when every one is present.
pub fn first_missing(positions: &[u32], values: &[Option<Amount>]) -> Option<u32> {
    positions
        .iter()
        .zip(values)
        .find(|(_, value)| value.is_none())
        .map(|(&p, _)| p)
        // A short `values` (a caller's bug) counts the unread positions as missing.
        .or_else(|| positions.get(values.len()).copied())
}

/// One transaction of a submission that touches this shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The whole transaction, attestations included (the atomizer checks them again).
    pub tx: CompactTransaction,
    /// Positions of the inputs this shard owns (never empty).
    pub positions: Vec<u32>,
}

/// What the values read for one [`Owned`] transaction mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every owned input is unspent at the height read: notify the atomizer.
    Present,
    /// The owned input at this position is not unspent: recheck it later.
    Missing {
        /// Position in the transaction's inputs.
        index: u32,
    },
}

/// The transactions of `txs` with at least one input `range` owns, with the positions of
/// those inputs; the others are none of this shard's business and are left out.
pub fn select_owned(range: ShardRange, txs: Vec<CompactTransaction>) -> Vec<Owned> {
    txs.into_iter()
        .filter_map(|tx| {
            let positions = owned_positions(range, &tx.inputs);
            (!positions.is_empty()).then_some(Owned { tx, positions })
        })
        .collect()
}

/// Every owned input id of `owned`, flattened in order, for one batched read.
pub fn ids_to_read(owned: &[Owned]) -> Vec<UhsId> {
    owned
        .iter()
        .flat_map(|o| ids_at(&o.tx, &o.positions))
        .collect()
}

/// The verdict of each of `owned` given `values`, the flattened values of
/// [`ids_to_read`] in the same order.
pub fn verdicts(owned: &[Owned], values: &[Option<Amount>]) -> Vec<Verdict> {
    let mut offset = 0usize;
    owned
        .iter()
        .map(|o| {
            let end = (offset + o.positions.len()).min(values.len());
            let slice = values.get(offset..end).unwrap_or(&[]);
            offset += o.positions.len();
            match first_missing(&o.positions, slice) {
                None => Verdict::Present,
                Some(index) => Verdict::Missing { index },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::{Hash, TxId};

    const LOW: ShardRange = ShardRange {
        start: 0,
        end: 0x7FFF,
    };

    fn id(prefix: u16, n: u8) -> UhsId {
        let mut bytes = [n; 32];
        bytes[..2].copy_from_slice(&prefix.to_be_bytes());
        UhsId::from(bytes)
    }

    fn tx(n: u8, inputs: &[UhsId]) -> CompactTransaction {
        CompactTransaction {
            id: TxId::from(*Hash::digest_parts(&[&[n]]).as_bytes()),
            inputs: inputs.to_vec(),
            outputs: Vec::new(),
            attestations: Vec::new(),
        }
    }

    fn cents(n: u64) -> Option<Amount> {
        Some(Amount::from_cents(n))
    }

    #[test]
    fn test_owned_positions_picks_owned_in_order() {
        let inputs = [id(0x9000, 1), id(0x0001, 2), id(0x7FFF, 3), id(0x8000, 4)];
        assert_eq!(owned_positions(LOW, &inputs), vec![1, 2]);
    }

    #[test]
    fn test_owned_positions_none_owned() {
        assert!(owned_positions(LOW, &[id(0x8000, 1), id(0xFFFF, 2)]).is_empty());
        assert!(owned_positions(LOW, &[]).is_empty());
    }

    #[test]
    fn test_first_missing_names_first_absent_position() {
        assert_eq!(first_missing(&[1, 3], &[cents(1), cents(2)]), None);
        assert_eq!(first_missing(&[1, 3, 4], &[cents(1), None, None]), Some(3));
        assert_eq!(first_missing(&[0], &[None]), Some(0));
    }

    #[test]
    fn test_first_missing_short_values_count_as_missing() {
        assert_eq!(first_missing(&[2, 5], &[cents(1)]), Some(5));
    }

    #[test]
    fn test_select_owned_drops_transactions_without_owned_inputs() {
        let mine = tx(1, &[id(0x9000, 1), id(0x0100, 2)]);
        let other = tx(2, &[id(0x9000, 3)]);
        let mint = tx(3, &[]);
        let owned = select_owned(LOW, vec![mine.clone(), other, mint]);
        assert_eq!(
            owned,
            vec![Owned {
                tx: mine,
                positions: vec![1]
            }]
        );
    }

    #[test]
    fn test_verdicts_split_flat_values_per_transaction() {
        let a = tx(1, &[id(0x0001, 1), id(0x9000, 2), id(0x0002, 3)]);
        let b = tx(2, &[id(0x0003, 4)]);
        let c = tx(3, &[id(0x9000, 5), id(0x0004, 6)]);
        let owned = select_owned(LOW, vec![a, b, c]);
        assert_eq!(
            ids_to_read(&owned),
            vec![id(0x0001, 1), id(0x0002, 3), id(0x0003, 4), id(0x0004, 6)]
        );
        let values = [cents(1), cents(2), None, None];
        assert_eq!(
            verdicts(&owned, &values),
            vec![
                Verdict::Present,
                Verdict::Missing { index: 0 },
                Verdict::Missing { index: 1 }
            ]
        );
    }
}
