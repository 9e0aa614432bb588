//! What came back for each transaction, how answers are counted, and how they are checked
//! against the workload's [`Expectation`]s.
//!
//! Checking is pure and runs after the measurement, on the answers the driver collected:
//! a benchmark that is fast but wrong (a double spend confirmed twice, an invalid
//! transaction accepted) must say so loudly.

use std::collections::BTreeMap;

use cbdc_core::TxId;
use cbdc_proto::v1::{self, RejectReason, TxStatus, ValidationErrorCode};
use serde::{Deserialize, Serialize};

use crate::workload::Expectation;

/// Mismatches described one by one in the report; the rest are only counted.
pub const MISMATCH_EXAMPLES: usize = 20;

/// The answer to one transaction, as the harness records it (one byte or so per
/// transaction, so millions fit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Never sent (the duration ended first, or the stream broke before it).
    Unsent,
    /// Sent, but no answer came before the stream ended or the drain timeout.
    Unanswered,
    /// Settled.
    Confirmed,
    /// Refused by the back end; the wire `RejectReason`.
    Rejected(i32),
    /// Refused by validation; the wire `ValidationErrorCode` (0 if the answer had none).
    Invalid(i32),
    /// Still pending after the run and the status polls that followed it.
    Pending,
    /// `UNKNOWN`, `UNSPECIFIED` or a status this harness does not know.
    Unknown,
    /// The answer had no result, or named another transaction.
    Malformed,
}

impl Answer {
    /// Reads a sentinel's result for the transaction `expected` (the id is checked when
    /// the answer carries one).
    pub fn from_result(result: Option<&v1::TransactionResult>, expected: &TxId) -> Answer {
        let Some(result) = result else {
            return Answer::Malformed;
        };
        if !result.tx_id.is_empty() && result.tx_id[..] != expected.as_bytes()[..] {
            return Answer::Malformed;
        }
        match TxStatus::try_from(result.status) {
            Ok(TxStatus::Confirmed) => Answer::Confirmed,
            Ok(TxStatus::Rejected) => Answer::Rejected(result.reject_reason),
            Ok(TxStatus::Invalid) => {
                Answer::Invalid(result.validation_error.as_ref().map_or(0, |f| f.code))
            }
            Ok(TxStatus::Pending) => Answer::Pending,
            Ok(TxStatus::Unknown | TxStatus::Unspecified) | Err(_) => Answer::Unknown,
        }
    }

    /// Whether the answer is final (no use asking again).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Answer::Confirmed | Answer::Rejected(_) | Answer::Invalid(_)
        )
    }

    fn describe(self) -> String {
        match self {
            Answer::Unsent => "not sent".into(),
            Answer::Unanswered => "no answer".into(),
            Answer::Confirmed => "confirmed".into(),
            Answer::Rejected(r) => format!("rejected ({})", reject_reason_name(r)),
            Answer::Invalid(c) => format!("invalid ({})", validation_code_name(c)),
            Answer::Pending => "still pending".into(),
            Answer::Unknown => "unknown status".into(),
            Answer::Malformed => "a malformed answer".into(),
        }
    }
}

/// `REJECT_REASON_INPUTS_SPENT` → `inputs_spent`; an unknown value → `reason_N`.
pub fn reject_reason_name(value: i32) -> String {
    match RejectReason::try_from(value) {
        Ok(r) => short_name(r.as_str_name(), "REJECT_REASON_"),
        Err(_) => format!("reason_{value}"),
    }
}

/// `VALIDATION_ERROR_CODE_INVALID_SIGNATURE` → `invalid_signature`; unknown → `code_N`.
pub fn validation_code_name(value: i32) -> String {
    match ValidationErrorCode::try_from(value) {
        Ok(c) => short_name(c.as_str_name(), "VALIDATION_ERROR_CODE_"),
        Err(_) => format!("code_{value}"),
    }
}

fn short_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

/// How many answers of each kind came back (sent transactions only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Transactions sent.
    pub sent: u64,
    /// Confirmed.
    pub confirmed: u64,
    /// Rejected by the back end, by reason (`inputs_spent`, `inputs_locked`, …).
    pub rejected: BTreeMap<String, u64>,
    /// Refused by validation, by code (`invalid_signature`, `unbalanced`, …).
    pub invalid: BTreeMap<String, u64>,
    /// Still pending after the run.
    pub pending: u64,
    /// Unknown status.
    pub unknown: u64,
    /// Missing result or another transaction's id.
    pub malformed: u64,
    /// Sent and never answered.
    pub unanswered: u64,
}

