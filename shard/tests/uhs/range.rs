//! The range-restricted iterator.

use cbdc_core::ShardRange;

use crate::common::*;

fn prefixes_in(store: &cbdc_shard::UhsStore, start: u16, end: u16) -> Vec<u16> {
    store
        .iter_range(ShardRange { start, end })
        .unwrap()
        .map(|item| item.unwrap().0.prefix())
        .collect()
}

#[test]
fn test_iter_range_respects_boundaries() {
    let (_dir, store) = temp_store();
    let prefixes = [0x0000, 0x00FF, 0x0100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF];
    let ids: Vec<_> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| id_with_prefix(*p, i as u64))
        .collect();
    seed_ids(&store, &ids);
    assert_eq!(prefixes_in(&store, 0x0000, 0xFFFF), prefixes.to_vec());
    assert_eq!(prefixes_in(&store, 0x0100, 0x7FFF), vec![0x0100, 0x7FFF]);
    assert_eq!(prefixes_in(&store, 0x0000, 0x0000), vec![0x0000]);
    assert_eq!(prefixes_in(&store, 0x0001, 0x00FE), Vec::<u16>::new());
    assert_eq!(
        prefixes_in(&store, 0x8000, 0xFFFF),
        vec![0x8000, 0xFFFE, 0xFFFF]
    );
    assert_eq!(prefixes_in(&store, 0xFFFF, 0xFFFF), vec![0xFFFF]);
    assert_eq!(prefixes_in(&store, 0x00FF, 0x0100), vec![0x00FF, 0x0100]);
}

#[test]
fn test_iter_range_yields_values_in_id_order() {
    let (_dir, store) = temp_store();
    let ids: Vec<_> = (0..500).map(id).collect();
    seed_ids(&store, &ids);
    let all: Vec<_> = contents(&store);
    assert_eq!(all.len(), 500);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    for (id, value) in &all {
        assert_eq!(store.get(id).unwrap(), Some(*value));
    }
    // The halves of the prefix space partition the set.
    let low = prefixes_in(&store, 0, 0x7FFF).len();
    let high = prefixes_in(&store, 0x8000, 0xFFFF).len();
    assert_eq!(low + high, 500);
}

#[test]
fn test_iter_range_empty_store() {
    let (_dir, store) = temp_store();
    assert!(contents(&store).is_empty());
    // An inverted range is empty rather than an error.
    assert!(prefixes_in(&store, 5, 4).is_empty());
}
