//! Arbitrary bytes decoded with prost and then converted never panic, and whatever
//! converts successfully converts back to exactly the same wire message (nothing is
//! silently dropped or normalised).

mod common;

use cbdc_core::{CompactTransaction, Transaction, UhsId};
use cbdc_proto::convert::{Block, Notification};
use cbdc_proto::v1;
use common::{compact, transaction};
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;

/// Decodes `bytes` as every request type and converts what decodes.
fn decode_everything(bytes: &[u8]) {
    if let Ok(wire) = v1::Transaction::decode(bytes) {
        if let Ok(tx) = Transaction::try_from(&wire) {
            assert!(v1::Transaction::from(&tx) == wire);
        }
    }
    if let Ok(wire) = v1::CompactTransaction::decode(bytes) {
        if let Ok(tx) = CompactTransaction::try_from(&wire) {
            assert!(v1::CompactTransaction::from(&tx) == wire);
        }
    }
    if let Ok(r) = v1::SubmitTransactionRequest::decode(bytes) {
        let _ = r.to_transaction();
    }
    if let Ok(r) = v1::SubmitTransactionsRequest::decode(bytes) {
        let _ = r.to_transaction();
    }
    if let Ok(r) = v1::GetTransactionStatusRequest::decode(bytes) {
        let _ = r.to_tx_id();
    }
    if let Ok(r) = v1::GetOutputStatusRequest::decode(bytes) {
        let _ = r.to_uhs_ids();
    }
    if let Ok(r) = v1::ExecuteBatchRequest::decode(bytes) {
        let _ = r.to_transactions();
    }
    if let Ok(r) = v1::LockRequest::decode(bytes) {
        let _ = r.to_parts();
    }
    if let Ok(r) = v1::NotifyRequest::decode(bytes) {
        for n in &r.notifications {
            let _ = Notification::try_from(n);
        }
    }
    if let Ok(b) = v1::Block::decode(bytes) {
        let _ = Block::try_from(&b);
    }
    if let Ok(f) = v1::ValidationFailure::decode(bytes) {
        let _ = cbdc_core::ValidationError::try_from(&f);
    }
    if let Ok(r) = v1::OutputRef::decode(bytes) {
        let _ = UhsId::try_from(&r);
    }
}

/// Flips, inserts and deletes bytes of `bytes` at positions picked by `edits`.
fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, value, kind) in edits {
        let i = at.index(bytes.len() + 1);
        match kind % 3 {
            0 if i < bytes.len() => bytes[i] ^= value | 1,
            1 => bytes.insert(i, *value),
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn test_fuzz_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
    }

    #[test]
    fn test_fuzz_mutated_transaction_never_panics(
        tx in transaction(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let bytes = v1::Transaction::from(&tx).encode_to_vec();
        decode_everything(&mutate(bytes, &edits));
    }

    #[test]
    fn test_fuzz_mutated_compact_never_panics(
        tx in compact(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let bytes = v1::CompactTransaction::from(&tx).encode_to_vec();
        decode_everything(&mutate(bytes.clone(), &edits));
        // Wrapped in the messages that carry it.
        let batch = v1::ExecuteBatchRequest {
            transactions: vec![(&tx).into()],
            ..Default::default()
        };
        decode_everything(&mutate(batch.encode_to_vec(), &edits));
        let dtx = v1::DtxId { coordinator: 1, sequence: 2 };
        let lock = v1::LockRequest {
            dtx_id: Some(dtx),
            transactions: vec![(&tx).into()],
            ..Default::default()
        };
        decode_everything(&mutate(lock.encode_to_vec(), &edits));
        // And in the canonical encoding: a mutated buffer is refused or reads back as
        // some batch, never a panic.
        let encoded = v1::ExecuteBatchRequest::encoded(std::slice::from_ref(&tx));
        let mut mutated = encoded.clone();
        mutated.encoded_transactions = mutate(encoded.encoded_transactions.to_vec(), &edits).into();
        let _ = mutated.to_transactions();
        decode_everything(&mutate(encoded.encode_to_vec(), &edits));
        let lock = v1::LockRequest::encoded(dtx, [&tx]);
        decode_everything(&mutate(lock.encode_to_vec(), &edits));
    }

    /// Structured fuzzing: wire transactions whose byte fields have arbitrary lengths
    /// convert exactly when every length is right.
    #[test]
    fn test_fuzz_field_lengths_decide_conversion(
        lens in vec(prop_oneof![Just(32usize), 0usize..70], 4),
        sig_len in prop_oneof![Just(64usize), 0usize..130],
        version in prop_oneof![Just(0u32), any::<u32>()],
    ) {
        let wire = v1::Transaction {
            inputs: vec![v1::Input {
                outpoint: Some(v1::OutPoint { tx_id: vec![1; lens[0]].into(), index: 0 }),
                spent: Some(v1::Output { commitment: vec![2; lens[1]].into(), value: 1 }),
            }],
            outputs: vec![],
            nonce: vec![0; lens[2]].into(),
            witnesses: vec![v1::Witness {
                program: Some(v1::WitnessProgram { version, program: vec![3; lens[3]].into() }),
                signature: vec![4; sig_len].into(),
            }],
        };
        let program_ok = match version {
            0 => lens[3] == 32,
            1..=255 => true,
            _ => false,
        };
        let ok = lens[..3].iter().all(|&l| l == 32) && sig_len == 64 && program_ok;
        prop_assert_eq!(Transaction::try_from(&wire).is_ok(), ok);
    }
}
