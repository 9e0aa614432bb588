//! The wallet logic: keys, coin selection, signing, and the rules that keep money safe
//! across crashes, timeouts and rejections.
//!
//! # Safety rules
//!
//! 1. **Record before submitting.** A send is written to the wallet file as `pending`,
//!    with its signed bytes, and its inputs are marked `pending_spend`, in one
//!    transaction, before anything goes to the ledger. A crash after that point leaves a
//!    pending send that `sync` settles; a crash before it leaves nothing to settle.
//! 2. **Pending inputs are never reused.** Coin selection only looks at `unspent`
//!    outputs, so the inputs of an unsettled send cannot end up in a second one.
//! 3. **Only the ledger settles a send.** Confirmed: the inputs become `spent` and every
//!    output locked to one of our keys (change, a payment to ourselves, a mint to us) is
//!    credited. Rejected or invalid: the inputs are returned, except those the ledger
//!    says are gone. No answer (timeout, unreachable): nothing changes; the send stays
//!    pending.
//! 4. **"Never arrived" needs proof.** `sync` returns the inputs of a pending send only
//!    when the ledger does not know its transaction *and* every input is still unspent.
//!    If an input is spent but the transaction is unknown, the send stays pending (and
//!    is confirmed if its outputs turn out to exist). A send given up this way is kept
//!    as `abandoned` and re-checked by every `sync`, so that one arriving late after all
//!    is still settled as confirmed, change included.
//! 5. **Received money is checked on the ledger.** `receive` credits an output only when
//!    the ledger reports its UHS id unspent; a payment is credited at most once.

use std::collections::HashSet;

use cbdc_core::{
    sign_mint, sign_transfer, Address, Amount, Hash, Input, Limits, OutPoint, Output, PublicKey,
    SecretKey, Transaction, TxId, UhsId,
};
use rand::RngCore;

use crate::ledger::{Final, Ledger, LedgerError, OutputStatus, Rejection, TxStatus};
use crate::payment::{PaidOutput, Payment, PaymentError};
use crate::store::{
    KeyPurpose, KeyRecord, OutputRecord, OutputState, ReceiptRecord, ReceiptStatus, SendKind,
    SendRecord, SendStatus, Store, StoreError, StoreTx,
};

/// Why a wallet operation failed. Each variant says whether anything changed: only
/// [`WalletError::Pending`], [`WalletError::Rejected`] and [`WalletError::Invalid`] come
/// after a transaction was recorded.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The wallet file failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ledger query failed before anything was recorded.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The payment string is malformed.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// Not enough spendable money.
    #[error(
        "insufficient funds: {requested} requested, {spendable} spendable{}",
        pending_note(*pending)
    )]
    InsufficientFunds {
        /// What was asked for.
        requested: Amount,
        /// What is spendable now.
        spendable: Amount,
        /// What is locked in unsettled sends or waiting in pending receipts.
        pending: Amount,
    },
    /// Enough money, but spread over more outputs than one transaction may spend.
    #[error(
        "paying this needs {needed} inputs but the cluster allows {max} per transaction; \
         send less, or send to yourself first to merge outputs"
    )]
    TooManyInputs {
        /// Inputs needed.
        needed: usize,
        /// The cluster's limit.
        max: usize,
    },
    /// More outputs than one transaction may create.
    #[error("{count} outputs requested but the cluster allows {max} per transaction")]
    TooManyOutputs {
        /// Outputs requested (with change).
        count: usize,
        /// The cluster's limit.
        max: usize,
    },
    /// A zero amount or a zero count.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// The amount cannot be split into that many outputs of at least 0.01.
    #[error("{amount} cannot be split into {outputs} outputs of at least 0.01")]
    SplitTooFine {
        /// The amount.
        amount: Amount,
        /// Outputs asked for.
        outputs: u32,
    },
    /// Amounts that add up past the largest amount.
    #[error("the amounts add up to more than the largest possible amount")]
    Overflow,
    /// The key given to `mint` is not the cluster's issuer key.
    #[error("the issuer key {found} is not this cluster's issuer ({})",
        .expected.map(|k| k.to_string()).unwrap_or_else(|| "the cluster accepts no mints".into()))]
    WrongIssuer {
        /// The cluster's issuer key, if it has one.
        expected: Option<PublicKey>,
        /// The key given.
        found: PublicKey,
    },
    /// The ledger refused the transaction; its inputs were returned.
    #[error("transaction {tx_id} rejected by the ledger: {rejection}")]
    Rejected {
        /// The transaction.
        tx_id: TxId,
        /// Why.
        rejection: Rejection,
    },
    /// Validation refused the transaction; its inputs were returned.
    #[error("transaction {tx_id} is invalid: {message}")]
    Invalid {
        /// The transaction.
        tx_id: TxId,
        /// The validation error.
        message: String,
    },
    /// The transaction was recorded and submitted but no final answer came; it stays
    /// pending (its inputs locked) until `sync` learns its outcome.
    #[error(
        "no final answer for transaction {tx_id} ({cause}); it stays pending: \
         run `cbdc-wallet sync` to settle it"
    )]
    Pending {
        /// The transaction.
        tx_id: TxId,
        /// What went wrong.
        cause: LedgerError,
    },
    /// No output of the payment is locked to a key of this wallet.
    #[error("payment for transaction {tx_id} pays none of this wallet's addresses")]
    NotForThisWallet {
        /// The paying transaction.
        tx_id: TxId,
    },
    /// Every output of the payment for this wallet is already credited (or pending).
    #[error("payment for transaction {tx_id} was already received")]
    AlreadyReceived {
        /// The paying transaction.
        tx_id: TxId,
    },
    /// None of the payment's outputs for this wallet is on the ledger.
    #[error("payment for transaction {tx_id} is not on the ledger: {detail}")]
    NotOnLedger {
        /// The paying transaction.
        tx_id: TxId,
        /// What the ledger said.
        detail: String,
    },
}

fn pending_note(pending: Amount) -> String {
    if pending.is_zero() {
        String::new()
    } else {
        format!(" ({pending} more pending: run `cbdc-wallet sync`)")
    }
}

/// Shorthand for wallet results.
pub type Result<T, E = WalletError> = std::result::Result<T, E>;

