//! The wallet's view of a cluster: the [`Ledger`] transport trait and the answers it
//! gives.
//!
//! The wallet logic never talks gRPC itself. It asks a [`Ledger`] to settle a signed
//! transaction and to report what the cluster knows about transactions and outputs, so
//! that it can be tested against an in-memory ledger that times out, loses answers or
//! rejects ([`crate::memory::MemoryLedger`]), and run for real over the public API
//! ([`crate::grpc::GrpcLedger`]).
//!
//! The split between results and errors follows what the wallet must do next:
//! - a [`Final`] answer (confirmed, rejected, invalid) is a *result*: the ledger decided,
//!   and the wallet can settle its records;
//! - a [`LedgerError`] means the ledger did not decide in our sight (unreachable, timed
//!   out, answered nonsense). A transaction submitted when that happens may or may not
//!   settle later, so a spend stays pending until `sync` learns its fate.

use std::fmt;
use std::time::Duration;

use cbdc_core::{Amount, Limits, PublicKey, Transaction, TxId, UhsId};
use futures::future::BoxFuture;

/// The final answer to a submitted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// Settled: its inputs are spent and its outputs exist.
    Confirmed,
    /// Valid, but refused because of the ledger's state; nothing of it was applied.
    Rejected(Rejection),
    /// Refused by stateless validation; it never reached the back end.
    Invalid {
        /// The validation error in words.
        message: String,
    },
}

/// Why the back end refused a valid transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason's code, as the API names it (`INPUTS_SPENT`, `MINT_REPLAY`, …).
    pub reason: String,
    /// The reason in words.
    pub message: String,
    /// The input at fault, when the ledger says.
    pub input_index: Option<u32>,
}

impl Rejection {
    /// Whether the refusal says an input is spent or unknown, i.e. some of the inputs
    /// may be gone for good (as opposed to locked for a moment, or a replayed mint).
    pub fn inputs_gone(&self) -> bool {
        matches!(self.reason.as_str(), "INPUTS_SPENT" | "INPUTS_NOT_FOUND")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if !self.message.is_empty() && self.message != self.reason {
            write!(f, ": {}", self.message)?;
        }
        if let Some(i) = self.input_index {
            write!(f, " (input {i})")?;
        }
        Ok(())
    }
}

/// What the ledger knows about a transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Accepted and being settled, not final yet.
    Pending,
    /// Decided.
    Final(Final),
    /// Never seen, or its outcome is no longer kept.
    Unknown,
}

/// Whether an output can be spent, by UHS id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStatus {
    /// In the unspent set and free, holding this value.
    Unspent(Amount),
    /// Unspent but locked by a transaction being settled (2PC).
    Locked(Amount),
    /// Not in the unspent set: spent, never created, or named with wrong data.
    SpentOrAbsent,
}

/// What a cluster says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerInfo {
    /// `"2pc"` or `"atomizer"` (or `"unknown"`).
    pub architecture: String,
    /// The only key whose mints the cluster accepts, if it has one.
    pub issuer: Option<PublicKey>,
    /// Stateless limits: a transaction with more inputs or outputs is invalid, so coin
    /// selection must stay within them.
    pub limits: Limits,
    /// The sentinel's software version.
    pub version: String,
}

/// Why the ledger gave no decision. Every variant leaves a submitted transaction's fate
/// open: it may have settled, or may still settle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The endpoint is not a usable URL or `host:port`.
    #[error("invalid sentinel endpoint {endpoint:?}: {detail}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The sentinel (or the back end behind it) could not be reached.
    #[error("sentinel {endpoint} unreachable: {detail}")]
    Unreachable {
        /// Where we tried.
        endpoint: String,
        /// What the transport said.
        detail: String,
    },
    /// No final answer within the wait.
    #[error("no final answer from the ledger within {after:?}")]
    Timeout {
        /// How long we waited.
        after: Duration,
    },
    /// The ledger answered something that makes no sense (malformed fields, wrong count,
    /// an unexpected gRPC error).
    #[error("unexpected answer from the ledger: {0}")]
    Protocol(String),
}

/// A cluster as the wallet uses it. Object safe (boxed futures) so that the command line
/// holds a `Box<dyn Ledger>` and tests substitute an in-memory one.
///
/// Every method may be retried: submitting a transaction again is safe (the ledger
/// settles it at most once and answers its real outcome), and queries change nothing.
pub trait Ledger: Send + Sync {
    /// Submits a signed transaction and waits for its final answer. An error means the
    /// outcome is unknown, not that the transaction failed.
    fn submit<'a>(&'a self, tx: &'a Transaction) -> BoxFuture<'a, Result<Final, LedgerError>>;

    /// What the ledger knows about transaction `id`.
    fn tx_status(&self, id: TxId) -> BoxFuture<'_, Result<TxStatus, LedgerError>>;

    /// The status of each output, in the order asked.
    fn output_status<'a>(
        &'a self,
        ids: &'a [UhsId],
    ) -> BoxFuture<'a, Result<Vec<OutputStatus>, LedgerError>>;

    /// The cluster's architecture, issuer key and limits.
    fn info(&self) -> BoxFuture<'_, Result<LedgerInfo, LedgerError>>;
}
