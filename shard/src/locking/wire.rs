//! Conversions between the machine's types and the `cbdc.v1` wire types, and the gRPC
//! statuses of the machine's refusals. The only place the machine meets protobuf.

use cbdc_core::{TxId, UhsId};
use cbdc_proto::v1;
use tonic::Status;

use super::command::{CommandRefusal, DtxKey, LockResult};
use super::outcome::{RejectCode, TxOutcome};
use crate::rejection::OutputStatus;

impl From<RejectCode> for v1::RejectReason {
    fn from(code: RejectCode) -> Self {
        match code {
            RejectCode::InputsSpent => v1::RejectReason::InputsSpent,
            RejectCode::InputsLocked => v1::RejectReason::InputsLocked,
            RejectCode::InputsNotFound => v1::RejectReason::InputsNotFound,
            RejectCode::MintReplay => v1::RejectReason::MintReplay,
            RejectCode::OutputExists => v1::RejectReason::OutputExists,
            RejectCode::Stale => v1::RejectReason::Stale,
            RejectCode::Incomplete => v1::RejectReason::Incomplete,
            RejectCode::Attestation => v1::RejectReason::Attestation,
            RejectCode::Aborted => v1::RejectReason::Aborted,
        }
    }
}

impl RejectCode {
    /// The code of a wire reason; `None` for `UNSPECIFIED` (no reason given).
    pub fn from_wire(reason: v1::RejectReason) -> Option<Self> {
        Some(match reason {
            v1::RejectReason::Unspecified => return None,
            v1::RejectReason::InputsSpent => RejectCode::InputsSpent,
            v1::RejectReason::InputsLocked => RejectCode::InputsLocked,
            v1::RejectReason::InputsNotFound => RejectCode::InputsNotFound,
            v1::RejectReason::MintReplay => RejectCode::MintReplay,
            v1::RejectReason::OutputExists => RejectCode::OutputExists,
            v1::RejectReason::Stale => RejectCode::Stale,
            v1::RejectReason::Incomplete => RejectCode::Incomplete,
            v1::RejectReason::Attestation => RejectCode::Attestation,
            v1::RejectReason::Aborted => RejectCode::Aborted,
        })
    }
}

impl From<v1::DtxId> for DtxKey {
    fn from(id: v1::DtxId) -> Self {
        DtxKey {
            coordinator: id.coordinator,
            sequence: id.sequence,
        }
    }
}

impl From<DtxKey> for v1::DtxId {
    fn from(key: DtxKey) -> Self {
        v1::DtxId {
            coordinator: key.coordinator,
            sequence: key.sequence,
        }
    }
}

impl From<&LockResult> for v1::LockResult {
    fn from(result: &LockResult) -> Self {
        let mut wire = v1::LockResult {
            locked: result.locked,
            input_index: result.input_index,
            committed_before: result.committed_before,
            ..Default::default()
        };
        wire.set_reason(
            result
                .reason
                .map_or(v1::RejectReason::Unspecified, Into::into),
        );
        wire
    }
}

/// The wire entry for output `id` in `status`.
pub fn output_status_entry(id: &UhsId, status: &OutputStatus) -> v1::OutputStatusEntry {
    let (wire, value) = match status {
        OutputStatus::Absent => (v1::OutputStatus::SpentOrAbsent, None),
        OutputStatus::Unspent(value) => (v1::OutputStatus::Unspent, Some(value.cents())),
        OutputStatus::Locked(value, _) => (v1::OutputStatus::Locked, Some(value.cents())),
    };
    let mut entry = v1::OutputStatusEntry {
        uhs_id: id.as_bytes().to_vec().into(),
        value,
        block_height: None,
        ..Default::default()
    };
    entry.set_status(wire);
    entry
}

/// The wire result for transaction `id` with `outcome`.
pub fn transaction_result(id: &TxId, outcome: TxOutcome) -> v1::TransactionResult {
    match outcome {
        TxOutcome::Pending => v1::TransactionResult::pending(id),
        TxOutcome::Committed => v1::TransactionResult::confirmed(id, None),
        TxOutcome::Rejected(code) => v1::TransactionResult::rejected(id, code.into(), None, ""),
        TxOutcome::Unknown => v1::TransactionResult::unknown(id),
    }
}

/// The gRPC status of a refused command: a request that cannot be right whatever the
/// state is `INVALID_ARGUMENT`; one that contradicts the dtx's life here is
/// `FAILED_PRECONDITION`; a state that no longer matches the shard's own records is
/// `INTERNAL`.
pub fn refusal_status(refusal: &CommandRefusal) -> Status {
    let message = refusal.to_string();
    match refusal {
        CommandRefusal::TooManyTransactions { .. }
        | CommandRefusal::FlagCount { .. }
        | CommandRefusal::ReasonCount { .. } => Status::invalid_argument(message),
        CommandRefusal::DtxFinished { .. }
        | CommandRefusal::CommitNotLocked { .. }
        | CommandRefusal::NotApplied { .. } => Status::failed_precondition(message),
        CommandRefusal::Diverged { .. } => Status::internal(message),
    }
}
