//! The transaction model: outputs locked to witness-program commitments, inputs that carry
//! the data of the output they spend, and the compact form the back ends settle.
//!
//! Canonical layouts (see [`crate::encoding`] for the general rules):
//!
//! | type | bytes |
//! |---|---|
//! | `OutPoint` | `tx_id[32] ‖ index u32` (36) |
//! | `Output` | `commitment[32] ‖ value u64` (40) |
//! | `Input` | `OutPoint ‖ Output` (76) |
//! | `WitnessProgram` | `version u8 ‖ u32 len ‖ program[len]` (P2PK: version 0, len 32) |
//! | `Witness` | `WitnessProgram ‖ signature[64]` |
//! | `Transaction` | `list<Input> ‖ list<Output> ‖ nonce[32] ‖ list<Witness>` |
//! | `CompactTransaction` | `id[32] ‖ list<UhsId> ‖ list<UhsId ‖ value u64> ‖ list<Attestation>` |
//!
//! `tx_id = SHA-256(list<Input> ‖ list<Output> ‖ nonce)`: witnesses are excluded, so every
//! witness can sign the id. A witness program's commitment is `SHA-256(version ‖ program)`,
//! which for P2PK is `SHA-256(0x00 ‖ pubkey)`.

use crate::amount::Amount;
use crate::attestation::Attestation;
use crate::encoding::{
    put_len, put_list, put_u32, put_u64, Decode, DecodeError, Encode, Reader, MAX_BYTES_LEN,
    MAX_LIST_ITEMS,
};
use crate::hash::{Hash, TxId, UhsId};
use crate::keys::{PublicKey, Signature};

/// Witness program version of pay-to-public-key.
pub const P2PK_VERSION: u8 = 0;
/// Most attestations a compact transaction may carry on the wire.
pub const MAX_ATTESTATIONS: usize = 16;

const INPUT_SIZE: usize = 76;
const OUTPUT_SIZE: usize = 40;
const MIN_WITNESS_SIZE: usize = 1 + 4 + 64;

/// A reference to an output of an earlier transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutPoint {
    /// The transaction that created the output.
    pub tx_id: TxId,
    /// Its position among that transaction's outputs.
    pub index: u32,
}

/// Value locked to a witness-program commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Output {
    /// `SHA-256(version ‖ program)` of the program that may spend it.
    pub commitment: Hash,
    /// How much it holds.
    pub value: Amount,
}

/// An output being spent, with the data of that output so that it can be validated
/// without state: its UHS id must exist for the spend to settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Input {
    /// Which output is spent.
    pub outpoint: OutPoint,
    /// The claimed content of that output.
    pub spent: Output,
}

/// The condition that unlocks an output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WitnessProgram {
    /// Pay to an ed25519 public key: the witness is a signature of the tx id by that key.
    P2pk(PublicKey),
    /// A version this software does not know. Kept so that it decodes and is refused by
    /// validation with a precise error rather than as garbage.
    Unknown {
        /// The version byte.
        version: u8,
        /// The program bytes.
        program: Vec<u8>,
    },
}

/// The unlocking data for one input: the program whose commitment the spent output holds,
/// and a signature of the transaction id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Witness {
    /// The program the spent output is locked to.
    pub program: WitnessProgram,
    /// Signature of the tx id.
    pub signature: Signature,
}

/// A full transaction as wallets build it and sentinels validate it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// Outputs spent.
    pub inputs: Vec<Input>,
    /// Outputs created.
    pub outputs: Vec<Output>,
    /// All zero in a transfer; unique (random) in a mint, so that two mints of the same
    /// outputs have distinct ids.
    pub nonce: Hash,
    /// One per input (one for a mint, by the issuer).
    pub witnesses: Vec<Witness>,
}

/// What the back ends settle: the tx id, the UHS ids spent and created, and the sentinel
/// attestations that vouch it passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactTransaction {
    /// The full transaction's id.
    pub id: TxId,
    /// UHS ids of the spent outputs.
    pub inputs: Vec<UhsId>,
    /// UHS ids and values of the created outputs.
    pub outputs: Vec<(UhsId, Amount)>,
    /// Sentinel attestations (not covered by [`CompactTransaction::hash`]).
    pub attestations: Vec<Attestation>,
}

