//! The real `cbdc-wallet` binary, driven as a user would (spawned processes, printed
//! output, exit codes), against a real embedded 2PC cluster: the same
//! [`cbdc_node::cluster::Cluster`] that `cbdc dev` runs (2 shard groups, 1 coordinator
//! group, 1 sentinel, RocksDB in a temp dir, gRPC on loopback), started in this process
//! on its own runtime thread.
//!
//! The interrupted sends use no test double either. For them the cluster runs with a
//! long coordinator batch delay (a transaction waits that long before its two phases
//! start), so a send whose `--timeout` is shorter gives up before any answer can exist
//! (exit 3, always), while the cluster goes on to settle it, or, shut down meanwhile,
//! never settles it. Restarts reuse the cluster's directory: file, ports and data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cbdc_node::cluster::{prepare_dev_dir, Cluster as DevCluster, DevOptions};
use cbdc_proto::v1;
use cbdc_proto::v1::sentinel_client::SentinelClient;
use serde_json::Value;
use tempfile::TempDir;

/// Longest any condition is waited for.
const WAIT: Duration = Duration::from_secs(30);
/// Longest a cluster may take to start (RocksDB, Raft elections) on a busy machine.
const START_WAIT: Duration = Duration::from_secs(120);

/// The same wallet against the atomizer architecture: the sentinel answers once the
/// watchtower has the final status, so the wallet needs nothing different.
#[test]
fn test_cli_atomizer_mint_send_receive_and_overspend() {
    let cluster = start_atomizer_cluster();
    let alice = cluster.wallet_path("alice.db");
    let bob = cluster.wallet_path("bob.db");
    run(&alice, &["init", "--sentinel", &cluster.endpoint]).ok();
    run(&bob, &["init", "--sentinel", &cluster.endpoint]).ok();
    let mint = run(
        &alice,
        &[
            "mint",
            "100",
            "--outputs",
            "2",
            "--issuer-key",
            cluster.issuer_key(),
        ],
    );
    mint.ok();
    assert!(mint.stdout.contains("confirmed"), "{}", mint.stdout);
    let address = run(&bob, &["address"]).ok_stdout();
    let send = run(&alice, &["send", "70", address.trim()]);
    send.ok();
    assert!(send.stdout.contains("confirmed"), "{}", send.stdout);
    let payment = send.stdout.lines().last().unwrap().trim().to_string();
    run(&bob, &["receive", &payment]).ok();
    let a = run(&alice, &["--json", "balance"]).json();
    assert_eq!(a["spendable"], "30.00");
    let b = run(&bob, &["--json", "balance"]).json();
    assert_eq!(b["spendable"], "70.00");
    let over = run(&bob, &["send", "70.01", address.trim()]);
    assert_eq!(over.code, 1, "{over:?}");
}

