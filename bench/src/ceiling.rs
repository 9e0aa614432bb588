//! The machine's ceiling: how many transactions per second this machine could validate
//! at most, so that a run's throughput can be judged as a fraction of what the hardware
//! allows.
//!
//! Signature verification dominates a sentinel's work, so the ceiling is measured in two
//! ways, on all cores (rayon's global pool, the one sentinels use):
//!
//! 1. **Signatures**: ed25519 batch verifications per second through
//!    `cbdc_core::keys::verify_batch`, in batches of the size `Validator::validate_many`
//!    forms; divided by the signatures per transaction (its inputs) this gives the most
//!    transactions per second if nothing but signatures cost anything.
//! 2. **Validation**: `Validator::validate_many` itself on transactions of the run's
//!    shape — every stateless rule, hashing the tx id, and the signatures: the true
//!    per-transaction ceiling of a sentinel on this machine, a little below the first.
//!
//! A cluster on the same machine also spends cores on gRPC, Raft and RocksDB, so a run
//! reaches a fraction of either figure; the report gives both fractions.

use std::time::{Duration, Instant};

use cbdc_core::keys::{verify_batch, SignatureCheck};
use cbdc_core::{Limits, TxId, Validator, WitnessProgram};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::args::Shape;
use crate::error::BenchError;
use crate::workload::{FundingPlan, Workload, WorkloadSpec};

/// Transactions per signature batch: the chunk size of `Validator::validate_many`.
const TXS_PER_BATCH: usize = 32;
/// Batches per core in the sample, so that every core stays busy through a pass.
const BATCHES_PER_THREAD: usize = 8;
/// Seed of the sample transactions (any will do; fixed so that runs compare).
const SAMPLE_SEED: u64 = 0xce11_1e6a;
/// How far apart two undisturbed measurements of the same figure may be: validation
/// measured 0.1 % above its own signatures (45,438 against 45,385 tx/s) in one of six
/// back-to-back runs, 2–5 % below in the others.
const CEILING_SPREAD: f64 = 0.02;

/// What the machine can validate at most.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// Threads verifying (rayon's pool: one per core unless `RAYON_NUM_THREADS` says).
    pub threads: usize,
    /// Signatures per transaction (its inputs).
    pub signatures_per_tx: usize,
    /// ed25519 verifications per second, in batches, on all threads.
    pub verifications_per_s: f64,
    /// `verifications_per_s / signatures_per_tx`: transactions per second if only
    /// signatures cost anything.
    pub tx_per_s_from_signatures: f64,
    /// Transactions of the run's shape through `Validator::validate_many` per second.
    pub validated_tx_per_s: f64,
    /// Time spent measuring, seconds.
    pub measured_s: f64,
    /// The instructions the signature checks ran on
    /// ([`cbdc_core::keys::signature_backend`]): on one machine an `avx512-ifma` ceiling
    /// was 44 % above an `avx2` one. Empty in reports of builds before it.
    #[serde(default)]
    pub signature_backend: String,
}

impl Ceiling {
    /// `throughput` as a fraction of the signature ceiling (0 when there is none).
    pub fn fraction_of_signatures(&self, throughput: f64) -> f64 {
        ratio(throughput, self.tx_per_s_from_signatures)
    }

    /// `throughput` as a fraction of the validation ceiling (0 when there is none).
    pub fn fraction_of_validation(&self, throughput: f64) -> f64 {
        ratio(throughput, self.validated_tx_per_s)
    }

