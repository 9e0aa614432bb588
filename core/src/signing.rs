//! Building signed transactions: what wallets, the issuer, the benchmark and tests use.

use crate::hash::Hash;
use crate::keys::SecretKey;
use crate::transaction::{Input, Output, Transaction, Witness, WitnessProgram};

/// Builds a transfer spending each input with its key (`spends[i].1` signs input `i`).
/// The keys must be the ones the spent outputs are locked to, or validation will refuse
/// the transaction with [`crate::ValidationError::ProgramMismatch`].
pub fn sign_transfer(spends: &[(Input, &SecretKey)], outputs: Vec<Output>) -> Transaction {
    let mut tx = Transaction {
        inputs: spends.iter().map(|(input, _)| *input).collect(),
        outputs,
        nonce: Hash::ZERO,
        witnesses: Vec::with_capacity(spends.len()),
    };
    let id = tx.tx_id();
    tx.witnesses = spends
        .iter()
        .map(|(_, key)| p2pk_witness(key, id.as_bytes()))
        .collect();
    tx
}

/// Builds a mint of `outputs` signed by the issuer. `nonce` must be unique (random) and
/// not all zero; the back end refuses a second mint with the same id.
pub fn sign_mint(issuer: &SecretKey, outputs: Vec<Output>, nonce: Hash) -> Transaction {
    let mut tx = Transaction {
        inputs: Vec::new(),
        outputs,
        nonce,
        witnesses: Vec::new(),
    };
    let id = tx.tx_id();
    tx.witnesses = vec![p2pk_witness(issuer, id.as_bytes())];
    tx
}

fn p2pk_witness(key: &SecretKey, message: &[u8]) -> Witness {
    Witness {
        program: WitnessProgram::P2pk(key.public_key()),
        signature: key.sign(message),
    }
}

/// An output of `value` cents locked to `key`.
pub fn p2pk_output(key: &SecretKey, cents: u64) -> Output {
    Output {
        commitment: WitnessProgram::P2pk(key.public_key()).commitment(),
        value: crate::Amount::from_cents(cents),
    }
}