impl Output {
    /// The UHS id this output gets when created at `outpoint`.
    pub fn uhs_id(&self, outpoint: &OutPoint) -> UhsId {
        UhsId(Hash::digest_parts(&[
            outpoint.tx_id.as_bytes(),
            &outpoint.index.to_le_bytes(),
            self.commitment.as_bytes(),
            &self.value.cents().to_le_bytes(),
        ]))
    }
}

impl Input {
    /// The UHS id of the output this input claims to spend.
    pub fn uhs_id(&self) -> UhsId {
        self.spent.uhs_id(&self.outpoint)
    }
}

impl WitnessProgram {
    /// `SHA-256(version ‖ program)`: what an output locked to this program stores.
    pub fn commitment(&self) -> Hash {
        match self {
            WitnessProgram::P2pk(key) => Hash::digest_parts(&[&[P2PK_VERSION], &key.0]),
            WitnessProgram::Unknown { version, program } => {
                Hash::digest_parts(&[&[*version], program])
            }
        }
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        match self {
            WitnessProgram::P2pk(_) => P2PK_VERSION,
            WitnessProgram::Unknown { version, .. } => *version,
        }
    }

    /// The program bytes.
    pub fn program_bytes(&self) -> &[u8] {
        match self {
            WitnessProgram::P2pk(key) => &key.0,
            WitnessProgram::Unknown { program, .. } => program,
        }
    }

    /// Builds a program from its version and bytes (as decoded from the wire).
    pub fn from_parts(version: u8, program: &[u8]) -> Result<Self, DecodeError> {
        if version == P2PK_VERSION {
            let key: [u8; 32] = program.try_into().map_err(|_| DecodeError::Invalid {
                what: "p2pk program",
                detail: format!("{} bytes, expected 32", program.len()),
            })?;
            Ok(WitnessProgram::P2pk(PublicKey(key)))
        } else {
            Ok(WitnessProgram::Unknown {
                version,
                program: program.to_vec(),
            })
        }
    }
}

impl Transaction {
    /// A mint transaction has no inputs; everything else is a transfer.
    pub fn is_mint(&self) -> bool {
        self.inputs.is_empty()
    }

    /// `SHA-256(list<Input> ‖ list<Output> ‖ nonce)`.
    pub fn tx_id(&self) -> TxId {
        let mut body = Vec::with_capacity(
            8 + self.inputs.len() * INPUT_SIZE + self.outputs.len() * OUTPUT_SIZE + 32,
        );
        self.encode_body(&mut body);
        TxId(Hash::digest_parts(&[&body]))
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        put_list(out, &self.inputs);
        put_list(out, &self.outputs);
        out.extend_from_slice(&self.nonce.0);
    }

    /// The outpoint of output `index` of this transaction.
    pub fn outpoint(&self, index: u32) -> OutPoint {
        OutPoint {
            tx_id: self.tx_id(),
            index,
        }
    }

    /// The compact form, without attestations.
    pub fn compact(&self) -> CompactTransaction {
        self.compact_with_id(self.tx_id())
    }

    /// The compact form of this transaction, whose id is `id`.
    fn compact_with_id(&self, id: TxId) -> CompactTransaction {
        CompactTransaction {
            id,
            inputs: self.inputs.iter().map(Input::uhs_id).collect(),
            outputs: self
                .outputs
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let outpoint = OutPoint {
                        tx_id: id,
                        index: i as u32,
                    };
                    (o.uhs_id(&outpoint), o.value)
                })
                .collect(),
            attestations: Vec::new(),
        }
    }
}

/// A transaction with its id, hashed once. A sentinel needs the id at every step
/// (deduplication, validation, the compact form, the answer), and hashing the body each
/// time cost about 1 % of a cluster's CPU. The fields are private so that the id always
/// is the transaction's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifiedTransaction {
    id: TxId,
    tx: Transaction,
}