    /// Why the measurement cannot be what the machine does undisturbed, if it cannot:
    /// whole validation checks the same signatures and more, so it cannot be faster than
    /// the signatures alone by more than the measurement's own spread
    /// ([`CEILING_SPREAD`]). When it is, every signature window was slowed down (session
    /// 20 saw 37,285 against 40,994 tx/s after seeding 1.4 million outputs), and the
    /// fraction of the signature ceiling reads high.
    pub fn inconsistency(&self) -> Option<String> {
        let limit = self.tx_per_s_from_signatures * (1.0 + CEILING_SPREAD);
        (self.validated_tx_per_s > limit).then(|| {
            format!(
                "the ceiling measurement was disturbed: validate_many ({:.0} tx/s) ran faster \
                 than its signature checks alone ({:.0} tx/s), so the fraction of the \
                 signature ceiling reads high; the fraction of the validation ceiling is the \
                 safer figure",
                self.validated_tx_per_s, self.tx_per_s_from_signatures
            )
        })
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 && a.is_finite() {
        a / b
    } else {
        0.0
    }
}

/// Measures the ceiling for transactions of `shape`, spending about `time` (signatures
/// and whole validation taking turns, window by window; each at least one pass over the
/// sample). Blocks every core for that long: call it from a blocking context, before the
/// load starts.
pub fn measure(shape: Shape, time: Duration) -> Result<Ceiling, BenchError> {
    let threads = rayon::current_num_threads().max(1);
    let sample = (threads * BATCHES_PER_THREAD * TXS_PER_BATCH) as u32;
    let workload = Workload::from_spec(&WorkloadSpec {
        shape,
        transactions: sample,
        invalid_fraction: 0.0,
        double_spend_fraction: 0.0,
        coin_value: (shape.outputs as u64).max(1),
        seed: SAMPLE_SEED,
        funding: FundingPlan::Genesis,
    })?;
    let txs = workload.transactions();
    let ids: Vec<TxId> = txs.par_iter().map(|tx| tx.tx_id()).collect();
    let checks: Vec<SignatureCheck<'_>> = txs
        .iter()
        .zip(&ids)
        .flat_map(|(tx, id)| {
            tx.witnesses.iter().filter_map(move |w| match &w.program {
                WitnessProgram::P2pk(key) => Some(SignatureCheck {
                    key,
                    message: id.as_bytes(),
                    signature: &w.signature,
                }),
                WitnessProgram::Unknown { .. } => None,
            })
        })
        .collect();
    let batch = TXS_PER_BATCH * shape.inputs.max(1);
    let mut signature_pass = || {
        checks.par_chunks(batch).for_each(|chunk| {
            // The sample is honest: a failure would only mean a slower fallback path,
            // which the figure then includes.
            let _ = verify_batch(chunk);
        });
        checks.len()
    };
    let validator = Validator::new(Limits::default(), None);
    let mut validation_pass = || validator.validate_many(txs).len();
    let [signatures, validation] = best_rates(time, [&mut signature_pass, &mut validation_pass]);

    Ok(Ceiling {
        threads,
        signatures_per_tx: shape.inputs,
        verifications_per_s: signatures.per_second,
        tx_per_s_from_signatures: signatures.per_second / shape.inputs.max(1) as f64,
        validated_tx_per_s: validation.per_second,
        measured_s: signatures.seconds + validation.seconds,
        signature_backend: cbdc_core::keys::signature_backend().to_string(),
    })
}

/// Shortest window whose rate counts towards [`best_rates`]: long enough for many
/// passes (a pass over the sample takes about 15 ms on two cores), short enough for
/// several windows in a measurement.
const WINDOW: Duration = Duration::from_millis(250);

/// What [`best_rates`] found for one pass.
struct Rate {
    /// Items per second in the best window.
    per_second: f64,
    /// Time spent measuring, seconds.
    seconds: f64,
}

/// Runs each of `passes` (which return how many items they did) in turns, a window of at
/// least [`WINDOW`] each (or all of `time`, when it is shorter), for about `time` in all
/// and at least once each, and gives each pass the rate of its best window.
///
/// A ceiling is what the machine can do undisturbed: on a shared VM, or with a cluster's
/// RocksDB still flushing what was just seeded, a mean over the whole measurement took
/// the disturbance in, and the same machine measured anywhere from 62,000 to 89,000
/// verifications a second from run to run (BENCHMARKS.md, session 13). The best window
/// leaves a fraction of the ceiling conservative. Taking turns, the passes sample the
/// same moments: when signatures had the first half of the time to themselves, a
/// disturbance there could spoil all their windows and none of validation's, and the
/// signature ceiling came out below the validation one, which does strictly more work
/// (74,570 verifications a second = 37,285 tx/s against 40,994 tx/s validated, session
/// 20), inflating the fraction of the run.
fn best_rates<const N: usize>(
    time: Duration,
    mut passes: [&mut dyn FnMut() -> usize; N],
) -> [Rate; N] {
    let started = Instant::now();
    let mut best = [0.0f64; N];
    let mut spent = [Duration::ZERO; N];
    loop {
        for (i, pass) in passes.iter_mut().enumerate() {
            let window = Instant::now();
            let mut done = 0usize;
            loop {
                done += pass();
                if window.elapsed() >= WINDOW || started.elapsed() >= time {
                    break;
                }
            }
            let elapsed = window.elapsed();
            spent[i] += elapsed;
            best[i] = best[i].max(per_second(done, elapsed.as_secs_f64()));
        }
        if started.elapsed() >= time {
            break;
        }
    }
    std::array::from_fn(|i| Rate {
        per_second: best[i],
        seconds: spent[i].as_secs_f64(),
    })
}

fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_measure_reports_consistent_figures() {
        // One pass each (time zero): checks the arithmetic, not the speed.
        let c = measure(Shape::REFERENCE, Duration::ZERO).unwrap();
        assert_eq!(c.signatures_per_tx, 2);
        assert!(c.threads >= 1);
        assert!(c.verifications_per_s > 0.0);
        assert!(c.validated_tx_per_s > 0.0);
        assert!((c.tx_per_s_from_signatures * 2.0 - c.verifications_per_s).abs() < 1e-6);
    }

