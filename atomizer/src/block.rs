//! Blocks as the atomizer stores and replicates them.
//!
//! A block holds the compact transactions it confirms, without their sentinel
//! attestations (the atomizer checked those before ordering; shards, the archiver and the
//! watchtower only need ids, inputs and outputs), and the rejections decided while it was
//! built. It is stored with bincode and converted to `cbdc.v1.Block` at the edge.

use cbdc_core::{CompactTransaction, TxId};
use cbdc_proto::convert::{Block, Rejection};
use cbdc_proto::v1;
use serde::{Deserialize, Serialize};

/// Why the atomizer refused a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    /// An input was spent in a recent block or earlier in the block being built.
    InputsSpent,
    /// The oldest input attestation is older than the double-spend window.
    Stale,
    /// Not every input was attested before the window closed.
    Incomplete,
    /// A mint with this tx id was applied before.
    MintReplay,
}

impl RejectCode {
    /// The wire reason.
    pub fn to_wire(self) -> v1::RejectReason {
        match self {
            RejectCode::InputsSpent => v1::RejectReason::InputsSpent,
            RejectCode::Stale => v1::RejectReason::Stale,
            RejectCode::Incomplete => v1::RejectReason::Incomplete,
            RejectCode::MintReplay => v1::RejectReason::MintReplay,
        }
    }
}

/// One rejection recorded in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRejection {
    /// The refused transaction.
    pub tx_id: TxId,
    /// Why.
    pub code: RejectCode,
    /// The input at fault, when one is.
    pub input_index: Option<u32>,
    /// The reason in words.
    pub message: String,
}

/// A block in the atomizer's storage form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlock {
    /// Contiguous from 1.
    pub height: u64,
    /// Confirmed transactions in order (attestations stripped).
    pub transactions: Vec<CompactTransaction>,
    /// Rejections decided while this block was built.
    pub rejections: Vec<BlockRejection>,
}

impl StoredBlock {
    /// The core (wire-convertible) form.
    pub fn to_block(&self) -> Block {
        Block {
            height: self.height,
            transactions: self.transactions.clone(),
            rejections: self
                .rejections
                .iter()
                .map(|r| Rejection {
                    tx_id: r.tx_id,
                    reason: r.code.to_wire(),
                    input_index: r.input_index,
                    height: self.height,
                    message: r.message.clone(),
                    input_uhs_id: None,
                })
                .collect(),
        }
    }

    /// The `cbdc.v1.Block` message.
    pub fn to_wire(&self) -> v1::Block {
        (&self.to_block()).into()
    }
}

/// `tx` without its attestations, as a block keeps it.
pub fn strip(mut tx: CompactTransaction) -> CompactTransaction {
    tx.attestations = Vec::new();
    tx
}
