//! Property tests: canonical encodings round-trip, every transaction the signers build
//! validates, no single-byte change of a signed transaction leaves it valid, and ids match
//! the formulas in DESIGN.md computed here independently.

use cbdc_core::keys::Signature;
use cbdc_core::{
    p2pk_output, sign_mint, sign_transfer, Amount, Attestation, CompactTransaction, Decode, Encode,
    Hash, Input, Limits, OutPoint, Output, PublicKey, SecretKey, Transaction, TxId, UhsId,
    Validator, Witness, WitnessProgram,
};
use proptest::collection::vec;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

proptest! {
    #[test]
    fn test_encoding_transaction_round_trips(tx in arb_transaction()) {
        let bytes = tx.encode();
        prop_assert_eq!(Transaction::decode(&bytes), Ok(tx.clone()));
        // tx_id covers exactly the encoding minus the witness list.
        let witness_bytes: usize = 4 + tx.witnesses.iter().map(|w| w.encode().len()).sum::<usize>();
        let body = &bytes[..bytes.len() - witness_bytes];
        prop_assert_eq!(tx.tx_id(), TxId(Hash(Sha256::digest(body).into())));
    }

    #[test]
    fn test_encoding_compact_transaction_round_trips(tx in arb_compact()) {
        let bytes = tx.encode();
        prop_assert_eq!(CompactTransaction::decode(&bytes), Ok(tx));
    }

    #[test]
    fn test_serde_carries_a_compact_transaction_as_its_encoding(tx in arb_compact()) {
        // bincode: a u64 length, then exactly the canonical encoding.
        let bytes = bincode::serialize(&tx).unwrap();
        prop_assert_eq!(&bytes[8..], &tx.encode()[..]);
        prop_assert_eq!(bincode::deserialize::<CompactTransaction>(&bytes).unwrap(), tx.clone());
        // A format without byte strings (JSON) reads it back as well.
        let json = serde_json::to_string(&tx).unwrap();
        prop_assert_eq!(serde_json::from_str::<CompactTransaction>(&json).unwrap(), tx);
    }

    #[test]
    fn test_encoding_attestation_round_trips(a in arb_attestation()) {
        let bytes = a.encode();
        prop_assert_eq!(bytes.len(), 32 + 32 + 64 + 4 + 4 + 32 * a.path.len());
        prop_assert_eq!(Attestation::decode(&bytes), Ok(a));
    }

    #[test]
    fn test_sign_transfer_always_validates(spec in arb_transfer_spec()) {
        let tx = spec.build();
        prop_assert_eq!(validator(None).validate(&tx), Ok(()));
        prop_assert_eq!(validator(None).validate_many(std::slice::from_ref(&tx)), vec![Ok(())]);
    }

    #[test]
    fn test_sign_mint_always_validates(spec in arb_mint_spec()) {
        let (issuer, tx) = spec.build();
        prop_assert_eq!(validator(Some(issuer.public_key())).validate(&tx), Ok(()));
    }

    #[test]
    fn test_flipping_any_byte_invalidates_transfer(
        spec in arb_transfer_spec(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let tx = spec.build();
        let mut bytes = tx.encode();
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        prop_assert!(!still_valid(&bytes, &validator(None)), "byte {} ^ {:#04x} left it valid", i, mask);
    }

    #[test]
    fn test_flipping_any_byte_invalidates_mint(
        spec in arb_mint_spec(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (issuer, tx) = spec.build();
        let mut bytes = tx.encode();
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        let v = validator(Some(issuer.public_key()));
        prop_assert!(!still_valid(&bytes, &v), "byte {} ^ {:#04x} left it valid", i, mask);
    }

    #[test]
    fn test_ids_match_design_formulas(spec in arb_transfer_spec()) {
        let tx = spec.build();
        prop_assert_eq!(tx.tx_id(), independent_tx_id(&tx));
        let compact = tx.compact();
        prop_assert_eq!(compact.id, independent_tx_id(&tx));
        for (input, uhs) in tx.inputs.iter().zip(&compact.inputs) {
            let want = independent_uhs_id(&input.outpoint.tx_id, input.outpoint.index, &input.spent);
            prop_assert_eq!(input.uhs_id(), want);
            prop_assert_eq!(*uhs, want);
        }
        for (i, (output, (uhs, value))) in tx.outputs.iter().zip(&compact.outputs).enumerate() {
            let want = independent_uhs_id(&tx.tx_id(), i as u32, output);
            prop_assert_eq!(output.uhs_id(&tx.outpoint(i as u32)), want);
            prop_assert_eq!(*uhs, want);
            prop_assert_eq!(*value, output.value);
        }
        for w in &tx.witnesses {
            if let WitnessProgram::P2pk(key) = &w.program {
                let mut h = Sha256::new();
                h.update([0x00]);
                h.update(key.0);
                prop_assert_eq!(w.program.commitment(), Hash(h.finalize().into()));
            }
        }
        prop_assert_eq!(compact.hash(), independent_compact_hash(&compact));
    }
}

#[test]
fn test_flipping_every_byte_invalidates_fixed_transactions() {
    // Exhaustive over positions for one transfer (2-in/2-out, one key locking both inputs
    // so the shared-signature path is covered) and one mint.
    let a = SecretKey::from_bytes(&[1; 32]);
    let b = SecretKey::from_bytes(&[2; 32]);
    let issuer = SecretKey::from_bytes(&[3; 32]);
    let spend = |n: u8, cents| Input {
        outpoint: OutPoint {
            tx_id: TxId::from([n; 32]),
            index: u32::from(n),
        },
        spent: p2pk_output(&a, cents),
    };
    let transfer = sign_transfer(
        &[(spend(1, 30), &a), (spend(2, 12), &a)],
        vec![p2pk_output(&b, 40), p2pk_output(&a, 2)],
    );
    let mint = sign_mint(&issuer, vec![p2pk_output(&b, 500)], Hash([9; 32]));
    let v = validator(Some(issuer.public_key()));
    for tx in [transfer, mint] {
        assert_eq!(v.validate(&tx), Ok(()));
        let bytes = tx.encode();
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut flipped = bytes.clone();
                flipped[i] ^= mask;
                assert!(
                    !still_valid(&flipped, &v),
                    "byte {i} ^ {mask:#04x} left it valid"
                );
            }
        }
    }
}