#[test]
fn test_cli_two_wallets_mint_send_receive() {
    let cluster = start_cluster();
    let alice = cluster.wallet_path("alice.db");
    let bob = cluster.wallet_path("bob.db");

    let init = run(&alice, &["init", "--sentinel", &cluster.endpoint]);
    init.ok();
    assert!(init.stdout.contains("created wallet"), "{}", init.stdout);
    assert!(init.stdout.contains("address  usd1"), "{}", init.stdout);
    let bob_init = run(&bob, &["--json", "init", "--sentinel", &cluster.endpoint]).json();
    assert!(bob_init["address"].as_str().unwrap().starts_with("usd1"));

    // Mint to Alice in 4 outputs, human-readable output.
    let mint = run(
        &alice,
        &[
            "mint",
            "100",
            "--outputs",
            "4",
            "--issuer-key",
            cluster.issuer_key(),
        ],
    );
    mint.ok();
    assert!(
        mint.stdout.contains("minted 100.00 in 4 output(s)"),
        "{}",
        mint.stdout
    );
    assert!(
        mint.stdout.contains("credited 100.00 to this wallet"),
        "{}",
        mint.stdout
    );
    let balance = run(&alice, &["balance"]);
    balance.ok();
    assert!(balance.stdout.contains("spendable"), "{}", balance.stdout);
    assert!(
        balance.stdout.contains("100.00  (4 output(s))"),
        "{}",
        balance.stdout
    );

    // Bob makes an address; Alice pays it and prints the payment (last line).
    let address = run(&bob, &["address"]).ok_stdout();
    let address = address.trim();
    assert!(address.starts_with("usd1"), "{address}");
    let send = run(&alice, &["send", "30.50", address]);
    send.ok();
    assert!(
        send.stdout.contains("sent 30.50 in 1 output(s) to usd1"),
        "{}",
        send.stdout
    );
    assert!(send.stdout.contains("confirmed"), "{}", send.stdout);
    let payment = send.stdout.lines().last().unwrap().trim().to_string();
    assert!(payment.starts_with("usdpay1"), "{payment}");

    let receive = run(&bob, &["receive", &payment]);
    receive.ok();
    assert!(
        receive.stdout.contains("received 30.50 in 1 output(s)"),
        "{}",
        receive.stdout
    );

    let a = run(&alice, &["--json", "balance"]).json();
    assert_eq!(a["spendable"], "69.50");
    assert_eq!(a["pending"], "0.00");
    let b = run(&bob, &["balance", "--json"]).json();
    assert_eq!(b["spendable"], "30.50");
    assert_eq!(b["spendable_outputs"], 1);

    // Receiving the same payment again is refused and changes nothing.
    let again = run(&bob, &["receive", &payment]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("already received"),
        "{}",
        again.stderr
    );
    let again = run(&bob, &["--json", "receive", &payment]);
    assert_eq!(again.json()["error"]["kind"], "already_received");
    assert_eq!(
        run(&bob, &["--json", "balance"]).json()["spendable"],
        "30.50"
    );

    // Sending more than the balance is refused with a non-zero exit code.
    let over = run(&alice, &["send", "69.51", address]);
    assert_eq!(over.code, 1, "{over:?}");
    assert!(
        over.stderr.contains("insufficient funds"),
        "{}",
        over.stderr
    );
    let over = run(&alice, &["--json", "send", "1000", address]).json();
    assert_eq!(over["error"]["kind"], "insufficient_funds");
    assert_eq!(over["error"]["spendable"], "69.50");
    assert_eq!(
        run(&alice, &["--json", "balance"]).json()["spendable"],
        "69.50"
    );

    // JSON send with a payment file, received from the file; then a fan-out.
    let dir = cluster.dir.path();
    let file = dir.join("payment.txt");
    let sent = run(
        &alice,
        &[
            "--json",
            "send",
            "9.50",
            address,
            "--payment-file",
            path(&file),
        ],
    )
    .json();
    assert_eq!(sent["status"], "confirmed");
    assert_eq!(sent["amount"], "9.50");
    assert_eq!(
        sent["change"], "10.00",
        "the 19.50 change output alone covers it"
    );
    let from_file = run(&bob, &["--json", "receive", "--file", path(&file)]).json();
    assert_eq!(from_file["credited"], "9.50");
    assert_eq!(from_file["tx_id"], sent["tx_id"]);

    let fan = run(&alice, &["--json", "fan", "5", "2", address]).json();
    assert_eq!(fan["kind"], "fan");
    assert_eq!(fan["outputs"], 5);
    let fanned = run(
        &bob,
        &["--json", "receive", fan["payment"].as_str().unwrap()],
    )
    .json();
    assert_eq!(fanned["credited"], "10.00");
    assert_eq!(fanned["credited_outputs"], 5);

    assert_eq!(
        run(&alice, &["--json", "balance"]).json()["spendable"],
        "50.00"
    );
    let b = run(&bob, &["--json", "balance"]).json();
    assert_eq!(b["spendable"], "50.00");
    assert_eq!(b["spendable_outputs"], 7);

    // Bob pays Alice back with his many outputs.
    let alice_address = run(&alice, &["--json", "address"]).json()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let back = run(&bob, &["--json", "send", "45", &alice_address]).json();
    assert!(back["inputs"].as_u64().unwrap() > 1);
    run(&alice, &["receive", back["payment"].as_str().unwrap()]).ok();
    assert_eq!(
        run(&alice, &["--json", "balance"]).json()["spendable"],
        "95.00"
    );
    assert_eq!(
        run(&bob, &["--json", "balance"]).json()["spendable"],
        "5.00"
    );

    // History, both ways.
    let history = run(&alice, &["--json", "history"]).json();
    let entries = history["history"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["direction"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["minted", "sent", "sent", "fan", "received"]);
    assert!(entries.iter().all(|e| e["status"] == "confirmed"));
    let text = run(&bob, &["history"]).ok_stdout();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().all(|l| l.contains("confirmed")), "{text}");
    assert!(text.contains("received        30.50"), "{text}");
}

