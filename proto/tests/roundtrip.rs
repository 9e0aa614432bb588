//! core → wire → core (and through protobuf bytes) gives back the same value, for every
//! type with a wire form.

mod common;

use cbdc_core::{
    sign_mint, sign_transfer, Attestation, CompactTransaction, Hash, Input, Limits, OutPoint,
    Output, SecretKey, Transaction, UhsId, ValidationError, Validator, Witness, WitnessProgram,
};
use cbdc_proto::convert::{Block, Notification, Rejection, MAX_BATCH_TRANSACTIONS};
use cbdc_proto::error::ProtoError;
use cbdc_proto::status::{invalid_transaction_status, validation_failure_from_status};
use cbdc_proto::v1;
use common::*;
use proptest::prelude::*;
use prost::Message;
use std::fmt::Debug;

/// Through the wire struct and through its protobuf bytes.
fn round_trip<C, W>(value: &C)
where
    C: Debug + PartialEq,
    W: Message + Default + PartialEq + for<'a> From<&'a C>,
    for<'a> C: TryFrom<&'a W, Error = cbdc_proto::ProtoError>,
{
    let wire = W::from(value);
    let back = C::try_from(&wire).expect("a core value converts back");
    assert_eq!(&back, value);
    let decoded = W::decode(wire.encode_to_vec().as_slice()).expect("decodes");
    assert!(decoded == wire);
    assert_eq!(&C::try_from(&decoded).expect("converts"), value);
}

