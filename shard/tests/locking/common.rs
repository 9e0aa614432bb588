//! Builders shared by the tests.

use std::sync::Arc;

use cbdc_consensus::StateMachine;
use cbdc_core::{Amount, CompactTransaction, Hash, ShardRange, TxId, UhsId};
use cbdc_shard::{
    DtxKey, LockResult, LockSlot, LockingShardMachine, LockingShardParams, RejectCode,
    ShardCommand, ShardResponse,
};
use rocksdb::{WriteBatch, DB};
use tempfile::TempDir;

/// The lower half of the prefix space: the shard under test in most tests.
pub const LOW: ShardRange = ShardRange {
    start: 0,
    end: 0x7FFF,
};

/// Every prefix.
pub const FULL: ShardRange = ShardRange {
    start: 0,
    end: u16::MAX,
};

/// A prefix inside [`LOW`].
pub const IN: u16 = 0x1000;
/// A prefix outside [`LOW`].
pub const OUT: u16 = 0x9000;

/// A deterministic 32-byte value with routing prefix `prefix`.
fn bytes(tag: &[u8], prefix: u16, n: u64) -> [u8; 32] {
    let mut bytes = *Hash::digest_parts(&[tag, &prefix.to_be_bytes(), &n.to_le_bytes()]).as_bytes();
    bytes[..2].copy_from_slice(&prefix.to_be_bytes());
    bytes
}

/// A UHS id with routing prefix `prefix`.
pub fn uhs(prefix: u16, n: u64) -> UhsId {
    UhsId::from(bytes(b"uhs", prefix, n))
}

/// A tx id with routing prefix `prefix`.
pub fn txid(prefix: u16, n: u64) -> TxId {
    TxId::from(bytes(b"tx", prefix, n))
}

/// `cents` as an amount.
pub fn cents(cents: u64) -> Amount {
    Amount::from_cents(cents)
}

/// A compact transaction (no attestations).
pub fn ctx(id: TxId, inputs: &[UhsId], outputs: &[(UhsId, u64)]) -> CompactTransaction {
    CompactTransaction {
        id,
        inputs: inputs.to_vec(),
        outputs: outputs.iter().map(|(id, v)| (*id, cents(*v))).collect(),
        attestations: Vec::new(),
    }
}

/// Dtx `sequence` of coordinator group 0.
pub fn dtx(sequence: u64) -> DtxKey {
    DtxKey {
        coordinator: 0,
        sequence,
    }
}

/// A locking shard machine on its own RocksDB, applying commands directly (no Raft) the
/// way the Raft wrapper does: one write batch per call.
pub struct Fixture {
    /// Keeps the database's directory alive.
    _dir: TempDir,
    pub db: Arc<DB>,
    pub sm: LockingShardMachine,
}

impl Fixture {
    /// A fresh machine with `params`.
    pub fn new(params: LockingShardParams) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db =
            cbdc_consensus::storage::open_db::<LockingShardMachine>(dir.path()).expect("open db");
        let sm = LockingShardMachine::new(db.clone(), params).expect("machine");
        Fixture { _dir: dir, db, sm }
    }

    /// A fresh machine owning [`LOW`] with default retention.
    pub fn low() -> Self {
        Self::new(LockingShardParams::new(LOW))
    }

    /// Applies `commands` in one batch and writes it.
    pub fn run(&mut self, commands: Vec<ShardCommand>) -> Vec<ShardResponse> {
        let mut batch = WriteBatch::default();
        let responses = self.sm.apply(&mut batch, commands).expect("apply");
        self.db.write(batch).expect("write");
        self.sm.on_written().expect("on_written");
        responses
    }

    /// Applies one command.
    pub fn one(&mut self, command: ShardCommand) -> ShardResponse {
        let mut responses = self.run(vec![command]);
        assert_eq!(responses.len(), 1);
        responses.remove(0)
    }

    /// `Lock` of `txs` (all to be checked) as dtx `sequence`.
    pub fn lock(&mut self, sequence: u64, txs: Vec<CompactTransaction>) -> ShardResponse {
        self.one(lock_command(sequence, txs))
    }

    /// `Lock` that must answer fresh results; returns them.
    pub fn lock_results(&mut self, sequence: u64, txs: Vec<CompactTransaction>) -> Vec<LockResult> {
        match self.lock(sequence, txs) {
            ShardResponse::Locked {
                results,
                repeated: false,
            } => results,
            other => panic!("expected fresh lock results, got {other:?}"),
        }
    }

    /// `Apply` of dtx `sequence` with `commit` flags and no reasons.
    pub fn apply(&mut self, sequence: u64, commit: &[bool]) -> ShardResponse {
        self.one(ShardCommand::Apply {
            dtx: dtx(sequence),
            commit: commit.to_vec(),
            reasons: Vec::new(),
        })
    }

    /// `Discard` of dtx `sequence`.
    pub fn discard(&mut self, sequence: u64) -> ShardResponse {
        self.one(ShardCommand::Discard { dtx: dtx(sequence) })
    }

    /// Seeds unspent outputs (genesis, outside the log).
    pub fn seed(&self, outputs: &[(UhsId, u64)]) {
        self.sm
            .store()
            .seed(outputs.iter().map(|(id, v)| (*id, cents(*v))))
            .expect("seed");
    }
}

/// A `Lock` command checking every transaction of `txs`.
pub fn lock_command(sequence: u64, txs: Vec<CompactTransaction>) -> ShardCommand {
    ShardCommand::Lock {
        dtx: dtx(sequence),
        txs: txs.into_iter().map(LockSlot::Check).collect(),
    }
}

/// A refused lock result for `reason` at `input_index`.
pub fn refused(reason: RejectCode, input_index: Option<u32>) -> LockResult {
    LockResult::refused(reason, input_index)
}
