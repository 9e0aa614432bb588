//! # cbdc-coordinator
//!
//! 2PC coordinator groups (see DESIGN.md, "2PC settlement"). A sentinel sends attested
//! compact transactions to the coordinator group that owns their tx ids; the group's Raft
//! leader gathers them into distributed transactions (dtxs) and runs the two phases
//! against the locking shard groups:
//!
//! ```text
//!  sentinel ──ExecuteBatch──▶ CoordinatorService ──▶ Coordinator (leader driver)
//!                                                      │ verify attestations, dedupe by tx id
//!                                                      │ batch (batch_size / batch_delay)
//!                                                      ▼
//!        ┌──────────── per dtx, up to max_in_flight at once ─────────────┐
//!        │ Prepare ─Raft─▶ Lock ─▶ decide ─ Decide ─Raft─▶ Apply ─▶ answer │
//!        │                (every involved shard,             then Discard, │
//!        │                 concurrently)                     Done (batched)│
//!        └─────────────────────────────────────────────────────────────────┘
//!                   CoordinatorMachine (replicated dtx records, RocksDB)
//! ```
//!
//! A replica that becomes leader first reads every unfinished dtx from its replicated
//! state and drives each one to completion; only then does it accept new work. Shard
//! commands are idempotent by dtx id, so repeating any of them after a crash or a leader
//! change is safe.
//!
//! ## Layout
//! - [`machine`]: [`CoordinatorMachine`], the Raft state machine (dtx records, the
//!   sequence counter), its commands and responses.
//! - [`dtx`]: the pure decision logic: splitting a dtx into per-shard slices, turning the
//!   shards' lock votes into verdicts, verdicts into wire results.
//! - [`shards`]: [`ShardGroups`], how the driver reaches the shard groups, and
//!   [`GrpcShardGroups`], its gRPC implementation.
//! - [`driver`]: [`Coordinator`], the leader driver (batching, phases, recovery).
//! - [`service`]: [`CoordinatorService`], the `cbdc.v1.Coordinator` gRPC service.
//! - [`error`]: [`CoordinatorError`], this crate's error for callers of the driver.

#![warn(missing_docs)]

pub mod driver;
pub mod dtx;
pub mod error;
pub mod machine;
pub mod service;
pub mod shards;

pub use driver::{Coordinator, CoordinatorParams, MAX_BATCH_SIZE};
pub use dtx::{decide, split, ShardSlice, Verdict};
pub use error::CoordinatorError;
pub use machine::{
    CoordinatorCommand, CoordinatorMachine, CoordinatorResponse, DtxRecord, DtxTransactions,
};
pub use service::CoordinatorService;
pub use shards::{GrpcShardGroups, LockVote, ShardError, ShardGroups};
