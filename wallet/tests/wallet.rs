//! The wallet library against an in-memory ledger, including one that loses answers,
//! loses transactions, holds them in flight, rejects, or cannot be reached.

use cbdc_core::{Address, Amount, Limits, SecretKey, TxId, WitnessProgram};
use cbdc_wallet::ledger::Ledger;
use cbdc_wallet::store::Store;
use cbdc_wallet::{
    Balance, Fault, Final, LedgerError, MemoryLedger, PaidOutput, Payment, Rejection, SendKind,
    SendStatus, Wallet, WalletError,
};

#[tokio::test]
async fn test_mint_credits_own_wallet_in_equal_outputs() {
    let ledger = ledger();
    let mut alice = wallet();
    let report = alice
        .mint(&ledger, &issuer(), amount("100.01"), None, 4)
        .await
        .unwrap();
    assert_eq!(report.kind, SendKind::Mint);
    assert_eq!(report.credited, amount("100.01"));
    let b = alice.balance().unwrap();
    assert_eq!(b.spendable, amount("100.01"));
    assert_eq!(b.spendable_outputs, 4);
    assert_eq!(b.pending(), Amount::ZERO);
    assert_eq!(ledger.supply(), Some(amount("100.01")));
}

#[tokio::test]
async fn test_mint_to_other_address_pays_recipient_through_payment() {
    let ledger = ledger();
    let mut bank = wallet();
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    let report = bank
        .mint(&ledger, &issuer(), amount("50"), Some(&to), 1)
        .await
        .unwrap();
    assert_eq!(report.credited, Amount::ZERO);
    assert_eq!(bank.balance().unwrap().spendable, Amount::ZERO);
    let received = bob
        .receive(&ledger, &payment(&report.payment))
        .await
        .unwrap();
    assert_eq!(received.credited, amount("50"));
    assert_eq!(bob.balance().unwrap().spendable, amount("50"));
}

#[tokio::test]
async fn test_mint_with_wrong_issuer_refused() {
    let ledger = ledger();
    let mut alice = wallet();
    let err = alice
        .mint(
            &ledger,
            &SecretKey::from_bytes(&[2; 32]),
            amount("1"),
            None,
            1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::WrongIssuer { .. }), "{err}");
    assert_eq!(ledger.submissions(), 0);
    assert!(alice.history().unwrap().is_empty());
}

#[tokio::test]
async fn test_send_and_receive_balances_on_both_sides() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    let sent = alice.send(&ledger, amount("30.25"), &to).await.unwrap();
    assert_eq!(sent.inputs, 1);
    assert_eq!(sent.change, amount("69.75"));
    assert_eq!(sent.credited, amount("69.75"));
    assert!(sent.payment.starts_with("usdpay1"));
    assert_eq!(alice.balance().unwrap(), spendable("69.75", 1));

    let received = bob.receive(&ledger, &payment(&sent.payment)).await.unwrap();
    assert_eq!(received.credited, amount("30.25"));
    assert_eq!(received.credited_outputs, 1);
    assert_eq!(bob.balance().unwrap(), spendable("30.25", 1));

    // Bob can spend what he received, and Alice receives it back.
    let back_to = alice.new_address().unwrap();
    let back = bob.send(&ledger, amount("0.25"), &back_to).await.unwrap();
    alice
        .receive(&ledger, &payment(&back.payment))
        .await
        .unwrap();
    assert_eq!(alice.balance().unwrap(), spendable("70.00", 2));
    assert_eq!(bob.balance().unwrap(), spendable("30.00", 1));
    assert_eq!(ledger.supply(), Some(amount("100")));

    let history = alice.history().unwrap();
    let kinds: Vec<_> = history.iter().map(|e| e.direction.as_str()).collect();
    assert_eq!(kinds, vec!["minted", "sent", "received"]);
    assert!(history.iter().all(|e| e.status == "confirmed"));
}

#[tokio::test]
async fn test_send_uses_several_inputs_each_with_its_own_key() {
    let ledger = ledger();
    let mut alice = wallet();
    alice
        .mint(&ledger, &issuer(), amount("10"), None, 5)
        .await
        .unwrap();
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    let sent = alice.send(&ledger, amount("5"), &to).await.unwrap();
    assert_eq!(sent.inputs, 3, "2.00 outputs: three are needed for 5.00");
    assert_eq!(sent.change, amount("1"));
    assert_eq!(alice.balance().unwrap(), spendable("5", 3));
}

