//! # cbdc-shard
//!
//! Shard storage: the unspent hash set (UHS) of one shard, `UhsId → value`, in RocksDB.
//! Both settlement architectures keep their shard state here — the 2PC locking shard
//! (locks inputs at prepare, spends and creates at commit) and the atomizer-mode shard
//! (applies blocks and advances its height). Every change goes in one write batch: the
//! locking shard's Raft state machine runs a whole run of log entries in one, the
//! atomizer-mode shard (not replicated) a whole block:
//!
//! ```text
//!  Raft state machine ── stage(&mut batch) ──▶ StagedBatch ── check_and_lock / release
//!   (cbdc-consensus)                              │ overlay      apply / apply_block
//!        │ + last-applied id                      ▼
//!        ├────────── db.write(batch) ──▶ RocksDB (one instance per node)
//!        │                                CFs: uhs · uhs_minted · uhs_meta
//!        └── commit_locks(changes) ──▶ the locks of prepared 2PC transactions (memory)
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
//! The atomizer-mode shard ([`atomizer`]) is not Raft-replicated: [`AtomizerShard`]
//! holds its own store, applies the blocks it follows (`StagedBatch::apply_block`, one
//! write batch per block), checks submitted transactions' inputs at its height and
//! notifies the atomizer; it serves [`AtomizerShardService`] (`cbdc.v1.AtomizerShard`)
//! and [`AtomizerShardQueryService`] (`cbdc.v1.ShardQuery`).
//!
//! Layout:
//! - [`atomizer`]: the atomizer-mode shard: [`AtomizerShard`], its gRPC services, its
//!   recheck list for missing inputs, [`seed_atomizer_shard`];
//! - [`locking`]: the 2PC locking shard: [`LockingShardMachine`], its commands, its
//!   gRPC services;
//! - [`store`]: [`UhsStore`], committed reads (point, batched, range, status, supply,
//!   audit) and the entry points that stage or write changes;
//! - [`staged`]: [`StagedBatch`], the operations of both shard kinds staged into a
//!   caller's write batch, with an overlay so later operations see earlier ones;
//! - [`lock`]: [`LockOwner`] and [`MintState`], who holds a lock and what a mint id is;
//!   the in-memory table of locks on outputs and [`LockChanges`];
//! - [`rejection`]: [`Rejection`] (why a transaction cannot settle: a value, not an
//!   error) and [`OutputStatus`];
//! - [`supply`]: [`Supply`], the counters behind the central bank's audit;
//! - [`iter`]: [`UhsRangeIter`], the outputs of one shard range;
//! - [`snapshot`]: export and import of the whole store for Raft snapshots;
//! - [`seed`]: fast genesis bulk load;
//! - [`options`]: [`StoreOptions`], RocksDB tuning with bounded memory;
//! - [`columns`]: [`ColumnFamilyNames`], the names of the store's column families;
//! - [`error`]: [`StoreError`], this layer's one error type.

pub mod atomizer;
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

pub use atomizer::{
    seed_atomizer_shard, AtomizerShard, AtomizerShardError, AtomizerShardParams,
    AtomizerShardQueryService, AtomizerShardService,
};
pub use columns::ColumnFamilyNames;
pub use error::StoreError;
pub use iter::UhsRangeIter;
pub use lock::{LockChanges, LockOwner, MintState};
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
