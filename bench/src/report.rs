//! The report of a run: every figure in one serde struct, printed as a summary table,
//! written as JSON (for BENCHMARKS.md, CI and later comparison) and drawn as an SVG plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::answers::{Checks, Outcomes};
use crate::args::{Mode, Shape};
use crate::ceiling::Ceiling;
use crate::cluster::ClusterInfo;
use crate::driver::{Latency, TimelinePoint};
use crate::error::BenchError;
use crate::system::{CpuUsage, Machine, MemoryUsage};
use crate::workload::FundingKind;

/// File name of the JSON report in the output directory.
pub const JSON_FILE: &str = "report.json";
/// File name of the SVG plot in the output directory.
pub const SVG_FILE: &str = "plot.svg";

/// The options a run was made with, as they matter to its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Inputs and outputs per transaction.
    pub shape: Shape,
    /// Transactions pre-signed.
    pub transactions: u64,
    /// Closed or open loop.
    pub mode: Mode,
    /// Closed loop: transactions in flight per connection.
    pub window: Option<usize>,
    /// Open loop: offered transactions per second.
    pub rate: Option<f64>,
    /// Streams (HTTP/2 connections).
    pub connections: usize,
    /// Warm-up left out of the figures, seconds.
    pub warmup_s: f64,
    /// Measured duration asked for, seconds (none: until every transaction is answered).
    pub duration_s: Option<f64>,
    /// The workload's seed.
    pub seed: u64,
    /// Fraction of invalid transactions asked for.
    pub invalid_fraction: f64,
    /// Fraction of double spends asked for.
    pub double_spend_fraction: f64,
    /// Value of each funding output, cents.
    pub coin_value: u64,
    /// How the funds were prepared.
    pub funding: FundingKind,
}

impl RunConfig {
    /// "closed loop, window 256 × 4 connections" or "open loop, 5000 tx/s over 4
    /// connections".
    pub fn mode_description(&self) -> String {
        match self.mode {
            Mode::Closed => format!(
                "closed loop, window {} × {} connections",
                self.window.unwrap_or(0),
                self.connections
            ),
            Mode::Open => format!(
                "open loop, {} tx/s over {} connections",
                group(self.rate.unwrap_or(0.0).round() as u64),
                self.connections
            ),
        }
    }
}

/// Time spent before the clock started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Preparation {
    /// Generating and signing the workload (zero when the caller generated it).
    pub generate_s: f64,
    /// Measuring the ceiling.
    pub ceiling_s: f64,
    /// Minting the funds, or checking the genesis.
    pub funding_s: f64,
    /// Converting transactions to wire requests.
    pub convert_s: f64,
}

/// The ceiling and how close the run came to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CeilingReport {
    /// The measured ceiling.
    pub ceiling: Ceiling,
    /// Throughput / signature ceiling.
    pub fraction_of_signatures: f64,
    /// Throughput / validation ceiling.
    pub fraction_of_validation: f64,
}

/// Everything a run measured and checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of the harness that made the report.
    pub harness_version: String,
    /// When the run started, seconds since the Unix epoch.
    pub started_at_unix_s: u64,
    /// The machine the harness ran on.
    pub machine: Machine,
    /// The cluster, as `GetInfo` described it.
    pub cluster: ClusterInfo,
    /// The options of the run.
    pub config: RunConfig,
    /// Time spent before the clock started.
    pub preparation: Preparation,
    /// Answers per second after the warm-up: the run's sustained throughput.
    pub throughput_tps: f64,
    /// Seconds from the end of the warm-up to the last answer.
    pub measured_s: f64,
    /// Seconds from the start to the last answer.
    pub elapsed_s: f64,
    /// Latency of the answers after the warm-up (end to end, at the client).
    pub latency: Latency,
    /// Answers by kind.
    pub outcomes: Outcomes,
    /// Answers against expectations.
    pub checks: Checks,
    /// The machine's ceiling, if measured.
    pub ceiling: Option<CeilingReport>,
    /// Memory of the watched processes.
    pub memory: Vec<MemoryUsage>,
    /// CPU time of the watched processes after the warm-up (empty in reports of earlier
    /// versions, and when the run ended before its warm-up did).
    #[serde(default)]
    pub cpu: Vec<CpuUsage>,
    /// One point per second.
    pub timeline: Vec<TimelinePoint>,
    /// What the operator should know about the run.
    pub warnings: Vec<String>,
}

