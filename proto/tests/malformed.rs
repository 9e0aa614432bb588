//! Every malformed field becomes the typed error that names it.

mod common;

use cbdc_core::attestation::MAX_MERKLE_DEPTH;
use cbdc_core::encoding::{MAX_BYTES_LEN, MAX_LIST_ITEMS};
use cbdc_core::transaction::MAX_ATTESTATIONS;
use cbdc_core::{
    Attestation, CompactTransaction, Input, Limits, OutPoint, Output, Transaction, TxId, UhsId,
    ValidationError, Witness, WitnessProgram,
};
use cbdc_proto::convert::{Block, Notification, Rejection, MAX_QUERY_ITEMS};
use cbdc_proto::status::{known_enum, validation_failure_from_status};
use cbdc_proto::{v1, ProtoError};
use common::{fixed_compact, fixed_transaction};

fn wire_tx() -> v1::Transaction {
    (&fixed_transaction()).into()
}

fn wire_compact() -> v1::CompactTransaction {
    (&fixed_compact()).into()
}

fn wrong_length(field: &'static str, expected: usize, found: usize) -> ProtoError {
    ProtoError::WrongLength {
        field,
        expected,
        found,
    }
}

/// The lengths that must be refused for a field of `n` bytes.
fn bad_lengths(n: usize) -> [usize; 4] {
    [0, n - 1, n + 1, 2 * n]
}

#[test]
fn test_outpoint_wrong_tx_id_length() {
    for len in bad_lengths(32) {
        let wire = v1::OutPoint {
            tx_id: vec![1; len].into(),
            index: 0,
        };
        assert_eq!(
            OutPoint::try_from(&wire),
            Err(wrong_length("outpoint.tx_id", 32, len))
        );
    }
}

#[test]
fn test_output_wrong_commitment_length() {
    for len in bad_lengths(32) {
        let wire = v1::Output {
            commitment: vec![1; len].into(),
            value: 5,
        };
        assert_eq!(
            Output::try_from(&wire),
            Err(wrong_length("output.commitment", 32, len))
        );
    }
}

#[test]
fn test_input_missing_fields() {
    let mut wire = v1::Input::from(&fixed_transaction().inputs[0]);
    wire.outpoint = None;
    assert_eq!(
        Input::try_from(&wire),
        Err(ProtoError::MissingField("input.outpoint"))
    );
    let mut wire = v1::Input::from(&fixed_transaction().inputs[0]);
    wire.spent = None;
    assert_eq!(
        Input::try_from(&wire),
        Err(ProtoError::MissingField("input.spent"))
    );
}

#[test]
fn test_witness_program_wrong_p2pk_key_length() {
    for len in bad_lengths(32) {
        let wire = v1::WitnessProgram {
            version: 0,
            program: vec![1; len].into(),
        };
        assert_eq!(
            WitnessProgram::try_from(&wire),
            Err(wrong_length("witness_program.program", 32, len))
        );
    }
}

#[test]
fn test_witness_program_version_above_a_byte() {
    for version in [256, u32::MAX] {
        let wire = v1::WitnessProgram {
            version,
            program: vec![1; 32].into(),
        };
        assert!(matches!(
            WitnessProgram::try_from(&wire),
            Err(ProtoError::InvalidProgram {
                field: "witness_program.version",
                ..
            })
        ));
    }
}

#[test]
fn test_witness_program_unknown_version_too_long() {
    let wire = v1::WitnessProgram {
        version: 1,
        program: vec![1; MAX_BYTES_LEN + 1].into(),
    };
    assert_eq!(
        WitnessProgram::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "witness_program.program",
            max: MAX_BYTES_LEN,
            found: MAX_BYTES_LEN + 1
        })
    );
    // At the cap, and empty, are fine: validation refuses the unknown version.
    for len in [0, MAX_BYTES_LEN] {
        let wire = v1::WitnessProgram {
            version: 7,
            program: vec![1; len].into(),
        };
        assert_eq!(
            WitnessProgram::try_from(&wire),
            Ok(WitnessProgram::Unknown {
                version: 7,
                program: vec![1; len]
            })
        );
    }
}

#[test]
fn test_witness_wrong_signature_length_and_missing_program() {
    for len in bad_lengths(64) {
        let mut wire = wire_tx().witnesses.remove(0);
        wire.signature = vec![1; len].into();
        assert_eq!(
            Witness::try_from(&wire),
            Err(wrong_length("witness.signature", 64, len))
        );
    }
    let mut wire = wire_tx().witnesses.remove(0);
    wire.program = None;
    assert_eq!(
        Witness::try_from(&wire),
        Err(ProtoError::MissingField("witness.program"))
    );
}