/// Money by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Unspent and free: what `send` can use.
    pub spendable: Amount,
    /// Number of spendable outputs.
    pub spendable_outputs: u64,
    /// Locked as inputs of sends that are not settled yet.
    pub pending_spend: Amount,
    /// Number of such outputs.
    pub pending_spend_outputs: u64,
    /// Unsettled sends.
    pub pending_sends: u64,
    /// Received, waiting for the ledger to settle the paying transaction.
    pub pending_receive: Amount,
    /// Number of such outputs.
    pub pending_receive_outputs: u64,
}

impl Balance {
    /// Everything not yet spendable: outgoing locks and incoming receipts.
    pub fn pending(&self) -> Amount {
        self.pending_spend
            .checked_add(self.pending_receive)
            .unwrap_or(Amount::MAX)
    }
}

/// What a confirmed send, mint or fan did.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// The transaction.
    pub tx_id: TxId,
    /// Send, mint or fan.
    pub kind: SendKind,
    /// Paid to the recipient (without change).
    pub amount: Amount,
    /// The recipient.
    pub recipient: String,
    /// Outputs paying the recipient.
    pub outputs: u32,
    /// Outputs spent.
    pub inputs: usize,
    /// Change returned to this wallet.
    pub change: Amount,
    /// Value credited to this wallet by the transaction's outputs (change, and any
    /// output to our own addresses).
    pub credited: Amount,
    /// The payment string for the recipient.
    pub payment: String,
}

/// What `receive` credited.
#[derive(Debug, Clone, Default)]
pub struct ReceiveReport {
    /// The paying transaction.
    pub tx_id: TxId,
    /// Credited now (found unspent).
    pub credited: Amount,
    /// Outputs credited.
    pub credited_outputs: u32,
    /// Waiting for the ledger to settle (sync will credit it).
    pub pending: Amount,
    /// Outputs pending.
    pub pending_outputs: u32,
    /// Outputs for this wallet that the ledger does not hold.
    pub missing_outputs: u32,
    /// Outputs of the payment for other wallets.
    pub other_outputs: u32,
}

/// What `sync` did to one send.
#[derive(Debug, Clone)]
pub struct SyncedSend {
    /// The transaction.
    pub tx_id: TxId,
    /// Send, mint or fan.
    pub kind: SendKind,
    /// Paid to the recipient.
    pub amount: Amount,
    /// Its status before.
    pub before: SendStatus,
    /// Its status now.
    pub after: SendStatus,
    /// Why, in words.
    pub note: String,
    /// The payment string (the recipient needs it once the send is confirmed).
    pub payment: String,
}

/// What `sync` did to one pending receipt.
#[derive(Debug, Clone)]
pub struct SyncedReceipt {
    /// The paying transaction.
    pub tx_id: TxId,
    /// Its status now.
    pub after: ReceiptStatus,
    /// Credited by this sync.
    pub credited: Amount,
    /// Why, in words.
    pub note: String,
}

/// What `sync` did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Pending sends, and abandoned ones whose fate became known.
    pub sends: Vec<SyncedSend>,
    /// Pending receipts.
    pub receipts: Vec<SyncedReceipt>,
}

/// Which way money moved in a history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A send to an address.
    Sent,
    /// A mint.
    Minted,
    /// A fan-out.
    Fanned,
    /// A received payment.
    Received,
}

impl Direction {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Minted => "minted",
            Direction::Fanned => "fan",
            Direction::Received => "received",
        }
    }
}

/// One line of the history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// Which way.
    pub direction: Direction,
    /// The transaction.
    pub tx_id: TxId,
    /// The amount paid or received.
    pub amount: Amount,
    /// Outputs paid or received.
    pub outputs: u32,
    /// The recipient, for sends.
    pub counterparty: Option<String>,
    /// The status's name.
    pub status: &'static str,
    /// Reason or note.
    pub detail: Option<String>,
    /// The payment string.
    pub payment: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A wallet: its file, and the logic over any [`Ledger`].
pub struct Wallet {
    store: Store,
}

/// Chooses inputs for `target` from `unspent` (largest first). One output covering the
/// target alone is preferred, the smallest such, which keeps large outputs whole;
/// otherwise the largest outputs are taken until the target is reached, which needs the
/// fewest inputs, so that if it exceeds `max_inputs` no choice fits.
pub fn select_coins(
    unspent: &[OutputRecord],
    target: Amount,
    max_inputs: usize,
) -> Result<Vec<OutputRecord>> {
    if let Some(single) = unspent
        .iter()
        .filter(|o| o.value >= target)
        .min_by_key(|o| o.value)
    {
        return Ok(vec![single.clone()]);
    }
    let mut chosen = Vec::new();
    let mut total = Amount::ZERO;
    for o in unspent {
        if total >= target {
            break;
        }
        total = total.checked_add(o.value).ok_or(WalletError::Overflow)?;
        chosen.push(o.clone());
    }
    if total < target {
        return Err(WalletError::InsufficientFunds {
            requested: target,
            spendable: total,
            pending: Amount::ZERO,
        });
    }
    if chosen.len() > max_inputs.max(1) {
        return Err(WalletError::TooManyInputs {
            needed: chosen.len(),
            max: max_inputs,
        });
    }
    Ok(chosen)
}

/// Splits `amount` into `n` outputs differing by at most one cent (larger ones first).
pub fn split_amount(amount: Amount, n: u32) -> Result<Vec<Amount>> {
    if n == 0 {
        return Err(WalletError::Zero("the number of outputs"));
    }
    let cents = amount.cents();
    let base = cents / u64::from(n);
    let extra = cents % u64::from(n);
    if base == 0 {
        return Err(WalletError::SplitTooFine { amount, outputs: n });
    }
    Ok((0..u64::from(n))
        .map(|i| Amount::from_cents(base + u64::from(i < extra)))
        .collect())
}

fn sum(values: impl IntoIterator<Item = Amount>) -> Result<Amount> {
    Amount::checked_sum(values).ok_or(WalletError::Overflow)
}

/// The UHS ids of a transaction's inputs.
fn input_ids(tx: &Transaction) -> Vec<UhsId> {
    tx.inputs.iter().map(Input::uhs_id).collect()
}

