//! The workload: funding outputs and pre-signed transactions, all derived from one seed,
//! built before the clock starts.
//!
//! Everything is a pure function of the [`WorkloadSpec`]: the key of funding output `j`
//! is derived from `(seed, j)`, the roles (valid, invalid, double spend) come from a
//! shuffle seeded by `seed`, and every transaction is built from its index alone, so the
//! work spreads over all cores with rayon and still gives the same bytes on every run.
//!
//! Layout of a run of `n` transactions of shape `i`-in/`o`-out:
//! - each transaction spends fresh funding outputs, one per input, each locked to its own
//!   key (so a transaction carries `i` distinct signatures, as in Hamilton's figures),
//!   and pays the whole value to `o` outputs of a recipient key;
//! - an *invalid* transaction is broken in one of three ways, in turn: a corrupted
//!   signature, outputs worth one cent more than the inputs, or a witness by the wrong
//!   key; the sentinel must answer INVALID with the matching code;
//! - a *double spend* is a pair: the earlier transaction (the victim) is an ordinary
//!   valid one, and the later one spends the victim's first funding output plus `i − 1`
//!   fresh ones. Exactly one of the two must be confirmed and the other rejected; which
//!   one depends on the order the cluster sees them in.
//!
//! Funding outputs exist on the cluster either as a *genesis* (the caller writes
//! [`Workload::genesis`] into the shard stores of a fresh cluster before it starts;
//! their outpoints are synthetic) or through *mints* signed by the issuer key, which the
//! harness submits through the API before the clock starts.

use std::fmt;

use cbdc_core::{
    p2pk_output, sign_mint, sign_transfer, Amount, Hash, Input, OutPoint, Output, SecretKey,
    Transaction, TxId, UhsId,
};
use cbdc_proto::v1::ValidationErrorCode;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::args::{BenchArgs, Shape};
use crate::error::BenchError;

/// Recipient keys a run pays to, reused round-robin: outputs are never spent during a run,
/// so a small pool saves deriving a key per transaction.
const RECIPIENTS: u64 = 64;

/// Domain tags of the values derived from the seed, so that no two uses collide.
const TAG_FUNDING_KEY: &str = "cbdc-bench/funding-key";
const TAG_RECIPIENT_KEY: &str = "cbdc-bench/recipient-key";
const TAG_DOUBLE_SPENDER_KEY: &str = "cbdc-bench/double-spender-key";
const TAG_GENESIS_TX: &str = "cbdc-bench/genesis-tx";
const TAG_MINT_NONCE: &str = "cbdc-bench/mint-nonce";
/// Mixed into the seed of the role shuffle.
const ROLE_SHUFFLE: u64 = 0x726f_6c65_7368_7566;

/// How the funding outputs come to exist on the cluster.
#[derive(Clone, Debug)]
// One value per run: the size of the key in the enum does not matter.
#[allow(clippy::large_enum_variant)]
pub enum FundingPlan {
    /// Written straight into the shard stores of a fresh cluster before it starts (the
    /// caller does it with [`Workload::genesis`]). Fast for millions of outputs.
    Genesis,
    /// Minted through the public API by the harness, before the clock starts.
    Mint {
        /// The cluster's issuer key.
        issuer: SecretKey,
        /// Funding outputs per mint transaction (at most the cluster's output limit).
        outputs_per_mint: usize,
    },
}

/// Which kind of [`FundingPlan`] a workload was built for (without the key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingKind {
    /// See [`FundingPlan::Genesis`].
    Genesis,
    /// See [`FundingPlan::Mint`].
    Mint,
}

impl fmt::Display for FundingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FundingKind::Genesis => "genesis",
            FundingKind::Mint => "mint",
        })
    }
}

/// Everything a workload is derived from.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Inputs and outputs per transaction.
    pub shape: Shape,
    /// Transactions to build.
    pub transactions: u32,
    /// Fraction of invalid transactions (rounded to a whole count).
    pub invalid_fraction: f64,
    /// Fraction of transactions that double-spend another's input (rounded; each pairs
    /// with a valid transaction, so at most half of what is not invalid).
    pub double_spend_fraction: f64,
    /// Value of each funding output in cents.
    pub coin_value: u64,
    /// The seed every key and choice is derived from.
    pub seed: u64,
    /// How the funding outputs come to exist.
    pub funding: FundingPlan,
}

