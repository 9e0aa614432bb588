//! # cbdc-bench
//!
//! The benchmark harness behind `cbdc bench`: it prepares funds and pre-signs
//! transactions before the clock starts, drives a cluster through its public gRPC API
//! (`cbdc.v1.Sentinel`, the `SubmitTransactions` stream) in closed or open loop from
//! several connections, checks every answer, and reports throughput, latency percentiles
//! and the fraction of this machine's validation ceiling it reached.
//!
//! ```text
//!  Workload::generate ──▶ genesis (UhsId, value) ──▶ caller seeds a fresh cluster's shards
//!        │   (or: mints signed by the issuer, submitted through the API)
//!        ▼
//!  ceiling::measure ──▶ pre-built requests ──▶ driver: C streams ──▶ sentinels
//!                                                 │ answers, latency, per-second series
//!                                                 ▼
//!                              checks ──▶ Report: table (stdout), report.json, plot.svg
//! ```
//!
//! The harness depends on nothing but the public API, so it measures an embedded
//! cluster and an external one alike, 2PC or atomizer: it asks every submission to
//! `wait` for its final status and polls whatever is still pending afterwards.
//!
//! ## Call sequence
//!
//! An embedded cluster, funded by a genesis (fast, millions of outputs):
//!
//! ```no_run
//! # async fn embedded(
//! #     args: cbdc_bench::BenchArgs,
//! #     sentinel_endpoint: String,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use cbdc_bench::{Funding, Target, WatchedProcess, Workload};
//!
//! // Signing takes every core for a while: keep it off the async workers.
//! let workload = tokio::task::spawn_blocking({
//!     let args = args.clone();
//!     move || Workload::generate(&args)
//! })
//! .await??;
//! for (uhs_id, value) in workload.genesis() {
//!     // Write (uhs_id, value) into the shard store that owns uhs_id.
//! #   let _ = (uhs_id, value);
//! }
//! // Start the cluster, then:
//! let report = cbdc_bench::run(
//!     &args,
//!     Target {
//!         endpoints: vec![sentinel_endpoint],
//!         funding: Funding::Genesis(workload),
//!         watch: vec![WatchedProcess::this_process("cluster + harness")],
//!     },
//! )
//! .await?;
//! # let _ = report;
//! # Ok(())
//! # }
//! ```
//!
//! An external cluster, funded by mints through the API:
//!
//! ```no_run
//! # async fn external(
//! #     args: cbdc_bench::BenchArgs,
//! #     issuer_key_path: std::path::PathBuf,
//! #     sentinel_endpoints: Vec<String>,
//! #     processes: Vec<cbdc_bench::WatchedProcess>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use cbdc_bench::{Funding, Target};
//!
//! let report = cbdc_bench::run(
//!     &args,
//!     Target {
//!         endpoints: sentinel_endpoints,
//!         funding: Funding::mint_with_key_file(&issuer_key_path)?,
//!         watch: processes,
//!     },
//! )
//! .await?;
//! if !report.passed() {
//!     return Err("some answers were not as expected".into());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`run`] prints the summary table to stdout and writes `report.json` and `plot.svg`
//! into `--out`; the [`Report`] it returns holds every figure.
//!
//! Layout:
//! - [`args`]: [`BenchArgs`], every option, and their checks;
//! - [`workload`]: seeded, parallel generation of funding outputs and signed
//!   transactions, with the expected answer of each;
//! - [`cluster`]: connecting, `GetInfo`, minting, checking funds, polling statuses;
//! - [`driver`]: the closed- and open-loop load over `SubmitTransactions` streams,
//!   latency histograms and the per-second series;
//! - [`answers`]: what came back, counted and checked against the expectations;
//! - [`ceiling`]: this machine's signature and validation ceiling;
//! - [`system`]: the machine and the memory and CPU time of watched processes, from
//!   `/proc`;
//! - [`report`] and [`plot`]: the summary table, JSON and SVG.

