//! Conversions between the wire messages of [`crate::v1`] and the types of `cbdc-core`.
//!
//! - core → wire: `From<&T>` and `From<T>`, infallible;
//! - wire → core: `TryFrom<&W>` and `TryFrom<W>`, which check every byte length, every
//!   required field and every list length (against the caps of the canonical encoding:
//!   [`MAX_LIST_ITEMS`], [`MAX_ATTESTATIONS`], [`MAX_MERKLE_DEPTH`], [`MAX_BYTES_LEN`]).
//!
//! Only the form is checked here. Whether a public key is a valid curve point, whether a
//! signature verifies, whether values balance: those are validation's business
//! (`cbdc_core::Validator`), which names the offending input precisely.
//!
//! The helpers at the bottom read the ids and batches of the service requests.

use crate::error::{ProtoError, Result};
use crate::v1;
use cbdc_core::attestation::MAX_MERKLE_DEPTH;
use cbdc_core::encoding::{MAX_BYTES_LEN, MAX_LIST_ITEMS};
use cbdc_core::transaction::{MAX_ATTESTATIONS, P2PK_VERSION};
use cbdc_core::{
    decode_compact_batch, encode_compact_batch, Amount, Attestation, CompactTransaction, Hash,
    Input, Limits, OutPoint, Output, PublicKey, Signature, Transaction, TxId, UhsId, Witness,
    WitnessProgram,
};
use prost::bytes::Bytes;

/// Most ids or outputs one status query may name.
pub const MAX_QUERY_ITEMS: usize = 4096;
/// Most transactions one internal batch (ExecuteBatch, Lock, Notify, a block...) may
/// carry when converted with [`compact_transactions`].
pub const MAX_BATCH_TRANSACTIONS: usize = 65_536;

fn array<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| ProtoError::WrongLength {
        field,
        expected: N,
        found: bytes.len(),
    })
}

/// Reads a 32-byte hash.
pub fn hash(field: &'static str, bytes: &[u8]) -> Result<Hash> {
    array(field, bytes).map(Hash)
}

/// Reads a 32-byte transaction id.
pub fn tx_id(field: &'static str, bytes: &[u8]) -> Result<TxId> {
    hash(field, bytes).map(TxId)
}

/// Reads a 32-byte UHS id.
pub fn uhs_id(field: &'static str, bytes: &[u8]) -> Result<UhsId> {
    hash(field, bytes).map(UhsId)
}

/// Reads a 32-byte ed25519 public key. Only the length is checked; validation refuses
/// keys that are not valid points.
pub fn public_key(field: &'static str, bytes: &[u8]) -> Result<PublicKey> {
    array(field, bytes).map(PublicKey)
}

/// Reads a 64-byte ed25519 signature.
pub fn signature(field: &'static str, bytes: &[u8]) -> Result<Signature> {
    array(field, bytes).map(Signature)
}