#[test]
fn test_transaction_wrong_nonce_length() {
    for len in bad_lengths(32) {
        let mut wire = wire_tx();
        wire.nonce = vec![0; len].into();
        assert_eq!(
            Transaction::try_from(&wire),
            Err(wrong_length("transaction.nonce", 32, len))
        );
    }
}

#[test]
fn test_transaction_errors_name_the_element() {
    let mut wire = wire_tx();
    let good = wire.inputs[0].clone();
    wire.inputs = vec![good.clone(), good.clone(), good];
    wire.inputs[2].outpoint.as_mut().unwrap().tx_id = vec![0; 31].into();
    let error = Transaction::try_from(&wire).unwrap_err();
    assert_eq!(
        error,
        ProtoError::Element {
            list: "transaction.inputs",
            index: 2,
            source: Box::new(wrong_length("outpoint.tx_id", 32, 31)),
        }
    );
    assert_eq!(
        error.to_string(),
        "transaction.inputs[2]: outpoint.tx_id has 31 bytes, expected 32"
    );
    assert_eq!(error.root(), &wrong_length("outpoint.tx_id", 32, 31));

    let mut wire = wire_tx();
    wire.outputs[0].commitment.clear();
    assert_eq!(
        Transaction::try_from(&wire).unwrap_err().root(),
        &wrong_length("output.commitment", 32, 0)
    );

    let mut wire = wire_tx();
    let program = &mut wire.witnesses[0].program.as_mut().unwrap().program;
    program.truncate(program.len() - 1);
    let error = Transaction::try_from(&wire).unwrap_err();
    assert!(matches!(
        error,
        ProtoError::Element {
            list: "transaction.witnesses",
            index: 0,
            ..
        }
    ));
    assert_eq!(
        error.root(),
        &wrong_length("witness_program.program", 32, 31)
    );
}

#[test]
fn test_transaction_too_many_elements() {
    let mut wire = wire_tx();
    wire.inputs = vec![wire.inputs[0].clone(); MAX_LIST_ITEMS + 1];
    assert_eq!(
        Transaction::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "transaction.inputs",
            max: MAX_LIST_ITEMS,
            found: MAX_LIST_ITEMS + 1
        })
    );
    let mut wire = wire_tx();
    wire.outputs = vec![wire.outputs[0].clone(); MAX_LIST_ITEMS + 1];
    assert!(matches!(
        Transaction::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "transaction.outputs",
            ..
        })
    ));
    let mut wire = wire_tx();
    wire.witnesses = vec![wire.witnesses[0].clone(); MAX_LIST_ITEMS + 1];
    assert!(matches!(
        Transaction::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "transaction.witnesses",
            ..
        })
    ));
    // Exactly at the cap is accepted.
    let mut wire = wire_tx();
    wire.outputs = vec![wire.outputs[0].clone(); MAX_LIST_ITEMS];
    assert!(Transaction::try_from(&wire).is_ok());
}

#[test]
fn test_attestation_wrong_lengths() {
    let base = wire_compact().attestations.remove(0);
    for len in bad_lengths(32) {
        let mut wire = base.clone();
        wire.sentinel = vec![1; len].into();
        assert_eq!(
            Attestation::try_from(&wire),
            Err(wrong_length("attestation.sentinel", 32, len))
        );
        let mut wire = base.clone();
        wire.root = vec![1; len].into();
        assert_eq!(
            Attestation::try_from(&wire),
            Err(wrong_length("attestation.root", 32, len))
        );
        let mut wire = base.clone();
        wire.path.push(vec![1; len].into());
        assert_eq!(
            Attestation::try_from(&wire),
            Err(wrong_length("attestation.path", 32, len).in_element("attestation.path", 1))
        );
    }
    for len in bad_lengths(64) {
        let mut wire = base.clone();
        wire.signature = vec![1; len].into();
        assert_eq!(
            Attestation::try_from(&wire),
            Err(wrong_length("attestation.signature", 64, len))
        );
    }
}

