//! The coordinator's per-dtx hot path, without I/O: encoding the Prepare record,
//! splitting a dtx into shard slices, deciding from the votes, building the Apply
//! arguments, and checking attestations (cached roots, as in steady state).
//!
//! `cargo bench -p cbdc-coordinator`. Every transaction is built and attested before
//! timing starts; the shape is Hamilton's 2 inputs and 2 outputs.

use cbdc_coordinator::dtx::apply_args;
use cbdc_coordinator::{decide, split, DtxTransactions, LockVote};
use cbdc_core::{
    attest_batch, Amount, AttestationVerifier, CompactTransaction, Hash, SecretKey, ShardMap, TxId,
    UhsId,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;

fn id(n: u64, part: u8) -> Hash {
    Hash::digest_parts(&[&n.to_le_bytes(), &[part]])
}

/// `count` attested 2-in-2-out compact transactions (attested in sentinel batches of 1000).
fn batch(count: u64, key: &SecretKey) -> Vec<CompactTransaction> {
    let mut txs: Vec<CompactTransaction> = (0..count)
        .map(|n| CompactTransaction {
            id: TxId(id(n, 0)),
            inputs: vec![UhsId(id(n, 1)), UhsId(id(n, 2))],
            outputs: vec![
                (UhsId(id(n, 3)), Amount::from_cents(5)),
                (UhsId(id(n, 4)), Amount::from_cents(5)),
            ],
            attestations: Vec::new(),
        })
        .collect();
    for chunk in txs.chunks_mut(1000) {
        attest_batch(key, chunk);
    }
    txs
}

fn bench_dtx(c: &mut Criterion) {
    let key = SecretKey::from_bytes(&[9; 32]);
    let verifier = AttestationVerifier::new([key.public_key()], 1);
    let mut group = c.benchmark_group("dtx");
    for &(size, shards) in &[(2000u64, 4usize), (2000, 16)] {
        let txs = batch(size, &key);
        let map = ShardMap::even(shards).expect("shard map");
        let label = format!("{size}tx/{shards}shards");
        group.throughput(Throughput::Elements(size));

        group.bench_with_input(BenchmarkId::new("split", &label), &txs, |b, txs| {
            b.iter(|| split(&map, txs))
        });

        let slices = split(&map, &txs);
        let votes: Vec<Vec<LockVote>> = slices
            .iter()
            .map(|s| vec![LockVote::locked(); s.txs.len()])
            .collect();
        group.bench_with_input(
            BenchmarkId::new("decide+apply_args", &label),
            &txs,
            |b, txs| {
                b.iter(|| {
                    let verdicts = decide(txs.len(), &slices, &votes);
                    slices
                        .iter()
                        .map(|s| apply_args(s, &verdicts))
                        .collect::<Vec<_>>()
                })
            },
        );

        group.bench_with_input(
            BenchmarkId::new("encode_prepare", &label),
            &txs,
            |b, txs| b.iter(|| DtxTransactions::encode(txs)),
        );
        let encoded = DtxTransactions::encode(&txs);
        group.bench_with_input(
            BenchmarkId::new("decode_prepare", &label),
            &encoded,
            |b, e| b.iter(|| e.decode().expect("decodes")),
        );

        group.bench_with_input(
            BenchmarkId::new("verify_attestations", &label),
            &txs,
            |b, txs| b.iter(|| txs.par_iter().all(|tx| verifier.verify(tx).is_ok())),
        );
        // One thread each: every path checked whole, against one run sharing the nodes
        // that proved (what the coordinator and the shards do).
        group.bench_with_input(
            BenchmarkId::new("verify_each_1thread", &label),
            &txs,
            |b, txs| b.iter(|| txs.iter().all(|tx| verifier.verify(tx).is_ok())),
        );
        group.bench_with_input(
            BenchmarkId::new("verify_all_1thread", &label),
            &txs,
            |b, txs| b.iter(|| verifier.verify_all(txs).iter().all(Result::is_ok)),
        );

        group.bench_with_input(BenchmarkId::new("to_wire", &label), &txs, |b, txs| {
            b.iter(|| cbdc_proto::convert::compact_transactions_to_wire(txs))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_dtx);
criterion_main!(benches);