#[test]
fn test_ids_match_design_formulas_fixed_vector() {
    // A hand-written encoding of a 1-in/1-out transfer, hashed here byte by byte.
    let owner = SecretKey::from_bytes(&[4; 32]);
    let input = Input {
        outpoint: OutPoint {
            tx_id: TxId::from([0xAB; 32]),
            index: 0x0102_0304,
        },
        spent: p2pk_output(&owner, 0x1122_3344_5566_7788),
    };
    let tx = sign_transfer(
        &[(input, &owner)],
        vec![p2pk_output(&owner, 0x1122_3344_5566_7788)],
    );
    let mut body = Vec::new();
    body.extend_from_slice(&[1, 0, 0, 0]);
    body.extend_from_slice(&[0xAB; 32]);
    body.extend_from_slice(&[4, 3, 2, 1]);
    body.extend_from_slice(input.spent.commitment.as_bytes());
    body.extend_from_slice(&[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    body.extend_from_slice(&[1, 0, 0, 0]);
    body.extend_from_slice(tx.outputs[0].commitment.as_bytes());
    body.extend_from_slice(&[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    body.extend_from_slice(&[0; 32]);
    assert_eq!(tx.tx_id(), TxId(Hash(Sha256::digest(&body).into())));
    assert!(tx.encode().starts_with(&body));
}

// ---- helpers and strategies ----

/// Whether `bytes` still decode to a transaction that passes validation.
fn still_valid(bytes: &[u8], v: &Validator) -> bool {
    match Transaction::decode(bytes) {
        Ok(tx) => v.validate(&tx).is_ok(),
        Err(_) => false,
    }
}

fn validator(issuer: Option<PublicKey>) -> Validator {
    Validator::new(Limits::default(), issuer)
}

fn independent_tx_id(tx: &Transaction) -> TxId {
    let mut h = Sha256::new();
    h.update((tx.inputs.len() as u32).to_le_bytes());
    for input in &tx.inputs {
        h.update(input.outpoint.tx_id.as_bytes());
        h.update(input.outpoint.index.to_le_bytes());
        h.update(input.spent.commitment.as_bytes());
        h.update(input.spent.value.cents().to_le_bytes());
    }
    h.update((tx.outputs.len() as u32).to_le_bytes());
    for output in &tx.outputs {
        h.update(output.commitment.as_bytes());
        h.update(output.value.cents().to_le_bytes());
    }
    h.update(tx.nonce.as_bytes());
    TxId(Hash(h.finalize().into()))
}

fn independent_uhs_id(tx_id: &TxId, index: u32, output: &Output) -> UhsId {
    let mut h = Sha256::new();
    h.update(tx_id.as_bytes());
    h.update(index.to_le_bytes());
    h.update(output.commitment.as_bytes());
    h.update(output.value.cents().to_le_bytes());
    UhsId(Hash(h.finalize().into()))
}

fn independent_compact_hash(c: &CompactTransaction) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(c.id.as_bytes());
    h.update((c.inputs.len() as u32).to_le_bytes());
    for id in &c.inputs {
        h.update(id.as_bytes());
    }
    h.update((c.outputs.len() as u32).to_le_bytes());
    for (id, value) in &c.outputs {
        h.update(id.as_bytes());
        h.update(value.cents().to_le_bytes());
    }
    Hash(h.finalize().into())
}

fn arb_hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn arb_signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, s)| {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(&s);
        Signature(sig)
    })
}

