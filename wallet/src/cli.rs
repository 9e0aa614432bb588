//! The `cbdc-wallet` command line: arguments, output (human or `--json`) and exit codes,
//! over [`Wallet`] and [`GrpcLedger`].
//!
//! Exit codes, so that scripts can tell "nothing happened" from "money may be moving":
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | refused or failed; nothing was changed |
//! | 2 | bad command line |
//! | 3 | a transaction was submitted but no final answer came: it stays pending, run `sync` |
//! | 4 | the ledger rejected the transaction (or found it invalid); its inputs were returned |

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cbdc_core::{Address, AddressError, Amount, AmountError, KeyFileError};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::grpc::GrpcLedger;
use crate::ledger::LedgerError;
use crate::payment::{short_hash, Payment};
use crate::store::{ReceiptStatus, SendKind, SendStatus, StoreError};
use crate::wallet::{Balance, ReceiveReport, SendReport, SyncReport, Wallet, WalletError};

const EXIT_CODES: &str = "\
Exit codes: 0 done; 1 refused or failed, nothing changed; 2 bad command line;
3 submitted but no final answer (the send stays pending: run `cbdc-wallet sync`);
4 rejected by the ledger (inputs returned).";

/// A wallet for a cbdc cluster: keys and outputs in one SQLite file, money moved through
/// the cluster's sentinel.
#[derive(Debug, Parser)]
#[command(name = "cbdc-wallet", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The wallet file.
    #[arg(long, global = true, env = "CBDC_WALLET", default_value = "wallet.db")]
    pub wallet: PathBuf,
    /// The sentinel to talk to (`host:port` or `http://host:port`); overrides the one
    /// saved in the wallet. `init` saves it.
    #[arg(long, global = true, env = "CBDC_SENTINEL")]
    pub sentinel: Option<String>,
    /// Print JSON (for scripts) instead of text; errors too.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for a transaction's final answer before leaving it pending.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new wallet file (never overwrites one) and print a first address.
    Init,
    /// Print a new receiving address (or, with --list, every one so far).
    Address {
        /// List the addresses handed out so far instead of making a new one.
        #[arg(long)]
        list: bool,
    },
    /// Show spendable and pending money and the number of outputs.
    Balance,
    /// Issue new money with the central bank's issuer key.
    Mint {
        /// The amount, like 100 or 12.34.
        amount: String,
        /// The issuer key file (64 hex digits, as written by `cbdc config init`).
        #[arg(long, value_name = "FILE")]
        issuer_key: PathBuf,
        /// Pay this address instead of a new address of this wallet.
        #[arg(long, value_name = "ADDRESS")]
        to: Option<String>,
        /// Split the amount into this many outputs of (nearly) equal value.
        #[arg(long, default_value_t = 1, value_name = "N")]
        outputs: u32,
        /// Also write the payment string to this file.
        #[arg(long, value_name = "FILE")]
        payment_file: Option<PathBuf>,
    },
    /// Pay AMOUNT to ADDRESS and print the payment string the recipient imports.
    Send {
        /// The amount, like 5 or 12.34.
        amount: String,
        /// The recipient's address (usd1…).
        address: String,
        /// Also write the payment string to this file.
        #[arg(long, value_name = "FILE")]
        payment_file: Option<PathBuf>,
    },
    /// Import a payment: check its outputs on the ledger and credit those for this wallet.
    Receive {
        /// The payment string (usdpay1…).
        #[arg(required_unless_present = "file")]
        payment: Option<String>,
        /// Read the payment string from this file instead.
        #[arg(long, value_name = "FILE", conflicts_with = "payment")]
        file: Option<PathBuf>,
    },
    /// Settle pending sends and receipts against the ledger (after a crash or timeout).
    Sync {
        /// Submit again, instead of abandoning, a pending send the ledger never saw.
        #[arg(long)]
        resubmit: bool,
    },
    /// List sends and receipts with amounts, tx ids and status.
    History,
    /// Pay COUNT outputs of AMOUNT each to ADDRESS in one transaction.
    Fan {
        /// How many outputs.
        count: u32,
        /// The value of each, like 1 or 0.25.
        amount: String,
        /// The recipient's address (usd1…).
        address: String,
        /// Also write the payment string to this file.
        #[arg(long, value_name = "FILE")]
        payment_file: Option<PathBuf>,
    },
    /// Show the wallet's configuration, or save a sentinel endpoint in it.
    Config {
        /// Save this sentinel endpoint in the wallet.
        #[arg(long, value_name = "ENDPOINT")]
        set_sentinel: Option<String>,
    },
}