proptest! {
    #[test]
    fn test_roundtrip_outpoint(v in outpoint()) { round_trip::<OutPoint, v1::OutPoint>(&v); }

    #[test]
    fn test_roundtrip_output(v in output()) { round_trip::<Output, v1::Output>(&v); }

    #[test]
    fn test_roundtrip_input(v in input()) { round_trip::<Input, v1::Input>(&v); }

    #[test]
    fn test_roundtrip_witness_program(v in program()) {
        round_trip::<WitnessProgram, v1::WitnessProgram>(&v);
    }

    #[test]
    fn test_roundtrip_witness(v in witness()) { round_trip::<Witness, v1::Witness>(&v); }

    #[test]
    fn test_roundtrip_transaction(v in transaction()) {
        round_trip::<Transaction, v1::Transaction>(&v);
        // The owned conversions agree with the borrowed ones.
        let wire: v1::Transaction = v.clone().into();
        prop_assert_eq!(Transaction::try_from(wire).unwrap(), v);
    }

    #[test]
    fn test_roundtrip_attestation(v in attestation()) {
        round_trip::<Attestation, v1::Attestation>(&v);
    }

    #[test]
    fn test_roundtrip_compact_transaction(v in compact()) {
        round_trip::<CompactTransaction, v1::CompactTransaction>(&v);
    }

    #[test]
    fn test_roundtrip_limits(v in limits()) { round_trip::<Limits, v1::Limits>(&v); }

    #[test]
    fn test_roundtrip_notification(v in notification()) {
        round_trip::<Notification, v1::TxNotification>(&v);
    }

    #[test]
    fn test_roundtrip_rejection(v in rejection()) {
        round_trip::<Rejection, v1::TxRejection>(&v);
    }

    #[test]
    fn test_roundtrip_block(v in block()) { round_trip::<Block, v1::Block>(&v); }

    #[test]
    fn test_roundtrip_validation_error(e in validation_error()) {
        let wire = v1::ValidationFailure::from(&e);
        prop_assert_eq!(wire.message.clone(), e.to_string());
        prop_assert_eq!(ValidationError::try_from(&wire).unwrap(), e.clone());
        let decoded = v1::ValidationFailure::decode(wire.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(ValidationError::try_from(decoded).unwrap(), e.clone());
        // And through a gRPC status, as a unary submit answers an invalid transaction.
        let status = invalid_transaction_status(&e);
        prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
        prop_assert_eq!(status.message(), e.to_string());
        let failure = validation_failure_from_status(&status).unwrap();
        prop_assert_eq!(ValidationError::try_from(&failure).unwrap(), e);
    }

    #[test]
    fn test_roundtrip_output_ref_by_outpoint_computes_uhs_id(i in input()) {
        let by_input = v1::OutputRef::from(&i);
        prop_assert_eq!(UhsId::try_from(&by_input).unwrap(), i.uhs_id());
        let by_id = v1::OutputRef::from(&i.uhs_id());
        prop_assert_eq!(UhsId::try_from(&by_id).unwrap(), i.uhs_id());
    }
}

#[test]
fn test_roundtrip_signed_transactions_still_validate() {
    let issuer = SecretKey::from_bytes(&[1; 32]);
    let alice = SecretKey::from_bytes(&[2; 32]);
    let bob = SecretKey::from_bytes(&[3; 32]);
    let validator = Validator::new(Limits::default(), Some(issuer.public_key()));
    let mint = sign_mint(
        &issuer,
        vec![cbdc_core::p2pk_output(&alice, 500)],
        Hash([9; 32]),
    );
    let spend = sign_transfer(
        &[(
            Input {
                outpoint: mint.outpoint(0),
                spent: mint.outputs[0],
            },
            &alice,
        )],
        vec![
            cbdc_core::p2pk_output(&bob, 200),
            cbdc_core::p2pk_output(&alice, 300),
        ],
    );
    for tx in [mint, spend] {
        let bytes = v1::Transaction::from(&tx).encode_to_vec();
        let back =
            Transaction::try_from(v1::Transaction::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(back.tx_id(), tx.tx_id());
        assert_eq!(validator.validate(&back), Ok(()));
        let compact = CompactTransaction::try_from(v1::CompactTransaction::from(&back.compact()));
        assert_eq!(compact.unwrap(), tx.compact());
    }
}

#[test]
fn test_submit_request_readers() {
    let tx = fixed_transaction();
    let request = v1::SubmitTransactionRequest {
        transaction: Some((&tx).into()),
        options: Some(v1::SubmitOptions {
            wait: true,
            wait_timeout_ms: 0,
        }),
    };
    assert_eq!(request.to_transaction().unwrap(), tx);
    assert!(request.wants_wait());
    let stream = v1::SubmitTransactionsRequest {
        request_id: 42,
        transaction: Some((&tx).into()),
        options: None,
    };
    assert_eq!(stream.to_transaction().unwrap(), tx);
    assert!(!stream.wants_wait());
    let status = v1::GetTransactionStatusRequest {
        tx_id: tx.tx_id().as_bytes().to_vec().into(),
    };
    assert_eq!(status.to_tx_id().unwrap(), tx.tx_id());
}

#[test]
fn test_internal_request_readers() {
    let compact = fixed_compact();
    let dtx = v1::DtxId {
        coordinator: 2,
        sequence: 99,
    };
    let lock = v1::LockRequest {
        dtx_id: Some(dtx),
        transactions: vec![(&compact).into()],
        ..Default::default()
    };
    assert_eq!(lock.to_parts().unwrap(), (dtx, vec![compact.clone()]));
    let lock = v1::LockRequest::encoded(dtx, [&compact]);
    assert!(lock.transactions.is_empty());
    assert_eq!(lock.to_parts().unwrap(), (dtx, vec![compact.clone()]));
    let apply = v1::ApplyRequest {
        dtx_id: Some(dtx),
        commit: vec![true],
        reasons: vec![v1::RejectReason::Unspecified as i32],
    };
    assert_eq!(apply.to_dtx_id().unwrap(), dtx);
    let discard = v1::DiscardRequest { dtx_id: Some(dtx) };
    assert_eq!(discard.to_dtx_id().unwrap(), dtx);
    let batch = v1::ExecuteBatchRequest {
        transactions: vec![(&compact).into(), (&compact).into()],
        ..Default::default()
    };
    assert_eq!(batch.to_transactions().unwrap(), vec![compact.clone(); 2]);
    let encoded = v1::ExecuteBatchRequest::encoded(&[compact.clone(), compact.clone()]);
    assert_eq!(encoded.to_transactions().unwrap(), vec![compact.clone(); 2]);
    // Through the wire and back.
    let decoded = v1::ExecuteBatchRequest::decode(encoded.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded.to_transactions().unwrap(), vec![compact.clone(); 2]);
    let ids = vec![compact.id.as_bytes().to_vec().into()];
    let shard = v1::ShardTransactionStatusRequest {
        tx_ids: ids.clone(),
    };
    assert_eq!(shard.to_tx_ids().unwrap(), vec![compact.id]);
    let watch = v1::AwaitTransactionStatusRequest {
        tx_ids: ids,
        timeout_ms: 10,
    };
    assert_eq!(watch.to_tx_ids().unwrap(), vec![compact.id]);
    let outputs = v1::ShardOutputStatusRequest {
        uhs_ids: vec![compact.inputs[0].as_bytes().to_vec().into()],
    };
    assert_eq!(outputs.to_uhs_ids().unwrap(), compact.inputs);
}

/// The canonical form of a batch is read strictly: a cut or padded buffer, a count above
/// the batch cap, or both forms at once are errors that name the field.
#[test]
fn test_encoded_batches_are_read_strictly() {
    let compact = fixed_compact();
    let good = v1::ExecuteBatchRequest::encoded(std::slice::from_ref(&compact));

    let mut cut = good.clone();
    cut.encoded_transactions
        .truncate(good.encoded_transactions.len() - 1);
    let err = cut.to_transactions().unwrap_err();
    assert!(matches!(err, ProtoError::Undecodable { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("execute_batch_request.encoded_transactions"));

    let mut padded = good.encoded_transactions.to_vec();
    padded.push(0);
    let padded = v1::ExecuteBatchRequest {
        encoded_transactions: padded.into(),
        ..Default::default()
    };
    assert!(matches!(
        padded.to_transactions().unwrap_err(),
        ProtoError::Undecodable { .. }
    ));

    // A count above the cap is refused from the prefix, before anything is allocated.
    let mut huge = good.encoded_transactions.to_vec();
    let count = u32::try_from(MAX_BATCH_TRANSACTIONS + 1).unwrap();
    huge[..4].copy_from_slice(&count.to_le_bytes());
    let huge = v1::ExecuteBatchRequest {
        encoded_transactions: huge.into(),
        ..Default::default()
    };
    assert!(matches!(
        huge.to_transactions().unwrap_err(),
        ProtoError::Undecodable { .. }
    ));

    let mut both = good.clone();
    both.transactions = vec![(&compact).into()];
    assert_eq!(
        both.to_transactions().unwrap_err(),
        ProtoError::Conflicting {
            first: "execute_batch_request.transactions",
            second: "execute_batch_request.encoded_transactions",
        }
    );
    let mut lock = v1::LockRequest::encoded(v1::DtxId::default(), [&compact]);
    lock.transactions = vec![(&compact).into()];
    assert!(matches!(
        lock.to_parts().unwrap_err(),
        ProtoError::Conflicting { .. }
    ));
}

#[test]
fn test_transaction_result_constructors() {
    let tx = fixed_transaction();
    let id = tx.tx_id();
    let pending = v1::TransactionResult::pending(&id);
    assert_eq!(pending.status(), v1::TxStatus::Pending);
    assert!(!pending.is_final());
    assert_eq!(pending.to_tx_id().unwrap(), id);

    let confirmed = v1::TransactionResult::confirmed(&id, Some(12));
    assert_eq!(confirmed.status(), v1::TxStatus::Confirmed);
    assert_eq!(confirmed.block_height, Some(12));
    assert!(confirmed.is_final());

    let rejected = v1::TransactionResult::rejected(&id, v1::RejectReason::InputsSpent, Some(1), "");
    assert_eq!(rejected.status(), v1::TxStatus::Rejected);
    assert_eq!(rejected.reject_reason(), v1::RejectReason::InputsSpent);
    assert_eq!(rejected.input_index, Some(1));
    assert_eq!(rejected.message, "REJECT_REASON_INPUTS_SPENT");

    let error = ValidationError::InvalidSignature { witness: 3 };
    let invalid = v1::TransactionResult::invalid(&id, &error);
    assert_eq!(invalid.status(), v1::TxStatus::Invalid);
    let failure = invalid.validation_error.as_ref().unwrap();
    assert_eq!(failure.code(), v1::ValidationErrorCode::InvalidSignature);
    assert_eq!(failure.index, Some(3));
    assert_eq!(invalid.message, "witness 3 has an invalid signature");

    let unknown = v1::TransactionResult::unknown(&id);
    assert_eq!(unknown.status(), v1::TxStatus::Unknown);
}
