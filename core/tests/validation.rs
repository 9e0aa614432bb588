//! One test per stateless validation rule and case. Each test builds a valid, correctly
//! signed transaction with the helpers at the bottom of the file, breaks exactly one
//! thing, and asserts the exact error with its index.

use cbdc_core::keys::Signature;
use cbdc_core::{
    p2pk_output, sign_mint, sign_transfer, Amount, HasTxId, Hash, IdentifiedTransaction, Input,
    Limits, OutPoint, Output, PublicKey, SecretKey, Transaction, TxId, ValidationError, Validator,
    Witness, WitnessProgram,
};

#[test]
fn test_validate_valid_transfer_accepted() {
    let (a, b) = (key(1), key(2));
    let tx = transfer(&[(1, &a, 70), (2, &b, 30)], &[(&b, 60), (&a, 40)]);
    assert_eq!(validator().validate(&tx), Ok(()));
}

#[test]
fn test_validate_no_inputs_transfer() {
    // No inputs and a zero nonce: a transfer that forgot its inputs, not a mint.
    let a = key(1);
    let tx = sign(
        Transaction {
            inputs: vec![],
            outputs: vec![p2pk_output(&a, 10)],
            nonce: Hash::ZERO,
            witnesses: vec![],
        },
        &[&a],
    );
    assert_eq!(validator().validate(&tx), Err(ValidationError::NoInputs));
}

#[test]
fn test_validate_no_outputs_transfer() {
    let a = key(1);
    let tx = transfer(&[(1, &a, 10)], &[]);
    assert_eq!(validator().validate(&tx), Err(ValidationError::NoOutputs));
}

#[test]
fn test_validate_no_outputs_mint() {
    let tx = sign_mint(&issuer(), vec![], nonce(1));
    assert_eq!(validator().validate(&tx), Err(ValidationError::NoOutputs));
}

#[test]
fn test_validate_transfer_nonce_nonzero() {
    let a = key(1);
    let mut tx = transfer(&[(1, &a, 10)], &[(&a, 10)]);
    tx.nonce = nonce(7);
    let tx = sign(tx, &[&a]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::TransferNonce)
    );
}

#[test]
fn test_validate_too_many_inputs() {
    let a = key(1);
    let limits = Limits {
        max_inputs: 2,
        max_outputs: 2,
    };
    let at_limit = transfer(&[(1, &a, 1), (2, &a, 1)], &[(&a, 2)]);
    assert_eq!(validator_with(limits).validate(&at_limit), Ok(()));
    let tx = transfer(&[(1, &a, 1), (2, &a, 1), (3, &a, 1)], &[(&a, 3)]);
    assert_eq!(
        validator_with(limits).validate(&tx),
        Err(ValidationError::TooManyInputs { count: 3, max: 2 })
    );
}

#[test]
fn test_validate_too_many_outputs() {
    let a = key(1);
    let limits = Limits {
        max_inputs: 2,
        max_outputs: 2,
    };
    let at_limit = transfer(&[(1, &a, 2)], &[(&a, 1), (&a, 1)]);
    assert_eq!(validator_with(limits).validate(&at_limit), Ok(()));
    let tx = transfer(&[(1, &a, 3)], &[(&a, 1), (&a, 1), (&a, 1)]);
    assert_eq!(
        validator_with(limits).validate(&tx),
        Err(ValidationError::TooManyOutputs { count: 3, max: 2 })
    );
}

#[test]
fn test_validate_too_many_outputs_mint() {
    let limits = Limits {
        max_inputs: 2,
        max_outputs: 2,
    };
    let a = key(1);
    let tx = sign_mint(&issuer(), outputs(&[(&a, 1), (&a, 1), (&a, 1)]), nonce(1));
    assert_eq!(
        validator_with(limits).validate(&tx),
        Err(ValidationError::TooManyOutputs { count: 3, max: 2 })
    );
}

#[test]
fn test_validate_witness_count_transfer_too_few() {
    let (a, b) = (key(1), key(2));
    let mut tx = transfer(&[(1, &a, 5), (2, &b, 5)], &[(&a, 10)]);
    tx.witnesses.pop();
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::WitnessCount {
            expected: 2,
            witnesses: 1
        })
    );
}

#[test]
fn test_validate_witness_count_transfer_too_many() {
    let a = key(1);
    let mut tx = transfer(&[(1, &a, 5)], &[(&a, 5)]);
    let extra = tx.witnesses[0].clone();
    tx.witnesses.push(extra);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::WitnessCount {
            expected: 1,
            witnesses: 2
        })
    );
}