/// Converts every element of a wire list, refusing lists longer than `max` before
/// converting anything, and naming the position of the first bad element.
pub fn list<W, T>(
    field: &'static str,
    items: &[W],
    max: usize,
    convert: impl Fn(&W) -> Result<T>,
) -> Result<Vec<T>> {
    if items.len() > max {
        return Err(ProtoError::TooMany {
            field,
            max,
            found: items.len(),
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| convert(item).map_err(|e| e.in_element(field, i)))
        .collect()
}

fn required<'a, T>(field: &'static str, value: &'a Option<T>) -> Result<&'a T> {
    value.as_ref().ok_or(ProtoError::MissingField(field))
}

fn usize_from(field: &'static str, value: u64) -> Result<usize> {
    usize::try_from(value).map_err(|_| ProtoError::OutOfRange {
        field,
        value,
        max: usize::MAX as u64,
    })
}

/// Implements `From<T>` by way of `From<&T>`, and `TryFrom<W>` by way of `TryFrom<&W>`.
macro_rules! by_value {
    ($($core:ty => $wire:ty),* $(,)?) => {$(
        impl From<$core> for $wire {
            fn from(value: $core) -> Self {
                <$wire>::from(&value)
            }
        }
        impl TryFrom<$wire> for $core {
            type Error = ProtoError;
            fn try_from(value: $wire) -> Result<Self> {
                <$core>::try_from(&value)
            }
        }
    )*};
}

by_value!(
    OutPoint => v1::OutPoint,
    Output => v1::Output,
    Input => v1::Input,
    WitnessProgram => v1::WitnessProgram,
    Witness => v1::Witness,
    Transaction => v1::Transaction,
    Attestation => v1::Attestation,
    CompactTransaction => v1::CompactTransaction,
    Limits => v1::Limits,
);

impl From<&OutPoint> for v1::OutPoint {
    fn from(o: &OutPoint) -> Self {
        v1::OutPoint {
            tx_id: o.tx_id.as_bytes().to_vec().into(),
            index: o.index,
        }
    }
}

impl TryFrom<&v1::OutPoint> for OutPoint {
    type Error = ProtoError;
    fn try_from(o: &v1::OutPoint) -> Result<Self> {
        Ok(OutPoint {
            tx_id: tx_id("outpoint.tx_id", &o.tx_id)?,
            index: o.index,
        })
    }
}

impl From<&Output> for v1::Output {
    fn from(o: &Output) -> Self {
        v1::Output {
            commitment: o.commitment.as_bytes().to_vec().into(),
            value: o.value.cents(),
        }
    }
}

impl TryFrom<&v1::Output> for Output {
    type Error = ProtoError;
    fn try_from(o: &v1::Output) -> Result<Self> {
        Ok(Output {
            commitment: hash("output.commitment", &o.commitment)?,
            value: Amount::from_cents(o.value),
        })
    }
}

impl From<&Input> for v1::Input {
    fn from(i: &Input) -> Self {
        v1::Input {
            outpoint: Some((&i.outpoint).into()),
            spent: Some((&i.spent).into()),
        }
    }
}

impl TryFrom<&v1::Input> for Input {
    type Error = ProtoError;
    fn try_from(i: &v1::Input) -> Result<Self> {
        Ok(Input {
            outpoint: required("input.outpoint", &i.outpoint)?.try_into()?,
            spent: required("input.spent", &i.spent)?.try_into()?,
        })
    }
}

impl From<&WitnessProgram> for v1::WitnessProgram {
    fn from(p: &WitnessProgram) -> Self {
        v1::WitnessProgram {
            version: u32::from(p.version()),
            program: p.program_bytes().to_vec().into(),
        }
    }
}

impl TryFrom<&v1::WitnessProgram> for WitnessProgram {
    type Error = ProtoError;
    fn try_from(p: &v1::WitnessProgram) -> Result<Self> {
        let version = u8::try_from(p.version).map_err(|_| ProtoError::InvalidProgram {
            field: "witness_program.version",
            reason: format!("version {} does not fit in a byte", p.version),
        })?;
        if version == P2PK_VERSION {
            return public_key("witness_program.program", &p.program).map(WitnessProgram::P2pk);
        }
        if p.program.len() > MAX_BYTES_LEN {
            return Err(ProtoError::TooMany {
                field: "witness_program.program",
                max: MAX_BYTES_LEN,
                found: p.program.len(),
            });
        }
        Ok(WitnessProgram::Unknown {
            version,
            program: p.program.to_vec(),
        })
    }
}

impl From<&Witness> for v1::Witness {
    fn from(w: &Witness) -> Self {
        v1::Witness {
            program: Some((&w.program).into()),
            signature: w.signature.0.to_vec().into(),
        }
    }
}

impl TryFrom<&v1::Witness> for Witness {
    type Error = ProtoError;
    fn try_from(w: &v1::Witness) -> Result<Self> {
        Ok(Witness {
            program: required("witness.program", &w.program)?.try_into()?,
            signature: signature("witness.signature", &w.signature)?,
        })
    }
}

impl From<&Transaction> for v1::Transaction {
    fn from(tx: &Transaction) -> Self {
        v1::Transaction {
            inputs: tx.inputs.iter().map(Into::into).collect(),
            outputs: tx.outputs.iter().map(Into::into).collect(),
            nonce: tx.nonce.as_bytes().to_vec().into(),
            witnesses: tx.witnesses.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<&v1::Transaction> for Transaction {
    type Error = ProtoError;
    fn try_from(tx: &v1::Transaction) -> Result<Self> {
        Ok(Transaction {
            inputs: list("transaction.inputs", &tx.inputs, MAX_LIST_ITEMS, |i| {
                i.try_into()
            })?,
            outputs: list("transaction.outputs", &tx.outputs, MAX_LIST_ITEMS, |o| {
                o.try_into()
            })?,
            nonce: hash("transaction.nonce", &tx.nonce)?,
            witnesses: list(
                "transaction.witnesses",
                &tx.witnesses,
                MAX_LIST_ITEMS,
                |w| w.try_into(),
            )?,
        })
    }
}

impl From<&Attestation> for v1::Attestation {
    fn from(a: &Attestation) -> Self {
        v1::Attestation {
            sentinel: a.sentinel.0.to_vec().into(),
            root: a.root.as_bytes().to_vec().into(),
            signature: a.signature.0.to_vec().into(),
            leaf_index: a.leaf_index,
            path: a
                .path
                .iter()
                .map(|h| h.as_bytes().to_vec().into())
                .collect(),
        }
    }
}

impl TryFrom<&v1::Attestation> for Attestation {
    type Error = ProtoError;
    fn try_from(a: &v1::Attestation) -> Result<Self> {
        Ok(Attestation {
            sentinel: public_key("attestation.sentinel", &a.sentinel)?,
            root: hash("attestation.root", &a.root)?,
            signature: signature("attestation.signature", &a.signature)?,
            leaf_index: a.leaf_index,
            path: list("attestation.path", &a.path, MAX_MERKLE_DEPTH, |h| {
                hash("attestation.path", h)
            })?,
        })
    }
}

impl From<&CompactTransaction> for v1::CompactTransaction {
    fn from(tx: &CompactTransaction) -> Self {
        v1::CompactTransaction {
            id: tx.id.as_bytes().to_vec().into(),
            inputs: tx
                .inputs
                .iter()
                .map(|id| id.as_bytes().to_vec().into())
                .collect(),
            outputs: tx
                .outputs
                .iter()
                .map(|(id, value)| v1::CompactOutput {
                    uhs_id: id.as_bytes().to_vec().into(),
                    value: value.cents(),
                })
                .collect(),
            attestations: tx.attestations.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<&v1::CompactTransaction> for CompactTransaction {
    type Error = ProtoError;
    fn try_from(tx: &v1::CompactTransaction) -> Result<Self> {
        Ok(CompactTransaction {
            id: tx_id("compact_transaction.id", &tx.id)?,
            inputs: list(
                "compact_transaction.inputs",
                &tx.inputs,
                MAX_LIST_ITEMS,
                |id| uhs_id("compact_transaction.inputs", id),
            )?,
            outputs: list(
                "compact_transaction.outputs",
                &tx.outputs,
                MAX_LIST_ITEMS,
                |o| {
                    Ok((
                        uhs_id("compact_output.uhs_id", &o.uhs_id)?,
                        Amount::from_cents(o.value),
                    ))
                },
            )?,
            attestations: list(
                "compact_transaction.attestations",
                &tx.attestations,
                MAX_ATTESTATIONS,
                |a| a.try_into(),
            )?,
        })
    }
}

impl From<&Limits> for v1::Limits {
    fn from(l: &Limits) -> Self {
        v1::Limits {
            max_inputs: l.max_inputs as u64,
            max_outputs: l.max_outputs as u64,
        }
    }
}

impl TryFrom<&v1::Limits> for Limits {
    type Error = ProtoError;
    fn try_from(l: &v1::Limits) -> Result<Self> {
        Ok(Limits {
            max_inputs: usize_from("limits.max_inputs", l.max_inputs)?,
            max_outputs: usize_from("limits.max_outputs", l.max_outputs)?,
        })
    }
}

/// Converts a batch of wire compact transactions (at most [`MAX_BATCH_TRANSACTIONS`]),
/// naming the list `field` and the position of the first bad one in the error.
pub fn compact_transactions(
    field: &'static str,
    txs: &[v1::CompactTransaction],
) -> Result<Vec<CompactTransaction>> {
    list(field, txs, MAX_BATCH_TRANSACTIONS, |tx| tx.try_into())
}

/// Converts a list of wire compact transactions from core ones.
pub fn compact_transactions_to_wire(txs: &[CompactTransaction]) -> Vec<v1::CompactTransaction> {
    txs.iter().map(Into::into).collect()
}

/// Reads a list of 32-byte ids (at most [`MAX_QUERY_ITEMS`]), as in status queries.
pub fn id_list<T>(
    field: &'static str,
    ids: &[Bytes],
    read: fn(&'static str, &[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    list(field, ids, MAX_QUERY_ITEMS, |id| read(field, id))
}

impl v1::SubmitTransactionRequest {
    /// The transaction to submit.
    pub fn to_transaction(&self) -> Result<Transaction> {
        required("submit_transaction_request.transaction", &self.transaction)?.try_into()
    }

    /// Whether the caller asked to wait for the final status (atomizer).
    pub fn wants_wait(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.wait)
    }
}

impl v1::SubmitTransactionsRequest {
    /// The transaction to submit.
    pub fn to_transaction(&self) -> Result<Transaction> {
        required("submit_transactions_request.transaction", &self.transaction)?.try_into()
    }

    /// Whether the caller asked to wait for the final status (atomizer).
    pub fn wants_wait(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.wait)
    }
}

impl v1::GetTransactionStatusRequest {
    /// The transaction id asked about.
    pub fn to_tx_id(&self) -> Result<TxId> {
        tx_id("get_transaction_status_request.tx_id", &self.tx_id)
    }
}

impl From<&UhsId> for v1::OutputRef {
    fn from(id: &UhsId) -> Self {
        v1::OutputRef {
            r#ref: Some(v1::output_ref::Ref::UhsId(id.as_bytes().to_vec().into())),
        }
    }
}

impl From<&Input> for v1::OutputRef {
    /// Names the output `input` spends, by outpoint and data.
    fn from(input: &Input) -> Self {
        v1::OutputRef {
            r#ref: Some(v1::output_ref::Ref::Output(input.into())),
        }
    }
}

impl TryFrom<&v1::OutputRef> for UhsId {
    type Error = ProtoError;
    /// The UHS id of the named output (computed when named by outpoint and data).
    fn try_from(r: &v1::OutputRef) -> Result<Self> {
        match &r.r#ref {
            None => Err(ProtoError::MissingField("output_ref.ref")),
            Some(v1::output_ref::Ref::UhsId(id)) => uhs_id("output_ref.uhs_id", id),
            Some(v1::output_ref::Ref::Output(input)) => Input::try_from(input).map(|i| i.uhs_id()),
        }
    }
}

impl v1::GetOutputStatusRequest {
    /// The UHS ids asked about, in request order (at most [`MAX_QUERY_ITEMS`]).
    pub fn to_uhs_ids(&self) -> Result<Vec<UhsId>> {
        list(
            "get_output_status_request.outputs",
            &self.outputs,
            MAX_QUERY_ITEMS,
            |r| r.try_into(),
        )
    }
}

impl v1::ShardOutputStatusRequest {
    /// The UHS ids asked about, in request order (at most [`MAX_QUERY_ITEMS`]).
    pub fn to_uhs_ids(&self) -> Result<Vec<UhsId>> {
        id_list("shard_output_status_request.uhs_ids", &self.uhs_ids, uhs_id)
    }
}

impl v1::ShardTransactionStatusRequest {
    /// The tx ids asked about, in request order (at most [`MAX_QUERY_ITEMS`]).
    pub fn to_tx_ids(&self) -> Result<Vec<TxId>> {
        id_list(
            "shard_transaction_status_request.tx_ids",
            &self.tx_ids,
            tx_id,
        )
    }
}

impl v1::WatchtowerTxStatusRequest {
    /// The tx ids asked about, in request order (at most [`MAX_QUERY_ITEMS`]).
    pub fn to_tx_ids(&self) -> Result<Vec<TxId>> {
        id_list("watchtower_tx_status_request.tx_ids", &self.tx_ids, tx_id)
    }
}

impl v1::AwaitTransactionStatusRequest {
    /// The tx ids to wait for, in request order (at most [`MAX_QUERY_ITEMS`]).
    pub fn to_tx_ids(&self) -> Result<Vec<TxId>> {
        id_list(
            "await_transaction_status_request.tx_ids",
            &self.tx_ids,
            tx_id,
        )
    }
}

impl v1::ExecuteBatchRequest {
    /// A request carrying `txs` in the canonical compact encoding.
    pub fn encoded(txs: &[CompactTransaction]) -> Self {
        v1::ExecuteBatchRequest {
            transactions: Vec::new(),
            encoded_transactions: encode_compact_batch(txs).into(),
        }
    }

    /// The batch's transactions, from whichever form the request carries.
    pub fn to_transactions(&self) -> Result<Vec<CompactTransaction>> {
        batch(
            "execute_batch_request.transactions",
            &self.transactions,
            "execute_batch_request.encoded_transactions",
            &self.encoded_transactions,
        )
    }
}

impl v1::LockRequest {
    /// A request for `dtx` carrying `txs` in the canonical compact encoding.
    pub fn encoded<'a, I>(dtx: v1::DtxId, txs: I) -> Self
    where
        I: IntoIterator<Item = &'a CompactTransaction>,
        I::IntoIter: ExactSizeIterator,
    {
        v1::LockRequest {
            dtx_id: Some(dtx),
            transactions: Vec::new(),
            encoded_transactions: encode_compact_batch(txs).into(),
        }
    }

    /// The dtx id and the shard's slice of transactions.
    pub fn to_parts(&self) -> Result<(v1::DtxId, Vec<CompactTransaction>)> {
        let dtx = *required("lock_request.dtx_id", &self.dtx_id)?;
        let txs = batch(
            "lock_request.transactions",
            &self.transactions,
            "lock_request.encoded_transactions",
            &self.encoded_transactions,
        )?;
        Ok((dtx, txs))
    }
}

/// A batch sent either as messages (`list`) or in the canonical encoding (`encoded`): at
/// most [`MAX_BATCH_TRANSACTIONS`] either way, and never both.
fn batch(
    list_field: &'static str,
    list: &[v1::CompactTransaction],
    encoded_field: &'static str,
    encoded: &[u8],
) -> Result<Vec<CompactTransaction>> {
    match (list.is_empty(), encoded.is_empty()) {
        (_, true) => compact_transactions(list_field, list),
        (true, false) => decode_compact_batch(encoded, MAX_BATCH_TRANSACTIONS).map_err(|e| {
            ProtoError::Undecodable {
                field: encoded_field,
                reason: e.to_string(),
            }
        }),
        (false, false) => Err(ProtoError::Conflicting {
            first: list_field,
            second: encoded_field,
        }),
    }
}

impl v1::ApplyRequest {
    /// The dtx id (the commit flags are plain `bool`s and need no conversion).
    pub fn to_dtx_id(&self) -> Result<v1::DtxId> {
        required("apply_request.dtx_id", &self.dtx_id).copied()
    }
}

impl v1::DiscardRequest {
    /// The dtx id.
    pub fn to_dtx_id(&self) -> Result<v1::DtxId> {
        required("discard_request.dtx_id", &self.dtx_id).copied()
    }
}

/// A shard's notification in core form: the transaction, the positions of the inputs the
/// shard attests, and the height it checked them at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The whole compact transaction.
    pub transaction: CompactTransaction,
    /// Positions in `transaction.inputs` attested by the shard.
    pub attested_inputs: Vec<u32>,
    /// The shard's block height when it checked.
    pub height: u64,
}

impl From<&Notification> for v1::TxNotification {
    fn from(n: &Notification) -> Self {
        v1::TxNotification {
            transaction: Some((&n.transaction).into()),
            attested_inputs: n.attested_inputs.clone(),
            height: n.height,
        }
    }
}

impl TryFrom<&v1::TxNotification> for Notification {
    type Error = ProtoError;
    /// Also checks that every attested position exists in the transaction's inputs.
    fn try_from(n: &v1::TxNotification) -> Result<Self> {
        let transaction: CompactTransaction =
            required("tx_notification.transaction", &n.transaction)?.try_into()?;
        let max = transaction.inputs.len().saturating_sub(1) as u64;
        let attested_inputs = list(
            "tx_notification.attested_inputs",
            &n.attested_inputs,
            MAX_LIST_ITEMS,
            |&i| {
                if (i as usize) < transaction.inputs.len() {
                    Ok(i)
                } else {
                    Err(ProtoError::OutOfRange {
                        field: "tx_notification.attested_inputs",
                        value: u64::from(i),
                        max,
                    })
                }
            },
        )?;
        Ok(Notification {
            transaction,
            attested_inputs,
            height: n.height,
        })
    }
}

by_value!(Notification => v1::TxNotification);

/// A rejection in core form: which transaction, why, and at what height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The rejected transaction.
    pub tx_id: TxId,
    /// Why (never `Unspecified`).
    pub reason: v1::RejectReason,
    /// The input at fault (position in the compact transaction's inputs), when known.
    pub input_index: Option<u32>,
    /// The block height at which it was refused.
    pub height: u64,
    /// Human-readable detail.
    pub message: String,
    /// The UHS id of the input at fault, when a shard reports it missing.
    pub input_uhs_id: Option<UhsId>,
}

impl From<&Rejection> for v1::TxRejection {
    fn from(r: &Rejection) -> Self {
        v1::TxRejection {
            tx_id: r.tx_id.as_bytes().to_vec().into(),
            reason: r.reason.into(),
            input_index: r.input_index,
            height: r.height,
            message: r.message.clone(),
            input_uhs_id: r
                .input_uhs_id
                .map(|id| id.as_bytes().to_vec().into())
                .unwrap_or_default(),
        }
    }
}

impl TryFrom<&v1::TxRejection> for Rejection {
    type Error = ProtoError;
    fn try_from(r: &v1::TxRejection) -> Result<Self> {
        Ok(Rejection {
            tx_id: tx_id("tx_rejection.tx_id", &r.tx_id)?,
            reason: crate::status::reject_reason("tx_rejection.reason", r.reason)?,
            input_index: r.input_index,
            height: r.height,
            message: r.message.clone(),
            input_uhs_id: if r.input_uhs_id.is_empty() {
                None
            } else {
                Some(uhs_id("tx_rejection.input_uhs_id", &r.input_uhs_id)?)
            },
        })
    }
}

/// A block in core form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Its height (contiguous from 1).
    pub height: u64,
    /// Confirmed transactions, in order.
    pub transactions: Vec<CompactTransaction>,
    /// Rejections decided while the block was built.
    pub rejections: Vec<Rejection>,
}

impl From<&Block> for v1::Block {
    fn from(b: &Block) -> Self {
        v1::Block {
            height: b.height,
            transactions: compact_transactions_to_wire(&b.transactions),
            rejections: b.rejections.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<&v1::Block> for Block {
    type Error = ProtoError;
    fn try_from(b: &v1::Block) -> Result<Self> {
        Ok(Block {
            height: b.height,
            transactions: compact_transactions("block.transactions", &b.transactions)?,
            rejections: list(
                "block.rejections",
                &b.rejections,
                MAX_BATCH_TRANSACTIONS,
                |r| r.try_into(),
            )?,
        })
    }
}

by_value!(Rejection => v1::TxRejection, Block => v1::Block);
