//! # cbdc-shard
//!
//! Shard storage: the unspent hash set (UHS) of one shard, `UhsId → value`, in RocksDB.
//! Both settlement architectures keep their shard state here — the 2PC locking shard
//! (locks inputs at prepare, spends and creates at commit) and the atomizer-mode shard
//! (applies blocks and advances its height) — each as a Raft state machine that runs a
//! whole run of log entries in one write batch:
//!
//! ```text
//!  Raft state machine ── stage(&mut batch) ──▶ StagedBatch ── check_and_lock / release
//!   (cbdc-consensus)                              │ overlay      apply / apply_block
//!        │ + last-applied id                      ▼
//!        └────────── db.write(batch) ──▶ RocksDB (one instance per node)
//!                                         CFs: uhs · uhs_locks · uhs_minted · uhs_meta
//! ```
//!
//! The 2PC locking shard ([`locking`]) is such a state machine: [`LockingShardMachine`]
//! implements `cbdc_consensus::StateMachine` over the store, and a node serves one
//! replica with [`LockingShardService`] (`cbdc.v1.LockingShard`: Lock, Apply, Discard)
//! and [`ShardQueryService`] (`cbdc.v1.ShardQuery`: output and transaction status,
//! audit):
//!
//! ```text
//!  let params = LockingShardParams::new(range);
//!  let replica = Replica::start(config, peer_listener,
//!      move |db| LockingShardMachine::new(db, params)).await?;
//!  Server::builder()
//!      .add_service(LockingShardService::new(replica.handle(), verifier).into_server())
//!      .add_service(ShardQueryService::new(replica.handle()).into_server())
//! ```
//!
//! Layout:
//! - [`locking`]: the 2PC locking shard: [`LockingShardMachine`], its commands, its
//!   gRPC services;
//! - [`store`]: [`UhsStore`], committed reads (point, batched, range, status, supply,
//!   audit) and the entry points that stage or write changes;
//! - [`staged`]: [`StagedBatch`], the operations of both shard kinds staged into a
//!   caller's write batch, with an overlay so later operations see earlier ones;
//! - [`lock`]: [`LockOwner`] and [`MintState`], who holds a lock and what a mint id is;
//! - [`rejection`]: [`Rejection`] (why a transaction cannot settle: a value, not an
//!   error) and [`OutputStatus`];
//! - [`supply`]: [`Supply`], the counters behind the central bank's audit;
//! - [`iter`]: [`UhsRangeIter`], the outputs of one shard range;
//! - [`snapshot`]: export and import of the whole store for Raft snapshots;
//! - [`seed`]: fast genesis bulk load;
//! - [`options`]: [`StoreOptions`], RocksDB tuning with bounded memory;
//! - [`columns`]: [`ColumnFamilyNames`], the names of the store's column families;
//! - [`error`]: [`StoreError`], this layer's one error type.

pub mod columns;
pub mod error;
pub mod iter;
pub mod lock;
pub mod locking;
pub mod options;
pub mod rejection;
pub mod seed;
pub mod snapshot;
pub mod staged;
pub mod store;
pub mod supply;

pub use columns::ColumnFamilyNames;
pub use error::StoreError;
pub use iter::UhsRangeIter;
pub use lock::{LockOwner, MintState};
pub use locking::{
    seed_genesis, ApplyOutcome, CommandRefusal, DiscardOutcome, DtxKey, DtxState, LockResult,
    LockSlot, LockingError, LockingShardMachine, LockingShardParams, LockingShardService,
    RejectCode, ShardAudit, ShardCommand, ShardQueryService, ShardResponse, TxOutcome,
};
pub use options::StoreOptions;
pub use rejection::{OutputStatus, Rejection};
pub use snapshot::{SnapshotImport, SnapshotInfo, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
pub use staged::{BlockOutcome, StagedBatch};
pub use store::{Audit, UhsStore};
pub use supply::Supply;