#[test]
fn test_validate_witness_count_mint_none() {
    let mut tx = sign_mint(&issuer(), outputs(&[(&key(1), 5)]), nonce(1));
    tx.witnesses.clear();
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::WitnessCount {
            expected: 1,
            witnesses: 0
        })
    );
}

#[test]
fn test_validate_witness_count_mint_two() {
    let mut tx = sign_mint(&issuer(), outputs(&[(&key(1), 5)]), nonce(1));
    let extra = tx.witnesses[0].clone();
    tx.witnesses.push(extra);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::WitnessCount {
            expected: 1,
            witnesses: 2
        })
    );
}

#[test]
fn test_validate_duplicate_input_same_data() {
    let a = key(1);
    let tx = transfer(&[(1, &a, 5), (2, &a, 5), (1, &a, 5)], &[(&a, 15)]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::DuplicateInput { input: 2, first: 0 })
    );
}

#[test]
fn test_validate_duplicate_input_different_claimed_data() {
    // Same outpoint, but the inputs claim different spent outputs (other owner, other
    // value): still the same coin, judged on the outpoint alone.
    let (a, b) = (key(1), key(2));
    let tx = transfer(&[(1, &a, 100), (1, &b, 50)], &[(&a, 150)]);
    assert_ne!(tx.inputs[0].spent, tx.inputs[1].spent);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::DuplicateInput { input: 1, first: 0 })
    );
}

#[test]
fn test_validate_same_tx_different_index_is_not_duplicate() {
    let a = key(1);
    let tx = transfer_at(
        &[(outpoint(1, 0), &a, 5), (outpoint(1, 1), &a, 5)],
        &[(&a, 10)],
    );
    assert_eq!(validator().validate(&tx), Ok(()));
}

#[test]
fn test_validate_zero_value_input() {
    // Balanced (0 + 10 = 10), correctly signed: only the zero input is wrong.
    let (a, b) = (key(1), key(2));
    let tx = transfer(&[(1, &a, 10), (2, &b, 0)], &[(&a, 10)]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::ZeroValueInput { input: 1 })
    );
}

#[test]
fn test_validate_zero_value_output() {
    let a = key(1);
    let tx = transfer(&[(1, &a, 10)], &[(&a, 10), (&a, 0)]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::ZeroValueOutput { output: 1 })
    );
}

#[test]
fn test_validate_zero_value_output_mint() {
    let a = key(1);
    let tx = sign_mint(&issuer(), outputs(&[(&a, 0)]), nonce(1));
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::ZeroValueOutput { output: 0 })
    );
}

#[test]
fn test_validate_input_overflow() {
    // u64::MAX + 2 wraps to 1, which would "balance" the single output of 1.
    let (a, b) = (key(1), key(2));
    let tx = transfer(&[(1, &a, u64::MAX), (2, &b, 2)], &[(&a, 1)]);
    assert_eq!(
        u64::MAX.wrapping_add(2),
        tx.outputs[0].value.cents(),
        "the wrapped input sum must equal the output sum for this test to mean anything"
    );
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InputOverflow { input: 1 })
    );
}

#[test]
fn test_validate_output_overflow() {
    // u64::MAX + 2 wraps to 1, which would "balance" the single input of 1.
    let a = key(1);
    let tx = transfer(&[(1, &a, 1)], &[(&a, u64::MAX), (&a, 2)]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::OutputOverflow { output: 1 })
    );
}

#[test]
fn test_validate_output_overflow_mint() {
    let a = key(1);
    let tx = sign_mint(&issuer(), outputs(&[(&a, u64::MAX), (&a, 1)]), nonce(1));
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::OutputOverflow { output: 1 })
    );
}

#[test]
fn test_validate_unbalanced_outputs_exceed_inputs() {
    let a = key(1);
    let tx = transfer(&[(1, &a, 10)], &[(&a, 11)]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::Unbalanced {
            inputs: Amount::from_cents(10),
            outputs: Amount::from_cents(11)
        })
    );
}

#[test]
fn test_validate_unbalanced_inputs_exceed_outputs() {
    let a = key(1);
    let tx = transfer(&[(1, &a, 10), (2, &a, 5)], &[(&a, 14)]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::Unbalanced {
            inputs: Amount::from_cents(15),
            outputs: Amount::from_cents(14)
        })
    );
}