/// The UHS ids of a transaction's outputs.
fn output_ids(tx: &Transaction) -> Vec<UhsId> {
    let id = tx.tx_id();
    tx.outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            o.uhs_id(&OutPoint {
                tx_id: id,
                index: i as u32,
            })
        })
        .collect()
}

/// Settles a confirmed transaction in the wallet file: inputs spent, our outputs
/// credited, the send confirmed. Idempotent (a second call credits nothing). Returns
/// the value credited.
fn apply_confirmed(t: &StoreTx<'_>, tx: &Transaction) -> Result<Amount> {
    let id = tx.tx_id();
    for input in &tx.inputs {
        t.set_output_state(
            &input.outpoint,
            &[
                OutputState::Unspent,
                OutputState::PendingSpend,
                OutputState::PendingReceive,
            ],
            OutputState::Spent,
            Some(&id),
        )?;
    }
    let mut credited = Amount::ZERO;
    for (i, output) in tx.outputs.iter().enumerate() {
        let Some(key) = t.key_for_commitment(&output.commitment)? else {
            continue;
        };
        let outpoint = OutPoint {
            tx_id: id,
            index: i as u32,
        };
        let record = OutputRecord {
            outpoint,
            value: output.value,
            key_id: key.id,
            uhs_id: output.uhs_id(&outpoint),
            state: OutputState::Unspent,
            spend_tx: None,
        };
        if t.upsert_output(&record)? {
            credited = credited
                .checked_add(output.value)
                .ok_or(WalletError::Overflow)?;
        }
    }
    // The ledger's word is final: whatever the record said before, it is confirmed now.
    t.set_send_status(
        &id,
        &[
            SendStatus::Pending,
            SendStatus::Abandoned,
            SendStatus::Rejected,
        ],
        SendStatus::Confirmed,
        None,
    )?;
    Ok(credited)
}

/// Gives back the inputs of a send that will not settle (rejected, invalid, never
/// arrived), except those in `gone`, which the ledger says are spent or absent and are
/// marked spent instead. Only outputs still locked by *this* send are touched.
fn return_inputs(
    t: &StoreTx<'_>,
    send: &SendRecord,
    status: SendStatus,
    detail: &str,
    gone: &HashSet<OutPoint>,
) -> Result<()> {
    // Claim the send first: if another process settled it since we looked, leave it.
    if !t.set_send_status(&send.tx_id, &[SendStatus::Pending], status, Some(detail))? {
        return Ok(());
    }
    for input in &send.tx.inputs {
        let Some(record) = t.output(&input.outpoint)? else {
            continue;
        };
        if record.state != OutputState::PendingSpend || record.spend_tx != Some(send.tx_id) {
            continue;
        }
        let to = if gone.contains(&input.outpoint) {
            OutputState::Spent
        } else {
            OutputState::Unspent
        };
        t.set_output_state(&input.outpoint, &[OutputState::PendingSpend], to, None)?;
    }
    Ok(())
}

/// Whether any of `statuses` says unspent (free or locked).
fn any_exists(statuses: &[OutputStatus]) -> bool {
    statuses
        .iter()
        .any(|s| !matches!(s, OutputStatus::SpentOrAbsent))
}

impl Wallet {
    /// Creates a wallet file at `path`; refuses to overwrite anything.
    pub fn create(path: &std::path::Path) -> Result<Wallet> {
        Ok(Wallet {
            store: Store::create(path)?,
        })
    }

    /// Opens the wallet at `path`.
    pub fn open(path: &std::path::Path) -> Result<Wallet> {
        Ok(Wallet {
            store: Store::open(path)?,
        })
    }

    /// A wallet over an already opened store (an in-memory one in tests).
    pub fn from_store(store: Store) -> Wallet {
        Wallet { store }
    }

    /// The wallet file.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The sentinel endpoint saved in the wallet's configuration.
    pub fn sentinel(&self) -> Result<Option<String>> {
        Ok(self.store.read(|t| t.config("sentinel"))?)
    }

    /// Saves the sentinel endpoint in the wallet's configuration.
    pub fn set_sentinel(&mut self, endpoint: &str) -> Result<()> {
        Ok(self.store.write(|t| t.set_config("sentinel", endpoint))?)
    }

    /// A fresh receiving address (a new key).
    pub fn new_address(&mut self) -> Result<Address> {
        let key = self.store.write(|t| t.new_key(KeyPurpose::Receive))?;
        Ok(Address::p2pk(key.secret.public_key()))
    }

    /// Every receiving address handed out so far, oldest first.
    pub fn addresses(&self) -> Result<Vec<Address>> {
        let keys = self.store.read(|t| t.public_keys(KeyPurpose::Receive))?;
        Ok(keys.into_iter().map(Address::p2pk).collect())
    }

    /// Money by state.
    pub fn balance(&self) -> Result<Balance> {
        self.store.read(|t| {
            let mut b = Balance::default();
            // Sum and count of the outputs in one state.
            let total = |state| -> Result<(Amount, u64)> {
                let mut sum = Amount::ZERO;
                let mut count = 0;
                for o in t.outputs_in_state(state)? {
                    sum = sum.checked_add(o.value).ok_or(WalletError::Overflow)?;
                    count += 1;
                }
                Ok((sum, count))
            };
            (b.spendable, b.spendable_outputs) = total(OutputState::Unspent)?;
            (b.pending_spend, b.pending_spend_outputs) = total(OutputState::PendingSpend)?;
            (b.pending_receive, b.pending_receive_outputs) = total(OutputState::PendingReceive)?;
            b.pending_sends = t.sends_in_status(SendStatus::Pending)?.len() as u64;
            Ok(b)
        })
    }