impl WorkloadSpec {
    /// The spec `args` describe, funded by `funding`. A missing `--seed` becomes a random
    /// one, kept in the spec (and so in the report) so that the run can be repeated.
    pub fn from_args(args: &BenchArgs, funding: FundingPlan) -> Result<Self, BenchError> {
        args.validate()?;
        let transactions = u32::try_from(args.planned_transactions()).map_err(|_| {
            BenchError::Options(format!(
                "{} transactions is too many",
                args.planned_transactions()
            ))
        })?;
        Ok(WorkloadSpec {
            shape: args.shape(),
            transactions,
            invalid_fraction: args.invalid_fraction,
            double_spend_fraction: args.double_spend_fraction,
            coin_value: args.coin_value,
            seed: args.seed.unwrap_or_else(rand::random),
            funding,
        })
    }
}

/// A way of making a transaction invalid on its face, with the code the sentinel must
/// answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidKind {
    /// One bit of the last witness's signature flipped.
    BadSignature,
    /// The outputs are worth one cent more than the inputs (correctly signed).
    Unbalanced,
    /// Input 0 is signed by a key other than the one its output is locked to.
    WrongKey,
}

impl InvalidKind {
    const ALL: [InvalidKind; 3] = [
        InvalidKind::BadSignature,
        InvalidKind::Unbalanced,
        InvalidKind::WrongKey,
    ];

    /// The validation error code a sentinel must answer.
    pub fn expected_code(self) -> ValidationErrorCode {
        match self {
            InvalidKind::BadSignature => ValidationErrorCode::InvalidSignature,
            InvalidKind::Unbalanced => ValidationErrorCode::Unbalanced,
            InvalidKind::WrongKey => ValidationErrorCode::ProgramMismatch,
        }
    }
}

/// What the answer to one transaction must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expectation {
    /// Confirmed.
    Confirm,
    /// INVALID with [`InvalidKind::expected_code`].
    Invalid(InvalidKind),
    /// One of a double-spend pair (with the transaction at index `partner`): exactly one
    /// of the two is confirmed and the other rejected; alone (the partner never sent),
    /// confirmed.
    Contested {
        /// Index of the other transaction of the pair.
        partner: u32,
    },
}

/// The role of a transaction while it is being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Valid,
    Invalid(InvalidKind),
    /// The earlier of a double-spend pair: an ordinary transaction.
    Victim {
        partner: u32,
    },
    /// The later of a pair: spends the victim's first funding output.
    DoubleSpend {
        victim: u32,
    },
}

impl Role {
    fn expectation(self) -> Expectation {
        match self {
            Role::Valid => Expectation::Confirm,
            Role::Invalid(kind) => Expectation::Invalid(kind),
            Role::Victim { partner } => Expectation::Contested { partner },
            Role::DoubleSpend { victim } => Expectation::Contested { partner: victim },
        }
    }

    /// Funding outputs of its own the transaction spends.
    fn fresh_inputs(self, shape: Shape) -> usize {
        match self {
            Role::DoubleSpend { .. } => shape.inputs - 1,
            _ => shape.inputs,
        }
    }
}

/// Funding outputs and pre-signed transactions, with the answer each must get.
#[derive(Clone, Debug)]
pub struct Workload {
    seed: u64,
    shape: Shape,
    coin_value: u64,
    funding: FundingKind,
    /// UHS id and value of every funding output.
    genesis: Vec<(UhsId, Amount)>,
    /// Mints creating the funding outputs (empty for a genesis).
    mints: Vec<Transaction>,
    transactions: Vec<Transaction>,
    expectations: Vec<Expectation>,
}

/// `SHA-256(tag ‖ seed ‖ index)`: every key, synthetic tx id and nonce of a workload.
fn derive(tag: &str, seed: u64, index: u64) -> Hash {
    Hash::digest_parts(&[tag.as_bytes(), &seed.to_le_bytes(), &index.to_le_bytes()])
}

fn derive_key(tag: &str, seed: u64, index: u64) -> SecretKey {
    SecretKey::from_bytes(&derive(tag, seed, index).0)
}

/// `total` split into `parts` non-zero values that differ by at most one (the first ones
/// take the remainder). The caller guarantees `total >= parts >= 1`.
pub(crate) fn split_value(total: u64, parts: usize) -> Vec<u64> {
    let parts_u64 = parts.max(1) as u64;
    let base = total / parts_u64;
    let remainder = total % parts_u64;
    (0..parts_u64)
        .map(|k| base + u64::from(k < remainder))
        .collect()
}

