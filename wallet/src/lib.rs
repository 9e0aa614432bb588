//! # cbdc-wallet
//!
//! Holds keys and outputs and moves money through a cluster's public API
//! (`cbdc.v1.Sentinel`). It is what people and test scripts use to mint (with the issuer
//! key), send, receive and watch their balance; the `cbdc-wallet` binary is a thin
//! command line over this library.
//!
//! ```text
//!  cbdc-wallet (cli) ──▶ Wallet (wallet.rs) ──▶ Store: SQLite file (store.rs)
//!                              │
//!                              └──▶ dyn Ledger ──▶ GrpcLedger ──gRPC──▶ sentinel ──▶ cluster
//!                                   (ledger.rs)    (grpc.rs)
//!                                              or MemoryLedger (memory.rs, tests)
//! ```
//!
//! A cbdc ledger keeps only hashes of unspent outputs, so a wallet must remember the
//! data of its outputs and a recipient must be told about a payment: `send` prints a
//! [`Payment`] string that the recipient's `receive` decodes and checks on the ledger.
//! The rules that keep money safe across crashes, timeouts and rejections are written
//! at the top of [`wallet`].
//!
//! Layout:
//! - [`ledger`]: the [`Ledger`] transport trait and its answers;
//! - [`grpc`]: [`GrpcLedger`], the trait over the public gRPC API;
//! - [`memory`]: [`MemoryLedger`], an in-memory ledger with injectable faults, for tests;
//! - [`store`]: the SQLite wallet file;
//! - [`payment`]: the `usdpay1…` payment strings;
//! - [`wallet`]: [`Wallet`], the logic: coin selection, signing, settling, sync;
//! - [`cli`]: the command line (argument parsing, output, exit codes).

pub mod cli;
pub mod grpc;
pub mod ledger;
pub mod memory;
pub mod payment;
pub mod store;
pub mod wallet;

pub use grpc::GrpcLedger;
pub use ledger::{Final, Ledger, LedgerError, LedgerInfo, OutputStatus, Rejection, TxStatus};
pub use memory::{Fault, MemoryLedger};
pub use payment::{PaidOutput, Payment, PaymentError};
pub use store::{ReceiptStatus, SendKind, SendStatus, Store, StoreError};
pub use wallet::{
    Balance, HistoryEntry, ReceiveReport, SendReport, SyncReport, Wallet, WalletError,
};