impl Outcomes {
    /// Counts `answers`.
    pub fn count(answers: &[Answer]) -> Outcomes {
        let mut o = Outcomes::default();
        for &answer in answers {
            if answer != Answer::Unsent {
                o.sent += 1;
            }
            match answer {
                Answer::Unsent => {}
                Answer::Unanswered => o.unanswered += 1,
                Answer::Confirmed => o.confirmed += 1,
                Answer::Rejected(r) => *o.rejected.entry(reject_reason_name(r)).or_default() += 1,
                Answer::Invalid(c) => *o.invalid.entry(validation_code_name(c)).or_default() += 1,
                Answer::Pending => o.pending += 1,
                Answer::Unknown => o.unknown += 1,
                Answer::Malformed => o.malformed += 1,
            }
        }
        o
    }

    /// Rejected transactions, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Invalid transactions, all codes together.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.values().sum()
    }

    /// Transactions that got an answer of any kind.
    pub fn answered(&self) -> u64 {
        self.sent - self.unanswered
    }
}

/// The verdict on every answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    /// Answers checked (one per sent transaction).
    pub checked: u64,
    /// Answers that were not what the workload expects.
    pub mismatches: u64,
    /// Double-spend pairs of which both transactions were sent.
    pub double_spend_pairs: u64,
    /// Of those, pairs with exactly one confirmed and the other rejected.
    pub double_spend_pairs_resolved: u64,
    /// The first mismatches, in words.
    pub examples: Vec<String>,
}

impl Checks {
    /// Compares each sent transaction's answer with its expectation. `ids` name the
    /// transactions in the examples.
    pub fn evaluate(expectations: &[Expectation], answers: &[Answer], ids: &[TxId]) -> Checks {
        let mut checks = Checks::default();
        let answer_of = |i: usize| answers.get(i).copied().unwrap_or(Answer::Unsent);
        for (i, (&expected, &answer)) in expectations.iter().zip(answers).enumerate() {
            if answer == Answer::Unsent {
                continue;
            }
            checks.checked += 1;
            let (ok, wanted) = match expected {
                Expectation::Confirm => (answer == Answer::Confirmed, "confirmed".to_string()),
                Expectation::Invalid(kind) => {
                    let code = kind.expected_code() as i32;
                    (
                        answer == Answer::Invalid(code),
                        format!("invalid ({})", validation_code_name(code)),
                    )
                }
                Expectation::Contested { partner } => {
                    let other = answer_of(partner as usize);
                    if (partner as usize) > i && other != Answer::Unsent {
                        checks.double_spend_pairs += 1;
                        if one_confirmed_one_rejected(answer, other) {
                            checks.double_spend_pairs_resolved += 1;
                        }
                    }
                    match other {
                        Answer::Unsent => (
                            answer == Answer::Confirmed,
                            "confirmed (its double spend was not sent)".to_string(),
                        ),
                        Answer::Confirmed | Answer::Rejected(_) => (
                            one_confirmed_one_rejected(answer, other),
                            format!(
                                "the opposite of its double-spend partner {partner} ({})",
                                other.describe()
                            ),
                        ),
                        // The partner's fate is unknown: either final answer may be right.
                        _ => (
                            matches!(answer, Answer::Confirmed | Answer::Rejected(_)),
                            "confirmed or rejected".to_string(),
                        ),
                    }
                }
            };
            if !ok {
                checks.mismatches += 1;
                if checks.examples.len() < MISMATCH_EXAMPLES {
                    let id = ids.get(i).map(TxId::to_hex).unwrap_or_default();
                    checks.examples.push(format!(
                        "transaction {i} ({}): expected {wanted}, got {}",
                        id.get(..16).unwrap_or(&id),
                        answer.describe()
                    ));
                }
            }
        }
        checks
    }
}