#[test]
fn test_validate_unknown_witness_program() {
    // Input 1 is locked to a version-1 program whose commitment matches its witness:
    // only the version is unknown.
    let a = key(1);
    let unknown = WitnessProgram::Unknown {
        version: 1,
        program: vec![0xAB; 20],
    };
    let mut tx = transfer(&[(1, &a, 5), (2, &a, 5)], &[(&a, 10)]);
    tx.inputs[1].spent.commitment = unknown.commitment();
    let mut tx = sign(tx, &[&a, &a]);
    tx.witnesses[1].program = unknown;
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::UnknownWitnessProgram {
            witness: 1,
            version: 1
        })
    );
}

#[test]
fn test_validate_unknown_witness_program_mint() {
    let mut tx = sign_mint(&issuer(), outputs(&[(&key(1), 5)]), nonce(1));
    tx.witnesses[0].program = WitnessProgram::Unknown {
        version: 9,
        program: issuer().public_key().0.to_vec(),
    };
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::UnknownWitnessProgram {
            witness: 0,
            version: 9
        })
    );
}

#[test]
fn test_validate_program_mismatch() {
    // Input 1 is locked to b, but c signs for it (a valid signature by the wrong key).
    let (a, b, c) = (key(1), key(2), key(3));
    let tx = transfer(&[(1, &a, 5), (2, &b, 5)], &[(&a, 10)]);
    let tx = sign(tx, &[&a, &c]);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::ProgramMismatch { input: 1 })
    );
}

#[test]
fn test_validate_invalid_public_key_small_order() {
    // The spent output is locked to the identity point (small order), whose commitment
    // matches the witness. (R = identity, S = 0) satisfies the equation for it and any
    // message, so only the key check stands between it and a forgery.
    let a = key(1);
    let weak = small_order_key();
    let mut tx = transfer(&[(1, &a, 5), (2, &a, 5)], &[(&a, 10)]);
    tx.inputs[1].spent.commitment = WitnessProgram::P2pk(weak).commitment();
    let mut tx = sign(tx, &[&a, &a]);
    let mut forged = [0u8; 64];
    forged[0] = 1;
    tx.witnesses[1] = Witness {
        program: WitnessProgram::P2pk(weak),
        signature: Signature(forged),
    };
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidPublicKey { witness: 1 })
    );
    // The batch path names the same witness (the key is checked where it is decompressed
    // for the batch equation), also among valid transactions.
    let valid = sign(transfer(&[(3, &a, 5)], &[(&a, 5)]), &[&a]);
    assert_eq!(
        validator().validate_many(&[valid.clone(), tx, valid]),
        vec![
            Ok(()),
            Err(ValidationError::InvalidPublicKey { witness: 1 }),
            Ok(())
        ]
    );
}

#[test]
fn test_validate_invalid_public_key_not_a_point() {
    // y = 2 is not the y-coordinate of any curve point.
    let a = key(1);
    let mut bad = [0u8; 32];
    bad[0] = 2;
    let bad = PublicKey(bad);
    let mut tx = transfer(&[(1, &a, 5)], &[(&a, 5)]);
    tx.inputs[0].spent.commitment = WitnessProgram::P2pk(bad).commitment();
    let mut tx = sign(tx, &[&a]);
    tx.witnesses[0].program = WitnessProgram::P2pk(bad);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidPublicKey { witness: 0 })
    );
}

#[test]
fn test_validate_invalid_signature_wrong_message() {
    let (a, b) = (key(1), key(2));
    let mut tx = transfer(&[(1, &a, 5), (2, &b, 5)], &[(&a, 10)]);
    tx.witnesses[1].signature = b.sign(b"not the tx id");
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidSignature { witness: 1 })
    );
}

#[test]
fn test_validate_invalid_signature_flipped_bit() {
    let (a, b) = (key(1), key(2));
    let mut tx = transfer(&[(1, &a, 5), (2, &b, 5)], &[(&a, 10)]);
    tx.witnesses[0].signature.0[40] ^= 0x01;
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidSignature { witness: 0 })
    );
}

#[test]
fn test_validate_invalid_signature_non_canonical_s() {
    // S + ℓ satisfies the equation mod ℓ but is not canonical: refused (malleability).
    let a = key(1);
    let mut tx = transfer(&[(1, &a, 5)], &[(&a, 5)]);
    add_group_order_to_s(&mut tx.witnesses[0].signature);
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidSignature { witness: 0 })
    );
}