#[tokio::test]
async fn test_receive_twice_refused() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    let sent = alice.send(&ledger, amount("10"), &to).await.unwrap();
    bob.receive(&ledger, &payment(&sent.payment)).await.unwrap();
    let err = bob
        .receive(&ledger, &payment(&sent.payment))
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::AlreadyReceived { .. }), "{err}");
    assert_eq!(bob.balance().unwrap(), spendable("10", 1));
    assert_eq!(bob.history().unwrap().len(), 1);
}

#[tokio::test]
async fn test_receive_own_change_payment_counts_once() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let own = alice.new_address().unwrap();
    let sent = alice.send(&ledger, amount("10"), &own).await.unwrap();
    // A payment to ourselves is credited when it confirms; receiving it adds nothing.
    assert_eq!(alice.balance().unwrap(), spendable("100", 2));
    let err = alice
        .receive(&ledger, &payment(&sent.payment))
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::AlreadyReceived { .. }), "{err}");
    assert_eq!(alice.balance().unwrap(), spendable("100", 2));
}

#[tokio::test]
async fn test_receive_payment_not_for_this_wallet_refused() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let mut bob = wallet();
    let mut carol = wallet();
    carol.new_address().unwrap();
    let to = bob.new_address().unwrap();
    let sent = alice.send(&ledger, amount("10"), &to).await.unwrap();
    let err = carol
        .receive(&ledger, &payment(&sent.payment))
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::NotForThisWallet { .. }), "{err}");
    assert_eq!(carol.balance().unwrap(), Balance::default());
}

#[tokio::test]
async fn test_receive_forged_payment_refused() {
    let ledger = ledger();
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    // Right address, but a transaction the ledger never saw.
    let forged = Payment {
        tx_id: TxId::from([9; 32]),
        outputs: vec![PaidOutput {
            index: 0,
            value: amount("1000"),
            program: to.0.clone(),
        }],
    };
    let err = bob.receive(&ledger, &forged).await.unwrap_err();
    assert!(matches!(err, WalletError::NotOnLedger { .. }), "{err}");
    // A real transaction, but a value other than the one it created.
    let mut alice = funded(&ledger, "100").await;
    let sent = alice.send(&ledger, amount("10"), &to).await.unwrap();
    let mut inflated = payment(&sent.payment);
    inflated.outputs[0].value = amount("99");
    let err = bob.receive(&ledger, &inflated).await.unwrap_err();
    assert!(matches!(err, WalletError::NotOnLedger { .. }), "{err}");
    assert_eq!(bob.balance().unwrap(), Balance::default());
    // The honest payment still works afterwards.
    bob.receive(&ledger, &payment(&sent.payment)).await.unwrap();
    assert_eq!(bob.balance().unwrap(), spendable("10", 1));
}

#[tokio::test]
async fn test_send_more_than_balance_refused() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let to = other_address();
    let before = ledger.submissions();
    let err = alice
        .send(&ledger, amount("100.01"), &to)
        .await
        .unwrap_err();
    match err {
        WalletError::InsufficientFunds {
            requested,
            spendable,
            pending,
        } => {
            assert_eq!(requested, amount("100.01"));
            assert_eq!(spendable, amount("100"));
            assert_eq!(pending, Amount::ZERO);
        }
        other => panic!("expected insufficient funds, got {other}"),
    }
    assert_eq!(ledger.submissions(), before, "nothing was submitted");
    assert_eq!(alice.balance().unwrap(), spendable("100", 1));
    assert_eq!(alice.history().unwrap().len(), 1, "only the mint");
    // Exactly the balance is fine.
    alice.send(&ledger, amount("100"), &to).await.unwrap();
    assert_eq!(alice.balance().unwrap(), Balance::default());
}

#[tokio::test]
async fn test_too_many_inputs_refused_within_cluster_limits() {
    let limits = Limits {
        max_inputs: 2,
        ..Limits::default()
    };
    let ledger = MemoryLedger::with_limits(issuer().public_key(), limits);
    let mut alice = wallet();
    alice
        .mint(&ledger, &issuer(), amount("3"), None, 3)
        .await
        .unwrap();
    let err = alice
        .send(&ledger, amount("2.50"), &other_address())
        .await
        .unwrap_err();
    assert!(
        matches!(err, WalletError::TooManyInputs { needed: 3, max: 2 }),
        "{err}"
    );
    assert_eq!(alice.balance().unwrap(), spendable("3", 3));
}