pub mod answers;
pub mod args;
pub mod ceiling;
pub mod cluster;
pub mod driver;
pub mod error;
pub mod plot;
pub mod report;
pub mod system;
pub mod wire;
pub mod workload;

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cbdc_core::{SecretKey, TxId};
use cbdc_proto::v1;
use rayon::prelude::*;

pub use answers::{Answer, Checks, Outcomes};
pub use args::{BenchArgs, Mode, Shape};
pub use ceiling::Ceiling;
pub use cluster::ClusterInfo;
pub use driver::{Latency, TimelinePoint};
pub use error::BenchError;
pub use report::Report;
pub use system::{CpuUsage, MemoryUsage, WatchedProcess};
pub use workload::{Expectation, FundingPlan, InvalidKind, Workload, WorkloadSpec};

use crate::driver::{DriveConfig, LoadMode};
use crate::report::{CeilingReport, Preparation, RunConfig};
use crate::system::CpuWindow;
use crate::wire::EncodedRequest;

/// Most funding outputs per mint when the cluster allows more: a mint this size is a
/// few kilobytes, far below the message limit.
const MAX_OUTPUTS_PER_MINT: usize = 256;

/// How the funds a workload spends come to exist on the cluster.
pub enum Funding {
    /// The caller generated this workload with [`Workload::generate`] (same options as
    /// the run) and wrote its [`Workload::genesis`] into the cluster's shard stores
    /// before starting it. The harness checks a sample of those outputs before the
    /// clock starts.
    Genesis(Workload),
    /// The harness generates the workload and mints its funding outputs through the API
    /// with the cluster's issuer key, before the clock starts.
    Mint {
        /// The issuer key (its public key must be the one `GetInfo` reports).
        issuer: SecretKey,
    },
}

impl Funding {
    /// Minting with the issuer key in the key file at `path`.
    pub fn mint_with_key_file(path: &Path) -> Result<Funding, BenchError> {
        Ok(Funding::Mint {
            issuer: cbdc_core::read_key_file(path)?,
        })
    }
}

/// The cluster a run drives.
pub struct Target {
    /// Sentinel endpoints (`host:port` or URLs); connections are spread over them
    /// round-robin.
    pub endpoints: Vec<String>,
    /// How the funds are prepared.
    pub funding: Funding,
    /// Processes whose peak memory and CPU time the report gives.
    pub watch: Vec<WatchedProcess>,
}

/// Runs a benchmark against `target` with the options in `args`: prepares funds and
/// requests, measures the ceiling, drives the load, checks every answer, prints the
/// summary table to stdout and writes the JSON report and SVG plot into `args.out`.
///
/// A run whose answers were not all as expected still returns its report (see
/// [`Report::passed`]); errors are what stops a run from being made or reported.
pub async fn run(args: &BenchArgs, target: Target) -> Result<Report, BenchError> {
    let report = run_silent(args, target).await?;
    let files = report.write_files(&args.out)?;
    println!("{}", report.summary_table());
    for file in files {
        println!("  written: {}", file.display());
    }
    Ok(report)
}

/// [`run`] on a cluster seeded with `workload`'s genesis.
pub async fn run_with_workload(
    args: &BenchArgs,
    endpoints: Vec<String>,
    workload: Workload,
    watch: Vec<WatchedProcess>,
) -> Result<Report, BenchError> {
    run(
        args,
        Target {
            endpoints,
            funding: Funding::Genesis(workload),
            watch,
        },
    )
    .await
}