    /// Sends and receipts, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        let (sends, receipts) = self
            .store
            .read(|t| Ok::<_, WalletError>((t.sends()?, t.receipts()?)))?;
        let mut entries: Vec<(i64, HistoryEntry)> = Vec::new();
        for s in sends {
            let direction = match s.kind {
                SendKind::Send => Direction::Sent,
                SendKind::Mint => Direction::Minted,
                SendKind::Fan => Direction::Fanned,
            };
            entries.push((
                s.seq,
                HistoryEntry {
                    direction,
                    tx_id: s.tx_id,
                    amount: s.amount,
                    outputs: s.outputs,
                    counterparty: Some(s.recipient),
                    status: s.status.as_str(),
                    detail: s.detail,
                    payment: s.payment,
                    created_at: s.created_at,
                },
            ));
        }
        for r in receipts {
            entries.push((r.seq, receipt_entry(r)));
        }
        entries.sort_by_key(|(seq, _)| *seq);
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }

    /// Issues `amount` (split into `outputs` outputs) with the issuer key, to `to` or to
    /// a fresh address of this wallet. The nonce is random, so two mints of the same
    /// outputs are distinct transactions.
    pub async fn mint(
        &mut self,
        ledger: &dyn Ledger,
        issuer: &SecretKey,
        amount: Amount,
        to: Option<&Address>,
        outputs: u32,
    ) -> Result<SendReport> {
        if amount.is_zero() {
            return Err(WalletError::Zero("the amount"));
        }
        let values = split_amount(amount, outputs)?;
        let info = ledger.info().await?;
        if info.issuer != Some(issuer.public_key()) {
            return Err(WalletError::WrongIssuer {
                expected: info.issuer,
                found: issuer.public_key(),
            });
        }
        check_outputs(values.len(), &info.limits)?;
        let record = self.store.write(|t| {
            let to = match to {
                Some(a) => a.clone(),
                None => Address::p2pk(t.new_key(KeyPurpose::Receive)?.secret.public_key()),
            };
            let mut nonce = [0u8; 32];
            while nonce == [0u8; 32] {
                rand::rngs::OsRng.fill_bytes(&mut nonce);
            }
            let outs = values
                .iter()
                .map(|v| Output {
                    commitment: to.commitment(),
                    value: *v,
                })
                .collect();
            let tx = sign_mint(issuer, outs, Hash(nonce));
            let record = new_send(SendKind::Mint, &to, &values, tx)?;
            t.insert_send(&record)?;
            Ok::<_, WalletError>(record)
        })?;
        self.submit_recorded(ledger, record).await
    }

    /// Pays `amount` to `to` in one output, with change to a fresh address of this
    /// wallet.
    pub async fn send(
        &mut self,
        ledger: &dyn Ledger,
        amount: Amount,
        to: &Address,
    ) -> Result<SendReport> {
        if amount.is_zero() {
            return Err(WalletError::Zero("the amount"));
        }
        self.pay(ledger, SendKind::Send, to, vec![amount]).await
    }

    /// Pays `count` outputs of `amount` each to `to` in one transaction.
    pub async fn fan(
        &mut self,
        ledger: &dyn Ledger,
        count: u32,
        amount: Amount,
        to: &Address,
    ) -> Result<SendReport> {
        if count == 0 {
            return Err(WalletError::Zero("the number of outputs"));
        }
        if amount.is_zero() {
            return Err(WalletError::Zero("the amount"));
        }
        let values = vec![amount; count as usize];
        self.pay(ledger, SendKind::Fan, to, values).await
    }

    async fn pay(
        &mut self,
        ledger: &dyn Ledger,
        kind: SendKind,
        to: &Address,
        values: Vec<Amount>,
    ) -> Result<SendReport> {
        let total = sum(values.iter().copied())?;
        // Asking first proves the ledger reachable before any output is locked, and
        // gives the limits coin selection must respect.
        let info = ledger.info().await?;
        check_outputs(values.len(), &info.limits)?;
        let record = self.store.write(|t| {
            let unspent = t.outputs_in_state(OutputState::Unspent)?;
            let chosen = match select_coins(&unspent, total, info.limits.max_inputs) {
                Err(WalletError::InsufficientFunds {
                    requested,
                    spendable,
                    ..
                }) => {
                    let mut pending = Amount::ZERO;
                    for state in [OutputState::PendingSpend, OutputState::PendingReceive] {
                        for o in t.outputs_in_state(state)? {
                            pending = pending.checked_add(o.value).unwrap_or(Amount::MAX);
                        }
                    }
                    return Err(WalletError::InsufficientFunds {
                        requested,
                        spendable,
                        pending,
                    });
                }
                other => other?,
            };
            let input_total = sum(chosen.iter().map(|o| o.value))?;
            let change = input_total
                .checked_sub(total)
                .ok_or(WalletError::Overflow)?;
            let mut outputs: Vec<Output> = values
                .iter()
                .map(|v| Output {
                    commitment: to.commitment(),
                    value: *v,
                })
                .collect();
            if !change.is_zero() {
                let key = t.new_key(KeyPurpose::Change)?;
                outputs.push(Output {
                    commitment: key.program().commitment(),
                    value: change,
                });
            }
            check_outputs(outputs.len(), &info.limits)?;
            let keys: Vec<KeyRecord> = chosen
                .iter()
                .map(|o| t.key(o.key_id))
                .collect::<Result<_, StoreError>>()?;
            let spends: Vec<(Input, &SecretKey)> = chosen
                .iter()
                .zip(&keys)
                .map(|(o, k)| {
                    let input = Input {
                        outpoint: o.outpoint,
                        spent: Output {
                            commitment: k.program().commitment(),
                            value: o.value,
                        },
                    };
                    (input, &k.secret)
                })
                .collect();
            for ((input, _), o) in spends.iter().zip(&chosen) {
                if input.uhs_id() != o.uhs_id {
                    return Err(StoreError::Damaged(format!(
                        "output {}:{} does not match its key",
                        o.outpoint.tx_id, o.outpoint.index
                    ))
                    .into());
                }
            }
            let tx = sign_transfer(&spends, outputs);
            let record = new_send(kind, to, &values, tx)?;
            t.insert_send(&record)?;
            for o in &chosen {
                let locked = t.set_output_state(
                    &o.outpoint,
                    &[OutputState::Unspent],
                    OutputState::PendingSpend,
                    Some(&record.tx_id),
                )?;
                if !locked {
                    return Err(StoreError::Damaged(format!(
                        "output {}:{} changed during selection",
                        o.outpoint.tx_id, o.outpoint.index
                    ))
                    .into());
                }
            }
            Ok(record)
        })?;
        self.submit_recorded(ledger, record).await
    }

    /// Submits a send already recorded as pending and settles the record by the answer.
    async fn submit_recorded(
        &mut self,
        ledger: &dyn Ledger,
        record: SendRecord,
    ) -> Result<SendReport> {
        let answer = ledger.submit(&record.tx).await;
        let tx_id = record.tx_id;
        match answer {
            Ok(Final::Confirmed) => {
                let credited = self.store.write(|t| apply_confirmed(t, &record.tx))?;
                Ok(report(&record, credited))
            }
            Ok(Final::Rejected(rejection)) => {
                let gone = self.gone_inputs(ledger, &record.tx, &rejection).await;
                let detail = rejection.to_string();
                self.store
                    .write(|t| return_inputs(t, &record, SendStatus::Rejected, &detail, &gone))?;
                Err(WalletError::Rejected { tx_id, rejection })
            }
            Ok(Final::Invalid { message }) => {
                let detail = format!("invalid: {message}");
                self.store.write(|t| {
                    return_inputs(t, &record, SendStatus::Rejected, &detail, &HashSet::new())
                })?;
                Err(WalletError::Invalid { tx_id, message })
            }
            Err(cause) => Err(WalletError::Pending { tx_id, cause }),
        }
    }

    /// After a rejection that says inputs are spent: which inputs the ledger no longer
    /// holds (they are marked spent rather than returned, so that the next send does not
    /// pick them again). Best effort: if the ledger cannot say, every input is returned,
    /// and a later rejection will ask again.
    async fn gone_inputs(
        &self,
        ledger: &dyn Ledger,
        tx: &Transaction,
        rejection: &Rejection,
    ) -> HashSet<OutPoint> {
        if !rejection.inputs_gone() || tx.inputs.is_empty() {
            return HashSet::new();
        }
        match ledger.output_status(&input_ids(tx)).await {
            Ok(statuses) if statuses.len() == tx.inputs.len() => tx
                .inputs
                .iter()
                .zip(&statuses)
                .filter(|(_, s)| matches!(s, OutputStatus::SpentOrAbsent))
                .map(|(i, _)| i.outpoint)
                .collect(),
            _ => HashSet::new(),
        }
    }

    /// Credits the outputs of `payment` that pay this wallet, after the ledger confirms
    /// them unspent. Outputs whose transaction is still being settled are recorded as
    /// pending receipts (settled by `sync`). Refuses a payment that pays none of our
    /// addresses, one already received, and one none of whose outputs is on the ledger.
    pub async fn receive(
        &mut self,
        ledger: &dyn Ledger,
        payment: &Payment,
    ) -> Result<ReceiveReport> {
        let tx_id = payment.tx_id;
        let text = payment.encode()?;
        let (mine, fresh) = self.store.read(|t| {
            let mut mine = Vec::new();
            let mut fresh = Vec::new();
            for o in &payment.outputs {
                if let Some(key) = t.key_for_commitment(&o.program.commitment())? {
                    mine.push(o.clone());
                    if t.output(&o.outpoint(tx_id))?.is_none() {
                        fresh.push((o.clone(), key.id));
                    }
                }
            }
            Ok::<_, WalletError>((mine, fresh))
        })?;
        if mine.is_empty() {
            return Err(WalletError::NotForThisWallet { tx_id });
        }
        if fresh.is_empty() {
            return Err(WalletError::AlreadyReceived { tx_id });
        }
        let ids: Vec<UhsId> = fresh.iter().map(|(o, _)| o.uhs_id(tx_id)).collect();
        let statuses = ledger.output_status(&ids).await?;
        if statuses.len() != ids.len() {
            return Err(LedgerError::Protocol("wrong number of output statuses".into()).into());
        }
        let mut tx_status: Option<TxStatus> = None;
        let mut report = ReceiveReport {
            tx_id,
            other_outputs: (payment.outputs.len() - mine.len()) as u32,
            ..Default::default()
        };
        let mut records = Vec::new();
        for ((paid, key_id), status) in fresh.iter().zip(&statuses) {
            let state = match status {
                OutputStatus::Unspent(v) if *v == paid.value => Some(OutputState::Unspent),
                OutputStatus::Locked(v) if *v == paid.value => Some(OutputState::PendingReceive),
                _ => {
                    if tx_status.is_none() {
                        tx_status = Some(ledger.tx_status(tx_id).await?);
                    }
                    match tx_status {
                        Some(TxStatus::Pending) => Some(OutputState::PendingReceive),
                        _ => None,
                    }
                }
            };
            match state {
                Some(OutputState::Unspent) => {
                    report.credited = report
                        .credited
                        .checked_add(paid.value)
                        .ok_or(WalletError::Overflow)?;
                    report.credited_outputs += 1;
                }
                Some(_) => {
                    report.pending = report
                        .pending
                        .checked_add(paid.value)
                        .ok_or(WalletError::Overflow)?;
                    report.pending_outputs += 1;
                }
                None => {
                    report.missing_outputs += 1;
                    continue;
                }
            }
            if let Some(state) = state {
                records.push(received_record(tx_id, paid, *key_id, state));
            }
        }
        if records.is_empty() {
            let detail = match tx_status {
                Some(TxStatus::Final(Final::Confirmed)) => {
                    "its outputs for this wallet are spent, or do not match the payment".into()
                }
                Some(TxStatus::Final(Final::Rejected(r))) => format!("it was rejected ({r})"),
                Some(TxStatus::Final(Final::Invalid { message })) => {
                    format!("it is invalid ({message})")
                }
                _ => "the ledger does not know the transaction".into(),
            };
            return Err(WalletError::NotOnLedger { tx_id, detail });
        }
        let amount = report
            .credited
            .checked_add(report.pending)
            .ok_or(WalletError::Overflow)?;
        let status = if report.pending_outputs > 0 {
            ReceiptStatus::Pending
        } else {
            ReceiptStatus::Confirmed
        };
        let detail = (report.missing_outputs > 0)
            .then(|| format!("{} output(s) not on the ledger", report.missing_outputs));
        self.store.write(|t| {
            for record in &records {
                if t.output(&record.outpoint)?.is_some() {
                    // Received by another process since we looked.
                    return Err(WalletError::AlreadyReceived { tx_id });
                }
                t.upsert_output(record)?;
            }
            let receipt = ReceiptRecord {
                tx_id,
                amount,
                outputs: records.len() as u32,
                payment: text.clone(),
                status,
                detail: detail.clone(),
                created_at: 0,
                seq: 0,
            };
            if !t.insert_receipt(&receipt)? {
                // A second payment naming other outputs of the same transaction: one
                // receipt per transaction, holding everything received from it.
                let old = t
                    .receipt(&tx_id)?
                    .ok_or(WalletError::AlreadyReceived { tx_id })?;
                let total = old
                    .amount
                    .checked_add(amount)
                    .ok_or(WalletError::Overflow)?;
                let status =
                    if status == ReceiptStatus::Pending || old.status == ReceiptStatus::Pending {
                        ReceiptStatus::Pending
                    } else {
                        ReceiptStatus::Confirmed
                    };
                t.update_receipt(&tx_id, status, total, detail.as_deref())?;
            }
            Ok(())
        })?;
        Ok(report)
    }

    /// Settles what is pending against the ledger: pending sends (by their transaction's
    /// status, or by their inputs' and outputs' status when the ledger no longer knows
    /// the transaction), abandoned sends that may have arrived late, and pending
    /// receipts. With `resubmit`, a pending send the ledger never saw is submitted again
    /// (safe: a transaction settles at most once) instead of being abandoned.
    ///
    /// Each send and receipt is settled in its own write, so a failure half-way leaves
    /// the earlier ones settled and the rest pending; running `sync` again is harmless.
    pub async fn sync(&mut self, ledger: &dyn Ledger, resubmit: bool) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let pending = self
            .store
            .read(|t| t.sends_in_status(SendStatus::Pending))?;
        for send in pending {
            let synced = self.sync_send(ledger, &send, resubmit).await?;
            report.sends.push(synced);
        }
        let abandoned = self
            .store
            .read(|t| t.sends_in_status(SendStatus::Abandoned))?;
        for send in abandoned {
            if let Some(synced) = self.recheck_abandoned(ledger, &send).await? {
                report.sends.push(synced);
            }
        }
        let receipts = self
            .store
            .read(|t| t.receipts_in_status(ReceiptStatus::Pending))?;
        for receipt in receipts {
            report
                .receipts
                .push(self.sync_receipt(ledger, &receipt).await?);
        }
        Ok(report)
    }

    async fn sync_send(
        &mut self,
        ledger: &dyn Ledger,
        send: &SendRecord,
        resubmit: bool,
    ) -> Result<SyncedSend> {
        let status = ledger.tx_status(send.tx_id).await?;
        let (after, note) = match status {
            TxStatus::Final(f) => self.settle_final(ledger, send, f).await?,
            TxStatus::Pending => (SendStatus::Pending, "being settled by the ledger".into()),
            TxStatus::Unknown => self.settle_unknown(ledger, send, resubmit).await?,
        };
        Ok(synced(send, after, note))
    }

    /// Records a final answer for a pending send.
    async fn settle_final(
        &mut self,
        ledger: &dyn Ledger,
        send: &SendRecord,
        answer: Final,
    ) -> Result<(SendStatus, String)> {
        Ok(match answer {
            Final::Confirmed => {
                let credited = self.store.write(|t| apply_confirmed(t, &send.tx))?;
                (SendStatus::Confirmed, confirmed_note(credited))
            }
            Final::Rejected(rejection) => {
                let gone = self.gone_inputs(ledger, &send.tx, &rejection).await;
                let detail = rejection.to_string();
                self.store
                    .write(|t| return_inputs(t, send, SendStatus::Rejected, &detail, &gone))?;
                (
                    SendStatus::Rejected,
                    format!("rejected: {detail}; inputs returned"),
                )
            }
            Final::Invalid { message } => {
                let detail = format!("invalid: {message}");
                self.store.write(|t| {
                    return_inputs(t, send, SendStatus::Rejected, &detail, &HashSet::new())
                })?;
                (SendStatus::Rejected, format!("{detail}; inputs returned"))
            }
        })
    }

    /// A pending send whose transaction the ledger does not know: decide from its inputs
    /// (and outputs) whether it never arrived, settled, or is still undecided.
    async fn settle_unknown(
        &mut self,
        ledger: &dyn Ledger,
        send: &SendRecord,
        resubmit: bool,
    ) -> Result<(SendStatus, String)> {
        let inputs = ledger.output_status(&input_ids(&send.tx)).await?;
        let never_arrived = inputs.iter().all(|s| matches!(s, OutputStatus::Unspent(_)));
        if never_arrived {
            if resubmit {
                return match ledger.submit(&send.tx).await {
                    Ok(answer) => {
                        let (after, note) = self.settle_final(ledger, send, answer).await?;
                        Ok((after, format!("resubmitted; {note}")))
                    }
                    Err(e) => Ok((
                        SendStatus::Pending,
                        format!("resubmitted, no final answer yet ({e})"),
                    )),
                };
            }
            let detail = if send.tx.inputs.is_empty() {
                "never arrived: the ledger does not know this mint"
            } else {
                "never arrived: the ledger does not know it and its inputs are unspent"
            };
            self.store.write(|t| {
                return_inputs(t, send, SendStatus::Abandoned, detail, &HashSet::new())
            })?;
            let note = if send.tx.inputs.is_empty() {
                format!("{detail} (sync --resubmit submits it again)")
            } else {
                format!("{detail}; inputs returned")
            };
            return Ok((SendStatus::Abandoned, note));
        }
        if inputs.iter().any(|s| matches!(s, OutputStatus::Locked(_))) {
            return Ok((
                SendStatus::Pending,
                "its inputs are locked by a transaction being settled".into(),
            ));
        }
        // An input is spent and the transaction unknown: it settled (and its status is no
        // longer kept), or the input was spent by another transaction. Its outputs tell.
        let outputs = ledger.output_status(&output_ids(&send.tx)).await?;
        if any_exists(&outputs) {
            let credited = self.store.write(|t| apply_confirmed(t, &send.tx))?;
            return Ok((
                SendStatus::Confirmed,
                format!(
                    "{} (its outputs are on the ledger)",
                    confirmed_note(credited)
                ),
            ));
        }
        Ok((
            SendStatus::Pending,
            "an input is spent but the ledger does not know this transaction: \
             left pending (it may have settled and its outputs been spent since)"
                .into(),
        ))
    }

    /// An abandoned send: if its inputs went into another settled send of ours, it can
    /// never settle; if the ledger now knows it, record its outcome.
    async fn recheck_abandoned(
        &mut self,
        ledger: &dyn Ledger,
        send: &SendRecord,
    ) -> Result<Option<SyncedSend>> {
        let superseded_by = self.store.read(|t| {
            for input in &send.tx.inputs {
                if let Some(o) = t.output(&input.outpoint)? {
                    if o.state == OutputState::Spent {
                        if let Some(other) = o.spend_tx.filter(|other| *other != send.tx_id) {
                            return Ok::<_, WalletError>(Some(other));
                        }
                    }
                }
            }
            Ok(None)
        })?;
        if let Some(other) = superseded_by {
            let detail = format!("never arrived; its inputs were spent by {other}");
            self.store.write(|t| {
                t.set_send_status(
                    &send.tx_id,
                    &[SendStatus::Abandoned],
                    SendStatus::Rejected,
                    Some(&detail),
                )
            })?;
            return Ok(Some(synced(send, SendStatus::Rejected, detail)));
        }
        match ledger.tx_status(send.tx_id).await? {
            TxStatus::Final(Final::Confirmed) => {
                let credited = self.store.write(|t| apply_confirmed(t, &send.tx))?;
                let note = format!("arrived late: {}", confirmed_note(credited));
                Ok(Some(synced(send, SendStatus::Confirmed, note)))
            }
            TxStatus::Final(Final::Rejected(r)) => {
                let detail = format!("arrived late and was rejected: {r}");
                self.store.write(|t| {
                    t.set_send_status(
                        &send.tx_id,
                        &[SendStatus::Abandoned],
                        SendStatus::Rejected,
                        Some(&detail),
                    )
                })?;
                Ok(Some(synced(send, SendStatus::Rejected, detail)))
            }
            _ => Ok(None),
        }
    }

    async fn sync_receipt(
        &mut self,
        ledger: &dyn Ledger,
        receipt: &ReceiptRecord,
    ) -> Result<SyncedReceipt> {
        let tx_id = receipt.tx_id;
        let waiting: Vec<OutputRecord> = self
            .store
            .read(|t| t.outputs_of_tx(&tx_id))?
            .into_iter()
            .filter(|o| o.state == OutputState::PendingReceive)
            .collect();
        let ids: Vec<UhsId> = waiting.iter().map(|o| o.uhs_id).collect();
        let statuses = ledger.output_status(&ids).await?;
        let mut tx_status: Option<TxStatus> = None;
        let mut credit = Vec::new();
        let mut drop = Vec::new();
        for (o, s) in waiting.iter().zip(&statuses) {
            match s {
                OutputStatus::Unspent(v) if *v == o.value => credit.push(o.outpoint),
                OutputStatus::Unspent(_) | OutputStatus::Locked(_) => {}
                OutputStatus::SpentOrAbsent => {
                    if tx_status.is_none() {
                        tx_status = Some(ledger.tx_status(tx_id).await?);
                    }
                    if let Some(TxStatus::Final(_)) = tx_status {
                        drop.push(o.outpoint);
                    }
                }
            }
        }
        let (after, credited) = self.store.write(|t| {
            let mut credited = Amount::ZERO;
            for (outpoint, o) in credit
                .iter()
                .filter_map(|p| waiting.iter().find(|o| o.outpoint == *p).map(|o| (p, o)))
            {
                if t.set_output_state(
                    outpoint,
                    &[OutputState::PendingReceive],
                    OutputState::Unspent,
                    None,
                )? {
                    credited = credited.checked_add(o.value).ok_or(WalletError::Overflow)?;
                }
            }
            for outpoint in &drop {
                t.delete_output(outpoint)?;
            }
            let left = t.outputs_of_tx(&tx_id)?;
            let amount = sum(left.iter().map(|o| o.value))?;
            let status = if left.iter().any(|o| o.state == OutputState::PendingReceive) {
                ReceiptStatus::Pending
            } else if left.is_empty() {
                ReceiptStatus::Failed
            } else {
                ReceiptStatus::Confirmed
            };
            let detail = (!drop.is_empty())
                .then(|| format!("{} output(s) never appeared on the ledger", drop.len()));
            t.update_receipt(
                &tx_id,
                status,
                amount,
                detail.as_deref().or(receipt.detail.as_deref()),
            )?;
            Ok::<_, WalletError>((status, credited))
        })?;
        let note = match after {
            ReceiptStatus::Confirmed => format!("credited {credited}"),
            ReceiptStatus::Failed => "its outputs never appeared on the ledger".into(),
            ReceiptStatus::Pending => {
                if credited.is_zero() {
                    "still being settled by the ledger".into()
                } else {
                    format!("credited {credited}; more still being settled")
                }
            }
        };
        Ok(SyncedReceipt {
            tx_id,
            after,
            credited,
            note,
        })
    }
}