#[test]
fn test_cli_refuses_bad_input_with_clear_errors() {
    let cluster = start_cluster();
    let alice = cluster.wallet_path("alice.db");
    let carol = cluster.wallet_path("carol.db");
    run(&alice, &["init", "--sentinel", &cluster.endpoint]).ok();
    run(&carol, &["init", "--sentinel", &cluster.endpoint]).ok();
    run(
        &alice,
        &["mint", "10", "--issuer-key", cluster.issuer_key()],
    )
    .ok();
    let alice_address = run(&alice, &["address"]).ok_stdout();

    // init never overwrites.
    let twice = run(&alice, &["init"]);
    assert_eq!(twice.code, 1);
    assert!(
        twice.stderr.contains("refusing to overwrite"),
        "{}",
        twice.stderr
    );
    assert_eq!(
        run(&alice, &["--json", "balance"]).json()["spendable"],
        "10.00"
    );

    // Malformed amounts and addresses.
    let bad = run(&alice, &["--json", "send", "1.234", alice_address.trim()]);
    assert_eq!(bad.code, 1);
    assert_eq!(bad.json()["error"]["kind"], "invalid_amount");
    assert!(
        bad.stderr.contains("more than 2 decimal places"),
        "{}",
        bad.stderr
    );
    let bad = run(&alice, &["send", "1", "usd1notanaddress"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("invalid address"), "{}", bad.stderr);
    let bad = run(&alice, &["--json", "send", "0", alice_address.trim()]).json();
    assert_eq!(bad["error"]["kind"], "zero");

    // A payment for someone else, and a garbled payment.
    let to_alice = run(&alice, &["--json", "send", "1", alice_address.trim()]).json();
    let not_mine = run(
        &carol,
        &["--json", "receive", to_alice["payment"].as_str().unwrap()],
    );
    assert_eq!(not_mine.code, 1);
    assert_eq!(not_mine.json()["error"]["kind"], "not_for_this_wallet");
    let garbled = run(&carol, &["receive", "usdpay1qqqqqq"]);
    assert_eq!(garbled.code, 1);
    assert!(garbled.stderr.contains("payment"), "{}", garbled.stderr);

    // Missing and corrupt wallet files.
    let missing = run(&cluster.wallet_path("nobody.db"), &["--json", "balance"]);
    assert_eq!(missing.code, 1);
    assert_eq!(missing.json()["error"]["kind"], "wallet_missing");
    let corrupt = cluster.wallet_path("corrupt.db");
    std::fs::write(&corrupt, vec![0x42; 4096]).unwrap();
    let broken = run(&corrupt, &["balance"]);
    assert_eq!(broken.code, 1);
    assert!(broken.stderr.contains("corrupt"), "{}", broken.stderr);

    // An unreachable sentinel: the flag overrides the saved endpoint; nothing changes.
    let unreachable = run(
        &alice,
        &[
            "--json",
            "--sentinel",
            "127.0.0.1:1",
            "send",
            "1",
            alice_address.trim(),
        ],
    );
    assert_eq!(unreachable.code, 1);
    assert_eq!(unreachable.json()["error"]["kind"], "unreachable");
    assert_eq!(
        run(&alice, &["--json", "balance"]).json()["spendable"],
        "10.00"
    );

    // Usage errors are exit code 2, in JSON too when asked.
    let usage = run(&alice, &["--json", "send"]);
    assert_eq!(usage.code, 2);
    assert_eq!(usage.json()["error"]["kind"], "usage");
}

#[test]
fn test_cli_send_timeout_settled_by_sync() {
    // Every transaction waits 2 s in the coordinator's batcher before its two phases
    // start, so no answer can exist before then: a send that waits 1 s always gives up
    // (exit 3), while the cluster goes on to settle it.
    let cluster = start_cluster_with(Some(Duration::from_secs(2)));
    let alice = cluster.wallet_path("alice.db");
    let bob = cluster.wallet_path("bob.db");
    run(&alice, &["init", "--sentinel", &cluster.endpoint]).ok();
    run(&bob, &["init", "--sentinel", &cluster.endpoint]).ok();
    run(
        &alice,
        &["mint", "100", "--issuer-key", cluster.issuer_key()],
    )
    .ok();
    let address = run(&bob, &["address"]).ok_stdout();

    // The wallet gives up waiting (exit 3): the send stays pending, its input locked.
    let send = run(
        &alice,
        &["--json", "--timeout", "1", "send", "25", address.trim()],
    );
    assert_eq!(send.code, 3, "{send:?}");
    let error = send.json()["error"].clone();
    assert_eq!(error["kind"], "pending");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no final answer"),
        "{error}"
    );
    let tx_id = error["tx_id"].as_str().unwrap().to_string();
    assert!(send.stderr.contains("sync"), "{}", send.stderr);
    let b = run(&alice, &["--json", "balance"]).json();
    assert_eq!(b["spendable"], "0.00");
    assert_eq!(b["pending_spend"], "100.00");
    assert_eq!(b["pending_sends"], 1);
    let text = run(&alice, &["balance"]).ok_stdout();
    assert!(text.contains("unsettled send"), "{text}");
    // Its inputs are not offered to another send meanwhile.
    let blocked = run(&alice, &["--json", "send", "1", address.trim()]);
    assert_eq!(blocked.code, 1, "{blocked:?}");
    assert_eq!(blocked.json()["error"]["pending"], "100.00");

    // The cluster settles it anyway; sync records that and shows the payment.
    cluster.wait_settled(&tx_id);
    let sync = run(&alice, &["--json", "sync"]).json();
    let sends = sync["sends"].as_array().unwrap();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["tx_id"], tx_id.as_str());
    assert_eq!(sends[0]["before"], "pending");
    assert_eq!(sends[0]["status"], "confirmed");
    assert_eq!(sync["spendable"], "75.00");
    assert_eq!(sync["pending"], "0.00");
    let received = run(
        &bob,
        &["--json", "receive", sends[0]["payment"].as_str().unwrap()],
    )
    .json();
    assert_eq!(received["credited"], "25.00");
    assert_eq!(
        run(&bob, &["--json", "balance"]).json()["spendable"],
        "25.00"
    );
    let again = run(&alice, &["sync"]).ok_stdout();
    assert!(again.contains("nothing pending"), "{again}");
    let history = run(&alice, &["--json", "history"]).json();
    let statuses: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["confirmed", "confirmed"]);
}

