//! Micro-benchmarks of the harness's own preparation: generating and signing a workload
//! (what bounds how fast a large benchmark can be set up) and checking its answers.
//!
//! Run with `cargo bench -p cbdc-bench`.

use cbdc_bench::{Answer, Checks, FundingPlan, Shape, Workload, WorkloadSpec};
use cbdc_core::Transaction;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn spec(transactions: u32, shape: Shape) -> WorkloadSpec {
    WorkloadSpec {
        shape,
        transactions,
        invalid_fraction: 0.05,
        double_spend_fraction: 0.05,
        coin_value: 10_000,
        seed: 1,
        funding: FundingPlan::Genesis,
    }
}

fn bench_generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("workload");
    group.sample_size(10);
    for shape in [
        Shape::REFERENCE,
        Shape {
            inputs: 1,
            outputs: 2,
        },
    ] {
        let n = 2_000;
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_function(format!("generate {shape} x{n}"), |b| {
            b.iter(|| Workload::from_spec(black_box(&spec(n, shape))))
        });
    }
    group.finish();
}

fn bench_checks(c: &mut Criterion) {
    let workload = match Workload::from_spec(&spec(20_000, Shape::REFERENCE)) {
        Ok(w) => w,
        Err(e) => panic!("workload: {e}"),
    };
    let ids: Vec<_> = workload
        .transactions()
        .iter()
        .map(Transaction::tx_id)
        .collect();
    let answers = vec![Answer::Confirmed; ids.len()];
    let mut group = c.benchmark_group("answers");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("evaluate x20000", |b| {
        b.iter(|| Checks::evaluate(workload.expectations(), black_box(&answers), &ids))
    });
    group.finish();
}

criterion_group!(benches, bench_generate, bench_checks);
criterion_main!(benches);