/// Chooses which transactions are invalid and which form double-spend pairs.
fn assign_roles(
    n: usize,
    invalid_fraction: f64,
    double_spend_fraction: f64,
    seed: u64,
) -> Vec<Role> {
    // Float to int casts saturate, and the fractions were checked to lie in [0, 1].
    let n_invalid = ((n as f64 * invalid_fraction).round() as usize).min(n);
    let n_pairs = ((n as f64 * double_spend_fraction).round() as usize).min((n - n_invalid) / 2);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ ROLE_SHUFFLE));
    let mut roles = vec![Role::Valid; n];
    for (k, &i) in order[..n_invalid].iter().enumerate() {
        roles[i as usize] = Role::Invalid(InvalidKind::ALL[k % InvalidKind::ALL.len()]);
    }
    for pair in order[n_invalid..n_invalid + 2 * n_pairs].chunks_exact(2) {
        let (first, second) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
        roles[first as usize] = Role::Victim { partner: second };
        roles[second as usize] = Role::DoubleSpend { victim: first };
    }
    roles
}

impl Workload {
    /// Builds the workload `args` describe, funded as a genesis: what an embedded cluster
    /// uses. Signs on all cores; call it from a blocking context (or
    /// `tokio::task::spawn_blocking`), as it can take seconds for millions of
    /// transactions.
    pub fn generate(args: &BenchArgs) -> Result<Workload, BenchError> {
        Workload::from_spec(&WorkloadSpec::from_args(args, FundingPlan::Genesis)?)
    }