#[test]
fn test_cli_cluster_down_funds_kept_and_settled_after_restart() {
    let mut cluster = start_cluster();
    let alice = cluster.wallet_path("alice.db");
    let bob = cluster.wallet_path("bob.db");
    let carol = cluster.wallet_path("carol.db");
    for wallet in [&alice, &bob, &carol] {
        run(wallet, &["init", "--sentinel", &cluster.endpoint]).ok();
    }
    run(
        &alice,
        &["mint", "100", "--issuer-key", cluster.issuer_key()],
    )
    .ok();
    run(
        &carol,
        &["mint", "50", "--issuer-key", cluster.issuer_key()],
    )
    .ok();
    let address = run(&bob, &["address"]).ok_stdout();
    let address = address.trim();

    // The cluster is down: the sentinel is unreachable, so nothing is recorded or sent
    // (exit 1), and the money stays spendable.
    cluster.stop();
    let down = run(&alice, &["send", "25", address]);
    assert_eq!(down.code, 1, "{down:?}");
    assert!(down.stderr.contains("unreachable"), "{}", down.stderr);
    let down = run(&alice, &["--json", "send", "25", address]);
    assert_eq!(down.code, 1, "{down:?}");
    assert_eq!(down.json()["error"]["kind"], "unreachable");
    let b = run(&alice, &["--json", "balance"]).json();
    assert_eq!(b["spendable"], "100.00");
    assert_eq!(b["pending_sends"], 0);

    // Back up, from its data, but holding every transaction in the coordinator's batcher
    // for an hour: Alice's and Carol's sends are recorded and submitted, the wallets
    // give up waiting (exit 3), and the cluster goes down before settling them.
    cluster.restart(Some(Duration::from_secs(3600)));
    let mut pending = Vec::new();
    for (wallet, amount) in [(&alice, "25"), (&carol, "10")] {
        let send = run(
            wallet,
            &["--json", "--timeout", "1", "send", amount, address],
        );
        assert_eq!(send.code, 3, "{send:?}");
        assert_eq!(send.json()["error"]["kind"], "pending");
        pending.push(send.json()["error"]["tx_id"].as_str().unwrap().to_string());
    }
    cluster.stop();

    // Unreachable while down: sync cannot settle anything (exit 1), and the money is
    // locked in the pending send, not lost.
    let sync = run(&alice, &["--json", "sync"]);
    assert_eq!(sync.code, 1, "{sync:?}");
    assert_eq!(sync.json()["error"]["kind"], "unreachable");
    let b = run(&alice, &["--json", "balance"]).json();
    assert_eq!(b["spendable"], "0.00");
    assert_eq!(b["pending_spend"], "100.00");
    assert_eq!(b["pending_sends"], 1);
    let history = run(&alice, &["--json", "history"]).json();
    let lost = history["history"][1].clone();
    assert_eq!(lost["tx_id"], pending[0].as_str());
    assert_eq!(lost["status"], "pending");
    let lost_payment = lost["payment"].as_str().unwrap().to_string();

    // The same cluster again (same directory, same ports, same data, usual batching).
    cluster.restart(None);
    // The ledger does not know Alice's send and its input is unspent: it never arrived,
    // and sync returns the money.
    let sync = run(&alice, &["--json", "sync"]).json();
    let sends = sync["sends"].as_array().unwrap();
    assert_eq!(sends.len(), 1, "{sync}");
    assert_eq!(sends[0]["tx_id"], pending[0].as_str());
    assert_eq!(sends[0]["status"], "abandoned");
    assert!(
        sends[0]["note"].as_str().unwrap().contains("never arrived"),
        "{sync}"
    );
    assert_eq!(sync["spendable"], "100.00");
    assert_eq!(sync["pending"], "0.00");
    // Bob cannot take a payment that never settled.
    let refused = run(&bob, &["--json", "receive", &lost_payment]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(refused.json()["error"]["kind"], "not_on_ledger");

    // Carol submits hers again instead: it settles, and Bob receives it.
    let sync = run(&carol, &["--json", "sync", "--resubmit"]).json();
    let sends = sync["sends"].as_array().unwrap();
    assert_eq!(sends.len(), 1, "{sync}");
    assert_eq!(sends[0]["tx_id"], pending[1].as_str());
    assert_eq!(sends[0]["status"], "confirmed");
    assert!(
        sends[0]["note"]
            .as_str()
            .unwrap()
            .starts_with("resubmitted"),
        "{sync}"
    );
    assert_eq!(sync["spendable"], "40.00");
    let received = run(
        &bob,
        &["--json", "receive", sends[0]["payment"].as_str().unwrap()],
    )
    .json();
    assert_eq!(received["credited"], "10.00");

    // Alice pays again with the returned money; the abandoned send can never settle
    // now, and the next sync says so.
    let sent = run(&alice, &["--json", "send", "25", address]).json();
    assert_eq!(sent["status"], "confirmed");
    run(&bob, &["receive", sent["payment"].as_str().unwrap()]).ok();
    let sync = run(&alice, &["--json", "sync"]).json();
    let sends = sync["sends"].as_array().unwrap();
    assert_eq!(sends.len(), 1, "{sync}");
    assert_eq!(sends[0]["tx_id"], pending[0].as_str());
    assert_eq!(sends[0]["status"], "rejected");
    assert_eq!(sync["spendable"], "75.00");
    assert_eq!(
        run(&bob, &["--json", "balance"]).json()["spendable"],
        "35.00"
    );
    let text = run(&alice, &["sync"]).ok_stdout();
    assert!(text.contains("nothing pending"), "{text}");
}

// --- helpers ---

/// An embedded 2PC cluster in a temp dir, and the wallets' files beside it. Dropping it
/// stops the cluster.
struct Cluster {
    endpoint: String,
    issuer_key: PathBuf,
    /// Holds `cluster/` (the cluster file, keys, RocksDB data) and the wallet files.
    dir: TempDir,
    running: Option<Running>,
}

/// A cluster's runtime thread.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// A new cluster with `cbdc dev`'s shape and settings.
fn start_cluster() -> Cluster {
    start_cluster_with(None)
}

/// A new cluster; `batch_delay` replaces the coordinators' batch delay (how long a
/// transaction waits for others to share its distributed transaction), for this run only.
fn start_cluster_with(batch_delay: Option<Duration>) -> Cluster {
    start(DevOptions::default(), batch_delay)
}

/// A new atomizer cluster with `cbdc dev --arch atomizer`'s shape and settings.
fn start_atomizer_cluster() -> Cluster {
    start(
        DevOptions {
            architecture: cbdc_node::config::Architecture::Atomizer,
            ..DevOptions::default()
        },
        None,
    )
}

fn start(options: DevOptions, batch_delay: Option<Duration>) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, running) = launch(&dir.path().join("cluster"), options, batch_delay);
    Cluster {
        endpoint,
        issuer_key: dir.path().join("cluster/keys/issuer.key"),
        dir,
        running: Some(running),
    }
}