/// Everything [`run`] does but print and write files.
pub async fn run_silent(args: &BenchArgs, target: Target) -> Result<Report, BenchError> {
    args.validate()?;
    if target.endpoints.is_empty() {
        return Err(BenchError::Options("no sentinel endpoint to drive".into()));
    }
    let started_at_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    // Connect first: an unreachable cluster is reported before seconds of signing.
    let mut channels = Vec::with_capacity(args.connections);
    for c in 0..args.connections {
        let endpoint = &target.endpoints[c % target.endpoints.len()];
        channels.push((endpoint.clone(), cluster::connect(endpoint).await?));
    }
    let (control_endpoint, control) = channels[0].clone();
    let info = cluster::get_info(control.clone(), &control_endpoint, &target.endpoints).await?;
    if args.inputs > info.max_inputs || args.outputs > info.max_outputs {
        return Err(BenchError::Cluster(format!(
            "a {} transaction exceeds the cluster's limits ({} inputs, {} outputs)",
            args.shape(),
            info.max_inputs,
            info.max_outputs
        )));
    }

    let mut preparation = Preparation::default();
    let started = Instant::now();
    let workload = match target.funding {
        Funding::Genesis(workload) => {
            check_genesis_workload(args, &workload)?;
            workload
        }
        Funding::Mint { issuer } => {
            if info.issuer_key() != Some(issuer.public_key()) {
                return Err(BenchError::Cluster(format!(
                    "the issuer key given ({}) is not the cluster's ({})",
                    issuer.public_key(),
                    info.issuer
                )));
            }
            let spec = WorkloadSpec::from_args(
                args,
                FundingPlan::Mint {
                    issuer,
                    outputs_per_mint: info.max_outputs.clamp(1, MAX_OUTPUTS_PER_MINT),
                },
            )?;
            let workload =
                tokio::task::spawn_blocking(move || Workload::from_spec(&spec)).await??;
            preparation.generate_s = started.elapsed().as_secs_f64();
            workload
        }
    };
    let seed = workload.seed();
    let funding_kind = workload.funding();
    let shape = workload.shape();

    // The ceiling is measured while the cluster is idle, before any load.
    let ceiling = if args.ceiling_time.is_zero() {
        None
    } else {
        let started = Instant::now();
        let time = args.ceiling_time;
        let ceiling = tokio::task::spawn_blocking(move || ceiling::measure(shape, time)).await??;
        preparation.ceiling_s = started.elapsed().as_secs_f64();
        Some(ceiling)
    };

    let started = Instant::now();
    if funding_kind == workload::FundingKind::Mint {
        // Minting many outputs takes a while on a loaded cluster: at least a minute.
        let mint_timeout = args.drain_timeout.max(std::time::Duration::from_secs(60));
        cluster::mint(
            control.clone(),
            &control_endpoint,
            workload.mints(),
            seed,
            mint_timeout,
        )
        .await?;
    }
    cluster::check_funded(
        control.clone(),
        &control_endpoint,
        workload.genesis(),
        funding_kind,
        args.drain_timeout,
    )
    .await?;
    preparation.funding_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (requests, ids, expectations) =
        tokio::task::spawn_blocking(move || build_requests(workload)).await?;
    preparation.convert_s = started.elapsed().as_secs_f64();

    let mode = match args.mode {
        Mode::Closed => LoadMode::Closed {
            window: args.window,
        },
        Mode::Open => LoadMode::Open {
            rate: args.rate.unwrap_or(0.0),
        },
    };
    let ids: Arc<[TxId]> = ids.into();
    // The CPU window opens when the warm-up ends, as the measured answers begin.
    let cpu_window = tokio::spawn({
        let watch = target.watch.clone();
        let warmup = args.warmup;
        async move {
            tokio::time::sleep(warmup).await;
            CpuWindow::start(&watch)
        }
    });
    let mut outcome = driver::drive(
        channels,
        requests,
        ids.clone(),
        DriveConfig {
            mode,
            warmup: args.warmup,
            duration: args.duration,
            drain_timeout: args.drain_timeout,
            progress: !args.quiet,
        },
    )
    .await?;
    let cpu = if cpu_window.is_finished() {
        cpu_window.await?.finish(outcome.measured)
    } else {
        cpu_window.abort();
        Vec::new()
    };
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    let mut warnings = std::mem::take(&mut outcome.warnings);
    match cluster::resolve_pending(
        control,
        &control_endpoint,
        &ids,
        &mut outcome.answers,
        deadline,
    )
    .await
    {
        Ok(0) => {}
        Ok(n) => warnings.push(format!(
            "{n} answers were PENDING and resolved with GetTransactionStatus after the run"
        )),
        Err(e) => warnings.push(format!("could not resolve pending answers: {e}")),
    }
    warnings.extend(ceiling.as_ref().and_then(Ceiling::inconsistency));

    let outcomes = Outcomes::count(&outcome.answers);
    let checks = Checks::evaluate(&expectations, &outcome.answers, &ids);
    let throughput_tps = if outcome.measured_s > 0.0 {
        outcome.measured as f64 / outcome.measured_s
    } else {
        0.0
    };
    let ceiling = ceiling.map(|ceiling| CeilingReport {
        fraction_of_signatures: ceiling.fraction_of_signatures(throughput_tps),
        fraction_of_validation: ceiling.fraction_of_validation(throughput_tps),
        ceiling,
    });
    Ok(Report {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_unix_s,
        machine: system::Machine::detect(),
        cluster: info,
        config: RunConfig {
            shape,
            transactions: expectations.len() as u64,
            mode: args.mode,
            window: (args.mode == Mode::Closed).then_some(args.window),
            rate: args.rate.filter(|_| args.mode == Mode::Open),
            connections: args.connections,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: args.duration.map(|d| d.as_secs_f64()),
            seed,
            invalid_fraction: args.invalid_fraction,
            double_spend_fraction: args.double_spend_fraction,
            coin_value: args.coin_value,
            funding: funding_kind,
        },
        preparation,
        throughput_tps,
        measured_s: outcome.measured_s,
        elapsed_s: outcome.elapsed_s,
        latency: Latency::from_histogram(&outcome.latency),
        outcomes,
        checks,
        ceiling,
        memory: target.watch.iter().map(MemoryUsage::read).collect(),
        cpu,
        timeline: outcome.timeline,
        warnings,
    }
    .rounded())
}

