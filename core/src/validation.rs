//! Stateless validation: every rule a sentinel can check without looking at the ledger.
//!
//! Rules are checked in a fixed order (structure, values, programs, then signatures) and
//! the first failure is returned, naming the offending input, output or witness.
//! Signatures are the expensive part, so [`Validator::validate_many`] checks the cheap
//! rules of many transactions first and then verifies all their signatures in batches
//! across cores.

use crate::amount::Amount;
use crate::keys::{self, PublicKey, SignatureCheck, SignatureError};
use crate::transaction::{HasTxId, Transaction, WitnessProgram};
use rayon::prelude::*;
use std::collections::HashMap;

/// Transactions per signature batch in [`Validator::validate_many`]: large enough to
/// amortise the multiscalar multiplication, small enough to spread over cores.
const TXS_PER_BATCH: usize = 32;

/// Why a transaction is invalid on its face. Every variant that concerns one element
/// names its index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A transfer with no inputs (a mint is recognised by its non-zero nonce).
    #[error("transaction has no inputs")]
    NoInputs,
    /// No outputs.
    #[error("transaction has no outputs")]
    NoOutputs,
    /// A transfer (it has inputs) whose nonce is not all zero.
    #[error("a transfer's nonce must be all zero")]
    TransferNonce,
    /// More inputs than the configured limit.
    #[error("{count} inputs, more than the limit of {max}")]
    TooManyInputs {
        /// Inputs found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// More outputs than the configured limit.
    #[error("{count} outputs, more than the limit of {max}")]
    TooManyOutputs {
        /// Outputs found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The number of witnesses is not one per input (or exactly one for a mint).
    #[error("{witnesses} witnesses, expected {expected}")]
    WitnessCount {
        /// Witnesses required.
        expected: usize,
        /// Witnesses found.
        witnesses: usize,
    },
    /// Two inputs spend the same outpoint.
    #[error("input {input} spends the same outpoint as input {first}")]
    DuplicateInput {
        /// The later input.
        input: usize,
        /// The earlier one.
        first: usize,
    },
    /// An input claims to spend a zero-value output.
    #[error("input {input} has zero value")]
    ZeroValueInput {
        /// The input.
        input: usize,
    },
    /// An output of zero value.
    #[error("output {output} has zero value")]
    ZeroValueOutput {
        /// The output.
        output: usize,
    },
    /// The sum of input values overflows at this input.
    #[error("input values overflow at input {input}")]
    InputOverflow {
        /// Where the running sum overflowed.
        input: usize,
    },
    /// The sum of output values overflows at this output.
    #[error("output values overflow at output {output}")]
    OutputOverflow {
        /// Where the running sum overflowed.
        output: usize,
    },
    /// Inputs and outputs do not add up to the same value.
    #[error("inputs total {inputs} but outputs total {outputs}")]
    Unbalanced {
        /// Sum of inputs.
        inputs: Amount,
        /// Sum of outputs.
        outputs: Amount,
    },
    /// A witness program of a version this software does not know.
    #[error("witness {witness} has unknown program version {version}")]
    UnknownWitnessProgram {
        /// The witness.
        witness: usize,
        /// Its version byte.
        version: u8,
    },
    /// The witness program does not match the commitment of the output being spent.
    #[error("witness {input} does not match the commitment of the output spent by input {input}")]
    ProgramMismatch {
        /// The input.
        input: usize,
    },
    /// The witness's public key is not a valid (canonical, not small-order) key.
    #[error("witness {witness} has an invalid public key")]
    InvalidPublicKey {
        /// The witness.
        witness: usize,
    },
    /// The witness's signature does not verify.
    #[error("witness {witness} has an invalid signature")]
    InvalidSignature {
        /// The witness.
        witness: usize,
    },
    /// A mint not signed by the cluster's issuer key.
    #[error("mint is not signed by the issuer key")]
    UnauthorizedMint,
}

/// Size limits, set per cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most inputs per transaction.
    pub max_inputs: usize,
    /// Most outputs per transaction.
    pub max_outputs: usize,
}

impl Default for Limits {
    /// 64 inputs and 256 outputs: room for consolidations and for fan-out payments,
    /// while bounding the work one transaction can cause.
    fn default() -> Self {
        Limits {
            max_inputs: 64,
            max_outputs: 256,
        }
    }
}