fn arb_output() -> impl Strategy<Value = Output> {
    (arb_hash(), any::<u64>()).prop_map(|(commitment, v)| Output {
        commitment,
        value: Amount::from_cents(v),
    })
}

fn arb_input() -> impl Strategy<Value = Input> {
    (arb_hash(), any::<u32>(), arb_output()).prop_map(|(id, index, spent)| Input {
        outpoint: OutPoint {
            tx_id: TxId(id),
            index,
        },
        spent,
    })
}

fn arb_program() -> impl Strategy<Value = WitnessProgram> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|k| WitnessProgram::P2pk(PublicKey(k))),
        // Version 0 is P2PK; any other version decodes as Unknown.
        (1u8..=255, vec(any::<u8>(), 0..80))
            .prop_map(|(version, program)| WitnessProgram::Unknown { version, program }),
    ]
}

fn arb_witness() -> impl Strategy<Value = Witness> {
    (arb_program(), arb_signature()).prop_map(|(program, signature)| Witness { program, signature })
}

fn arb_transaction() -> impl Strategy<Value = Transaction> {
    (
        vec(arb_input(), 0..6),
        vec(arb_output(), 0..6),
        arb_hash(),
        vec(arb_witness(), 0..6),
    )
        .prop_map(|(inputs, outputs, nonce, witnesses)| Transaction {
            inputs,
            outputs,
            nonce,
            witnesses,
        })
}

fn arb_attestation() -> impl Strategy<Value = Attestation> {
    (
        any::<[u8; 32]>(),
        arb_hash(),
        arb_signature(),
        any::<u32>(),
        vec(arb_hash(), 0..=32),
    )
        .prop_map(
            |(sentinel, root, signature, leaf_index, path)| Attestation {
                sentinel: PublicKey(sentinel),
                root,
                signature,
                leaf_index,
                path,
            },
        )
}

