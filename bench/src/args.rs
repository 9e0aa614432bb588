//! [`BenchArgs`]: every option of `cbdc bench`, as a clap `Args` the `cbdc` binary
//! flattens into its subcommand, and the checks that make a set of options runnable.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// Transactions pre-signed when neither `--transactions` nor an open-loop duration says
/// how many: enough for a run of several seconds on a laptop, quick to sign.
pub const DEFAULT_TRANSACTIONS: u64 = 100_000;

/// How many inputs and outputs each benchmark transaction has. Every input is a distinct
/// funding output with its own key, so a transaction carries `inputs` signatures: the
/// shape sets the validation cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Inputs (and signatures) per transaction.
    pub inputs: usize,
    /// Outputs per transaction.
    pub outputs: usize,
}

impl Shape {
    /// The reference shape of Project Hamilton's published figures: 2 inputs, 2 outputs.
    pub const REFERENCE: Shape = Shape {
        inputs: 2,
        outputs: 2,
    };
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-in/{}-out", self.inputs, self.outputs)
    }
}

/// How load is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each connection keeps `--window` transactions in flight and sends the next one as
    /// soon as an answer comes back: measures the most the cluster can take.
    Closed,
    /// Transactions are sent on a fixed schedule at `--rate` per second in total, whatever
    /// the answers: measures latency at a given load, without coordinated omission.
    Open,
}

/// Every option of a benchmark run. Parsed by `cbdc bench` (flattened into its
/// subcommand); tests and library callers may build it with [`BenchArgs::default`] and
/// change fields.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct BenchArgs {
    /// Inputs per transaction (each spends a distinct output with its own key, so this is
    /// also the number of signatures per transaction).
    #[arg(long, default_value_t = 2)]
    pub inputs: usize,

    /// Outputs per transaction.
    #[arg(long, default_value_t = 2)]
    pub outputs: usize,

    /// Transactions to pre-sign (default: --rate × (--warmup + --duration) in open
    /// loop with a duration, otherwise 100000). The run ends when they are all answered
    /// or when --duration is over, whichever comes first.
    #[arg(long, visible_alias = "count")]
    pub transactions: Option<u64>,

    /// closed: a window of transactions in flight per connection; open: a fixed rate.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,

    /// Closed loop: transactions in flight per connection.
    #[arg(long, default_value_t = 256)]
    pub window: usize,

    /// Open loop: transactions per second, in total over all connections.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Measured time after the warm-up (e.g. "60s"); sending stops when it is over.
    /// Without it, the run lasts until every transaction is answered.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Time at the start whose answers are checked but left out of the latency and
    /// throughput figures (e.g. "5s"), while caches, connections and batches settle.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// gRPC connections (HTTP/2 streams of `SubmitTransactions`), spread over the
    /// sentinels round-robin.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// Seed of the workload: the same seed gives the same keys, funding outputs and
    /// transactions. Random when not given (and written in the report). Against an
    /// external cluster funded by mints, a seed can be used only once per cluster: its
    /// mints would be replays.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Fraction of transactions that are invalid on their face (a corrupted signature,
    /// unbalanced values, a witness for the wrong key); each must come back INVALID with
    /// the matching code.
    #[arg(long, default_value_t = 0.0)]
    pub invalid_fraction: f64,

    /// Fraction of transactions that double-spend an input of another transaction of the
    /// run; of each such pair exactly one must be confirmed and the other rejected.
    #[arg(long, default_value_t = 0.0)]
    pub double_spend_fraction: f64,

    /// Value of each funding output, in cents.
    #[arg(long, default_value_t = 10_000)]
    pub coin_value: u64,

    /// Directory for the JSON report and the SVG plot (created if missing).
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,

    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,

    /// Time spent measuring this machine's validation ceiling before the run, batch
    /// signature verification and whole-transaction validation taking turns in 250 ms
    /// windows; "0s" skips it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4s")]
    pub ceiling_time: Duration,

    /// How long to wait for the last answers once sending has stopped; transactions
    /// still unanswered then are counted as such.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub drain_timeout: Duration,

    /// Issuer key file, to fund an external cluster by minting through its API.
    #[arg(long)]
    pub issuer_key: Option<PathBuf>,
}

impl Default for BenchArgs {
    /// The same values as `cbdc bench` with no options (a unit test keeps them equal).
    fn default() -> Self {
        BenchArgs {
            inputs: 2,
            outputs: 2,
            transactions: None,
            mode: Mode::Closed,
            window: 256,
            rate: None,
            duration: None,
            warmup: Duration::ZERO,
            connections: 4,
            seed: None,
            invalid_fraction: 0.0,
            double_spend_fraction: 0.0,
            coin_value: 10_000,
            out: PathBuf::from("bench-results"),
            quiet: false,
            ceiling_time: Duration::from_secs(4),
            drain_timeout: Duration::from_secs(30),
            issuer_key: None,
        }
    }
}

impl BenchArgs {
    /// The transaction shape.
    pub fn shape(&self) -> Shape {
        Shape {
            inputs: self.inputs,
            outputs: self.outputs,
        }
    }

    /// How many transactions to pre-sign: `--transactions`, or in open loop with a
    /// duration what the schedule will send, or [`DEFAULT_TRANSACTIONS`].
    pub fn planned_transactions(&self) -> u64 {
        if let Some(n) = self.transactions {
            return n;
        }
        match (self.mode, self.rate, self.duration) {
            (Mode::Open, Some(rate), Some(duration)) if rate.is_finite() && rate > 0.0 => {
                let n = (rate * (self.warmup + duration).as_secs_f64()).ceil();
                // Float to int saturates; at least one transaction.
                (n as u64).max(1)
            }
            _ => DEFAULT_TRANSACTIONS,
        }
    }

