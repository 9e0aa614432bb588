//! UHS store hot paths: a 2PC shard's Lock and Apply commands over batches of 2-in/2-out
//! transactions, and point lookups, against a store seeded with 1M outputs.
//!
//! Run: `cargo bench -p cbdc-shard -- --warm-up-time 1 --measurement-time 3`.

use std::collections::VecDeque;

use cbdc_core::{Amount, Hash, UhsId};
use cbdc_shard::{LockOwner, UhsStore};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rocksdb::WriteBatch;

const SEEDED: u64 = 1_000_000;
const TXS_PER_BATCH: usize = 1_000;

fn id(namespace: &[u8], n: u64) -> UhsId {
    UhsId(Hash::digest_parts(&[namespace, &n.to_le_bytes()]))
}

/// One 2-in/2-out transaction as a shard sees it.
struct Tx {
    inputs: [UhsId; 2],
    outputs: [(UhsId, Amount); 2],
}

/// Hands out unspent inputs (the seeded ones, then outputs of earlier batches) and fresh
/// output ids, so that the benchmark can run any number of iterations.
struct Funds {
    unspent: VecDeque<UhsId>,
    next_output: u64,
    next_dtx: u64,
}

impl Funds {
    fn batch(&mut self) -> (u64, Vec<Tx>) {
        let txs = (0..TXS_PER_BATCH)
            .map(|_| {
                let mut input = || self.unspent.pop_front().expect("enough unspent outputs");
                let inputs = [input(), input()];
                let mut output = || {
                    self.next_output += 1;
                    (id(b"out", self.next_output), Amount::from_cents(1))
                };
                let outputs = [output(), output()];
                self.unspent.extend(outputs.iter().map(|(id, _)| *id));
                Tx { inputs, outputs }
            })
            .collect();
        self.next_dtx += 1;
        (self.next_dtx, txs)
    }
}

/// Locks then applies `txs` in two write batches, as a 2PC shard's `Lock` and `Apply`
/// would. With `prefetch`, as the shard's state machine does: the `Lock` batch first
/// reads its inputs and outputs in one `MultiGet` and prepares each transaction with its
/// outputs, reserving them, so that `Apply` reads nothing (it finds its inputs in the
/// lock table and its outputs reserved). Without, each output is read again at `Apply`.
fn lock_then_apply(store: &UhsStore, dtx: u64, txs: &[Tx], prefetch: bool) {
    let owner = |i: usize| LockOwner {
        coordinator: 0,
        dtx,
        tx_index: i as u32,
    };
    let mut batch = WriteBatch::default();
    let mut staged = store.stage(&mut batch).expect("stage");
    if prefetch {
        let ids = txs
            .iter()
            .flat_map(|tx| tx.inputs.iter().chain(tx.outputs.iter().map(|(id, _)| id)));
        staged.prefetch(ids).expect("prefetch");
    }
    for (i, tx) in txs.iter().enumerate() {
        let locked = if prefetch {
            let outputs: Vec<UhsId> = tx.outputs.iter().map(|(id, _)| *id).collect();
            staged.prepare(owner(i), &tx.inputs, &outputs, None)
        } else {
            staged.check_and_lock(owner(i), &tx.inputs, None)
        };
        locked.expect("lock").expect("inputs free");
    }
    let locks = staged.finish().expect("finish");
    store.db().write(batch).expect("write");
    store.commit_locks(locks);

    let mut batch = WriteBatch::default();
    let mut staged = store.stage(&mut batch).expect("stage");
    for (i, tx) in txs.iter().enumerate() {
        staged
            .apply(owner(i), &tx.inputs, &tx.outputs, None)
            .expect("apply")
            .expect("committed");
    }
    let locks = staged.finish().expect("finish");
    store.db().write(batch).expect("write");
    store.commit_locks(locks);
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = UhsStore::open(dir.path()).expect("open");
    store
        .seed((0..SEEDED).map(|i| (id(b"seed", i), Amount::from_cents(1))))
        .expect("seed");
    let mut funds = Funds {
        unspent: (0..SEEDED).map(|i| id(b"seed", i)).collect(),
        next_output: 0,
        next_dtx: 0,
    };

    let mut group = c.benchmark_group("2pc");
    group.throughput(Throughput::Elements(TXS_PER_BATCH as u64));
    for (name, prefetch) in [
        ("lock_then_apply_1000x2in2out", false),
        ("lock_then_apply_prefetched_1000x2in2out", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || funds.batch(),
                |(dtx, txs)| lock_then_apply(&store, dtx, &txs, prefetch),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("lookup");
    let mut n = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            // Outputs near the back of the seeded set are still unspent.
            n = (n + 7919) % 100_000;
            store.get(&id(b"seed", SEEDED - 1 - n)).expect("get")
        })
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| {
            n += 1;
            store.get(&id(b"absent", n)).expect("get")
        })
    });
    let keys: Vec<UhsId> = (0..1_000)
        .map(|i| id(b"seed", SEEDED - 1 - i * 37))
        .collect();
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("multi_get_1000", |b| {
        b.iter(|| store.multi_get(&keys).expect("multi_get"))
    });
    group.finish();
}

criterion_group!(uhs, benches);
criterion_main!(uhs);