fn one_confirmed_one_rejected(a: Answer, b: Answer) -> bool {
    matches!(
        (a, b),
        (Answer::Confirmed, Answer::Rejected(_)) | (Answer::Rejected(_), Answer::Confirmed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::InvalidKind;
    use cbdc_core::Hash;

    const SPENT: i32 = RejectReason::InputsSpent as i32;
    const BAD_SIG: i32 = ValidationErrorCode::InvalidSignature as i32;

    fn ids(n: usize) -> Vec<TxId> {
        (0..n).map(|i| TxId(Hash([i as u8; 32]))).collect()
    }

    #[test]
    fn test_answer_from_result_reads_every_status() {
        let id = TxId(Hash([3; 32]));
        let mut result = v1::TransactionResult {
            tx_id: id.as_bytes().to_vec().into(),
            ..Default::default()
        };
        result.set_status(TxStatus::Confirmed);
        assert_eq!(Answer::from_result(Some(&result), &id), Answer::Confirmed);
        result.set_status(TxStatus::Rejected);
        result.set_reject_reason(RejectReason::InputsLocked);
        assert_eq!(
            Answer::from_result(Some(&result), &id),
            Answer::Rejected(RejectReason::InputsLocked as i32)
        );
        result.set_status(TxStatus::Invalid);
        let mut failure = v1::ValidationFailure::default();
        failure.set_code(ValidationErrorCode::Unbalanced);
        result.validation_error = Some(failure);
        assert_eq!(
            Answer::from_result(Some(&result), &id),
            Answer::Invalid(ValidationErrorCode::Unbalanced as i32)
        );
        result.status = 99;
        assert_eq!(Answer::from_result(Some(&result), &id), Answer::Unknown);
        assert_eq!(
            Answer::from_result(Some(&result), &TxId(Hash([4; 32]))),
            Answer::Malformed
        );
        assert_eq!(Answer::from_result(None, &id), Answer::Malformed);
    }

    #[test]
    fn test_names_are_short_and_total() {
        assert_eq!(reject_reason_name(SPENT), "inputs_spent");
        assert_eq!(reject_reason_name(1234), "reason_1234");
        assert_eq!(validation_code_name(BAD_SIG), "invalid_signature");
        assert_eq!(validation_code_name(-1), "code_-1");
    }

    #[test]
    fn test_outcomes_count_by_reason_and_code() {
        let answers = [
            Answer::Confirmed,
            Answer::Confirmed,
            Answer::Rejected(SPENT),
            Answer::Invalid(BAD_SIG),
            Answer::Unanswered,
            Answer::Unsent,
        ];
        let o = Outcomes::count(&answers);
        assert_eq!(o.sent, 5);
        assert_eq!(o.confirmed, 2);
        assert_eq!(o.rejected.get("inputs_spent"), Some(&1));
        assert_eq!(o.invalid.get("invalid_signature"), Some(&1));
        assert_eq!(o.unanswered, 1);
        assert_eq!(o.answered(), 4);
    }

    #[test]
    fn test_evaluate_accepts_expected_answers() {
        let expectations = [
            Expectation::Confirm,
            Expectation::Invalid(InvalidKind::BadSignature),
            Expectation::Contested { partner: 3 },
            Expectation::Contested { partner: 2 },
        ];
        let answers = [
            Answer::Confirmed,
            Answer::Invalid(BAD_SIG),
            Answer::Rejected(SPENT),
            Answer::Confirmed,
        ];
        let checks = Checks::evaluate(&expectations, &answers, &ids(4));
        assert_eq!(checks.checked, 4);
        assert_eq!(checks.mismatches, 0, "{:?}", checks.examples);
        assert_eq!(checks.double_spend_pairs, 1);
        assert_eq!(checks.double_spend_pairs_resolved, 1);
    }

    #[test]
    fn test_evaluate_flags_double_confirmation_and_wrong_code() {
        let expectations = [
            Expectation::Contested { partner: 1 },
            Expectation::Contested { partner: 0 },
            Expectation::Invalid(InvalidKind::Unbalanced),
            Expectation::Confirm,
        ];
        let answers = [
            Answer::Confirmed,
            Answer::Confirmed,
            Answer::Invalid(BAD_SIG),
            Answer::Unanswered,
        ];
        let checks = Checks::evaluate(&expectations, &answers, &ids(4));
        assert_eq!(checks.mismatches, 4);
        assert_eq!(checks.double_spend_pairs, 1);
        assert_eq!(checks.double_spend_pairs_resolved, 0);
        assert!(checks.examples[2].contains("expected invalid (unbalanced)"));
        assert!(checks.examples[3].contains("no answer"));
    }

    #[test]
    fn test_evaluate_lone_half_of_pair_must_confirm() {
        let expectations = [
            Expectation::Contested { partner: 1 },
            Expectation::Contested { partner: 0 },
        ];
        let ok = Checks::evaluate(&expectations, &[Answer::Confirmed, Answer::Unsent], &ids(2));
        assert_eq!(
            (ok.checked, ok.mismatches, ok.double_spend_pairs),
            (1, 0, 0)
        );
        let bad = Checks::evaluate(
            &expectations,
            &[Answer::Rejected(SPENT), Answer::Unsent],
            &ids(2),
        );
        assert_eq!(bad.mismatches, 1);
        // The partner was sent but never answered: either final answer will do.
        let unknown = Checks::evaluate(
            &expectations,
            &[Answer::Rejected(SPENT), Answer::Unanswered],
            &ids(2),
        );
        assert_eq!(unknown.mismatches, 1, "only the unanswered one is wrong");
    }
}