impl IdentifiedTransaction {
    /// Hashes `tx`'s id.
    pub fn new(tx: Transaction) -> Self {
        IdentifiedTransaction { id: tx.tx_id(), tx }
    }

    /// The compact form, without attestations.
    pub fn compact(&self) -> CompactTransaction {
        self.tx.compact_with_id(self.id)
    }
}

/// A transaction and its id: hashed on demand from a [`Transaction`], stored in an
/// [`IdentifiedTransaction`]. Lets batch validation take either.
pub trait HasTxId {
    /// The transaction.
    fn transaction(&self) -> &Transaction;
    /// Its id.
    fn id(&self) -> TxId;
}

impl HasTxId for Transaction {
    fn transaction(&self) -> &Transaction {
        self
    }

    fn id(&self) -> TxId {
        self.tx_id()
    }
}

impl HasTxId for IdentifiedTransaction {
    fn transaction(&self) -> &Transaction {
        &self.tx
    }

    fn id(&self) -> TxId {
        self.id
    }
}

impl From<Transaction> for IdentifiedTransaction {
    fn from(tx: Transaction) -> Self {
        IdentifiedTransaction::new(tx)
    }
}

impl CompactTransaction {
    /// The hash a sentinel attests: `SHA-256(0x00 ‖ id ‖ list<UhsId> ‖ list<UhsId ‖ value>)`.
    /// The leading 0x00 separates leaves from inner Merkle nodes; attestations are not
    /// covered, since they are added after the hash is taken.
    pub fn hash(&self) -> Hash {
        let mut body = Vec::with_capacity(
            1 + 32 + 8 + self.inputs.len() * 32 + self.outputs.len() * OUTPUT_SIZE,
        );
        body.push(0x00);
        self.encode_body(&mut body);
        Hash::digest_parts(&[&body])
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.id.as_bytes());
        put_len(out, self.inputs.len());
        for input in &self.inputs {
            out.extend_from_slice(input.as_bytes());
        }
        put_len(out, self.outputs.len());
        for (id, value) in &self.outputs {
            out.extend_from_slice(id.as_bytes());
            put_u64(out, value.cents());
        }
    }

    /// Whether this settles a mint (creates money without spending any).
    pub fn is_mint(&self) -> bool {
        self.inputs.is_empty()
    }
}

impl Encode for OutPoint {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.tx_id.as_bytes());
        put_u32(out, self.index);
    }
}

impl Decode for OutPoint {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OutPoint {
            tx_id: TxId(r.hash("outpoint tx id")?),
            index: r.u32("outpoint index")?,
        })
    }
}

impl Encode for Output {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.commitment.as_bytes());
        put_u64(out, self.value.cents());
    }
}

impl Decode for Output {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Output {
            commitment: r.hash("output commitment")?,
            value: Amount::from_cents(r.u64("output value")?),
        })
    }
}

impl Encode for Input {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.outpoint.encode_to(out);
        self.spent.encode_to(out);
    }
}

impl Decode for Input {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Input {
            outpoint: OutPoint::decode_from(r)?,
            spent: Output::decode_from(r)?,
        })
    }
}

impl Encode for WitnessProgram {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(self.version());
        let bytes = self.program_bytes();
        put_len(out, bytes.len());
        out.extend_from_slice(bytes);
    }
}

impl Decode for WitnessProgram {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("witness program version")?;
        let program = r.bytes("witness program", MAX_BYTES_LEN)?;
        WitnessProgram::from_parts(version, program)
    }
}

impl Encode for Witness {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.program.encode_to(out);
        out.extend_from_slice(&self.signature.0);
    }
}

impl Decode for Witness {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Witness {
            program: WitnessProgram::decode_from(r)?,
            signature: Signature(r.array("signature")?),
        })
    }
}

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_body(out);
        put_list(out, &self.witnesses);
    }
}

