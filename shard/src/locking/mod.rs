//! The 2PC locking shard (DESIGN.md, "2PC settlement"): a Raft state machine over the
//! UHS store, and the two gRPC services of one replica.
//!
//! ```text
//!  coordinator ── LockingShard (Lock/Apply/Discard) ──▶ LockingShardService
//!                                                        │ decode, check attestations
//!                                                        ▼
//!                        ReplicaHandle::write(ShardCommand) ── Raft log ──▶ every replica
//!                                                                            │
//!  sentinel / auditor ── ShardQuery ──▶ ShardQueryService ── read ──▶ LockingShardMachine
//!                                      (local applied state)           │ StagedBatch + Tables
//!                                                                      ▼
//!                                  RocksDB: uhs · uhs_minted · uhs_meta ·
//!                                  shard_dtxs · shard_dtx_order · shard_outcomes ·
//!                                  shard_outcome_order · shard_meta
//! ```
//!
//! The life of a dtx on one shard: `Lock` checks each transaction's owned inputs (unspent
//! and unlocked, all or nothing), owned outputs (absent) and owned mint id (new), locks
//! them and records the dtx with one [`LockResult`] per transaction; `Apply` commits
//! (spend, create, record the mint) or releases each, and records each outcome on the
//! shard owning the tx id; `Discard` leaves a tombstone. Every command is idempotent by
//! dtx id, goes through the group's log, and so survives a change of leader.
//!
//! Layout:
//! - [`machine`]: [`LockingShardMachine`], the state machine and its read helpers;
//! - [`command`]: [`ShardCommand`], [`ShardResponse`] and what they carry;
//! - [`outcome`]: [`RejectCode`] and [`TxOutcome`];
//! - [`params`]: the configuration, [`LockingShardParams`];
//! - [`service`]: the `cbdc.v1.LockingShard` service, [`LockingShardService`];
//! - [`query`]: the `cbdc.v1.ShardQuery` service, [`ShardQueryService`];
//! - [`wire`]: conversions to and from `cbdc.v1`;
//! - [`error`]: this layer's one error type, [`LockingError`];
//! - `tables`, `snapshot`: the machine's own column families and its snapshot format.

pub mod command;
pub mod error;
pub mod machine;
pub mod outcome;
pub mod params;
pub mod query;
pub mod service;
mod snapshot;
mod tables;
pub mod wire;

pub use command::{
    ApplyOutcome, CommandRefusal, DiscardOutcome, DtxKey, LockResult, LockSlot, ShardCommand,
    ShardResponse,
};
pub use error::LockingError;
pub use machine::{seed_genesis, DtxState, LockingShardMachine, ShardAudit, LOCKING_SHARD_CFS};
pub use outcome::{RejectCode, TxOutcome};
pub use params::LockingShardParams;
pub use query::ShardQueryService;
pub use service::LockingShardService;
pub use tables::{CF_DTXS, CF_DTX_ORDER, CF_OUTCOMES, CF_OUTCOME_ORDER, CF_SHARD_META};