#[test]
fn test_attestation_path_too_deep() {
    let mut wire = wire_compact().attestations.remove(0);
    wire.path = vec![vec![0; 32].into(); MAX_MERKLE_DEPTH + 1];
    assert_eq!(
        Attestation::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "attestation.path",
            max: MAX_MERKLE_DEPTH,
            found: MAX_MERKLE_DEPTH + 1
        })
    );
    wire.path.pop();
    assert!(Attestation::try_from(&wire).is_ok());
}

#[test]
fn test_compact_transaction_wrong_lengths() {
    for len in bad_lengths(32) {
        let mut wire = wire_compact();
        wire.id = vec![1; len].into();
        assert_eq!(
            CompactTransaction::try_from(&wire),
            Err(wrong_length("compact_transaction.id", 32, len))
        );
        let mut wire = wire_compact();
        wire.inputs[0] = vec![1; len].into();
        assert_eq!(
            CompactTransaction::try_from(&wire),
            Err(wrong_length("compact_transaction.inputs", 32, len)
                .in_element("compact_transaction.inputs", 0))
        );
        let mut wire = wire_compact();
        wire.outputs[0].uhs_id = vec![1; len].into();
        assert_eq!(
            CompactTransaction::try_from(&wire),
            Err(wrong_length("compact_output.uhs_id", 32, len)
                .in_element("compact_transaction.outputs", 0))
        );
        let mut wire = wire_compact();
        wire.attestations[0].root = vec![1; len].into();
        assert_eq!(
            CompactTransaction::try_from(&wire).unwrap_err().root(),
            &wrong_length("attestation.root", 32, len)
        );
    }
}

#[test]
fn test_compact_transaction_too_many_elements() {
    let mut wire = wire_compact();
    wire.attestations = vec![wire.attestations[0].clone(); MAX_ATTESTATIONS + 1];
    assert_eq!(
        CompactTransaction::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "compact_transaction.attestations",
            max: MAX_ATTESTATIONS,
            found: MAX_ATTESTATIONS + 1
        })
    );
    let mut wire = wire_compact();
    wire.inputs = vec![vec![0; 32].into(); MAX_LIST_ITEMS + 1];
    assert!(matches!(
        CompactTransaction::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "compact_transaction.inputs",
            ..
        })
    ));
    let mut wire = wire_compact();
    wire.outputs = vec![wire.outputs[0].clone(); MAX_LIST_ITEMS + 1];
    assert!(matches!(
        CompactTransaction::try_from(&wire),
        Err(ProtoError::TooMany {
            field: "compact_transaction.outputs",
            ..
        })
    ));
}

#[test]
fn test_requests_missing_fields() {
    assert_eq!(
        v1::SubmitTransactionRequest::default().to_transaction(),
        Err(ProtoError::MissingField(
            "submit_transaction_request.transaction"
        ))
    );
    assert_eq!(
        v1::SubmitTransactionsRequest::default().to_transaction(),
        Err(ProtoError::MissingField(
            "submit_transactions_request.transaction"
        ))
    );
    assert_eq!(
        v1::LockRequest::default().to_parts(),
        Err(ProtoError::MissingField("lock_request.dtx_id"))
    );
    assert_eq!(
        v1::ApplyRequest::default().to_dtx_id(),
        Err(ProtoError::MissingField("apply_request.dtx_id"))
    );
    assert_eq!(
        v1::DiscardRequest::default().to_dtx_id(),
        Err(ProtoError::MissingField("discard_request.dtx_id"))
    );
    assert_eq!(
        Notification::try_from(&v1::TxNotification::default()),
        Err(ProtoError::MissingField("tx_notification.transaction"))
    );
    assert_eq!(
        UhsId::try_from(&v1::OutputRef::default()),
        Err(ProtoError::MissingField("output_ref.ref"))
    );
    let output_ref = v1::OutputRef {
        r#ref: Some(v1::output_ref::Ref::Output(v1::Input::default())),
    };
    assert_eq!(
        UhsId::try_from(&output_ref),
        Err(ProtoError::MissingField("input.outpoint"))
    );
}

