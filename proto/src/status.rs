//! Status codes on the wire: validation errors as [`v1::ValidationFailure`] and back,
//! readers for the status enums, constructors for [`v1::TransactionResult`], and the
//! gRPC statuses that carry a validation failure.

use crate::error::{ProtoError, Result};
use crate::v1::{self, ValidationErrorCode as Code};
use cbdc_core::{Amount, TxId, ValidationError};
use prost::Message;

/// The wire code of a validation error.
pub fn validation_error_code(error: &ValidationError) -> Code {
    match error {
        ValidationError::NoInputs => Code::NoInputs,
        ValidationError::NoOutputs => Code::NoOutputs,
        ValidationError::TransferNonce => Code::TransferNonce,
        ValidationError::TooManyInputs { .. } => Code::TooManyInputs,
        ValidationError::TooManyOutputs { .. } => Code::TooManyOutputs,
        ValidationError::WitnessCount { .. } => Code::WitnessCount,
        ValidationError::DuplicateInput { .. } => Code::DuplicateInput,
        ValidationError::ZeroValueInput { .. } => Code::ZeroValueInput,
        ValidationError::ZeroValueOutput { .. } => Code::ZeroValueOutput,
        ValidationError::InputOverflow { .. } => Code::InputOverflow,
        ValidationError::OutputOverflow { .. } => Code::OutputOverflow,
        ValidationError::Unbalanced { .. } => Code::Unbalanced,
        ValidationError::UnknownWitnessProgram { .. } => Code::UnknownWitnessProgram,
        ValidationError::ProgramMismatch { .. } => Code::ProgramMismatch,
        ValidationError::InvalidPublicKey { .. } => Code::InvalidPublicKey,
        ValidationError::InvalidSignature { .. } => Code::InvalidSignature,
        ValidationError::UnauthorizedMint => Code::UnauthorizedMint,
    }
}

/// The input, output or witness a validation error names, if it names one.
pub fn offending_index(error: &ValidationError) -> Option<usize> {
    match *error {
        ValidationError::DuplicateInput { input, .. }
        | ValidationError::ZeroValueInput { input }
        | ValidationError::InputOverflow { input }
        | ValidationError::ProgramMismatch { input } => Some(input),
        ValidationError::ZeroValueOutput { output }
        | ValidationError::OutputOverflow { output } => Some(output),
        ValidationError::UnknownWitnessProgram { witness, .. }
        | ValidationError::InvalidPublicKey { witness }
        | ValidationError::InvalidSignature { witness } => Some(witness),
        _ => None,
    }
}

impl From<&ValidationError> for v1::ValidationFailure {
    fn from(error: &ValidationError) -> Self {
        let mut failure = v1::ValidationFailure {
            message: error.to_string(),
            index: offending_index(error).map(|i| i as u64),
            ..Default::default()
        };
        failure.set_code(validation_error_code(error));
        match *error {
            ValidationError::TooManyInputs { count, max }
            | ValidationError::TooManyOutputs { count, max } => {
                failure.count = Some(count as u64);
                failure.expected = Some(max as u64);
            }
            ValidationError::WitnessCount {
                expected,
                witnesses,
            } => {
                failure.count = Some(witnesses as u64);
                failure.expected = Some(expected as u64);
            }
            ValidationError::DuplicateInput { first, .. } => {
                failure.first_index = Some(first as u64);
            }
            ValidationError::Unbalanced { inputs, outputs } => {
                failure.input_total = Some(inputs.cents());
                failure.output_total = Some(outputs.cents());
            }
            ValidationError::UnknownWitnessProgram { version, .. } => {
                failure.version = Some(u32::from(version));
            }
            _ => {}
        }
        failure
    }
}

impl From<ValidationError> for v1::ValidationFailure {
    fn from(error: ValidationError) -> Self {
        (&error).into()
    }
}

fn detail(field: &'static str, value: Option<u64>) -> Result<usize> {
    let value = value.ok_or(ProtoError::MissingField(field))?;
    usize::try_from(value).map_err(|_| ProtoError::OutOfRange {
        field,
        value,
        max: usize::MAX as u64,
    })
}

