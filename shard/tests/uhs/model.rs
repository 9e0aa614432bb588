//! Random runs of operations against an in-memory model: the store's contents, locks
//! and counters must match the model's, and the counters must match a full audit.

use std::collections::HashMap;

use cbdc_core::Amount;
use cbdc_shard::{LockOwner, Supply, UhsStore};
use proptest::prelude::*;
use rocksdb::WriteBatch;

use crate::common::*;

#[derive(Debug, Clone)]
enum Op {
    Lock {
        owner: u8,
        inputs: Vec<u8>,
    },
    Release {
        owner: u8,
        inputs: Vec<u8>,
    },
    Apply {
        owner: u8,
        inputs: Vec<u8>,
        outputs: Vec<(u8, u64)>,
    },
    /// Reads ahead (as a shard does for a Raft batch): must change nothing later
    /// operations see, wherever in the batch it comes.
    Prefetch {
        keys: Vec<u8>,
    },
}

/// Ids come from a small space so that operations collide often.
const KEYS: u8 = 24;

fn op() -> impl Strategy<Value = Op> {
    let keys = || prop::collection::vec(0..KEYS, 0..4);
    let owner = 0u8..3;
    prop_oneof![
        (owner.clone(), keys()).prop_map(|(owner, inputs)| Op::Lock { owner, inputs }),
        (owner.clone(), keys()).prop_map(|(owner, inputs)| Op::Release { owner, inputs }),
        (
            owner,
            keys(),
            prop::collection::vec((0..KEYS, 1u64..1_000), 0..4)
        )
            .prop_map(|(owner, inputs, outputs)| Op::Apply {
                owner,
                inputs,
                outputs
            }),
        prop::collection::vec(0..KEYS, 0..8).prop_map(|keys| Op::Prefetch { keys }),
    ]
}

/// The store's rules, written as plainly as possible.
#[derive(Default)]
struct Model {
    outputs: HashMap<u8, u64>,
    locks: HashMap<u8, u8>,
}

fn has_duplicates(keys: &[u8]) -> bool {
    (1..keys.len()).any(|i| keys[..i].contains(&keys[i]))
}

impl Model {
    fn free_for(&self, owner: u8, key: u8) -> bool {
        self.outputs.contains_key(&key) && self.locks.get(&key).is_none_or(|o| *o == owner)
    }

    fn lock(&mut self, owner: u8, inputs: &[u8]) -> bool {
        if has_duplicates(inputs) || !inputs.iter().all(|k| self.free_for(owner, *k)) {
            return false;
        }
        for k in inputs {
            self.locks.insert(*k, owner);
        }
        true
    }

    fn release(&mut self, owner: u8, inputs: &[u8]) -> usize {
        let mut released = 0;
        for k in inputs {
            if self.locks.get(k) == Some(&owner) {
                self.locks.remove(k);
                released += 1;
            }
        }
        released
    }

    fn apply(&mut self, owner: u8, inputs: &[u8], outputs: &[(u8, u64)]) -> bool {
        let out_keys: Vec<u8> = outputs.iter().map(|(k, _)| *k).collect();
        if has_duplicates(inputs)
            || has_duplicates(&out_keys)
            || !inputs.iter().all(|k| self.free_for(owner, *k))
            || out_keys.iter().any(|k| self.outputs.contains_key(k))
        {
            return false;
        }
        for k in inputs {
            self.outputs.remove(k);
            self.locks.remove(k);
        }
        for (k, v) in outputs {
            self.outputs.insert(*k, *v);
        }
        true
    }
}

fn lock_owner(o: u8) -> LockOwner {
    owner(u64::from(o), 0)
}

fn ids(keys: &[u8]) -> Vec<cbdc_core::UhsId> {
    keys.iter().map(|k| id(u64::from(*k))).collect()
}

fn run(store: &UhsStore, model: &mut Model, batches: &[Vec<Op>]) {
    for ops in batches {
        let mut batch = WriteBatch::default();
        let mut staged = store.stage(&mut batch).unwrap();
        for op in ops {
            match op {
                Op::Lock { owner, inputs } => {
                    let got = staged
                        .check_and_lock(lock_owner(*owner), &ids(inputs), None)
                        .unwrap();
                    assert_eq!(got.is_ok(), model.lock(*owner, inputs), "{op:?}: {got:?}");
                }
                Op::Release { owner, inputs } => {
                    let got = staged
                        .release(lock_owner(*owner), &ids(inputs), &[], None)
                        .unwrap();
                    assert_eq!(got, model.release(*owner, inputs), "{op:?}");
                }
                Op::Apply {
                    owner,
                    inputs,
                    outputs,
                } => {
                    let outs: Vec<_> = outputs
                        .iter()
                        .map(|(k, v)| (id(u64::from(*k)), Amount::from_cents(*v)))
                        .collect();
                    let got = staged
                        .apply(lock_owner(*owner), &ids(inputs), &outs, None)
                        .unwrap();
                    assert_eq!(
                        got.is_ok(),
                        model.apply(*owner, inputs, outputs),
                        "{op:?}: {got:?}"
                    );
                }
                Op::Prefetch { keys } => staged.prefetch(&ids(keys)).unwrap(),
            }
        }
        let locks = staged.finish().unwrap();
        store.db().write(batch).unwrap();
        store.commit_locks(locks);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn test_supply_counters_match_model_and_audit(
        genesis in prop::collection::hash_map(0..KEYS, 1u64..1_000, 0..16),
        batches in prop::collection::vec(prop::collection::vec(op(), 0..12), 1..8),
    ) {
        let (_dir, store) = temp_store();
        store
            .seed(genesis.iter().map(|(k, v)| (id(u64::from(*k)), Amount::from_cents(*v))))
            .unwrap();
        let mut model = Model { outputs: genesis.clone(), ..Model::default() };
        run(&store, &mut model, &batches);

        let mut expected: Vec<_> = model
            .outputs
            .iter()
            .map(|(k, v)| (id(u64::from(*k)), Amount::from_cents(*v)))
            .collect();
        expected.sort();
        prop_assert_eq!(contents(&store), expected);
        for k in 0..KEYS {
            prop_assert_eq!(
                store.lock_owner(&id(u64::from(k))).unwrap(),
                model.locks.get(&k).map(|o| lock_owner(*o))
            );
        }
        let supply = Supply {
            count: model.outputs.len() as u64,
            total: Amount::from_cents(model.outputs.values().sum()),
        };
        prop_assert_eq!(store.supply().unwrap(), supply);
        let audit = store.audit().unwrap();
        prop_assert_eq!(audit.scanned, supply);
        prop_assert!(audit.is_consistent());
    }
}