#[test]
fn test_requests_wrong_id_lengths() {
    for len in bad_lengths(32) {
        let request = v1::GetTransactionStatusRequest {
            tx_id: vec![1; len].into(),
        };
        assert_eq!(
            request.to_tx_id(),
            Err(wrong_length(
                "get_transaction_status_request.tx_id",
                32,
                len
            ))
        );
        let request = v1::GetOutputStatusRequest {
            outputs: vec![v1::OutputRef {
                r#ref: Some(v1::output_ref::Ref::UhsId(vec![1; len].into())),
            }],
        };
        assert_eq!(
            request.to_uhs_ids().unwrap_err().root(),
            &wrong_length("output_ref.uhs_id", 32, len)
        );
        let request = v1::ShardTransactionStatusRequest {
            tx_ids: vec![vec![0; 32].into(), vec![1; len].into()],
        };
        assert_eq!(
            request.to_tx_ids(),
            Err(
                wrong_length("shard_transaction_status_request.tx_ids", 32, len)
                    .in_element("shard_transaction_status_request.tx_ids", 1)
            )
        );
        let result = v1::TransactionResult {
            tx_id: vec![1; len].into(),
            ..Default::default()
        };
        assert!(matches!(
            result.to_tx_id(),
            Err(ProtoError::WrongLength { .. })
        ));
    }
}

#[test]
fn test_requests_too_many_query_items() {
    let request = v1::GetOutputStatusRequest {
        outputs: vec![v1::OutputRef::from(&UhsId::default()); MAX_QUERY_ITEMS + 1],
    };
    assert_eq!(
        request.to_uhs_ids(),
        Err(ProtoError::TooMany {
            field: "get_output_status_request.outputs",
            max: MAX_QUERY_ITEMS,
            found: MAX_QUERY_ITEMS + 1
        })
    );
    let request = v1::WatchtowerTxStatusRequest {
        tx_ids: vec![vec![0; 32].into(); MAX_QUERY_ITEMS + 1],
    };
    assert!(matches!(
        request.to_tx_ids(),
        Err(ProtoError::TooMany { .. })
    ));
}

#[test]
fn test_notification_attested_input_out_of_range() {
    let wire = v1::TxNotification {
        transaction: Some(wire_compact()),
        attested_inputs: vec![0, 1],
        height: 3,
    };
    assert_eq!(
        Notification::try_from(&wire),
        Err(ProtoError::OutOfRange {
            field: "tx_notification.attested_inputs",
            value: 1,
            max: 0
        }
        .in_element("tx_notification.attested_inputs", 1))
    );
}

#[test]
fn test_enums_out_of_range() {
    let tx_id = fixed_transaction().tx_id();
    for reason in [0, 10, -1, i32::MAX] {
        let wire = v1::TxRejection {
            tx_id: tx_id.as_bytes().to_vec().into(),
            reason,
            ..Default::default()
        };
        assert_eq!(
            Rejection::try_from(&wire),
            Err(ProtoError::InvalidEnum {
                field: "tx_rejection.reason",
                value: reason
            })
        );
        let block = v1::Block {
            height: 1,
            transactions: vec![],
            rejections: vec![wire],
        };
        assert_eq!(
            Block::try_from(&block).unwrap_err().root(),
            &ProtoError::InvalidEnum {
                field: "tx_rejection.reason",
                value: reason
            }
        );
    }
    assert_eq!(
        known_enum::<v1::TxStatus>("f", 6),
        Err(ProtoError::InvalidEnum {
            field: "f",
            value: 6
        })
    );
    assert_eq!(
        known_enum::<v1::Architecture>("f", 0),
        Err(ProtoError::InvalidEnum {
            field: "f",
            value: 0
        })
    );
    assert_eq!(
        known_enum::<v1::OutputStatus>("f", 3),
        Ok(v1::OutputStatus::Locked)
    );
}

#[test]
fn test_validation_failure_bad_codes() {
    for code in [0, 18, 99, 100, -5] {
        let wire = v1::ValidationFailure {
            code,
            ..Default::default()
        };
        assert_eq!(
            ValidationError::try_from(&wire),
            Err(ProtoError::InvalidEnum {
                field: "validation_failure.code",
                value: code
            })
        );
    }
}