impl TryFrom<&v1::ValidationFailure> for ValidationError {
    type Error = ProtoError;
    /// Rebuilds the core error from its code and the detail fields that code uses (the
    /// message is not needed). `MALFORMED` is not a validation error and is refused as an
    /// invalid enum value, like `UNSPECIFIED`.
    fn try_from(f: &v1::ValidationFailure) -> Result<Self> {
        const CODE: &str = "validation_failure.code";
        let code = Code::try_from(f.code).map_err(|_| ProtoError::InvalidEnum {
            field: CODE,
            value: f.code,
        })?;
        let index = || detail("validation_failure.index", f.index);
        let count = || detail("validation_failure.count", f.count);
        let expected = || detail("validation_failure.expected", f.expected);
        Ok(match code {
            Code::Unspecified | Code::Malformed => {
                return Err(ProtoError::InvalidEnum {
                    field: CODE,
                    value: f.code,
                })
            }
            Code::NoInputs => ValidationError::NoInputs,
            Code::NoOutputs => ValidationError::NoOutputs,
            Code::TransferNonce => ValidationError::TransferNonce,
            Code::TooManyInputs => ValidationError::TooManyInputs {
                count: count()?,
                max: expected()?,
            },
            Code::TooManyOutputs => ValidationError::TooManyOutputs {
                count: count()?,
                max: expected()?,
            },
            Code::WitnessCount => ValidationError::WitnessCount {
                expected: expected()?,
                witnesses: count()?,
            },
            Code::DuplicateInput => ValidationError::DuplicateInput {
                input: index()?,
                first: detail("validation_failure.first_index", f.first_index)?,
            },
            Code::ZeroValueInput => ValidationError::ZeroValueInput { input: index()? },
            Code::ZeroValueOutput => ValidationError::ZeroValueOutput { output: index()? },
            Code::InputOverflow => ValidationError::InputOverflow { input: index()? },
            Code::OutputOverflow => ValidationError::OutputOverflow { output: index()? },
            Code::Unbalanced => ValidationError::Unbalanced {
                inputs: Amount::from_cents(
                    f.input_total
                        .ok_or(ProtoError::MissingField("validation_failure.input_total"))?,
                ),
                outputs: Amount::from_cents(
                    f.output_total
                        .ok_or(ProtoError::MissingField("validation_failure.output_total"))?,
                ),
            },
            Code::UnknownWitnessProgram => {
                const VERSION: &str = "validation_failure.version";
                let version = f.version.ok_or(ProtoError::MissingField(VERSION))?;
                ValidationError::UnknownWitnessProgram {
                    witness: index()?,
                    version: u8::try_from(version).map_err(|_| ProtoError::OutOfRange {
                        field: VERSION,
                        value: u64::from(version),
                        max: u64::from(u8::MAX),
                    })?,
                }
            }
            Code::ProgramMismatch => ValidationError::ProgramMismatch { input: index()? },
            Code::InvalidPublicKey => ValidationError::InvalidPublicKey { witness: index()? },
            Code::InvalidSignature => ValidationError::InvalidSignature { witness: index()? },
            Code::UnauthorizedMint => ValidationError::UnauthorizedMint,
        })
    }
}

impl TryFrom<v1::ValidationFailure> for ValidationError {
    type Error = ProtoError;
    fn try_from(f: v1::ValidationFailure) -> Result<Self> {
        (&f).try_into()
    }
}

impl v1::ValidationFailure {
    /// The failure of a message that was malformed on the wire: code `MALFORMED` and the
    /// error in words.
    pub fn malformed(error: &ProtoError) -> Self {
        let mut failure = v1::ValidationFailure {
            message: error.to_string(),
            ..Default::default()
        };
        failure.set_code(Code::Malformed);
        failure
    }
}

/// Reads an enum field whose value must be known and not `UNSPECIFIED` (0), as every
/// enum of `cbdc.v1` has.
pub fn known_enum<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<E> {
    if value == 0 {
        return Err(ProtoError::InvalidEnum { field, value });
    }
    E::try_from(value).map_err(|_| ProtoError::InvalidEnum { field, value })
}

/// Reads a [`v1::RejectReason`] (known, not `UNSPECIFIED`).
pub fn reject_reason(field: &'static str, value: i32) -> Result<v1::RejectReason> {
    known_enum(field, value)
}