#[test]
fn test_validate_invalid_signature_mint() {
    let mut tx = sign_mint(&issuer(), outputs(&[(&key(1), 5)]), nonce(1));
    tx.witnesses[0].signature = issuer().sign(b"something else");
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidSignature { witness: 0 })
    );
}

#[test]
fn test_validate_mint_valid_accepted() {
    let (a, b) = (key(1), key(2));
    let tx = sign_mint(&issuer(), outputs(&[(&a, 1_000), (&b, 5)]), nonce(1));
    assert!(tx.is_mint());
    assert_eq!(validator().validate(&tx), Ok(()));
}

#[test]
fn test_validate_mint_by_non_issuer() {
    let tx = sign_mint(&key(5), outputs(&[(&key(1), 5)]), nonce(1));
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::UnauthorizedMint)
    );
}

#[test]
fn test_validate_mint_no_issuer_configured() {
    let tx = sign_mint(&issuer(), outputs(&[(&key(1), 5)]), nonce(1));
    let no_issuer = Validator::new(Limits::default(), None);
    assert_eq!(
        no_issuer.validate(&tx),
        Err(ValidationError::UnauthorizedMint)
    );
}

#[test]
fn test_validate_mint_small_order_issuer_configured() {
    // A misconfigured issuer key of small order must not make mints forgeable.
    let weak = small_order_key();
    let mut forged = [0u8; 64];
    forged[0] = 1;
    let tx = Transaction {
        inputs: vec![],
        outputs: outputs(&[(&key(1), 5)]),
        nonce: nonce(1),
        witnesses: vec![Witness {
            program: WitnessProgram::P2pk(weak),
            signature: Signature(forged),
        }],
    };
    let v = Validator::new(Limits::default(), Some(weak));
    assert_eq!(
        v.validate(&tx),
        Err(ValidationError::InvalidPublicKey { witness: 0 })
    );
}

#[test]
fn test_validate_key_locking_two_inputs_valid() {
    // One key locks inputs 0 and 2: both witnesses carry the same signature of the same
    // tx id, which is verified once and accepted.
    let (a, b) = (key(1), key(2));
    let tx = transfer(&[(1, &a, 5), (2, &b, 5), (3, &a, 5)], &[(&b, 15)]);
    assert_eq!(tx.witnesses[0], tx.witnesses[2]);
    assert_eq!(validator().validate(&tx), Ok(()));
    assert_eq!(validator().validate_many(&[tx]), vec![Ok(())]);
}

#[test]
fn test_validate_key_locking_two_inputs_second_signature_bad() {
    // Deduplication is on (key, signature): a different, bad signature by the same key on
    // the second input is still checked and named.
    let (a, b) = (key(1), key(2));
    let mut tx = transfer(&[(1, &a, 5), (2, &b, 5), (3, &a, 5)], &[(&b, 15)]);
    tx.witnesses[2].signature = a.sign(b"other");
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidSignature { witness: 2 })
    );
}

#[test]
fn test_validate_key_locking_two_inputs_shared_bad_signature() {
    // The same bad signature on both inputs of one key: checked once, blamed on the first.
    let (a, b) = (key(1), key(2));
    let mut tx = transfer(&[(1, &b, 5), (2, &a, 5), (3, &a, 5)], &[(&b, 15)]);
    let bad = a.sign(b"other");
    tx.witnesses[1].signature = bad;
    tx.witnesses[2].signature = bad;
    assert_eq!(
        validator().validate(&tx),
        Err(ValidationError::InvalidSignature { witness: 1 })
    );
}