    #[test]
    fn test_best_rate_takes_the_fastest_window() {
        // Every pass sleeps as long; the first 30 do one item each, the rest 100: the
        // windows of the later passes set the rate, however long a sleep really takes.
        let mut calls = 0u32;
        let mut pass = || {
            calls += 1;
            std::thread::sleep(Duration::from_millis(2));
            if calls <= 30 {
                1
            } else {
                100
            }
        };
        let [rate] = best_rates(Duration::from_millis(600), [&mut pass]);
        // At most 500 items a second in a slow window, about 50,000 in a fast one.
        assert!(rate.per_second > 2_000.0, "{}", rate.per_second);
        assert!(rate.seconds >= 0.6);
        // A zero budget still runs one pass of each.
        let [a, b] = best_rates(Duration::ZERO, [&mut || 7, &mut || 3]);
        assert!(a.per_second > 0.0 && b.per_second > 0.0);
    }

    #[test]
    fn test_best_rates_take_turns() {
        // Which pass ran, in order: the two must alternate window by window, not run
        // one after the other.
        let order = std::cell::RefCell::new(Vec::new());
        let mut first = || {
            order.borrow_mut().push(0u8);
            std::thread::sleep(Duration::from_millis(5));
            1
        };
        let mut second = || {
            order.borrow_mut().push(1u8);
            std::thread::sleep(Duration::from_millis(5));
            1
        };
        let [a, b] = best_rates(Duration::from_millis(1_100), [&mut first, &mut second]);
        let order = order.into_inner();
        let turns = 1 + order.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(turns >= 4, "{turns} turns");
        assert!(a.seconds >= 0.25 && b.seconds >= 0.25);
        assert!(a.per_second > 0.0 && b.per_second > 0.0);
    }

    #[test]
    fn test_fractions() {
        let c = Ceiling {
            threads: 2,
            signatures_per_tx: 2,
            verifications_per_s: 40_000.0,
            tx_per_s_from_signatures: 20_000.0,
            validated_tx_per_s: 16_000.0,
            measured_s: 4.0,
            signature_backend: "avx2".into(),
        };
        assert_eq!(c.fraction_of_signatures(8_000.0), 0.4);
        assert_eq!(c.fraction_of_validation(8_000.0), 0.5);
        let none = Ceiling {
            validated_tx_per_s: 0.0,
            ..c.clone()
        };
        assert_eq!(none.fraction_of_validation(8_000.0), 0.0);
        assert_eq!(c.inconsistency(), None);
        let within_spread = Ceiling {
            validated_tx_per_s: 20_200.0,
            ..c.clone()
        };
        assert_eq!(within_spread.inconsistency(), None);
        let disturbed = Ceiling {
            validated_tx_per_s: 21_000.0,
            ..c
        };
        let warning = disturbed.inconsistency().unwrap();
        assert!(
            warning.contains("21000 tx/s") && warning.contains("20000 tx/s"),
            "{warning}"
        );
    }
}