/// Why a command failed, with what the command line adds to the wallet's errors.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The wallet refused or failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// An amount argument is malformed.
    #[error("invalid amount: {0}")]
    Amount(#[from] AmountError),
    /// An address argument is malformed.
    #[error("invalid address {text:?}: {source}")]
    Address {
        /// The argument.
        text: String,
        /// Why.
        source: AddressError,
    },
    /// No endpoint from the flag, the environment or the wallet.
    #[error(
        "no sentinel endpoint: pass --sentinel HOST:PORT, set CBDC_SENTINEL, \
         or save one with `cbdc-wallet config --set-sentinel HOST:PORT`"
    )]
    NoSentinel,
    /// The issuer key file could not be read.
    #[error("issuer key: {0}")]
    IssuerKey(#[from] KeyFileError),
    /// A payment file could not be read or created.
    #[error("payment file {path}: {source}")]
    PaymentFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Wallet(e.into())
    }
}

impl From<LedgerError> for CliError {
    fn from(e: LedgerError) -> Self {
        CliError::Wallet(e.into())
    }
}

impl CliError {
    /// A stable name for scripts (`--json` errors carry it as `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Amount(_) => "invalid_amount",
            CliError::Address { .. } => "invalid_address",
            CliError::NoSentinel => "no_sentinel",
            CliError::IssuerKey(_) => "issuer_key",
            CliError::PaymentFile { .. } => "payment_file",
            CliError::Wallet(e) => match e {
                WalletError::Store(s) => match s {
                    StoreError::Exists { .. } => "wallet_exists",
                    StoreError::Missing { .. } => "wallet_missing",
                    StoreError::Corrupt { .. }
                    | StoreError::NotAWallet { .. }
                    | StoreError::Damaged(_) => "wallet_corrupt",
                    StoreError::UnsupportedVersion { .. } => "wallet_version",
                    StoreError::TooLarge(_) => "amount_too_large",
                    StoreError::Io { .. } | StoreError::Sqlite(_) => "wallet_io",
                },
                WalletError::Ledger(l) => match l {
                    LedgerError::InvalidEndpoint { .. } => "invalid_endpoint",
                    LedgerError::Unreachable { .. } => "unreachable",
                    LedgerError::Timeout { .. } => "timeout",
                    LedgerError::Protocol(_) => "ledger_protocol",
                },
                WalletError::Payment(_) => "invalid_payment",
                WalletError::InsufficientFunds { .. } => "insufficient_funds",
                WalletError::TooManyInputs { .. } => "too_many_inputs",
                WalletError::TooManyOutputs { .. } => "too_many_outputs",
                WalletError::Zero(_) => "zero",
                WalletError::SplitTooFine { .. } => "split_too_fine",
                WalletError::Overflow => "overflow",
                WalletError::WrongIssuer { .. } => "wrong_issuer",
                WalletError::Rejected { .. } => "rejected",
                WalletError::Invalid { .. } => "invalid_transaction",
                WalletError::Pending { .. } => "pending",
                WalletError::NotForThisWallet { .. } => "not_for_this_wallet",
                WalletError::AlreadyReceived { .. } => "already_received",
                WalletError::NotOnLedger { .. } => "not_on_ledger",
            },
        }
    }

    /// The process exit code (see the module documentation).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Wallet(WalletError::Pending { .. }) => 3,
            CliError::Wallet(WalletError::Rejected { .. } | WalletError::Invalid { .. }) => 4,
            _ => 1,
        }
    }

    /// The error as JSON: kind, message, and the transaction when there is one.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "kind": self.kind(), "message": self.to_string() });
        let tx_id = match self {
            CliError::Wallet(
                WalletError::Rejected { tx_id, .. }
                | WalletError::Invalid { tx_id, .. }
                | WalletError::Pending { tx_id, .. }
                | WalletError::NotForThisWallet { tx_id }
                | WalletError::AlreadyReceived { tx_id }
                | WalletError::NotOnLedger { tx_id, .. },
            ) => Some(tx_id.to_hex()),
            _ => None,
        };
        if let Some(tx_id) = tx_id {
            error["tx_id"] = json!(tx_id);
        }
        if let CliError::Wallet(WalletError::Rejected { rejection, .. }) = self {
            error["reason"] = json!(rejection.reason);
        }
        if let CliError::Wallet(WalletError::InsufficientFunds {
            requested,
            spendable,
            pending,
        }) = self
        {
            error["requested"] = json!(requested.to_string());
            error["spendable"] = json!(spendable.to_string());
            error["pending"] = json!(pending.to_string());
        }
        json!({ "error": error })
    }
}