#[test]
fn test_validate_many_matches_validate() {
    // 75 transactions (three rayon chunks of up to 32), valid and invalid mixed, so that
    // a failing batch in one chunk must not blame its neighbours.
    let (a, b, c) = (key(1), key(2), key(3));
    let mut txs = Vec::new();
    let mut expected = Vec::new();
    for i in 0..75u32 {
        let n = (i % 200) as u8 + 10;
        let mut tx = transfer_at(
            &[(outpoint(n, i), &a, 7), (outpoint(n, i + 1000), &b, 3)],
            &[(&c, 4), (&a, 6)],
        );
        let want = match i % 5 {
            0 | 3 => Ok(()),
            1 => {
                tx.witnesses[1].signature = b.sign(b"x");
                Err(ValidationError::InvalidSignature { witness: 1 })
            }
            2 => {
                tx.outputs[0].value = Amount::ZERO;
                Err(ValidationError::ZeroValueOutput { output: 0 })
            }
            _ => {
                tx.witnesses[0].signature.0[0] ^= 0x10;
                tx.witnesses[1].signature.0[33] ^= 0x01;
                Err(ValidationError::InvalidSignature { witness: 0 })
            }
        };
        txs.push(tx);
        expected.push(want);
    }
    txs.push(sign_mint(&issuer(), outputs(&[(&a, 9)]), nonce(3)));
    expected.push(Ok(()));
    txs.push(sign_mint(&key(9), outputs(&[(&a, 9)]), nonce(4)));
    expected.push(Err(ValidationError::UnauthorizedMint));

    let v = validator();
    let singles: Vec<_> = txs.iter().map(|tx| v.validate(tx)).collect();
    assert_eq!(singles, expected);
    assert_eq!(v.validate_many(&txs), expected);
    // With the ids hashed beforehand, as a sentinel holds them: the same verdicts, and
    // the same compact forms.
    let identified: Vec<IdentifiedTransaction> = txs.iter().cloned().map(Into::into).collect();
    assert_eq!(v.validate_many(&identified), expected);
    for (tx, known) in txs.iter().zip(&identified) {
        assert_eq!(known.id(), tx.tx_id());
        assert_eq!(known.compact(), tx.compact());
    }
    assert_eq!(v.validate_many::<Transaction>(&[]), vec![]);
}

// ---- builders ----

/// A deterministic key from a one-byte seed.
fn key(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[seed; 32])
}

/// The cluster's issuer in these tests.
fn issuer() -> SecretKey {
    key(0xEE)
}

/// A validator with default limits and [`issuer`].
fn validator() -> Validator {
    validator_with(Limits::default())
}

fn validator_with(limits: Limits) -> Validator {
    Validator::new(limits, Some(issuer().public_key()))
}

/// A non-zero mint nonce.
fn nonce(n: u8) -> Hash {
    Hash([n; 32])
}

/// Output `index` of a fake earlier transaction whose id is `[n; 32]`.
fn outpoint(n: u8, index: u32) -> OutPoint {
    OutPoint {
        tx_id: TxId::from([n; 32]),
        index,
    }
}

/// The identity point (y = 1): a small-order key.
fn small_order_key() -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[0] = 1;
    PublicKey(bytes)
}

fn outputs(outs: &[(&SecretKey, u64)]) -> Vec<Output> {
    outs.iter()
        .map(|(owner, cents)| p2pk_output(owner, *cents))
        .collect()
}

/// A signed transfer: input `i` spends output 0 of fake transaction `spends[i].0`, locked
/// to and signed by `spends[i].1`, worth `spends[i].2` cents.
fn transfer(spends: &[(u8, &SecretKey, u64)], outs: &[(&SecretKey, u64)]) -> Transaction {
    let at: Vec<_> = spends
        .iter()
        .map(|(n, k, cents)| (outpoint(*n, 0), *k, *cents))
        .collect();
    transfer_at(&at, outs)
}

/// Like [`transfer`] with explicit outpoints.
fn transfer_at(spends: &[(OutPoint, &SecretKey, u64)], outs: &[(&SecretKey, u64)]) -> Transaction {
    let inputs: Vec<(Input, &SecretKey)> = spends
        .iter()
        .map(|(outpoint, owner, cents)| {
            (
                Input {
                    outpoint: *outpoint,
                    spent: p2pk_output(owner, *cents),
                },
                *owner,
            )
        })
        .collect();
    sign_transfer(&inputs, outputs(outs))
}

/// Replaces the witnesses with P2PK witnesses by `signers` over the current body.
fn sign(mut tx: Transaction, signers: &[&SecretKey]) -> Transaction {
    let id = tx.tx_id();
    tx.witnesses = signers
        .iter()
        .map(|k| Witness {
            program: WitnessProgram::P2pk(k.public_key()),
            signature: k.sign(id.as_bytes()),
        })
        .collect();
    tx
}

/// Adds the group order ℓ to the S half of a signature (S < ℓ, so S + ℓ < 2^253 fits).
fn add_group_order_to_s(sig: &mut Signature) {
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (s, l) in sig.0[32..].iter_mut().zip(ELL) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}