fn arb_compact() -> impl Strategy<Value = CompactTransaction> {
    (
        arb_hash(),
        vec(arb_hash(), 0..6),
        vec((arb_hash(), any::<u64>()), 0..6),
        vec(arb_attestation(), 0..4),
    )
        .prop_map(|(id, inputs, outputs, attestations)| CompactTransaction {
            id: TxId(id),
            inputs: inputs.into_iter().map(UhsId).collect(),
            outputs: outputs
                .into_iter()
                .map(|(h, v)| (UhsId(h), Amount::from_cents(v)))
                .collect(),
            attestations,
        })
}

/// A balanced transfer: `atoms` of value are grouped once into inputs and once into
/// outputs, so both sides sum to the same total with no zero values. Inputs are locked
/// to keys drawn from `seeds` (so one key may lock several inputs).
#[derive(Debug, Clone)]
struct TransferSpec {
    seeds: Vec<[u8; 32]>,
    atoms: Vec<u64>,
    input_breaks: Vec<bool>,
    output_breaks: Vec<bool>,
    prev: Vec<[u8; 32]>,
    recipient: [u8; 32],
}

impl TransferSpec {
    fn build(&self) -> Transaction {
        let keys: Vec<_> = self.seeds.iter().map(SecretKey::from_bytes).collect();
        let recipient = SecretKey::from_bytes(&self.recipient);
        let spends: Vec<(Input, &SecretKey)> = group(&self.atoms, &self.input_breaks)
            .into_iter()
            .enumerate()
            .map(|(i, cents)| {
                let key = &keys[i % keys.len()];
                let input = Input {
                    outpoint: OutPoint {
                        tx_id: TxId::from(self.prev[i % self.prev.len()]),
                        index: i as u32,
                    },
                    spent: p2pk_output(key, cents),
                };
                (input, key)
            })
            .collect();
        let outputs = group(&self.atoms, &self.output_breaks)
            .into_iter()
            .map(|cents| p2pk_output(&recipient, cents))
            .collect();
        sign_transfer(&spends, outputs)
    }
}

/// Sums consecutive runs of `atoms`, starting a new run after atom `i` when `breaks[i]`.
fn group(atoms: &[u64], breaks: &[bool]) -> Vec<u64> {
    let mut out = vec![0u64];
    for (i, atom) in atoms.iter().enumerate() {
        if let Some(last) = out.last_mut() {
            *last += atom;
        }
        if breaks.get(i).copied().unwrap_or(false) && i + 1 < atoms.len() {
            out.push(0);
        }
    }
    out
}

fn arb_transfer_spec() -> impl Strategy<Value = TransferSpec> {
    (1usize..=8).prop_flat_map(|n| {
        (
            vec(any::<[u8; 32]>(), 1..4),
            vec(1u64..=1_000_000_000_000, n),
            vec(any::<bool>(), n),
            vec(any::<bool>(), n),
            vec(any::<[u8; 32]>(), 1..3),
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(seeds, atoms, input_breaks, output_breaks, prev, recipient)| TransferSpec {
                    seeds,
                    atoms,
                    input_breaks,
                    output_breaks,
                    prev,
                    recipient,
                },
            )
    })
}

#[derive(Debug, Clone)]
struct MintSpec {
    issuer: [u8; 32],
    values: Vec<u64>,
    nonce: [u8; 32],
}

impl MintSpec {
    fn build(&self) -> (SecretKey, Transaction) {
        let issuer = SecretKey::from_bytes(&self.issuer);
        let outputs = self
            .values
            .iter()
            .map(|v| p2pk_output(&issuer, *v))
            .collect();
        let tx = sign_mint(&issuer, outputs, Hash(self.nonce));
        (issuer, tx)
    }
}

fn arb_mint_spec() -> impl Strategy<Value = MintSpec> {
    (
        any::<[u8; 32]>(),
        vec(1u64..=u64::MAX / 8, 1..5),
        any::<[u8; 32]>().prop_filter("a mint's nonce is not all zero", |n| n != &[0; 32]),
    )
        .prop_map(|(issuer, values, nonce)| MintSpec {
            issuer,
            values,
            nonce,
        })
}