#[tokio::test]
async fn test_rejected_send_returns_outputs() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    ledger.inject(Fault::Reject(Rejection {
        reason: "INPUTS_LOCKED".into(),
        message: "input locked by another transaction".into(),
        input_index: Some(0),
    }));
    let err = alice
        .send(&ledger, amount("10"), &other_address())
        .await
        .unwrap_err();
    match &err {
        WalletError::Rejected { rejection, .. } => assert_eq!(rejection.reason, "INPUTS_LOCKED"),
        other => panic!("expected a rejection, got {other}"),
    }
    assert!(err.to_string().contains("INPUTS_LOCKED"), "{err}");
    assert_eq!(alice.balance().unwrap(), spendable("100", 1));
    let last = last_send(&alice);
    assert_eq!(last.status, "rejected");
    assert!(last.detail.unwrap_or_default().contains("INPUTS_LOCKED"));
    // The returned output is spendable again.
    alice
        .send(&ledger, amount("10"), &other_address())
        .await
        .unwrap();
    assert_eq!(alice.balance().unwrap(), spendable("90", 1));
}

#[tokio::test]
async fn test_rejected_for_spent_inputs_marks_them_spent() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    // A copy of Alice's wallet elsewhere spends the same output behind her back: the
    // ledger then rejects her send with INPUTS_SPENT, and the output must not be offered
    // again.
    let output = alice
        .store()
        .read(|t| t.outputs_in_state(cbdc_wallet::store::OutputState::Unspent))
        .unwrap()
        .remove(0);
    let key = alice.store().read(|t| t.key(output.key_id)).unwrap();
    let input = cbdc_core::Input {
        outpoint: output.outpoint,
        spent: cbdc_core::Output {
            commitment: key.program().commitment(),
            value: output.value,
        },
    };
    let elsewhere = cbdc_core::sign_transfer(
        &[(input, &key.secret)],
        vec![cbdc_core::p2pk_output(
            &SecretKey::from_bytes(&[5; 32]),
            10_000,
        )],
    );
    assert_eq!(ledger.submit(&elsewhere).await.unwrap(), Final::Confirmed);

    let err = alice
        .send(&ledger, amount("10"), &other_address())
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::Rejected { .. }), "{err}");
    assert_eq!(alice.balance().unwrap(), Balance::default());
}

#[tokio::test]
async fn test_unreachable_ledger_changes_nothing() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    ledger.set_unreachable(true);
    let err = alice
        .send(&ledger, amount("10"), &other_address())
        .await
        .unwrap_err();
    assert!(
        matches!(err, WalletError::Ledger(LedgerError::Unreachable { .. })),
        "{err}"
    );
    assert_eq!(alice.balance().unwrap(), spendable("100", 1));
    assert_eq!(alice.history().unwrap().len(), 1);
    // A receipt cannot be checked either, and is not recorded.
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    ledger.set_unreachable(false);
    let sent = alice.send(&ledger, amount("10"), &to).await.unwrap();
    ledger.set_unreachable(true);
    let err = bob
        .receive(&ledger, &payment(&sent.payment))
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::Ledger(_)), "{err}");
    assert!(bob.history().unwrap().is_empty());
    ledger.set_unreachable(false);
    bob.receive(&ledger, &payment(&sent.payment)).await.unwrap();
    assert_eq!(bob.balance().unwrap(), spendable("10", 1));
}

