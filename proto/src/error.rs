//! The one error type of this crate: why a wire message could not become a core value.

use crate::v1;
use prost::Message;

/// Why a wire message is malformed. Every variant names the field at fault (as
/// `message.field`, in the `.proto` spelling); errors inside a list are wrapped in
/// [`ProtoError::Element`] with the element's position, so that the message reads like
/// `transaction.inputs[2]: outpoint.tx_id has 31 bytes, expected 32`.
///
/// Conversions never panic: every input that is not a well-formed value gives one of
/// these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A required message field is absent.
    #[error("{0} is missing")]
    MissingField(&'static str),
    /// A hash, id, key or signature of the wrong length.
    #[error("{field} has {found} bytes, expected {expected}")]
    WrongLength {
        /// The field.
        field: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        found: usize,
    },
    /// A list (or byte string) longer than its cap.
    #[error("{field} has {found} elements, more than the maximum of {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// The cap.
        max: usize,
        /// How many there are.
        found: usize,
    },
    /// An enum field holds a value with no meaning here (unknown, or UNSPECIFIED where
    /// a value is required).
    #[error("{field} has invalid enum value {value}")]
    InvalidEnum {
        /// The field.
        field: &'static str,
        /// The raw value.
        value: i32,
    },
    /// A number too large for the core type it stands for.
    #[error("{field} is {value}, more than the maximum of {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A witness program that cannot be represented (a version above 255).
    #[error("{field} is not a valid witness program: {reason}")]
    InvalidProgram {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A field in cbdc's canonical binary encoding does not decode.
    #[error("{field} does not decode: {reason}")]
    Undecodable {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two fields that say the same thing in different forms were both set.
    #[error("{first} and {second} are both set; send one of them")]
    Conflicting {
        /// The first field.
        first: &'static str,
        /// The second field.
        second: &'static str,
    },
    /// An error in element `index` of the list `list`.
    #[error("{list}[{index}]: {source}")]
    Element {
        /// The list field.
        list: &'static str,
        /// The element's position.
        index: usize,
        /// What is wrong with the element.
        source: Box<ProtoError>,
    },
}

impl ProtoError {
    /// The innermost error, without the [`ProtoError::Element`] wrappers that say where
    /// in which list it occurred.
    pub fn root(&self) -> &ProtoError {
        match self {
            ProtoError::Element { source, .. } => source.root(),
            other => other,
        }
    }

    /// Wraps `self` as the error of element `index` of `list`.
    pub fn in_element(self, list: &'static str, index: usize) -> ProtoError {
        ProtoError::Element {
            list,
            index,
            source: Box::new(self),
        }
    }

    /// The gRPC answer to a malformed request: `INVALID_ARGUMENT` with this error in
    /// words and, as binary details, a [`v1::ValidationFailure`] with code `MALFORMED`
    /// (read it back with [`crate::status::validation_failure_from_status`]).
    pub fn to_status(&self) -> tonic::Status {
        let failure = v1::ValidationFailure::malformed(self);
        tonic::Status::with_details(
            tonic::Code::InvalidArgument,
            self.to_string(),
            failure.encode_to_vec().into(),
        )
    }
}

impl From<ProtoError> for tonic::Status {
    fn from(error: ProtoError) -> Self {
        error.to_status()
    }
}

/// Shorthand for conversion results.
pub type Result<T, E = ProtoError> = std::result::Result<T, E>;