    /// Builds the workload of `spec`.
    pub fn from_spec(spec: &WorkloadSpec) -> Result<Workload, BenchError> {
        let shape = spec.shape;
        if shape.inputs == 0 || shape.outputs == 0 {
            return Err(BenchError::Options(format!("empty shape {shape}")));
        }
        let total = spec
            .coin_value
            .checked_mul(shape.inputs as u64)
            .filter(|&t| t >= shape.outputs as u64)
            .ok_or_else(|| {
                BenchError::Options(format!(
                    "{} cents per input cannot pay {shape}",
                    spec.coin_value
                ))
            })?;
        let seed = spec.seed;
        let n = spec.transactions as usize;
        let roles = assign_roles(n, spec.invalid_fraction, spec.double_spend_fraction, seed);

        // Where each transaction's fresh funding outputs start.
        let mut starts = Vec::with_capacity(n);
        let mut funding_count = 0usize;
        for role in &roles {
            starts.push(funding_count);
            funding_count += role.fresh_inputs(shape);
        }

        let keys: Vec<SecretKey> = (0..funding_count as u64)
            .into_par_iter()
            .map(|j| derive_key(TAG_FUNDING_KEY, seed, j))
            .collect();
        let outputs: Vec<Output> = keys
            .par_iter()
            .map(|k| p2pk_output(k, spec.coin_value))
            .collect();

        let (kind, mints, outpoints) = match &spec.funding {
            FundingPlan::Genesis => {
                let outpoints: Vec<OutPoint> = (0..funding_count as u64)
                    .into_par_iter()
                    .map(|j| OutPoint {
                        tx_id: TxId(derive(TAG_GENESIS_TX, seed, j)),
                        index: 0,
                    })
                    .collect();
                (FundingKind::Genesis, Vec::new(), outpoints)
            }
            FundingPlan::Mint {
                issuer,
                outputs_per_mint,
            } => {
                if *outputs_per_mint == 0 {
                    return Err(BenchError::Options(
                        "a mint must create at least one output".into(),
                    ));
                }
                let mints: Vec<Transaction> = outputs
                    .par_chunks(*outputs_per_mint)
                    .enumerate()
                    .map(|(m, chunk)| {
                        let mut nonce = derive(TAG_MINT_NONCE, seed, m as u64);
                        // An all-zero nonce marks a transfer; make sure a mint never has
                        // one (a 2^-256 event, but free to rule out).
                        nonce.0[0] |= 1;
                        sign_mint(issuer, chunk.to_vec(), nonce)
                    })
                    .collect();
                let ids: Vec<TxId> = mints.par_iter().map(Transaction::tx_id).collect();
                let outpoints = (0..funding_count)
                    .map(|j| OutPoint {
                        tx_id: ids[j / outputs_per_mint],
                        index: (j % outputs_per_mint) as u32,
                    })
                    .collect();
                (FundingKind::Mint, mints, outpoints)
            }
        };

        let genesis: Vec<(UhsId, Amount)> = outputs
            .par_iter()
            .zip(outpoints.par_iter())
            .map(|(o, p)| (o.uhs_id(p), o.value))
            .collect();

        let recipients: Vec<SecretKey> = (0..RECIPIENTS)
            .map(|r| derive_key(TAG_RECIPIENT_KEY, seed, r))
            .collect();
        // Double spends pay to keys of their own, so that with one input (where the pair
        // spends the same outpoint) the two transactions still differ.
        let double_spenders: Vec<SecretKey> = (0..RECIPIENTS)
            .map(|r| derive_key(TAG_DOUBLE_SPENDER_KEY, seed, r))
            .collect();
        let values = split_value(total, shape.outputs);
        let funding = FundingView {
            keys: &keys,
            outputs: &outputs,
            outpoints: &outpoints,
        };

        let transactions: Vec<Transaction> = (0..n)
            .into_par_iter()
            .map(|i| {
                let role = roles[i];
                let pool = match role {
                    Role::DoubleSpend { .. } => &double_spenders,
                    _ => &recipients,
                };
                let payee = &pool[i % pool.len()];
                let mut spends: Vec<(Input, &SecretKey)> = Vec::with_capacity(shape.inputs);
                if let Role::DoubleSpend { victim } = role {
                    spends.push(funding.spend(starts[victim as usize]));
                }
                for j in starts[i]..starts[i] + role.fresh_inputs(shape) {
                    spends.push(funding.spend(j));
                }
                let mut outs: Vec<Output> = values.iter().map(|&v| p2pk_output(payee, v)).collect();
                match role {
                    Role::Invalid(InvalidKind::Unbalanced) => {
                        if let Some(last) = outs.last_mut() {
                            // One cent more, or less if more would overflow; never zero,
                            // since the value is then near u64::MAX.
                            last.value = last
                                .value
                                .checked_add(Amount::from_cents(1))
                                .or_else(|| last.value.checked_sub(Amount::from_cents(1)))
                                .unwrap_or(last.value);
                        }
                    }
                    Role::Invalid(InvalidKind::WrongKey) => {
                        if let Some(first) = spends.first_mut() {
                            first.1 = payee;
                        }
                    }
                    _ => {}
                }
                let mut tx = sign_transfer(&spends, outs);
                if role == Role::Invalid(InvalidKind::BadSignature) {
                    if let Some(w) = tx.witnesses.last_mut() {
                        // The low bit of S: S ± 1 stays canonical, the equation fails.
                        w.signature.0[32] ^= 1;
                    }
                }
                tx
            })
            .collect();

        Ok(Workload {
            seed,
            shape,
            coin_value: spec.coin_value,
            funding: kind,
            genesis,
            mints,
            transactions,
            expectations: roles.iter().map(|r| r.expectation()).collect(),
        })
    }

    /// The seed it was derived from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The transaction shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Value of each funding output in cents.
    pub fn coin_value(&self) -> u64 {
        self.coin_value
    }

    /// How the funding outputs come to exist.
    pub fn funding(&self) -> FundingKind {
        self.funding
    }

    /// UHS id and value of every funding output: with a genesis funding, what the
    /// caller writes into the shard stores (each id into the shard that owns it) before
    /// the cluster starts; with mints, what the mints create.
    pub fn genesis(&self) -> &[(UhsId, Amount)] {
        &self.genesis
    }

    /// The mints that create the funding outputs (empty for a genesis).
    pub fn mints(&self) -> &[Transaction] {
        &self.mints
    }

    /// The pre-signed transactions, in sending order.
    pub fn transactions(&self) -> &[Transaction] {
        &self.transactions
    }

    /// The answer each transaction must get, by index.
    pub fn expectations(&self) -> &[Expectation] {
        &self.expectations
    }

    /// Total value of the funding outputs.
    pub fn total_value(&self) -> Option<Amount> {
        Amount::checked_sum(self.genesis.iter().map(|(_, v)| *v))
    }

    /// Splits into the parts the driver consumes: transactions and expectations.
    pub(crate) fn into_parts(self) -> (Vec<Transaction>, Vec<Expectation>) {
        (self.transactions, self.expectations)
    }
}