#[tokio::test]
async fn test_timeout_leaves_send_pending_until_sync_confirms_it() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    ledger.inject(Fault::LoseAnswer);
    let err = alice.send(&ledger, amount("40"), &to).await.unwrap_err();
    assert!(matches!(err, WalletError::Pending { .. }), "{err}");
    assert!(err.to_string().contains("sync"), "{err}");

    // The inputs are locked: nothing else can spend them.
    let b = alice.balance().unwrap();
    assert_eq!(b.spendable, Amount::ZERO);
    assert_eq!(b.pending_spend, amount("100"));
    assert_eq!(b.pending_sends, 1);
    let again = alice.send(&ledger, amount("1"), &to).await.unwrap_err();
    match again {
        WalletError::InsufficientFunds { pending, .. } => assert_eq!(pending, amount("100")),
        other => panic!("expected insufficient funds, got {other}"),
    }

    let report = alice.sync(&ledger, false).await.unwrap();
    assert_eq!(report.sends.len(), 1);
    assert_eq!(report.sends[0].after, SendStatus::Confirmed);
    assert_eq!(alice.balance().unwrap(), spendable("60", 1));
    // The recipient can be paid from the payment kept with the send.
    bob.receive(&ledger, &payment(&report.sends[0].payment))
        .await
        .unwrap();
    assert_eq!(bob.balance().unwrap(), spendable("40", 1));
    // A second sync has nothing to do.
    assert!(alice.sync(&ledger, false).await.unwrap().sends.is_empty());
}

#[tokio::test]
async fn test_send_in_flight_stays_pending_then_confirms() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    ledger.inject(Fault::Hold);
    let err = alice
        .send(&ledger, amount("40"), &other_address())
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::Pending { .. }), "{err}");
    // Still being settled: sync leaves it alone.
    let report = alice.sync(&ledger, false).await.unwrap();
    assert_eq!(report.sends[0].after, SendStatus::Pending);
    assert_eq!(alice.balance().unwrap().pending_spend, amount("100"));
    ledger.release();
    let report = alice.sync(&ledger, false).await.unwrap();
    assert_eq!(report.sends[0].after, SendStatus::Confirmed);
    assert_eq!(alice.balance().unwrap(), spendable("60", 1));
}

#[tokio::test]
async fn test_send_that_never_arrived_is_returned_by_sync() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    ledger.inject(Fault::LoseTransaction);
    let err = alice
        .send(&ledger, amount("40"), &other_address())
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::Pending { .. }), "{err}");
    assert_eq!(alice.balance().unwrap().pending_spend, amount("100"));

    let report = alice.sync(&ledger, false).await.unwrap();
    assert_eq!(report.sends[0].after, SendStatus::Abandoned);
    assert!(report.sends[0].note.contains("never arrived"));
    assert_eq!(alice.balance().unwrap(), spendable("100", 1));
    assert_eq!(last_send(&alice).status, "abandoned");
    // The returned output pays for the next send.
    alice
        .send(&ledger, amount("10"), &other_address())
        .await
        .unwrap();
    assert_eq!(alice.balance().unwrap(), spendable("90", 1));
    assert_eq!(ledger.supply(), Some(amount("100")));
}

#[tokio::test]
async fn test_sync_resubmit_settles_a_send_that_never_arrived() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    ledger.inject(Fault::LoseTransaction);
    alice
        .send(&ledger, amount("40"), &other_address())
        .await
        .unwrap_err();
    let report = alice.sync(&ledger, true).await.unwrap();
    assert_eq!(report.sends[0].after, SendStatus::Confirmed);
    assert!(report.sends[0].note.starts_with("resubmitted"));
    assert_eq!(alice.balance().unwrap(), spendable("60", 1));
}

#[tokio::test]
async fn test_abandoned_send_arriving_late_is_confirmed_by_sync() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    ledger.inject(Fault::LoseTransaction);
    let err = alice
        .send(&ledger, amount("40"), &other_address())
        .await
        .unwrap_err();
    let WalletError::Pending { tx_id, .. } = err else {
        panic!("expected pending, got {err}");
    };
    alice.sync(&ledger, false).await.unwrap();
    assert_eq!(alice.balance().unwrap(), spendable("100", 1));

    // The lost transaction turns up after all (a slow network path) and settles.
    let late = alice.store().read(|t| t.send(&tx_id)).unwrap().unwrap().tx;
    assert_eq!(ledger.submit(&late).await.unwrap(), Final::Confirmed);

    // Alice, unaware, tries to spend the returned output: rejected, and the output is
    // recognised as gone.
    let err = alice
        .send(&ledger, amount("10"), &other_address())
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::Rejected { .. }), "{err}");
    assert_eq!(alice.balance().unwrap(), Balance::default());

    // Sync finds the abandoned send confirmed and credits its change.
    let report = alice.sync(&ledger, false).await.unwrap();
    let revived = report
        .sends
        .iter()
        .find(|s| s.tx_id == tx_id)
        .expect("the late send is reported");
    assert_eq!(revived.after, SendStatus::Confirmed);
    assert!(revived.note.contains("late"), "{}", revived.note);
    assert_eq!(alice.balance().unwrap(), spendable("60", 1));
    assert_wallet_matches_ledger(&alice, &ledger).await;
}

