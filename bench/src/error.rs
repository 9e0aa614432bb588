//! [`BenchError`]: why a benchmark could not be prepared, run or reported.
//!
//! A run that goes through but gets unexpected answers (a double spend confirmed, a
//! stream that broke half-way) is *not* an error: it is a result, counted in the
//! [`crate::Report`]'s checks, so that the operator sees every number. Errors are what
//! stops the harness before or after the measurement: bad options, a cluster that cannot
//! be reached or does not match the workload, funds that could not be prepared, a report
//! that could not be written.

use std::path::PathBuf;

use cbdc_core::KeyFileError;

/// Why the harness stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option is out of range or options contradict each other.
    #[error("invalid benchmark option: {0}")]
    Options(String),
    /// An endpoint is not a usable `host:port` or URL.
    #[error("invalid endpoint {endpoint:?}: {detail}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A sentinel could not be reached.
    #[error("cannot connect to sentinel {endpoint}: {detail}")]
    Connect {
        /// The sentinel.
        endpoint: String,
        /// The transport error, with its causes.
        detail: String,
    },
    /// A call to a sentinel failed outright (not a transaction's answer).
    #[error("{call} on {endpoint} failed: {detail}")]
    Rpc {
        /// The gRPC method.
        call: &'static str,
        /// The sentinel.
        endpoint: String,
        /// The status or transport error.
        detail: String,
    },
    /// The cluster cannot run this workload (limits too small, another issuer key, a
    /// malformed `GetInfo`).
    #[error("the cluster does not fit the benchmark: {0}")]
    Cluster(String),
    /// Funds could not be prepared: a mint was refused, or the funding outputs are not
    /// unspent on the cluster.
    #[error("funding failed: {0}")]
    Funding(String),
    /// The issuer key file could not be read.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The output directory or a report file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The JSON report could not be encoded or decoded.
    #[error("JSON report: {0}")]
    Json(#[from] serde_json::Error),
    /// The SVG plot could not be drawn.
    #[error("plot {path}: {detail}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// What plotters said.
        detail: String,
    },
    /// A worker task panicked or was cancelled (a bug in the harness).
    #[error("benchmark task failed: {0}")]
    Task(String),
}

/// An error and its chain of causes in one line, so that a transport error says why
/// (`connection refused`) and not only that it happened.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<tokio::task::JoinError> for BenchError {
    fn from(e: tokio::task::JoinError) -> Self {
        BenchError::Task(e.to_string())
    }
}