/// `x` rounded to `decimals` places (0 if it is not finite). Reported figures are
/// rounded to the precision they mean something at, which also makes the JSON read
/// cleanly and parse back to exactly the same numbers.
pub fn round(x: f64, decimals: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl Report {
    /// Rounds every figure: seconds to the microsecond, rates to the hundredth, ratios
    /// to six places, mean latency to a tenth of a microsecond.
    pub fn rounded(mut self) -> Report {
        const SECONDS: i32 = 6;
        const RATE: i32 = 2;
        const RATIO: i32 = 6;
        self.throughput_tps = round(self.throughput_tps, RATE);
        self.measured_s = round(self.measured_s, SECONDS);
        self.elapsed_s = round(self.elapsed_s, SECONDS);
        self.latency.mean_us = round(self.latency.mean_us, 1);
        let p = &mut self.preparation;
        for x in [
            &mut p.generate_s,
            &mut p.ceiling_s,
            &mut p.funding_s,
            &mut p.convert_s,
        ] {
            *x = round(*x, SECONDS);
        }
        let c = &mut self.config;
        c.warmup_s = round(c.warmup_s, SECONDS);
        c.duration_s = c.duration_s.map(|d| round(d, SECONDS));
        c.rate = c.rate.map(|r| round(r, RATE));
        c.invalid_fraction = round(c.invalid_fraction, RATIO);
        c.double_spend_fraction = round(c.double_spend_fraction, RATIO);
        if let Some(ceiling) = &mut self.ceiling {
            ceiling.fraction_of_signatures = round(ceiling.fraction_of_signatures, RATIO);
            ceiling.fraction_of_validation = round(ceiling.fraction_of_validation, RATIO);
            let x = &mut ceiling.ceiling;
            x.verifications_per_s = round(x.verifications_per_s, RATE);
            x.tx_per_s_from_signatures = round(x.tx_per_s_from_signatures, RATE);
            x.validated_tx_per_s = round(x.validated_tx_per_s, RATE);
            x.measured_s = round(x.measured_s, SECONDS);
        }
        for usage in &mut self.cpu {
            usage.cpu_s = usage.cpu_s.map(|c| round(c, 3));
            usage.window_s = round(usage.window_s, SECONDS);
            usage.cores_busy = usage.cores_busy.map(|c| round(c, 3));
            usage.ms_per_1000_tx = usage.ms_per_1000_tx.map(|c| round(c, 1));
        }
        for point in &mut self.timeline {
            point.start_s = round(point.start_s, SECONDS);
            point.length_s = round(point.length_s, SECONDS);
            point.tx_per_s = round(point.tx_per_s, RATE);
        }
        self
    }

    /// Whether every answer was what the workload expected (and there were answers).
    /// A CI smoke run asserts this; it says nothing about speed.
    pub fn passed(&self) -> bool {
        self.checks.checked > 0 && self.checks.mismatches == 0
    }

    /// The JSON form.
    pub fn to_json(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Reads a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Report, BenchError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Writes `report.json` and `plot.svg` into `dir` (created if missing); returns
    /// their paths.
    pub fn write_files(&self, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BenchError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let json = dir.join(JSON_FILE);
        std::fs::write(&json, self.to_json()? + "\n").map_err(io(&json))?;
        let svg = dir.join(SVG_FILE);
        crate::plot::write_svg(self, &svg)?;
        Ok(vec![json, svg])
    }

    /// The summary table printed at the end of a run.
    pub fn summary_table(&self) -> String {
        let c = &self.config;
        let mut rows: Vec<(&str, String)> = Vec::new();
        rows.push((
            "run",
            format!(
                "{} · {} · {} tx · seed {} · {} funding",
                c.shape,
                c.mode_description(),
                group(c.transactions),
                c.seed,
                c.funding
            ),
        ));
        rows.push((
            "cluster",
            format!(
                "{} · {} shard range(s) · {} sentinel(s)",
                self.cluster.architecture,
                self.cluster.shard_count,
                self.cluster.endpoints.len()
            ),
        ));
        let warmup = if c.warmup_s > 0.0 {
            format!(" after a {:.1} s warm-up", c.warmup_s)
        } else {
            String::new()
        };
        rows.push((
            "throughput",
            format!(
                "{} tx/s  ({} answers in {:.2} s{warmup})",
                group(self.throughput_tps.round() as u64),
                group(self.latency.count),
                self.measured_s
            ),
        ));
        let l = &self.latency;
        rows.push((
            "latency",
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us),
                ms(l.mean_us.round() as u64)
            ),
        ));
        let o = &self.outcomes;
        rows.push((
            "sent",
            format!("{} of {}", group(o.sent), group(c.transactions)),
        ));
        rows.push(("confirmed", group(o.confirmed)));
        rows.push(("rejected", with_breakdown(o.rejected_total(), &o.rejected)));
        rows.push(("invalid", with_breakdown(o.invalid_total(), &o.invalid)));
        let others = [
            ("pending", o.pending),
            ("unknown", o.unknown),
            ("malformed", o.malformed),
            ("unanswered", o.unanswered),
        ];
        for (name, count) in others {
            if count > 0 {
                rows.push((name, group(count)));
            }
        }
        let k = &self.checks;
        let verdict = if k.mismatches == 0 {
            format!("all {} answers as expected", group(k.checked))
        } else {
            format!(
                "{} of {} answers NOT as expected",
                group(k.mismatches),
                group(k.checked)
            )
        };
        rows.push(("checks", verdict));
        if k.double_spend_pairs > 0 {
            rows.push((
                "double spends",
                format!(
                    "{} of {} pairs with exactly one confirmed",
                    group(k.double_spend_pairs_resolved),
                    group(k.double_spend_pairs)
                ),
            ));
        }
        if let Some(ceiling) = &self.ceiling {
            let x = &ceiling.ceiling;
            rows.push((
                "ceiling",
                format!(
                    "{} sig/s on {} threads{} = {} tx/s; validate_many {} tx/s",
                    group(x.verifications_per_s.round() as u64),
                    x.threads,
                    if x.signature_backend.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", x.signature_backend)
                    },
                    group(x.tx_per_s_from_signatures.round() as u64),
                    group(x.validated_tx_per_s.round() as u64)
                ),
            ));
            rows.push((
                "of ceiling",
                format!(
                    "{:.1} % of the signature ceiling, {:.1} % of the validation ceiling",
                    ceiling.fraction_of_signatures * 100.0,
                    ceiling.fraction_of_validation * 100.0
                ),
            ));
        }
        for m in &self.memory {
            let value = m.peak_rss_bytes.map(mib);
            rows.push(("peak memory", process_row(&m.label, m.pid, value, &m.error)));
        }
        for c in &self.cpu {
            let value = c.cores_busy.map(|cores| match c.ms_per_1000_tx {
                Some(per_1000) => {
                    format!("{cores:.2} cores busy, {per_1000:.0} ms of CPU per 1,000 tx")
                }
                None => format!("{cores:.2} cores busy"),
            });
            rows.push(("cpu", process_row(&c.label, c.pid, value, &c.error)));
        }
        let machine = &self.machine;
        rows.push((
            "machine",
            format!(
                "{} · {} cores · {}",
                machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
                machine.cores,
                machine
                    .memory_bytes
                    .map_or_else(|| "memory unknown".into(), mib)
            ),
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            let _ = writeln!(out, "  {key:<width$}  {value}");
        }
        for example in &k.examples {
            let _ = writeln!(out, "  mismatch: {example}");
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        out
    }
}

fn with_breakdown(total: u64, by: &std::collections::BTreeMap<String, u64>) -> String {
    if by.is_empty() {
        return group(total);
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(k, v)| format!("{k} {}", group(*v)))
        .collect();
    format!("{}  ({})", group(total), parts.join(", "))
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Microseconds as milliseconds with three significant figures or so.
pub fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// A summary value about one watched process: `label (pid N) value`, or why it is
/// unknown.
fn process_row(label: &str, pid: u32, value: Option<String>, error: &Option<String>) -> String {
    match (value, error) {
        (Some(value), _) => format!("{label} (pid {pid}) {value}"),
        (None, Some(e)) => format!("{label} (pid {pid}) unknown: {e}"),
        (None, None) => format!("{label} (pid {pid}) unknown"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A report with every field set to something recognisable.
    pub(crate) fn sample() -> Report {
        Report {
            harness_version: "0.1.0".into(),
            started_at_unix_s: 1_700_000_000,
            machine: Machine {
                cpu_model: Some("Test CPU".into()),
                cores: 2,
                memory_bytes: Some(24 * 1024 * 1024 * 1024),
                os: "linux 6.1".into(),
            },
            cluster: ClusterInfo {
                endpoints: vec!["127.0.0.1:7000".into()],
                architecture: "two_phase_commit".into(),
                shard_count: 2,
                attestation_threshold: 1,
                version: "0.1.0".into(),
                max_inputs: 64,
                max_outputs: 256,
                issuer: "00".repeat(32),
            },
            config: RunConfig {
                shape: Shape::REFERENCE,
                transactions: 100_000,
                mode: Mode::Closed,
                window: Some(256),
                rate: None,
                connections: 4,
                warmup_s: 2.0,
                duration_s: Some(10.0),
                seed: 42,
                invalid_fraction: 0.05,
                double_spend_fraction: 0.05,
                coin_value: 10_000,
                funding: FundingKind::Genesis,
            },
            preparation: Preparation {
                generate_s: 3.5,
                ceiling_s: 4.0,
                funding_s: 0.25,
                convert_s: 0.5,
            },
            throughput_tps: 12_345.5,
            measured_s: 8.0,
            elapsed_s: 10.0,
            latency: Latency {
                count: 98_764,
                p50_us: 1_230,
                p90_us: 2_340,
                p99_us: 5_670,
                p999_us: 98_700,
                max_us: 123_456,
                mean_us: 1_500.5,
            },
            outcomes: Outcomes {
                sent: 100_000,
                confirmed: 90_000,
                rejected: BTreeMap::from([("inputs_spent".into(), 5_000)]),
                invalid: BTreeMap::from([
                    ("invalid_signature".into(), 2_500),
                    ("unbalanced".into(), 2_500),
                ]),
                pending: 0,
                unknown: 0,
                malformed: 0,
                unanswered: 0,
            },
            checks: Checks {
                checked: 100_000,
                mismatches: 0,
                double_spend_pairs: 5_000,
                double_spend_pairs_resolved: 5_000,
                examples: Vec::new(),
            },
            ceiling: Some(CeilingReport {
                ceiling: Ceiling {
                    threads: 2,
                    signatures_per_tx: 2,
                    verifications_per_s: 45_000.0,
                    tx_per_s_from_signatures: 22_500.0,
                    validated_tx_per_s: 20_000.0,
                    measured_s: 4.0,
                    signature_backend: "avx512-ifma".into(),
                },
                fraction_of_signatures: 0.5,
                fraction_of_validation: 0.625,
            }),
            memory: vec![MemoryUsage {
                label: "cluster".into(),
                pid: 1234,
                peak_rss_bytes: Some(512 * 1024 * 1024),
                rss_bytes: Some(256 * 1024 * 1024),
                error: None,
            }],
            cpu: vec![
                CpuUsage {
                    label: "cluster".into(),
                    pid: 1234,
                    cpu_s: Some(15.2),
                    window_s: 8.0,
                    cores_busy: Some(1.9),
                    ms_per_1000_tx: Some(153.9),
                    error: None,
                },
                CpuUsage {
                    label: "gone".into(),
                    pid: 99,
                    cpu_s: None,
                    window_s: 8.0,
                    cores_busy: None,
                    ms_per_1000_tx: None,
                    error: Some("no such process".into()),
                },
            ],
            timeline: (0..10)
                .map(|s| TimelinePoint {
                    start_s: s as f64,
                    length_s: 1.0,
                    tx_per_s: 10_000.0 + s as f64 * 250.0,
                    p50_us: 1_000 + s * 10,
                    p99_us: 5_000 + s * 100,
                    warmup: s < 2,
                })
                .collect(),
            warnings: vec!["something to know".into()],
        }
    }

    #[test]
    fn test_group_and_ms_formatting() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(ms(1_234), "1.23 ms");
        assert_eq!(ms(56_780), "56.8 ms");
        assert_eq!(ms(250_400), "250 ms");
        assert_eq!(mib(512 * 1024 * 1024), "512.0 MiB");
        assert_eq!(mib(3 * 1024 * 1024 * 1024), "3.00 GiB");
    }

    #[test]
    fn test_summary_table_shows_every_figure() {
        let table = sample().summary_table();
        for needle in [
            "2-in/2-out · closed loop, window 256 × 4 connections",
            "12,346 tx/s",
            "after a 2.0 s warm-up",
            "p50 1.23 ms  p90 2.34 ms  p99 5.67 ms  p99.9 98.7 ms  max 123 ms",
            "confirmed      90,000",
            "rejected       5,000  (inputs_spent 5,000)",
            "invalid        5,000  (invalid_signature 2,500, unbalanced 2,500)",
            "all 100,000 answers as expected",
            "5,000 of 5,000 pairs with exactly one confirmed",
            "45,000 sig/s on 2 threads (avx512-ifma) = 22,500 tx/s; validate_many 20,000 tx/s",
            "50.0 % of the signature ceiling, 62.5 % of the validation ceiling",
            "cluster (pid 1234) 512.0 MiB",
            "cluster (pid 1234) 1.90 cores busy, 154 ms of CPU per 1,000 tx",
            "gone (pid 99) unknown: no such process",
            "warning: something to know",
        ] {
            assert!(table.contains(needle), "missing {needle:?} in\n{table}");
        }
        assert!(!table.contains("unanswered"));
    }

    #[test]
    fn test_summary_table_lists_mismatches() {
        let mut report = sample();
        report.checks.mismatches = 2;
        report.checks.examples =
            vec!["transaction 7 (ab): expected confirmed, got no answer".into()];
        report.outcomes.unanswered = 2;
        let table = report.summary_table();
        assert!(table.contains("2 of 100,000 answers NOT as expected"));
        assert!(table.contains("mismatch: transaction 7"));
        assert!(table.contains("unanswered"));
        assert!(!report.passed());
        assert!(sample().passed());
    }

    #[test]
    fn test_rounded_reports_round_trip_exactly() {
        let mut report = sample();
        report.throughput_tps = 2657.531790906754;
        report.measured_s = 0.150515603;
        report.latency.mean_us = 8173.527500000003;
        if let Some(c) = &mut report.ceiling {
            c.ceiling.validated_tx_per_s = 9581.001472891849;
            c.ceiling.measured_s = 0.24416290400000001;
            c.fraction_of_validation = 0.2773751573283735;
        }
        report.timeline[0].length_s = 0.1 + 0.2;
        let report = report.rounded();
        assert_eq!(report.throughput_tps, 2657.53);
        assert_eq!(report.latency.mean_us, 8173.5);
        assert_eq!(report.timeline[0].length_s, 0.3);
        let text = report.to_json().unwrap();
        assert!(text.contains("\"validated_tx_per_s\": 9581.0,"), "{text}");
        assert_eq!(Report::from_json(&text).unwrap(), report);
        assert_eq!(round(f64::NAN, 2), 0.0);
    }

    #[test]
    fn test_json_round_trip() {
        let report = sample();
        let text = report.to_json().unwrap();
        assert_eq!(Report::from_json(&text).unwrap(), report);
        assert!(text.contains("\"throughput_tps\": 12345.5"));
        assert!(text.contains("\"mode\": \"closed\""));
        // Reports written before the CPU figures existed still read.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        old.as_object_mut().unwrap().remove("cpu");
        let old = Report::from_json(&old.to_string()).unwrap();
        assert!(old.cpu.is_empty());
        assert!(matches!(
            Report::from_json("{\"harness_version\": 1}"),
            Err(BenchError::Json(_))
        ));
    }

    #[test]
    fn test_write_files_creates_json_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested").join("out");
        let files = sample().write_files(&out).unwrap();
        assert_eq!(files, vec![out.join(JSON_FILE), out.join(SVG_FILE)]);
        let json = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(Report::from_json(&json).unwrap(), sample());
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("p99"));
        assert!(svg.contains("transactions per second"));
    }

    #[test]
    fn test_write_files_reports_unwritable_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            sample().write_files(&file),
            Err(BenchError::Io { .. })
        ));
    }
}
