//! Micro-benchmarks of the hot paths of `cbdc-core`: validating transactions, verifying
//! signatures in batches, checking attestation proofs, and hashing ids.
//!
//! Every transaction, signature and attestation is built and signed before timing
//! starts. Run with `cargo bench -p cbdc-core`; numbers are recorded in BENCHMARKS.md.

use cbdc_core::keys::{verify_batch, Signature, SignatureCheck};
use cbdc_core::{
    attest_batch, p2pk_output, sign_transfer, AttestationVerifier, CompactTransaction, Input,
    Limits, OutPoint, PublicKey, SecretKey, Transaction, TxId, Validator,
};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn key(i: u32) -> SecretKey {
    let mut seed = [0x42u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    SecretKey::from_bytes(&seed)
}

/// A signed transfer with `n_in` inputs (each its own key) and `n_out` outputs; `salt`
/// makes the outpoints, and so the tx id, distinct.
fn transfer(salt: u32, n_in: u32, n_out: u32) -> Transaction {
    let keys: Vec<SecretKey> = (0..n_in).map(|i| key(salt * 16 + i)).collect();
    let per_input = 1_000u64;
    let spends: Vec<(Input, &SecretKey)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&salt.to_le_bytes());
            let input = Input {
                outpoint: OutPoint {
                    tx_id: TxId::from(id),
                    index: i as u32,
                },
                spent: p2pk_output(k, per_input),
            };
            (input, k)
        })
        .collect();
    let total = per_input * u64::from(n_in);
    let recipient = key(u32::MAX);
    let mut outputs: Vec<_> = (0..n_out - 1)
        .map(|_| p2pk_output(&recipient, total / u64::from(n_out)))
        .collect();
    let rest = total - (total / u64::from(n_out)) * u64::from(n_out - 1);
    outputs.push(p2pk_output(&recipient, rest));
    sign_transfer(&spends, outputs)
}

fn bench_validate(c: &mut Criterion) {
    let v = Validator::new(Limits::default(), None);
    let mut group = c.benchmark_group("validate");
    for (n_in, n_out) in [(1, 1), (2, 2)] {
        let tx = transfer(1, n_in, n_out);
        assert_eq!(v.validate(&tx), Ok(()));
        group.bench_function(format!("{n_in}in_{n_out}out"), |b| {
            b.iter(|| v.validate(black_box(&tx)))
        });
    }
    group.finish();

    let txs: Vec<Transaction> = (0..256).map(|i| transfer(i, 2, 2)).collect();
    assert!(v.validate_many(&txs).iter().all(Result::is_ok));
    let mut group = c.benchmark_group("validate_many");
    group.throughput(Throughput::Elements(txs.len() as u64));
    group.bench_function("256x_2in_2out_rayon", |b| {
        b.iter(|| v.validate_many(black_box(&txs)))
    });
    group.finish();
}

fn bench_verify_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_batch");
    for n in [64u32, 256] {
        let keys: Vec<SecretKey> = (0..n).map(key).collect();
        let pks: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let messages: Vec<[u8; 32]> = (0..n)
            .map(|i| {
                let mut m = [7u8; 32];
                m[..4].copy_from_slice(&i.to_le_bytes());
                m
            })
            .collect();
        let sigs: Vec<Signature> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let checks: Vec<SignatureCheck<'_>> = (0..n as usize)
            .map(|i| SignatureCheck {
                key: &pks[i],
                message: &messages[i],
                signature: &sigs[i],
            })
            .collect();
        assert_eq!(verify_batch(&checks), Ok(()));
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| verify_batch(black_box(&checks)))
        });
    }
    group.finish();
}

fn bench_attestation(c: &mut Criterion) {
    let sentinel = key(7_777);
    let mut batch: Vec<CompactTransaction> =
        (0..1024).map(|i| transfer(i, 1, 1).compact()).collect();
    attest_batch(&sentinel, &mut batch);
    let tx = &batch[517];
    let attestation = &tx.attestations[0];
    assert_eq!(attestation.path.len(), 10);

    let mut group = c.benchmark_group("attestation_proof_1024");
    let warm = AttestationVerifier::new([sentinel.public_key()], 1);
    assert_eq!(warm.verify_one(tx, attestation), Ok(()));
    group.bench_function("cached_root", |b| {
        b.iter(|| warm.verify_one(black_box(tx), black_box(attestation)))
    });
    group.bench_function("uncached_root", |b| {
        b.iter_batched_ref(
            || AttestationVerifier::new([sentinel.public_key()], 1),
            |cold| cold.verify_one(black_box(tx), black_box(attestation)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_ids(c: &mut Criterion) {
    let tx = transfer(3, 2, 2);
    let outpoint = tx.outpoint(1);
    let output = tx.outputs[1];
    let mut group = c.benchmark_group("ids");
    group.bench_function("uhs_id", |b| {
        b.iter(|| black_box(&output).uhs_id(black_box(&outpoint)))
    });
    group.bench_function("tx_id_2in_2out", |b| b.iter(|| black_box(&tx).tx_id()));
    group.finish();
}

criterion_group!(
    benches,
    bench_validate,
    bench_verify_batch,
    bench_attestation,
    bench_ids
);
criterion_main!(benches);