    /// Checks that the options make a runnable benchmark.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Options(m));
        if self.inputs == 0 {
            return bad("--inputs must be at least 1".into());
        }
        if self.outputs == 0 {
            return bad("--outputs must be at least 1".into());
        }
        if self.planned_transactions() == 0 {
            return bad("--transactions must be at least 1".into());
        }
        if self.planned_transactions() > u64::from(u32::MAX) {
            return bad(format!(
                "--transactions {} is more than the harness can index ({})",
                self.planned_transactions(),
                u32::MAX
            ));
        }
        if self.connections == 0 {
            return bad("--connections must be at least 1".into());
        }
        if self.window == 0 {
            return bad("--window must be at least 1".into());
        }
        match (self.mode, self.rate) {
            (Mode::Open, None) => return bad("--mode open needs --rate".into()),
            (Mode::Open, Some(r)) if !(r.is_finite() && r > 0.0) => {
                return bad(format!("--rate must be a positive number, not {r}"))
            }
            _ => {}
        }
        for (name, f) in [
            ("--invalid-fraction", self.invalid_fraction),
            ("--double-spend-fraction", self.double_spend_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return bad(format!("{name} must be between 0 and 1, not {f}"));
            }
        }
        // Every double spend needs a victim among the plain valid transactions.
        if self.invalid_fraction + 2.0 * self.double_spend_fraction > 1.0 {
            return bad(
                "--invalid-fraction + 2 × --double-spend-fraction must be at most 1 \
                 (each double spend pairs with a valid transaction)"
                    .into(),
            );
        }
        let total = (self.inputs as u64).checked_mul(self.coin_value);
        match total {
            None => return bad("--coin-value × --inputs overflows".into()),
            Some(t) if t < self.outputs as u64 => {
                return bad(format!(
                    "--coin-value × --inputs ({t} cents) cannot be split into {} non-zero outputs",
                    self.outputs
                ))
            }
            _ => {}
        }
        if self.drain_timeout.is_zero() {
            return bad("--drain-timeout must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> BenchArgs {
        let mut full = vec!["bench"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).expect("test options parse").args
    }

    #[test]
    fn test_default_matches_command_line_defaults() {
        assert_eq!(parse(&[]), BenchArgs::default());
    }

    #[test]
    fn test_parse_every_option() {
        let args = parse(&[
            "--inputs",
            "3",
            "--outputs",
            "1",
            "--count",
            "500",
            "--mode",
            "open",
            "--rate",
            "2500",
            "--duration",
            "1m",
            "--warmup",
            "500ms",
            "--connections",
            "8",
            "--seed",
            "42",
            "--invalid-fraction",
            "0.05",
            "--double-spend-fraction",
            "0.1",
            "--out",
            "/tmp/x",
            "--quiet",
            "--ceiling-time",
            "0s",
        ]);
        assert_eq!(
            args.shape(),
            Shape {
                inputs: 3,
                outputs: 1
            }
        );
        assert_eq!(args.transactions, Some(500));
        assert_eq!(args.mode, Mode::Open);
        assert_eq!(args.rate, Some(2500.0));
        assert_eq!(args.duration, Some(Duration::from_secs(60)));
        assert_eq!(args.warmup, Duration::from_millis(500));
        assert_eq!(args.connections, 8);
        assert_eq!(args.seed, Some(42));
        assert!(args.quiet);
        assert!(args.ceiling_time.is_zero());
        assert!(args.validate().is_ok());
    }

    #[test]
    fn test_planned_transactions_open_loop_follows_schedule() {
        let args = BenchArgs {
            mode: Mode::Open,
            rate: Some(1000.0),
            duration: Some(Duration::from_secs(10)),
            warmup: Duration::from_secs(2),
            ..BenchArgs::default()
        };
        assert_eq!(args.planned_transactions(), 12_000);
        let explicit = BenchArgs {
            transactions: Some(7),
            ..args.clone()
        };
        assert_eq!(explicit.planned_transactions(), 7);
        assert_eq!(
            BenchArgs::default().planned_transactions(),
            DEFAULT_TRANSACTIONS
        );
    }

    #[test]
    fn test_validate_rejects_contradictions() {
        let cases = [
            BenchArgs {
                inputs: 0,
                ..BenchArgs::default()
            },
            BenchArgs {
                mode: Mode::Open,
                ..BenchArgs::default()
            },
            BenchArgs {
                mode: Mode::Open,
                rate: Some(-1.0),
                ..BenchArgs::default()
            },
            BenchArgs {
                invalid_fraction: 0.5,
                double_spend_fraction: 0.3,
                ..BenchArgs::default()
            },
            BenchArgs {
                invalid_fraction: f64::NAN,
                ..BenchArgs::default()
            },
            BenchArgs {
                coin_value: 1,
                inputs: 1,
                outputs: 2,
                ..BenchArgs::default()
            },
            BenchArgs {
                coin_value: u64::MAX,
                ..BenchArgs::default()
            },
            BenchArgs {
                connections: 0,
                ..BenchArgs::default()
            },
        ];
        for args in cases {
            assert!(
                matches!(args.validate(), Err(BenchError::Options(_))),
                "{args:?} should be refused"
            );
        }
    }
}