/// A genesis workload must have been generated from the options of this run, or the
/// figures would describe another benchmark than the one asked for.
fn check_genesis_workload(args: &BenchArgs, workload: &Workload) -> Result<(), BenchError> {
    if workload.funding() != workload::FundingKind::Genesis {
        return Err(BenchError::Options(
            "Funding::Genesis needs a workload generated for a genesis (Workload::generate)".into(),
        ));
    }
    let planned = args.planned_transactions();
    if workload.shape() != args.shape()
        || workload.transactions().len() as u64 != planned
        || args.seed.is_some_and(|s| s != workload.seed())
        || workload.coin_value() != args.coin_value
    {
        return Err(BenchError::Options(format!(
            "the workload ({} × {}, seed {}) was generated from other options than this run \
             ({} × {planned})",
            workload.transactions().len(),
            workload.shape(),
            workload.seed(),
            args.shape(),
        )));
    }
    Ok(())
}

/// Turns the workload into encoded wire requests (on all cores), keeping only what the
/// driver and the checks need: the core transactions are dropped.
fn build_requests(workload: Workload) -> (Vec<EncodedRequest>, Vec<TxId>, Vec<Expectation>) {
    let (transactions, expectations) = workload.into_parts();
    let requests = transactions
        .par_iter()
        .enumerate()
        .map(|(i, tx)| {
            EncodedRequest::new(&v1::SubmitTransactionsRequest {
                request_id: i as u64,
                transaction: Some(tx.into()),
                options: Some(cluster::submit_options()),
            })
        })
        .collect();
    let ids = transactions.par_iter().map(|tx| tx.tx_id()).collect();
    (requests, ids, expectations)
}