/// Read access to the funding outputs while transactions are built.
struct FundingView<'a> {
    keys: &'a [SecretKey],
    outputs: &'a [Output],
    outpoints: &'a [OutPoint],
}

impl<'a> FundingView<'a> {
    /// Spending funding output `j`, with its key.
    fn spend(&self, j: usize) -> (Input, &'a SecretKey) {
        (
            Input {
                outpoint: self.outpoints[j],
                spent: self.outputs[j],
            },
            &self.keys[j],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::{Limits, Validator};
    use cbdc_proto::status::validation_error_code;
    use std::collections::HashSet;

    fn spec(n: u32, invalid: f64, double: f64) -> WorkloadSpec {
        WorkloadSpec {
            shape: Shape::REFERENCE,
            transactions: n,
            invalid_fraction: invalid,
            double_spend_fraction: double,
            coin_value: 1_000,
            seed: 7,
            funding: FundingPlan::Genesis,
        }
    }

    fn issuer() -> SecretKey {
        SecretKey::from_bytes(&[1; 32])
    }

    #[test]
    fn test_split_value_conserves_and_never_zero() {
        assert_eq!(split_value(10, 3), vec![4, 3, 3]);
        assert_eq!(split_value(3, 3), vec![1, 1, 1]);
        assert_eq!(
            split_value(u64::MAX, 2)
                .iter()
                .map(|&v| v as u128)
                .sum::<u128>(),
            u64::MAX as u128
        );
    }

    #[test]
    fn test_generate_is_deterministic_by_seed() {
        let a = Workload::from_spec(&spec(60, 0.1, 0.1)).unwrap();
        let b = Workload::from_spec(&spec(60, 0.1, 0.1)).unwrap();
        assert_eq!(a.transactions(), b.transactions());
        assert_eq!(a.expectations(), b.expectations());
        assert_eq!(a.genesis(), b.genesis());
        let other = Workload::from_spec(&WorkloadSpec {
            seed: 8,
            ..spec(60, 0.1, 0.1)
        })
        .unwrap();
        assert_ne!(a.transactions()[0], other.transactions()[0]);
        assert_ne!(a.genesis()[0], other.genesis()[0]);
    }

    #[test]
    fn test_generate_counts_and_shape() {
        let w = Workload::from_spec(&spec(200, 0.05, 0.05)).unwrap();
        assert_eq!(w.transactions().len(), 200);
        let invalid = w
            .expectations()
            .iter()
            .filter(|e| matches!(e, Expectation::Invalid(_)))
            .count();
        let contested = w
            .expectations()
            .iter()
            .filter(|e| matches!(e, Expectation::Contested { .. }))
            .count();
        assert_eq!(invalid, 10);
        assert_eq!(contested, 20);
        // 190 transactions with 2 fresh inputs, 10 double spends with 1.
        assert_eq!(w.genesis().len(), 190 * 2 + 10);
        for tx in w.transactions() {
            assert_eq!(tx.inputs.len(), 2);
            assert_eq!(tx.outputs.len(), 2);
            assert_eq!(tx.witnesses.len(), 2);
        }
        // Every input of every transaction is a distinct key.
        let keys: HashSet<_> = w
            .transactions()
            .iter()
            .flat_map(|tx| tx.inputs.iter().map(|i| i.spent.commitment))
            .collect();
        assert_eq!(keys.len(), w.genesis().len());
    }

    #[test]
    fn test_generate_conserves_value() {
        let w = Workload::from_spec(&spec(100, 0.0, 0.1)).unwrap();
        let genesis: HashSet<UhsId> = w.genesis().iter().map(|(id, _)| *id).collect();
        for tx in w.transactions() {
            let inputs = Amount::checked_sum(tx.inputs.iter().map(|i| i.spent.value));
            let outputs = Amount::checked_sum(tx.outputs.iter().map(|o| o.value));
            assert_eq!(inputs, outputs);
            assert_eq!(inputs, Some(Amount::from_cents(2_000)));
            for input in &tx.inputs {
                assert!(genesis.contains(&input.uhs_id()), "input not funded");
            }
        }
        assert_eq!(
            w.total_value(),
            Some(Amount::from_cents(1_000 * w.genesis().len() as u64))
        );
    }

    #[test]
    fn test_expected_outcomes_match_validation() {
        let w = Workload::from_spec(&spec(90, 0.2, 0.1)).unwrap();
        let validator = Validator::new(Limits::default(), None);
        let results = validator.validate_many(w.transactions());
        let mut kinds = HashSet::new();
        for (i, (result, expected)) in results.iter().zip(w.expectations()).enumerate() {
            match expected {
                Expectation::Confirm | Expectation::Contested { .. } => {
                    assert_eq!(result, &Ok(()), "transaction {i}")
                }
                Expectation::Invalid(kind) => {
                    kinds.insert(*kind);
                    let error = result.as_ref().expect_err("must be invalid");
                    assert_eq!(validation_error_code(error), kind.expected_code());
                }
            }
        }
        assert_eq!(kinds.len(), 3, "every kind of invalid transaction is used");
    }

    #[test]
    fn test_double_spend_pairs_share_exactly_one_input() {
        let w = Workload::from_spec(&spec(100, 0.1, 0.2)).unwrap();
        let txs = w.transactions();
        let mut pairs = 0;
        for (i, e) in w.expectations().iter().enumerate() {
            if let Expectation::Contested { partner } = e {
                let p = *partner as usize;
                assert_eq!(
                    w.expectations()[p],
                    Expectation::Contested { partner: i as u32 }
                );
                assert_ne!(txs[i].tx_id(), txs[p].tx_id());
                let mine: HashSet<_> = txs[i].inputs.iter().map(|x| x.outpoint).collect();
                let shared = txs[p]
                    .inputs
                    .iter()
                    .filter(|x| mine.contains(&x.outpoint))
                    .count();
                assert_eq!(shared, 1);
                pairs += 1;
            }
        }
        assert_eq!(pairs, 40);
        // Outside the pairs no outpoint is spent twice.
        let mut seen = HashSet::new();
        let mut reused = 0;
        for tx in txs {
            for input in &tx.inputs {
                if !seen.insert(input.outpoint) {
                    reused += 1;
                }
            }
        }
        assert_eq!(reused, 20);
    }

    #[test]
    fn test_single_input_double_spends_differ() {
        let w = Workload::from_spec(&WorkloadSpec {
            shape: Shape {
                inputs: 1,
                outputs: 1,
            },
            ..spec(40, 0.0, 0.5)
        })
        .unwrap();
        let ids: HashSet<_> = w.transactions().iter().map(Transaction::tx_id).collect();
        assert_eq!(ids.len(), 40);
        let validator = Validator::new(Limits::default(), None);
        assert!(validator
            .validate_many(w.transactions())
            .iter()
            .all(Result::is_ok));
    }

    #[test]
    fn test_mint_funding_creates_the_spent_outputs() {
        let w = Workload::from_spec(&WorkloadSpec {
            funding: FundingPlan::Mint {
                issuer: issuer(),
                outputs_per_mint: 7,
            },
            ..spec(20, 0.0, 0.0)
        })
        .unwrap();
        assert_eq!(w.funding(), FundingKind::Mint);
        assert_eq!(w.mints().len(), 40usize.div_ceil(7));
        let validator = Validator::new(Limits::default(), Some(issuer().public_key()));
        assert!(validator.validate_many(w.mints()).iter().all(Result::is_ok));
        let created: HashSet<UhsId> = w
            .mints()
            .iter()
            .flat_map(|m| m.compact().outputs.into_iter().map(|(id, _)| id))
            .collect();
        let genesis: HashSet<UhsId> = w.genesis().iter().map(|(id, _)| *id).collect();
        assert_eq!(created, genesis);
        for tx in w.transactions() {
            for input in &tx.inputs {
                assert!(created.contains(&input.uhs_id()));
            }
        }
        // Distinct nonces, so distinct mint ids.
        let ids: HashSet<_> = w.mints().iter().map(Transaction::tx_id).collect();
        assert_eq!(ids.len(), w.mints().len());
    }

    #[test]
    fn test_rounding_never_overcommits_roles() {
        // 3 transactions at 50 % invalid and 25 % double spends round to 2 + 2 > 3: the
        // pairs are cut to what is left.
        let w = Workload::from_spec(&spec(3, 0.5, 0.25)).unwrap();
        let contested = w
            .expectations()
            .iter()
            .filter(|e| matches!(e, Expectation::Contested { .. }))
            .count();
        assert_eq!(contested, 0);
    }
}
