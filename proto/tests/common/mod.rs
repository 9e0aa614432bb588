//! Strategies for core values, shared by the test files.
#![allow(dead_code)]

use cbdc_core::{
    Amount, Attestation, CompactTransaction, Hash, Input, Limits, OutPoint, Output, PublicKey,
    Signature, Transaction, TxId, UhsId, ValidationError, Witness, WitnessProgram,
};
use cbdc_proto::convert::{Block, Notification, Rejection};
use cbdc_proto::v1;
use proptest::collection::vec;
use proptest::prelude::*;

pub fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

pub fn tx_id() -> impl Strategy<Value = TxId> {
    hash().prop_map(TxId)
}

pub fn uhs_id() -> impl Strategy<Value = UhsId> {
    hash().prop_map(UhsId)
}

pub fn amount() -> impl Strategy<Value = Amount> {
    any::<u64>().prop_map(Amount::from_cents)
}

pub fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, s)| {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r);
        bytes[32..].copy_from_slice(&s);
        Signature(bytes)
    })
}

pub fn outpoint() -> impl Strategy<Value = OutPoint> {
    (tx_id(), any::<u32>()).prop_map(|(tx_id, index)| OutPoint { tx_id, index })
}

pub fn output() -> impl Strategy<Value = Output> {
    (hash(), amount()).prop_map(|(commitment, value)| Output { commitment, value })
}

pub fn input() -> impl Strategy<Value = Input> {
    (outpoint(), output()).prop_map(|(outpoint, spent)| Input { outpoint, spent })
}

pub fn program() -> impl Strategy<Value = WitnessProgram> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|k| WitnessProgram::P2pk(PublicKey(k))),
        (1u8..=255, vec(any::<u8>(), 0..80))
            .prop_map(|(version, program)| WitnessProgram::Unknown { version, program }),
    ]
}

pub fn witness() -> impl Strategy<Value = Witness> {
    (program(), signature()).prop_map(|(program, signature)| Witness { program, signature })
}

pub fn transaction() -> impl Strategy<Value = Transaction> {
    (
        vec(input(), 0..5),
        vec(output(), 0..5),
        hash(),
        vec(witness(), 0..5),
    )
        .prop_map(|(inputs, outputs, nonce, witnesses)| Transaction {
            inputs,
            outputs,
            nonce,
            witnesses,
        })
}

pub fn attestation() -> impl Strategy<Value = Attestation> {
    (
        any::<[u8; 32]>(),
        hash(),
        signature(),
        any::<u32>(),
        vec(hash(), 0..=32),
    )
        .prop_map(|(key, root, signature, leaf_index, path)| Attestation {
            sentinel: PublicKey(key),
            root,
            signature,
            leaf_index,
            path,
        })
}

pub fn compact() -> impl Strategy<Value = CompactTransaction> {
    (
        tx_id(),
        vec(uhs_id(), 0..6),
        vec((uhs_id(), amount()), 0..6),
        vec(attestation(), 0..3),
    )
        .prop_map(|(id, inputs, outputs, attestations)| CompactTransaction {
            id,
            inputs,
            outputs,
            attestations,
        })
}

pub fn limits() -> impl Strategy<Value = Limits> {
    (any::<u32>(), any::<u32>()).prop_map(|(i, o)| Limits {
        max_inputs: i as usize,
        max_outputs: o as usize,
    })
}

pub fn notification() -> impl Strategy<Value = Notification> {
    (
        compact(),
        vec(any::<prop::sample::Index>(), 0..4),
        any::<u64>(),
    )
        .prop_map(|(transaction, picks, height)| {
            let n = transaction.inputs.len();
            let attested_inputs = if n == 0 {
                Vec::new()
            } else {
                picks.iter().map(|p| p.index(n) as u32).collect()
            };
            Notification {
                transaction,
                attested_inputs,
                height,
            }
        })
}

pub fn reject_reason() -> impl Strategy<Value = v1::RejectReason> {
    (1i32..=9).prop_map(|v| v1::RejectReason::try_from(v).unwrap())
}

pub fn rejection() -> impl Strategy<Value = Rejection> {
    (
        tx_id(),
        reject_reason(),
        any::<Option<u32>>(),
        any::<u64>(),
        ".{0,20}",
    )
        .prop_map(|(tx_id, reason, input_index, height, message)| Rejection {
            tx_id,
            reason,
            input_index,
            height,
            message,
            input_uhs_id: None,
        })
}

pub fn block() -> impl Strategy<Value = Block> {
    (any::<u64>(), vec(compact(), 0..4), vec(rejection(), 0..3)).prop_map(
        |(height, transactions, rejections)| Block {
            height,
            transactions,
            rejections,
        },
    )
}

/// Every variant of `ValidationError`, with arbitrary numbers.
pub fn validation_error() -> impl Strategy<Value = ValidationError> {
    let n = any::<usize>;
    prop_oneof![
        Just(ValidationError::NoInputs),
        Just(ValidationError::NoOutputs),
        Just(ValidationError::TransferNonce),
        (n(), n()).prop_map(|(count, max)| ValidationError::TooManyInputs { count, max }),
        (n(), n()).prop_map(|(count, max)| ValidationError::TooManyOutputs { count, max }),
        (n(), n()).prop_map(|(expected, witnesses)| ValidationError::WitnessCount {
            expected,
            witnesses
        }),
        (n(), n()).prop_map(|(input, first)| ValidationError::DuplicateInput { input, first }),
        n().prop_map(|input| ValidationError::ZeroValueInput { input }),
        n().prop_map(|output| ValidationError::ZeroValueOutput { output }),
        n().prop_map(|input| ValidationError::InputOverflow { input }),
        n().prop_map(|output| ValidationError::OutputOverflow { output }),
        (amount(), amount())
            .prop_map(|(inputs, outputs)| ValidationError::Unbalanced { inputs, outputs }),
        (n(), any::<u8>()).prop_map(|(witness, version)| {
            ValidationError::UnknownWitnessProgram { witness, version }
        }),
        n().prop_map(|input| ValidationError::ProgramMismatch { input }),
        n().prop_map(|witness| ValidationError::InvalidPublicKey { witness }),
        n().prop_map(|witness| ValidationError::InvalidSignature { witness }),
        Just(ValidationError::UnauthorizedMint),
    ]
}

/// A fixed, hand-written transaction: one input, one output, one witness.
pub fn fixed_transaction() -> Transaction {
    Transaction {
        inputs: vec![Input {
            outpoint: OutPoint {
                tx_id: TxId(Hash([0x11; 32])),
                index: 7,
            },
            spent: Output {
                commitment: Hash([0x22; 32]),
                value: Amount::from_cents(1234),
            },
        }],
        outputs: vec![Output {
            commitment: Hash([0x33; 32]),
            value: Amount::from_cents(1234),
        }],
        nonce: Hash::ZERO,
        witnesses: vec![Witness {
            program: WitnessProgram::P2pk(PublicKey([0x44; 32])),
            signature: Signature([0x55; 64]),
        }],
    }
}

/// A fixed compact transaction with one attestation of depth 1.
pub fn fixed_compact() -> CompactTransaction {
    CompactTransaction {
        id: TxId(Hash([0x66; 32])),
        inputs: vec![UhsId(Hash([0x77; 32]))],
        outputs: vec![(UhsId(Hash([0x88; 32])), Amount::from_cents(500))],
        attestations: vec![Attestation {
            sentinel: PublicKey([0x99; 32]),
            root: Hash([0xaa; 32]),
            signature: Signature([0xbb; 64]),
            leaf_index: 1,
            path: vec![Hash([0xcc; 32])],
        }],
    }
}