#[tokio::test]
async fn test_sync_keeps_pending_when_inputs_spent_but_tx_unknown() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    // No change: every output of the send goes to Bob.
    ledger.inject(Fault::LoseAnswer);
    let err = alice.send(&ledger, amount("100"), &to).await.unwrap_err();
    let WalletError::Pending { tx_id, .. } = err else {
        panic!("expected pending, got {err}");
    };
    let text = alice
        .store()
        .read(|t| t.send(&tx_id))
        .unwrap()
        .unwrap()
        .payment;
    bob.receive(&ledger, &payment(&text)).await.unwrap();
    bob.send(&ledger, amount("100"), &other_address())
        .await
        .unwrap();
    // The ledger no longer keeps the status of Alice's transaction; its input is spent
    // and its output too: nothing proves what happened, so it stays pending.
    ledger.forget(&tx_id);
    let report = alice.sync(&ledger, false).await.unwrap();
    assert_eq!(report.sends[0].after, SendStatus::Pending);
    assert!(
        report.sends[0].note.contains("spent"),
        "{}",
        report.sends[0].note
    );
    let b = alice.balance().unwrap();
    assert_eq!(b.spendable, Amount::ZERO);
    assert_eq!(
        b.pending_spend,
        amount("100"),
        "never returned to spendable"
    );
}

#[tokio::test]
async fn test_sync_confirms_when_tx_unknown_but_outputs_exist() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    ledger.inject(Fault::LoseAnswer);
    let err = alice
        .send(&ledger, amount("30"), &other_address())
        .await
        .unwrap_err();
    let WalletError::Pending { tx_id, .. } = err else {
        panic!("expected pending, got {err}");
    };
    ledger.forget(&tx_id);
    let report = alice.sync(&ledger, false).await.unwrap();
    assert_eq!(report.sends[0].after, SendStatus::Confirmed);
    assert!(report.sends[0].note.contains("outputs are on the ledger"));
    assert_eq!(alice.balance().unwrap(), spendable("70", 1));
}

#[tokio::test]
async fn test_interrupted_mint_settled_by_sync() {
    let ledger = ledger();
    let mut alice = wallet();
    ledger.inject(Fault::LoseAnswer);
    let err = alice
        .mint(&ledger, &issuer(), amount("5"), None, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::Pending { .. }), "{err}");
    assert_eq!(alice.balance().unwrap().spendable, Amount::ZERO);
    let report = alice.sync(&ledger, false).await.unwrap();
    assert_eq!(report.sends[0].after, SendStatus::Confirmed);
    assert_eq!(alice.balance().unwrap(), spendable("5", 1));
}

#[tokio::test]
async fn test_pending_receipt_settled_by_sync() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    ledger.inject(Fault::Hold);
    let err = alice.send(&ledger, amount("25"), &to).await.unwrap_err();
    let WalletError::Pending { tx_id, .. } = err else {
        panic!("expected pending, got {err}");
    };
    let text = alice
        .store()
        .read(|t| t.send(&tx_id))
        .unwrap()
        .unwrap()
        .payment;
    let received = bob.receive(&ledger, &payment(&text)).await.unwrap();
    assert_eq!(received.credited, Amount::ZERO);
    assert_eq!(received.pending, amount("25"));
    let b = bob.balance().unwrap();
    assert_eq!(b.spendable, Amount::ZERO);
    assert_eq!(b.pending_receive, amount("25"));
    // Not yet settled: sync keeps waiting; receiving again is refused.
    let report = bob.sync(&ledger, false).await.unwrap();
    assert_eq!(
        report.receipts[0].after,
        cbdc_wallet::ReceiptStatus::Pending
    );
    assert!(matches!(
        bob.receive(&ledger, &payment(&text)).await,
        Err(WalletError::AlreadyReceived { .. })
    ));
    ledger.release();
    let report = bob.sync(&ledger, false).await.unwrap();
    assert_eq!(
        report.receipts[0].after,
        cbdc_wallet::ReceiptStatus::Confirmed
    );
    assert_eq!(report.receipts[0].credited, amount("25"));
    assert_eq!(bob.balance().unwrap(), spendable("25", 1));
    alice.sync(&ledger, false).await.unwrap();
    assert_eq!(alice.balance().unwrap(), spendable("75", 1));
}