/// What a command printed: JSON for `--json`, text otherwise.
struct Output {
    json: Value,
    text: String,
}

fn parse_amount(text: &str) -> Result<Amount, CliError> {
    Ok(text.parse::<Amount>()?)
}

fn parse_address(text: &str) -> Result<Address, CliError> {
    text.parse::<Address>().map_err(|source| CliError::Address {
        text: text.to_string(),
        source,
    })
}

/// Creates the payment file before anything is submitted, so that an unwritable path
/// stops the command while nothing has happened yet.
fn create_payment_file(path: Option<&Path>) -> Result<Option<(PathBuf, std::fs::File)>, CliError> {
    let Some(path) = path else { return Ok(None) };
    let file = std::fs::File::create(path).map_err(|source| CliError::PaymentFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some((path.to_path_buf(), file)))
}

impl Cli {
    async fn ledger(&self, wallet: &Wallet) -> Result<GrpcLedger, CliError> {
        let endpoint = match &self.sentinel {
            Some(e) => e.clone(),
            None => wallet.sentinel()?.ok_or(CliError::NoSentinel)?,
        };
        Ok(GrpcLedger::connect(&endpoint, Duration::from_secs(self.timeout.max(1))).await?)
    }

    async fn run(&self) -> Result<Output, CliError> {
        match &self.command {
            Command::Init => {
                let mut wallet = Wallet::create(&self.wallet)?;
                if let Some(endpoint) = &self.sentinel {
                    wallet.set_sentinel(endpoint)?;
                }
                let address = wallet.new_address()?;
                let path = self.wallet.display().to_string();
                let mut text = format!("created wallet {path}\n");
                if let Some(endpoint) = &self.sentinel {
                    text.push_str(&format!("sentinel {endpoint}\n"));
                }
                text.push_str(&format!("address  {address}"));
                Ok(Output {
                    json: json!({
                        "wallet": path,
                        "sentinel": self.sentinel,
                        "address": address.to_string(),
                    }),
                    text,
                })
            }
            Command::Address { list } => {
                let mut wallet = Wallet::open(&self.wallet)?;
                if *list {
                    let all: Vec<String> = wallet
                        .addresses()?
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    Ok(Output {
                        text: all.join("\n"),
                        json: json!({ "addresses": all }),
                    })
                } else {
                    let address = wallet.new_address()?.to_string();
                    Ok(Output {
                        json: json!({ "address": address }),
                        text: address,
                    })
                }
            }
            Command::Balance => {
                let wallet = Wallet::open(&self.wallet)?;
                Ok(balance_output(&wallet.balance()?))
            }
            Command::Mint {
                amount,
                issuer_key,
                to,
                outputs,
                payment_file,
            } => {
                let amount = parse_amount(amount)?;
                let to = to.as_deref().map(parse_address).transpose()?;
                let issuer = cbdc_core::read_key_file(issuer_key)?;
                let mut wallet = Wallet::open(&self.wallet)?;
                let ledger = self.ledger(&wallet).await?;
                let file = create_payment_file(payment_file.as_deref())?;
                let result = wallet
                    .mint(&ledger, &issuer, amount, to.as_ref(), *outputs)
                    .await;
                finish_send(result, file)
            }
            Command::Send {
                amount,
                address,
                payment_file,
            } => {
                let amount = parse_amount(amount)?;
                let to = parse_address(address)?;
                let mut wallet = Wallet::open(&self.wallet)?;
                let ledger = self.ledger(&wallet).await?;
                let file = create_payment_file(payment_file.as_deref())?;
                let result = wallet.send(&ledger, amount, &to).await;
                finish_send(result, file)
            }
            Command::Fan {
                count,
                amount,
                address,
                payment_file,
            } => {
                let amount = parse_amount(amount)?;
                let to = parse_address(address)?;
                let mut wallet = Wallet::open(&self.wallet)?;
                let ledger = self.ledger(&wallet).await?;
                let file = create_payment_file(payment_file.as_deref())?;
                let result = wallet.fan(&ledger, *count, amount, &to).await;
                finish_send(result, file)
            }
            Command::Receive { payment, file } => {
                let text = match (payment, file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(path)) => {
                        std::fs::read_to_string(path).map_err(|source| CliError::PaymentFile {
                            path: path.clone(),
                            source,
                        })?
                    }
                    // clap requires one of the two.
                    (None, None) => String::new(),
                };
                let payment: Payment = text.parse().map_err(WalletError::from)?;
                let mut wallet = Wallet::open(&self.wallet)?;
                let ledger = self.ledger(&wallet).await?;
                let report = wallet.receive(&ledger, &payment).await?;
                Ok(receive_output(&report))
            }
            Command::Sync { resubmit } => {
                let mut wallet = Wallet::open(&self.wallet)?;
                let ledger = self.ledger(&wallet).await?;
                let report = wallet.sync(&ledger, *resubmit).await?;
                Ok(sync_output(&report, &wallet.balance()?))
            }
            Command::History => {
                let wallet = Wallet::open(&self.wallet)?;
                Ok(history_output(&wallet)?)
            }
            Command::Config { set_sentinel } => {
                let mut wallet = Wallet::open(&self.wallet)?;
                if let Some(endpoint) = set_sentinel {
                    wallet.set_sentinel(endpoint)?;
                }
                let saved = wallet.sentinel()?;
                let path = self.wallet.display().to_string();
                Ok(Output {
                    text: format!(
                        "wallet   {path}\nsentinel {}",
                        saved.as_deref().unwrap_or("(none)")
                    ),
                    json: json!({ "wallet": path, "sentinel": saved }),
                })
            }
        }
    }
}