/// Starts the cluster of `dir` (creating it on first use, as `cbdc dev --dir` does) on
/// its own thread and runtime; returns its sentinel's endpoint once it serves.
fn launch(dir: &Path, options: DevOptions, batch_delay: Option<Duration>) -> (String, Running) {
    let dir = dir.to_path_buf();
    let (ready, started) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let cluster = async {
                let mut prepared = prepare_dev_dir(&dir, &options)?;
                if let Some(delay) = batch_delay {
                    for group in &mut prepared.config.coordinators {
                        group.batch_delay = delay;
                    }
                }
                DevCluster::start(prepared.config, prepared.listeners).await
            }
            .await;
            let cluster = match cluster {
                Ok(cluster) => cluster,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready.send(Ok(cluster.sentinel_endpoints()[0].to_string()));
            let _ = stopped.await;
            if let Err(e) = cluster.shutdown().await {
                eprintln!("cluster shutdown: {e}");
            }
        });
        // Whatever the roles left running (a sentinel still retrying a coordinator)
        // ends here, so nothing of this run reaches the next cluster on these ports.
        runtime.shutdown_timeout(WAIT);
    });
    let endpoint = started
        .recv_timeout(START_WAIT)
        .expect("the cluster did not start in time")
        .unwrap_or_else(|e| panic!("the cluster did not start: {e}"));
    (endpoint, Running { stop, thread })
}