fn check_outputs(count: usize, limits: &Limits) -> Result<()> {
    if count > limits.max_outputs {
        return Err(WalletError::TooManyOutputs {
            count,
            max: limits.max_outputs,
        });
    }
    Ok(())
}

/// A pending send record for `tx`, paying `values` to `to` in its first outputs.
fn new_send(
    kind: SendKind,
    to: &Address,
    values: &[Amount],
    tx: Transaction,
) -> Result<SendRecord> {
    let tx_id = tx.tx_id();
    let payment = Payment {
        tx_id,
        outputs: values
            .iter()
            .enumerate()
            .map(|(i, v)| PaidOutput {
                index: i as u32,
                value: *v,
                program: to.0.clone(),
            })
            .collect(),
    };
    Ok(SendRecord {
        tx_id,
        kind,
        amount: sum(values.iter().copied())?,
        recipient: to.to_string(),
        outputs: values.len() as u32,
        tx,
        payment: payment.encode()?,
        status: SendStatus::Pending,
        detail: None,
        created_at: 0,
        seq: 0,
    })
}

fn received_record(
    tx_id: TxId,
    paid: &PaidOutput,
    key_id: i64,
    state: OutputState,
) -> OutputRecord {
    OutputRecord {
        outpoint: paid.outpoint(tx_id),
        value: paid.value,
        key_id,
        uhs_id: paid.uhs_id(tx_id),
        state,
        spend_tx: None,
    }
}