/// Checks transactions against the stateless rules of one cluster.
#[derive(Debug, Clone)]
pub struct Validator {
    /// Size limits.
    pub limits: Limits,
    /// The central bank's issuer key; with `None`, every mint is refused.
    pub issuer: Option<PublicKey>,
}

impl Validator {
    /// A validator with these limits and issuer.
    pub fn new(limits: Limits, issuer: Option<PublicKey>) -> Self {
        Validator { limits, issuer }
    }

    /// Checks every rule, signatures included.
    pub fn validate(&self, tx: &Transaction) -> Result<(), ValidationError> {
        let id = tx.tx_id();
        let checks = self.check_structure(tx, id.as_bytes())?;
        keys::verify_batch(&checks.signatures).map_err(|failures| {
            let (position, error) = failures[0];
            checks.error_for(position, error)
        })
    }

    /// Checks many transactions, verifying their signatures in batches across cores.
    /// Returns one result per transaction, in order.
    pub fn validate_many<T: HasTxId + Sync>(&self, txs: &[T]) -> Vec<Result<(), ValidationError>> {
        txs.par_chunks(TXS_PER_BATCH)
            .flat_map_iter(|chunk| self.validate_chunk(chunk))
            .collect()
    }

    fn validate_chunk<T: HasTxId>(&self, chunk: &[T]) -> Vec<Result<(), ValidationError>> {
        let ids: Vec<_> = chunk.iter().map(HasTxId::id).collect();
        let mut results: Vec<Result<(), ValidationError>> = Vec::with_capacity(chunk.len());
        let mut structures = Vec::with_capacity(chunk.len());
        for (tx, id) in chunk.iter().zip(&ids) {
            match self.check_structure(tx.transaction(), id.as_bytes()) {
                Ok(s) => {
                    structures.push(Some(s));
                    results.push(Ok(()));
                }
                Err(e) => {
                    structures.push(None);
                    results.push(Err(e));
                }
            }
        }
        // One batch for the whole chunk; `owners[k]` maps batch position k back to its
        // transaction and to the position within that transaction's checks.
        let mut batch = Vec::new();
        let mut owners = Vec::new();
        for (t, s) in structures.iter().enumerate() {
            if let Some(s) = s {
                for (k, check) in s.signatures.iter().enumerate() {
                    batch.push(*check);
                    owners.push((t, k));
                }
            }
        }
        if let Err(failures) = keys::verify_batch(&batch) {
            for (position, error) in failures {
                let (t, k) = owners[position];
                if results[t].is_ok() {
                    if let Some(s) = &structures[t] {
                        results[t] = Err(s.error_for(k, error));
                    }
                }
            }
        }
        results
    }