/// Reads a [`v1::TxStatus`] (known, not `UNSPECIFIED`).
pub fn tx_status(field: &'static str, value: i32) -> Result<v1::TxStatus> {
    known_enum(field, value)
}

/// Reads a [`v1::OutputStatus`] (known, not `UNSPECIFIED`).
pub fn output_status(field: &'static str, value: i32) -> Result<v1::OutputStatus> {
    known_enum(field, value)
}

/// Reads a [`v1::Architecture`] (known, not `UNSPECIFIED`).
pub fn architecture(field: &'static str, value: i32) -> Result<v1::Architecture> {
    known_enum(field, value)
}

impl v1::TransactionResult {
    fn with_status(tx_id: Option<&TxId>, status: v1::TxStatus) -> Self {
        let mut result = v1::TransactionResult {
            tx_id: tx_id
                .map(|id| id.as_bytes().to_vec().into())
                .unwrap_or_default(),
            ..Default::default()
        };
        result.set_status(status);
        result
    }

    /// Accepted, not final yet.
    pub fn pending(tx_id: &TxId) -> Self {
        Self::with_status(Some(tx_id), v1::TxStatus::Pending)
    }

    /// Settled; `block_height` is the confirming block in atomizer mode.
    pub fn confirmed(tx_id: &TxId, block_height: Option<u64>) -> Self {
        let mut result = Self::with_status(Some(tx_id), v1::TxStatus::Confirmed);
        result.block_height = block_height;
        result
    }

    /// Refused by the back end. `message` says why in words (or is empty, in which case
    /// the reason's name is used).
    pub fn rejected(
        tx_id: &TxId,
        reason: v1::RejectReason,
        input_index: Option<u32>,
        message: impl Into<String>,
    ) -> Self {
        let mut result = Self::with_status(Some(tx_id), v1::TxStatus::Rejected);
        result.set_reject_reason(reason);
        result.input_index = input_index;
        result.message = message.into();
        if result.message.is_empty() {
            result.message = reason.as_str_name().to_string();
        }
        result
    }

    /// Refused by stateless validation.
    pub fn invalid(tx_id: &TxId, error: &ValidationError) -> Self {
        let mut result = Self::with_status(Some(tx_id), v1::TxStatus::Invalid);
        result.message = error.to_string();
        result.validation_error = Some(error.into());
        result
    }

    /// Malformed on the wire, so that no tx id could be computed.
    pub fn malformed(error: &ProtoError) -> Self {
        let mut result = Self::with_status(None, v1::TxStatus::Invalid);
        result.message = error.to_string();
        result.validation_error = Some(v1::ValidationFailure::malformed(error));
        result
    }

    /// Never seen, or no longer remembered.
    pub fn unknown(tx_id: &TxId) -> Self {
        Self::with_status(Some(tx_id), v1::TxStatus::Unknown)
    }

    /// Whether the status is final (CONFIRMED, REJECTED or INVALID).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status(),
            v1::TxStatus::Confirmed | v1::TxStatus::Rejected | v1::TxStatus::Invalid
        )
    }

    /// The transaction id (absent only for a malformed submission).
    pub fn to_tx_id(&self) -> Result<TxId> {
        crate::convert::tx_id("transaction_result.tx_id", &self.tx_id)
    }
}

/// The gRPC answer to a transaction that fails stateless validation on a unary call:
/// `INVALID_ARGUMENT` with the error in words and, as binary details, its
/// [`v1::ValidationFailure`].
pub fn invalid_transaction_status(error: &ValidationError) -> tonic::Status {
    let failure = v1::ValidationFailure::from(error);
    tonic::Status::with_details(
        tonic::Code::InvalidArgument,
        error.to_string(),
        failure.encode_to_vec().into(),
    )
}

/// The [`v1::ValidationFailure`] in the details of an `INVALID_ARGUMENT` status, as
/// [`invalid_transaction_status`] and [`ProtoError::to_status`] put it there; `None` for
/// any other status.
pub fn validation_failure_from_status(status: &tonic::Status) -> Option<v1::ValidationFailure> {
    if status.code() != tonic::Code::InvalidArgument || status.details().is_empty() {
        return None;
    }
    v1::ValidationFailure::decode(status.details()).ok()
}
