//! Shard routing: which shard owns a UHS id. This is the only routing function; every
//! role, the wallet, the benchmark and the tests call it.
//!
//! A shard owns a contiguous, inclusive range of the first two bytes of UHS ids read as a
//! big-endian `u16`. A valid map covers `0..=65535` with no gap and no overlap.

use crate::hash::{Hash, TxId, UhsId};

/// An inclusive range of UHS id prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardRange {
    /// First prefix owned.
    pub start: u16,
    /// Last prefix owned (inclusive).
    pub end: u16,
}

/// Why a set of ranges is not a valid shard map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No shards at all.
    #[error("no shard ranges configured")]
    Empty,
    /// `start > end`.
    #[error("shard {shard} has range {start}..={end} with start after end")]
    Inverted {
        /// Shard index.
        shard: usize,
        /// Its start.
        start: u16,
        /// Its end.
        end: u16,
    },
    /// Two shards own the same prefix.
    #[error("shards {a} and {b} overlap at prefix {prefix}")]
    Overlap {
        /// One shard.
        a: usize,
        /// The other.
        b: usize,
        /// First prefix both own.
        prefix: u16,
    },
    /// Prefixes no shard owns.
    #[error("no shard owns prefixes {start}..={end}")]
    Gap {
        /// First unowned prefix.
        start: u16,
        /// Last unowned prefix.
        end: u16,
    },
}

impl ShardRange {
    /// Whether `prefix` falls in this range.
    pub fn contains(&self, prefix: u16) -> bool {
        self.start <= prefix && prefix <= self.end
    }

    /// Whether this range owns `id`.
    pub fn owns(&self, id: &UhsId) -> bool {
        self.contains(id.prefix())
    }
}

/// A validated assignment of prefixes to shards (shard `i` owns `ranges[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    ranges: Vec<ShardRange>,
    /// Shard indices sorted by range start, for binary search.
    by_start: Vec<usize>,
}

impl ShardMap {
    /// Checks that `ranges` cover every prefix exactly once.
    pub fn new(ranges: Vec<ShardRange>) -> Result<Self, RoutingError> {
        if ranges.is_empty() {
            return Err(RoutingError::Empty);
        }
        for (shard, r) in ranges.iter().enumerate() {
            if r.start > r.end {
                return Err(RoutingError::Inverted {
                    shard,
                    start: r.start,
                    end: r.end,
                });
            }
        }
        let mut by_start: Vec<usize> = (0..ranges.len()).collect();
        by_start.sort_by_key(|&i| ranges[i].start);
        let mut next: u32 = 0; // first prefix not yet covered
        let mut prev: Option<usize> = None;
        for &i in &by_start {
            let r = ranges[i];
            if u32::from(r.start) > next {
                return Err(RoutingError::Gap {
                    start: next as u16,
                    end: r.start - 1,
                });
            }
            if u32::from(r.start) < next {
                return Err(RoutingError::Overlap {
                    a: prev.unwrap_or(i),
                    b: i,
                    prefix: r.start,
                });
            }
            next = u32::from(r.end) + 1;
            prev = Some(i);
        }
        if next <= u32::from(u16::MAX) {
            return Err(RoutingError::Gap {
                start: next as u16,
                end: u16::MAX,
            });
        }
        Ok(ShardMap { ranges, by_start })
    }

    /// `count` shards splitting the prefix space into equal contiguous ranges.
    pub fn even(count: usize) -> Result<Self, RoutingError> {
        let count = count.clamp(0, 65_536);
        let ranges = (0..count)
            .map(|i| ShardRange {
                start: (i * 65_536 / count) as u16,
                end: ((i + 1) * 65_536 / count - 1) as u16,
            })
            .collect();
        ShardMap::new(ranges)
    }

    /// The ranges, indexed by shard.
    pub fn ranges(&self) -> &[ShardRange] {
        &self.ranges
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Always false: a valid map has at least one shard.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The shard owning `id`.
    pub fn shard_for(&self, id: &UhsId) -> usize {
        self.shard_for_prefix(id.prefix())
    }

    /// The shard that records the outcome of transaction `id` (routed like a UHS id with
    /// the same bytes).
    pub fn shard_for_tx(&self, id: &TxId) -> usize {
        self.shard_for(&UhsId(Hash(*id.as_bytes())))
    }

    /// The shard owning `prefix`.
    pub fn shard_for_prefix(&self, prefix: u16) -> usize {
        // The last range starting at or before `prefix` owns it (ranges tile the space).
        let pos = self
            .by_start
            .partition_point(|&i| self.ranges[i].start <= prefix);
        self.by_start[pos.saturating_sub(1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u16, end: u16) -> ShardRange {
        ShardRange { start, end }
    }

    #[test]
    fn test_shard_map_accepts_tiling_in_any_order() {
        let map = ShardMap::new(vec![r(32768, 65535), r(0, 32767)]).unwrap();
        assert_eq!(map.shard_for_prefix(0), 1);
        assert_eq!(map.shard_for_prefix(32767), 1);
        assert_eq!(map.shard_for_prefix(32768), 0);
        assert_eq!(map.shard_for_prefix(65535), 0);
    }

    #[test]
    fn test_shard_map_rejects_overlap_gap_inverted_empty() {
        assert_eq!(ShardMap::new(vec![]), Err(RoutingError::Empty));
        assert!(matches!(
            ShardMap::new(vec![r(0, 40000), r(30000, 65535)]),
            Err(RoutingError::Overlap { prefix: 30000, .. })
        ));
        assert_eq!(
            ShardMap::new(vec![r(0, 100), r(200, 65535)]),
            Err(RoutingError::Gap {
                start: 101,
                end: 199
            })
        );
        assert_eq!(
            ShardMap::new(vec![r(0, 100)]),
            Err(RoutingError::Gap {
                start: 101,
                end: 65535
            })
        );
        assert_eq!(
            ShardMap::new(vec![r(1, 65535)]),
            Err(RoutingError::Gap { start: 0, end: 0 })
        );
        assert!(matches!(
            ShardMap::new(vec![r(0, 10), r(5, 3), r(11, 65535)]),
            Err(RoutingError::Inverted { shard: 1, .. })
        ));
    }

    proptest! {
        #[test]
        fn prop_even_map_routes_into_owning_range(count in 1usize..300, prefix in any::<u16>()) {
            let map = ShardMap::even(count).unwrap();
            let shard = map.shard_for_prefix(prefix);
            prop_assert!(map.ranges()[shard].contains(prefix));
        }

        #[test]
        fn prop_uhs_routing_uses_first_two_bytes(bytes in any::<[u8; 32]>()) {
            let map = ShardMap::even(7).unwrap();
            let id = UhsId(Hash(bytes));
            let prefix = u16::from_be_bytes([bytes[0], bytes[1]]);
            prop_assert_eq!(map.shard_for(&id), map.shard_for_prefix(prefix));
        }
    }
}