    /// Every rule but the signature equations; returns the distinct signature checks.
    fn check_structure<'a>(
        &self,
        tx: &'a Transaction,
        message: &'a [u8],
    ) -> Result<PendingSignatures<'a>, ValidationError> {
        if tx.is_mint() {
            return self.check_mint(tx, message);
        }
        if tx.nonce.0 != [0; 32] {
            return Err(ValidationError::TransferNonce);
        }
        if tx.outputs.is_empty() {
            return Err(ValidationError::NoOutputs);
        }
        self.check_sizes(tx)?;
        if tx.witnesses.len() != tx.inputs.len() {
            return Err(ValidationError::WitnessCount {
                expected: tx.inputs.len(),
                witnesses: tx.witnesses.len(),
            });
        }
        let mut seen = HashMap::with_capacity(tx.inputs.len());
        for (i, input) in tx.inputs.iter().enumerate() {
            if let Some(&first) = seen.get(&input.outpoint) {
                return Err(ValidationError::DuplicateInput { input: i, first });
            }
            seen.insert(input.outpoint, i);
        }
        let mut input_sum = Amount::ZERO;
        for (i, input) in tx.inputs.iter().enumerate() {
            if input.spent.value.is_zero() {
                return Err(ValidationError::ZeroValueInput { input: i });
            }
            input_sum = input_sum
                .checked_add(input.spent.value)
                .ok_or(ValidationError::InputOverflow { input: i })?;
        }
        let output_sum = check_outputs(tx)?;
        if input_sum != output_sum {
            return Err(ValidationError::Unbalanced {
                inputs: input_sum,
                outputs: output_sum,
            });
        }
        let mut pending = PendingSignatures::default();
        for (i, (witness, input)) in tx.witnesses.iter().zip(&tx.inputs).enumerate() {
            let key = match &witness.program {
                WitnessProgram::P2pk(key) => key,
                WitnessProgram::Unknown { version, .. } => {
                    return Err(ValidationError::UnknownWitnessProgram {
                        witness: i,
                        version: *version,
                    })
                }
            };
            if witness.program.commitment() != input.spent.commitment {
                return Err(ValidationError::ProgramMismatch { input: i });
            }
            // The key's validity (rule 1) is checked where it is decompressed for the
            // signature check, which names this witness: decompressing it here as well
            // cost a third of all the point decompressions of validation.
            pending.add(i, key, message, &witness.signature);
        }
        Ok(pending)
    }

    fn check_mint<'a>(
        &self,
        tx: &'a Transaction,
        message: &'a [u8],
    ) -> Result<PendingSignatures<'a>, ValidationError> {
        // With no inputs, the nonce is what says "mint": a zero nonce is a transfer that
        // forgot its inputs.
        if tx.nonce.0 == [0; 32] {
            return Err(ValidationError::NoInputs);
        }
        if tx.outputs.is_empty() {
            return Err(ValidationError::NoOutputs);
        }
        self.check_sizes(tx)?;
        if tx.witnesses.len() != 1 {
            return Err(ValidationError::WitnessCount {
                expected: 1,
                witnesses: tx.witnesses.len(),
            });
        }
        check_outputs(tx)?;
        let witness = &tx.witnesses[0];
        let key = match &witness.program {
            WitnessProgram::P2pk(key) => key,
            WitnessProgram::Unknown { version, .. } => {
                return Err(ValidationError::UnknownWitnessProgram {
                    witness: 0,
                    version: *version,
                })
            }
        };
        if self.issuer.as_ref() != Some(key) {
            return Err(ValidationError::UnauthorizedMint);
        }
        let mut pending = PendingSignatures::default();
        pending.add(0, key, message, &witness.signature);
        Ok(pending)
    }

    fn check_sizes(&self, tx: &Transaction) -> Result<(), ValidationError> {
        if tx.inputs.len() > self.limits.max_inputs {
            return Err(ValidationError::TooManyInputs {
                count: tx.inputs.len(),
                max: self.limits.max_inputs,
            });
        }
        if tx.outputs.len() > self.limits.max_outputs {
            return Err(ValidationError::TooManyOutputs {
                count: tx.outputs.len(),
                max: self.limits.max_outputs,
            });
        }
        Ok(())
    }
}

/// Checks output values: none zero, and their sum fits. Returns the sum.
fn check_outputs(tx: &Transaction) -> Result<Amount, ValidationError> {
    let mut sum = Amount::ZERO;
    for (o, output) in tx.outputs.iter().enumerate() {
        if output.value.is_zero() {
            return Err(ValidationError::ZeroValueOutput { output: o });
        }
        sum = sum
            .checked_add(output.value)
            .ok_or(ValidationError::OutputOverflow { output: o })?;
    }
    Ok(sum)
}

/// The distinct signature checks of one transaction, each with the first witness that
/// needs it: a key that locks several inputs signs the same tx id once.
#[derive(Default)]
struct PendingSignatures<'a> {
    signatures: Vec<SignatureCheck<'a>>,
    witness_of: Vec<usize>,
}

impl<'a> PendingSignatures<'a> {
    fn add(
        &mut self,
        witness: usize,
        key: &'a PublicKey,
        message: &'a [u8],
        signature: &'a keys::Signature,
    ) {
        // Linear scan: transactions have few witnesses, and a set would cost more.
        let duplicate = self
            .signatures
            .iter()
            .any(|c| c.key == key && c.signature == signature);
        if !duplicate {
            self.signatures.push(SignatureCheck {
                key,
                message,
                signature,
            });
            self.witness_of.push(witness);
        }
    }

    fn error_for(&self, position: usize, error: SignatureError) -> ValidationError {
        let witness = self.witness_of[position];
        match error {
            SignatureError::InvalidPublicKey => ValidationError::InvalidPublicKey { witness },
            SignatureError::InvalidSignature => ValidationError::InvalidSignature { witness },
        }
    }
}