#[tokio::test]
async fn test_fan_pays_equal_outputs_in_one_transaction() {
    let ledger = ledger();
    let mut alice = funded(&ledger, "100").await;
    let mut bob = wallet();
    let to = bob.new_address().unwrap();
    let report = alice.fan(&ledger, 20, amount("0.50"), &to).await.unwrap();
    assert_eq!(report.kind, SendKind::Fan);
    assert_eq!(report.outputs, 20);
    assert_eq!(report.amount, amount("10"));
    assert!(report.payment.len() < 160, "{}", report.payment);
    let received = bob
        .receive(&ledger, &payment(&report.payment))
        .await
        .unwrap();
    assert_eq!(received.credited_outputs, 20);
    assert_eq!(bob.balance().unwrap(), spendable("10", 20));
    assert_eq!(alice.balance().unwrap(), spendable("90", 1));
    let err = alice
        .fan(&ledger, 300, amount("0.01"), &to)
        .await
        .unwrap_err();
    assert!(matches!(err, WalletError::TooManyOutputs { .. }), "{err}");
}

#[tokio::test]
async fn test_wallet_file_survives_reopen_and_refuses_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.db");
    let ledger = ledger();
    {
        let mut alice = Wallet::create(&path).unwrap();
        alice.set_sentinel("127.0.0.1:50051").unwrap();
        alice
            .mint(&ledger, &issuer(), amount("12.34"), None, 2)
            .await
            .unwrap();
    }
    assert!(matches!(
        Wallet::create(&path),
        Err(WalletError::Store(cbdc_wallet::StoreError::Exists { .. }))
    ));
    let alice = Wallet::open(&path).unwrap();
    assert_eq!(alice.balance().unwrap(), spendable("12.34", 2));
    assert_eq!(
        alice.sentinel().unwrap().as_deref(),
        Some("127.0.0.1:50051")
    );
    assert!(matches!(
        Wallet::open(&dir.path().join("missing.db")),
        Err(WalletError::Store(cbdc_wallet::StoreError::Missing { .. }))
    ));
}

// --- helpers ---

fn issuer() -> SecretKey {
    SecretKey::from_bytes(&[1; 32])
}

fn ledger() -> MemoryLedger {
    MemoryLedger::new(issuer().public_key())
}

fn wallet() -> Wallet {
    Wallet::from_store(Store::create_in_memory().unwrap())
}

async fn funded(ledger: &MemoryLedger, value: &str) -> Wallet {
    let mut w = wallet();
    w.mint(ledger, &issuer(), amount(value), None, 1)
        .await
        .unwrap();
    w
}

fn amount(text: &str) -> Amount {
    text.parse().unwrap()
}

fn payment(text: &str) -> Payment {
    text.parse().unwrap()
}

fn other_address() -> Address {
    Address(WitnessProgram::P2pk(
        SecretKey::from_bytes(&[77; 32]).public_key(),
    ))
}

fn spendable(value: &str, outputs: u64) -> Balance {
    Balance {
        spendable: amount(value),
        spendable_outputs: outputs,
        ..Balance::default()
    }
}

fn last_send(w: &Wallet) -> cbdc_wallet::HistoryEntry {
    w.history()
        .unwrap()
        .into_iter()
        .rev()
        .find(|e| e.direction != cbdc_wallet::wallet::Direction::Received)
        .unwrap()
}

/// Every output the wallet counts as spendable is unspent on the ledger.
async fn assert_wallet_matches_ledger(w: &Wallet, ledger: &MemoryLedger) {
    let unspent = w
        .store()
        .read(|t| t.outputs_in_state(cbdc_wallet::store::OutputState::Unspent))
        .unwrap();
    let ids: Vec<_> = unspent.iter().map(|o| o.uhs_id).collect();
    let statuses = ledger.output_status(&ids).await.unwrap();
    for (o, s) in unspent.iter().zip(statuses) {
        assert_eq!(
            s,
            cbdc_wallet::OutputStatus::Unspent(o.value),
            "{:?}",
            o.outpoint
        );
    }
}
