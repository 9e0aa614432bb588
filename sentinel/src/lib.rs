//! # cbdc-sentinel
//!
//! The front door of a cbdc cluster: the public `cbdc.v1.Sentinel` gRPC API that banks,
//! wallets and the benchmark call. A sentinel holds no ledger state. It validates each
//! transaction statelessly (signatures verified in batches across cores), attests the
//! valid ones as one Merkle batch signed with its key, and hands them to the settlement
//! back end, answering each caller with the final outcome.
//!
//! ```text
//!  client ──gRPC──▶ SentinelService ──▶ Pipeline: batcher ─▶ validate_many ─▶ attest_batch
//!                   (service.rs)        (pipeline.rs)        (blocking pool, rayon)   │
//!                                                                                    ▼
//!                    ShardQuery (status) ◀── TwoPhaseBackend ──ExecuteBatch──▶ coordinator
//!                                            (backend.rs)          groups (by tx id)
//! ```
//!
//! Layout:
//! - [`params`]: [`SentinelParams`], everything a sentinel is configured with;
//! - [`backend`]: the [`Backend`] trait and [`TwoPhaseBackend`] (coordinators and shard
//!   queries over gRPC, following Raft leaders);
//! - [`pipeline`]: [`Pipeline`], batching, validation, attestation, deduplication of
//!   transactions in flight, one answer per caller;
//! - [`service`]: the gRPC service and [`serve`];
//! - `memory`: `MemoryBackend`, an in-memory ledger for tests (feature `memory-backend`;
//!   never part of a `cbdc` binary).

pub mod atomizer;
pub mod backend;
#[cfg(any(test, feature = "memory-backend"))]
pub mod memory;
pub mod params;
pub mod pipeline;
pub mod service;

pub use atomizer::{AtomizerBackend, AtomizerEndpoints};
pub use backend::{Backend, BackendError, Outcome, OutputState, TwoPhaseBackend, TxState};
#[cfg(any(test, feature = "memory-backend"))]
pub use memory::MemoryBackend;
pub use params::{ParamsError, SentinelParams, DEFAULT_BATCH_DELAY};
pub use pipeline::{Answer, Pipeline, SubmitError};
pub use service::{serve, serve_pipeline, SentinelService, ServeError};