impl Cluster {
    fn wallet_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn issuer_key(&self) -> &str {
        path(&self.issuer_key)
    }

    /// Shuts the cluster down gracefully and waits until everything of it has ended.
    fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            running.thread.join().expect("the cluster thread panicked");
        }
    }

    /// Starts the cluster again from its directory (its file, ports and data), with
    /// `batch_delay` as in [`start_cluster_with`].
    fn restart(&mut self, batch_delay: Option<Duration>) {
        self.stop();
        // The directory holds its cluster file: the options only shape a new one.
        let (endpoint, running) = launch(
            &self.dir.path().join("cluster"),
            DevOptions::default(),
            batch_delay,
        );
        assert_eq!(endpoint, self.endpoint, "the sentinel moved");
        self.running = Some(running);
    }

    /// Waits until the cluster reports a final status for `tx_id`.
    fn wait_settled(&self, tx_id: &str) {
        let endpoint = format!("http://{}", self.endpoint);
        let id = hex::decode(tx_id).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut client = SentinelClient::connect(endpoint).await.unwrap();
            let deadline = Instant::now() + WAIT;
            loop {
                let result = client
                    .get_transaction_status(v1::GetTransactionStatusRequest {
                        tx_id: id.clone().into(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .result
                    .unwrap_or_default();
                if result.is_final() {
                    return;
                }
                assert!(Instant::now() < deadline, "transaction never settled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            // Not while unwinding from a failed assertion: a second panic would abort.
            let _ = running.thread.join();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One finished `cbdc-wallet` process.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }

    fn ok_stdout(&self) -> String {
        self.ok().stdout.clone()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `cbdc-wallet --wallet WALLET ARGS…` with a clean environment.
fn run(wallet: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_cbdc-wallet"))
        .arg("--wallet")
        .arg(wallet)
        .args(args)
        .env_remove("CBDC_SENTINEL")
        .env_remove("CBDC_WALLET")
        .output()
        .unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    // A transcript of the session: shown when a test fails (or with --nocapture).
    let name = wallet.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    println!("$ cbdc-wallet --wallet {name} {}", args.join(" "));
    print!("{}", run.stdout);
    print!("{}", run.stderr);
    println!("[exit {}]", run.code);
    run
}