fn report(record: &SendRecord, credited: Amount) -> SendReport {
    let paid = record.outputs as usize;
    let change = record
        .tx
        .outputs
        .iter()
        .skip(paid)
        .map(|o| o.value)
        .fold(Amount::ZERO, |a, v| a.checked_add(v).unwrap_or(Amount::MAX));
    SendReport {
        tx_id: record.tx_id,
        kind: record.kind,
        amount: record.amount,
        recipient: record.recipient.clone(),
        outputs: record.outputs,
        inputs: record.tx.inputs.len(),
        change,
        credited,
        payment: record.payment.clone(),
    }
}

fn synced(send: &SendRecord, after: SendStatus, note: String) -> SyncedSend {
    SyncedSend {
        tx_id: send.tx_id,
        kind: send.kind,
        amount: send.amount,
        before: send.status,
        after,
        note,
        payment: send.payment.clone(),
    }
}

fn confirmed_note(credited: Amount) -> String {
    if credited.is_zero() {
        "confirmed".into()
    } else {
        format!("confirmed; {credited} credited to this wallet")
    }
}

fn receipt_entry(r: ReceiptRecord) -> HistoryEntry {
    HistoryEntry {
        direction: Direction::Received,
        tx_id: r.tx_id,
        amount: r.amount,
        outputs: r.outputs,
        counterparty: None,
        status: r.status.as_str(),
        detail: r.detail,
        payment: r.payment,
        created_at: r.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(cents: u64, n: u8) -> OutputRecord {
        OutputRecord {
            outpoint: OutPoint {
                tx_id: TxId::from([n; 32]),
                index: 0,
            },
            value: Amount::from_cents(cents),
            key_id: 1,
            uhs_id: UhsId::from([n; 32]),
            state: OutputState::Unspent,
            spend_tx: None,
        }
    }

    fn values(chosen: &[OutputRecord]) -> Vec<u64> {
        chosen.iter().map(|o| o.value.cents()).collect()
    }

    #[test]
    fn test_select_coins_prefers_smallest_single_cover() {
        let unspent = vec![out(900, 1), out(500, 2), out(300, 3), out(100, 4)];
        let chosen = select_coins(&unspent, Amount::from_cents(250), 64).unwrap();
        assert_eq!(values(&chosen), vec![300]);
        let exact = select_coins(&unspent, Amount::from_cents(500), 64).unwrap();
        assert_eq!(values(&exact), vec![500]);
    }

    #[test]
    fn test_select_coins_largest_first_and_limits() {
        let unspent = vec![out(500, 1), out(300, 2), out(200, 3), out(100, 4)];
        let chosen = select_coins(&unspent, Amount::from_cents(700), 64).unwrap();
        assert_eq!(values(&chosen), vec![500, 300]);
        assert!(matches!(
            select_coins(&unspent, Amount::from_cents(1_000), 2),
            Err(WalletError::TooManyInputs { needed: 3, max: 2 })
        ));
        assert!(matches!(
            select_coins(&unspent, Amount::from_cents(1_101), 64),
            Err(WalletError::InsufficientFunds { .. })
        ));
        assert!(matches!(
            select_coins(&[], Amount::from_cents(1), 64),
            Err(WalletError::InsufficientFunds { .. })
        ));
    }

    #[test]
    fn test_split_amount() {
        let parts = split_amount(Amount::from_cents(1_001), 3).unwrap();
        assert_eq!(
            parts.iter().map(|a| a.cents()).collect::<Vec<_>>(),
            vec![334, 334, 333]
        );
        assert!(matches!(
            split_amount(Amount::from_cents(2), 3),
            Err(WalletError::SplitTooFine { .. })
        ));
        assert!(matches!(
            split_amount(Amount::from_cents(2), 0),
            Err(WalletError::Zero(_))
        ));
    }

    /// A send confirmed by one process must not be undone by another acting on an older
    /// view (a `sync` that saw the transaction unknown a moment before).
    #[test]
    fn test_stale_return_never_undoes_a_confirmation() {
        let mut store = Store::create_in_memory().unwrap();
        let (record, outpoint) = store
            .write(|t| {
                let key = t.new_key(KeyPurpose::Receive)?;
                let minted = cbdc_core::sign_mint(
                    &SecretKey::from_bytes(&[1; 32]),
                    vec![Output {
                        commitment: key.program().commitment(),
                        value: Amount::from_cents(500),
                    }],
                    Hash([7; 32]),
                );
                let outpoint = minted.outpoint(0);
                apply_confirmed(t, &minted)?;
                let input = Input {
                    outpoint,
                    spent: minted.outputs[0],
                };
                let to = Address::p2pk(SecretKey::from_bytes(&[3; 32]).public_key());
                let outputs = vec![Output {
                    commitment: to.commitment(),
                    value: Amount::from_cents(500),
                }];
                let tx = sign_transfer(&[(input, &key.secret)], outputs);
                let record = new_send(SendKind::Send, &to, &[Amount::from_cents(500)], tx)?;
                t.insert_send(&record)?;
                t.set_output_state(
                    &outpoint,
                    &[OutputState::Unspent],
                    OutputState::PendingSpend,
                    Some(&record.tx_id),
                )?;
                Ok::<_, WalletError>((record, outpoint))
            })
            .unwrap();
        store.write(|t| apply_confirmed(t, &record.tx)).unwrap();
        store
            .write(|t| return_inputs(t, &record, SendStatus::Abandoned, "stale", &HashSet::new()))
            .unwrap();
        let (send, output) = store
            .read(|t| Ok::<_, WalletError>((t.send(&record.tx_id)?, t.output(&outpoint)?)))
            .unwrap();
        assert_eq!(send.unwrap().status, SendStatus::Confirmed);
        let output = output.unwrap();
        assert_eq!(output.state, OutputState::Spent);
        assert_eq!(output.spend_tx, Some(record.tx_id));
    }
}