#[test]
fn test_validation_failure_missing_details() {
    let cases = [
        (
            v1::ValidationErrorCode::ZeroValueInput,
            "validation_failure.index",
        ),
        (
            v1::ValidationErrorCode::TooManyInputs,
            "validation_failure.count",
        ),
        (
            v1::ValidationErrorCode::Unbalanced,
            "validation_failure.input_total",
        ),
        (
            v1::ValidationErrorCode::UnknownWitnessProgram,
            "validation_failure.version",
        ),
    ];
    for (code, field) in cases {
        let wire = v1::ValidationFailure {
            code: code.into(),
            ..Default::default()
        };
        assert_eq!(
            ValidationError::try_from(&wire),
            Err(ProtoError::MissingField(field))
        );
    }
    let wire = v1::ValidationFailure {
        code: v1::ValidationErrorCode::DuplicateInput.into(),
        index: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ValidationError::try_from(&wire),
        Err(ProtoError::MissingField("validation_failure.first_index"))
    );
    let wire = v1::ValidationFailure {
        code: v1::ValidationErrorCode::UnknownWitnessProgram.into(),
        index: Some(0),
        version: Some(256),
        ..Default::default()
    };
    assert_eq!(
        ValidationError::try_from(&wire),
        Err(ProtoError::OutOfRange {
            field: "validation_failure.version",
            value: 256,
            max: 255
        })
    );
}

#[test]
fn test_limits_roundtrip_and_status_of_malformed() {
    assert_eq!(
        Limits::try_from(v1::Limits::from(Limits::default())),
        Ok(Limits::default())
    );
    let error = wrong_length("outpoint.tx_id", 32, 3).in_element("transaction.inputs", 0);
    let status = tonic::Status::from(error.clone());
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), error.to_string());
    let failure = validation_failure_from_status(&status).unwrap();
    assert_eq!(failure.code(), v1::ValidationErrorCode::Malformed);
    assert_eq!(failure.message, error.to_string());
    assert!(validation_failure_from_status(&tonic::Status::unavailable("down")).is_none());

    let result = v1::TransactionResult::malformed(&error);
    assert_eq!(result.status(), v1::TxStatus::Invalid);
    assert!(result.tx_id.is_empty());
    assert_eq!(
        result.validation_error.unwrap().code(),
        v1::ValidationErrorCode::Malformed
    );
}

#[test]
fn test_validation_error_codes_are_pinned() {
    // The numbers are the wire format: changing one breaks every deployed client.
    use v1::ValidationErrorCode as C;
    let codes = [
        (ValidationError::NoInputs, C::NoInputs, 1),
        (ValidationError::NoOutputs, C::NoOutputs, 2),
        (ValidationError::TransferNonce, C::TransferNonce, 3),
        (
            ValidationError::TooManyInputs { count: 0, max: 0 },
            C::TooManyInputs,
            4,
        ),
        (
            ValidationError::TooManyOutputs { count: 0, max: 0 },
            C::TooManyOutputs,
            5,
        ),
        (
            ValidationError::WitnessCount {
                expected: 0,
                witnesses: 0,
            },
            C::WitnessCount,
            6,
        ),
        (
            ValidationError::DuplicateInput { input: 0, first: 0 },
            C::DuplicateInput,
            7,
        ),
        (
            ValidationError::ZeroValueInput { input: 0 },
            C::ZeroValueInput,
            8,
        ),
        (
            ValidationError::ZeroValueOutput { output: 0 },
            C::ZeroValueOutput,
            9,
        ),
        (
            ValidationError::InputOverflow { input: 0 },
            C::InputOverflow,
            10,
        ),
        (
            ValidationError::OutputOverflow { output: 0 },
            C::OutputOverflow,
            11,
        ),
        (
            ValidationError::Unbalanced {
                inputs: Default::default(),
                outputs: Default::default(),
            },
            C::Unbalanced,
            12,
        ),
        (
            ValidationError::UnknownWitnessProgram {
                witness: 0,
                version: 1,
            },
            C::UnknownWitnessProgram,
            13,
        ),
        (
            ValidationError::ProgramMismatch { input: 0 },
            C::ProgramMismatch,
            14,
        ),
        (
            ValidationError::InvalidPublicKey { witness: 0 },
            C::InvalidPublicKey,
            15,
        ),
        (
            ValidationError::InvalidSignature { witness: 0 },
            C::InvalidSignature,
            16,
        ),
        (ValidationError::UnauthorizedMint, C::UnauthorizedMint, 17),
    ];
    for (error, code, number) in codes {
        assert_eq!(cbdc_proto::status::validation_error_code(&error), code);
        assert_eq!(code as i32, number);
    }
    assert_eq!(C::Malformed as i32, 100);
    assert_eq!(v1::TxStatus::Unknown as i32, 5);
    assert_eq!(v1::RejectReason::Aborted as i32, 9);
}

#[test]
fn test_tx_id_helper_types() {
    let id = TxId::default();
    assert_eq!(
        cbdc_proto::convert::tx_id("x", id.as_bytes()),
        Ok(TxId::default())
    );
}