fn kind_verb(kind: SendKind) -> &'static str {
    match kind {
        SendKind::Send => "sent",
        SendKind::Mint => "minted",
        SendKind::Fan => "fanned out",
    }
}

/// Prints a send's outcome and, once confirmed, writes the payment file.
fn finish_send(
    result: Result<SendReport, WalletError>,
    file: Option<(PathBuf, std::fs::File)>,
) -> Result<Output, CliError> {
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            if let Some((path, file)) = file {
                drop(file);
                // Nothing to pay with yet: do not leave an empty payment file behind.
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    let mut warning = None;
    let mut written = None;
    if let Some((path, mut file)) = file {
        // The money has moved: failing to write the file must not look like a failed
        // send (a script would pay again), so it is a warning and the payment is printed.
        match writeln!(file, "{}", report.payment).and_then(|()| file.sync_all()) {
            Ok(()) => written = Some(path.display().to_string()),
            Err(e) => warning = Some(format!("could not write {}: {e}", path.display())),
        }
    }
    let mut text = format!(
        "{} {} in {} output(s) to {}\n",
        kind_verb(report.kind),
        report.amount,
        report.outputs,
        report.recipient
    );
    text.push_str(&format!("tx       {} confirmed\n", report.tx_id));
    if report.kind != SendKind::Mint {
        text.push_str(&format!(
            "inputs   {}, change {}\n",
            report.inputs, report.change
        ));
    }
    if !report.credited.is_zero() {
        text.push_str(&format!("credited {} to this wallet\n", report.credited));
    }
    if let Some(path) = &written {
        text.push_str(&format!("payment written to {path}\n"));
    }
    if let Some(w) = &warning {
        text.push_str(&format!("warning: {w}\n"));
    }
    let paid_to_self = report
        .credited
        .checked_sub(report.change)
        .is_some_and(|own| own >= report.amount);
    if paid_to_self {
        text.push_str("paid to this wallet: no payment to hand over");
    } else {
        text.push_str("payment (the recipient runs `cbdc-wallet receive PAYMENT`):\n");
        text.push_str(&report.payment);
    }
    Ok(Output {
        json: json!({
            "kind": report.kind.as_str(),
            "status": SendStatus::Confirmed.as_str(),
            "tx_id": report.tx_id.to_hex(),
            "amount": report.amount.to_string(),
            "recipient": report.recipient,
            "outputs": report.outputs,
            "inputs": report.inputs,
            "change": report.change.to_string(),
            "credited": report.credited.to_string(),
            "payment": report.payment,
            "payment_file": written,
            "warning": warning,
        }),
        text,
    })
}

fn balance_output(b: &Balance) -> Output {
    let mut text = format!(
        "spendable {:>12}  ({} output(s))",
        b.spendable.to_string(),
        b.spendable_outputs
    );
    if b.pending_sends > 0 || !b.pending_spend.is_zero() {
        text.push_str(&format!(
            "\npending   {:>12}  ({} output(s) in {} unsettled send(s); run `cbdc-wallet sync`)",
            b.pending_spend.to_string(),
            b.pending_spend_outputs,
            b.pending_sends
        ));
    }
    if !b.pending_receive.is_zero() {
        text.push_str(&format!(
            "\nincoming  {:>12}  ({} output(s) waiting for the ledger)",
            b.pending_receive.to_string(),
            b.pending_receive_outputs
        ));
    }
    Output {
        json: json!({
            "spendable": b.spendable.to_string(),
            "spendable_outputs": b.spendable_outputs,
            "pending": b.pending().to_string(),
            "pending_spend": b.pending_spend.to_string(),
            "pending_spend_outputs": b.pending_spend_outputs,
            "pending_sends": b.pending_sends,
            "pending_receive": b.pending_receive.to_string(),
            "pending_receive_outputs": b.pending_receive_outputs,
        }),
        text,
    }
}

fn receive_output(r: &ReceiveReport) -> Output {
    let mut text = format!(
        "received {} in {} output(s) from tx {}",
        r.credited, r.credited_outputs, r.tx_id
    );
    if r.pending_outputs > 0 {
        text.push_str(&format!(
            "\npending  {} in {} output(s): the ledger is still settling it (run `cbdc-wallet sync`)",
            r.pending, r.pending_outputs
        ));
    }
    if r.missing_outputs > 0 {
        text.push_str(&format!(
            "\nignored  {} output(s) for this wallet that are not on the ledger",
            r.missing_outputs
        ));
    }
    Output {
        json: json!({
            "tx_id": r.tx_id.to_hex(),
            "status": if r.pending_outputs > 0 { ReceiptStatus::Pending } else { ReceiptStatus::Confirmed }.as_str(),
            "credited": r.credited.to_string(),
            "credited_outputs": r.credited_outputs,
            "pending": r.pending.to_string(),
            "pending_outputs": r.pending_outputs,
            "missing_outputs": r.missing_outputs,
            "other_outputs": r.other_outputs,
        }),
        text,
    }
}

fn sync_output(report: &SyncReport, balance: &Balance) -> Output {
    let mut lines = Vec::new();
    for s in &report.sends {
        lines.push(format!(
            "{} {} {}: {} -> {} ({})",
            s.kind.as_str(),
            s.amount,
            short_hash(&s.tx_id.0),
            s.before.as_str(),
            s.after.as_str(),
            s.note
        ));
        if s.after == SendStatus::Confirmed && s.before != SendStatus::Confirmed {
            lines.push(format!("  payment: {}", s.payment));
        }
    }
    for r in &report.receipts {
        lines.push(format!(
            "receipt {}: {} ({})",
            short_hash(&r.tx_id.0),
            r.after.as_str(),
            r.note
        ));
    }
    if lines.is_empty() {
        lines.push("nothing pending".into());
    }
    lines.push(format!(
        "spendable {} ({} output(s)), pending {}",
        balance.spendable,
        balance.spendable_outputs,
        balance.pending()
    ));
    let sends: Vec<Value> = report
        .sends
        .iter()
        .map(|s| {
            json!({
                "tx_id": s.tx_id.to_hex(),
                "kind": s.kind.as_str(),
                "amount": s.amount.to_string(),
                "before": s.before.as_str(),
                "status": s.after.as_str(),
                "note": s.note,
                "payment": s.payment,
            })
        })
        .collect();
    let receipts: Vec<Value> = report
        .receipts
        .iter()
        .map(|r| {
            json!({
                "tx_id": r.tx_id.to_hex(),
                "status": r.after.as_str(),
                "credited": r.credited.to_string(),
                "note": r.note,
            })
        })
        .collect();
    Output {
        json: json!({
            "sends": sends,
            "receipts": receipts,
            "spendable": balance.spendable.to_string(),
            "pending": balance.pending().to_string(),
        }),
        text: lines.join("\n"),
    }
}

fn history_output(wallet: &Wallet) -> Result<Output, CliError> {
    let entries = wallet.history()?;
    let mut lines = Vec::new();
    let mut items = Vec::new();
    for e in &entries {
        let party = match &e.counterparty {
            Some(to) => format!(" to {to}"),
            None => String::new(),
        };
        let detail = match &e.detail {
            Some(d) => format!(" ({d})"),
            None => String::new(),
        };
        lines.push(format!(
            "{:<8} {:>12}  {:<9} tx {}{party}{detail}",
            e.direction.as_str(),
            e.amount.to_string(),
            e.status,
            short_hash(&e.tx_id.0),
        ));
        items.push(json!({
            "direction": e.direction.as_str(),
            "tx_id": e.tx_id.to_hex(),
            "amount": e.amount.to_string(),
            "outputs": e.outputs,
            "counterparty": e.counterparty,
            "status": e.status,
            "detail": e.detail,
            "payment": e.payment,
            "created_at": e.created_at,
        }));
    }
    if lines.is_empty() {
        lines.push("no transactions yet".into());
    }
    Ok(Output {
        json: json!({ "history": items }),
        text: lines.join("\n"),
    })
}

fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = !matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            if usage && std::env::args().any(|a| a == "--json") {
                print_json(&json!({
                    "error": { "kind": "usage", "message": e.render().to_string().trim() }
                }));
            }
            // clap prints the message (to stderr for errors) and picks the code (2).
            let _ = e.print();
            return ExitCode::from(if usage { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(output) => {
            if cli.json {
                print_json(&output.json);
            } else if !output.text.is_empty() {
                println!("{}", output.text);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if cli.json {
                print_json(&e.to_json());
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