impl Decode for Transaction {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Transaction {
            inputs: r.list("inputs", MAX_LIST_ITEMS, INPUT_SIZE)?,
            outputs: r.list("outputs", MAX_LIST_ITEMS, OUTPUT_SIZE)?,
            nonce: r.hash("nonce")?,
            witnesses: r.list("witnesses", MAX_LIST_ITEMS, MIN_WITNESS_SIZE)?,
        })
    }
}

impl CompactTransaction {
    /// Length of the canonical encoding (see [`Encode::encode`] below).
    pub fn encoded_len(&self) -> usize {
        MIN_COMPACT_TX_SIZE
            + self.inputs.len() * 32
            + self.outputs.len() * OUTPUT_SIZE
            + self
                .attestations
                .iter()
                .map(Attestation::encoded_len)
                .sum::<usize>()
    }
}

impl Encode for CompactTransaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_body(out);
        put_list(out, &self.attestations);
    }

    /// Sized once: an attested transaction takes about 600 bytes, which a buffer growing
    /// from empty reaches after eight copies. Raft commands carry every transaction this
    /// way (see the `serde` impls below).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out
    }
}

impl Decode for CompactTransaction {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = TxId(r.hash("compact id")?);
        let inputs = (0..r.len("compact inputs", MAX_LIST_ITEMS, 32)?)
            .map(|_| r.hash("compact input").map(UhsId))
            .collect::<Result<_, _>>()?;
        let outputs = (0..r.len("compact outputs", MAX_LIST_ITEMS, OUTPUT_SIZE)?)
            .map(|_| {
                Ok((
                    UhsId(r.hash("compact output id")?),
                    Amount::from_cents(r.u64("compact output value")?),
                ))
            })
            .collect::<Result<_, DecodeError>>()?;
        let attestations = r.list(
            "attestations",
            MAX_ATTESTATIONS,
            crate::attestation::MIN_ATTESTATION_SIZE,
        )?;
        Ok(CompactTransaction {
            id,
            inputs,
            outputs,
            attestations,
        })
    }
}

/// Smallest canonical compact transaction: its id and three empty list counts.
const MIN_COMPACT_TX_SIZE: usize = 32 + 4 + 4 + 4;

/// Encodes a batch of compact transactions as `u32 count ‖ count × CompactTransaction`:
/// how cbdc's roles pass batches to each other (`encoded_transactions` in
/// `cbdc.v1.ExecuteBatchRequest` and `LockRequest`) and how a coordinator records a dtx.
/// One buffer for the whole batch, where the protobuf form takes a message and a buffer
/// per hash (`cbdc bench` profiles put that at about a tenth of all CPU time).
pub fn encode_compact_batch<'a, I>(txs: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a CompactTransaction>,
    I::IntoIter: ExactSizeIterator,
{
    let txs = txs.into_iter();
    // An attested 2-in/2-out transaction takes about 600 bytes.
    let mut out = Vec::with_capacity(4 + txs.len() * 640);
    put_len(&mut out, txs.len());
    for tx in txs {
        tx.encode_to(&mut out);
    }
    out
}

/// Decodes [`encode_compact_batch`] strictly (trailing bytes are an error), refusing a
/// count above `max`.
pub fn decode_compact_batch(
    bytes: &[u8],
    max: usize,
) -> Result<Vec<CompactTransaction>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let txs = reader.list("compact transactions", max, MIN_COMPACT_TX_SIZE)?;
    reader.finish()?;
    Ok(txs)
}

/// Serde (for Raft commands and other internal records) carries a compact transaction as
/// its canonical encoding, so that there is one byte format and decoding stays strict.
impl serde::Serialize for CompactTransaction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.encode())
    }
}

/// Decodes straight from the byte string (bincode lends it without a copy); a format
/// without byte strings may give a sequence of bytes instead.
impl<'de> serde::Deserialize<'de> for CompactTransaction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Canonical;
        impl<'de> serde::de::Visitor<'de> for Canonical {
            type Value = CompactTransaction;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a canonically encoded compact transaction")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                CompactTransaction::decode(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    bytes.push(b);
                }
                self.visit_bytes(&bytes)
            }
        }
        deserializer.deserialize_bytes(Canonical)
    }
}
