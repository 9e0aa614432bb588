//! The real `cbdc-wallet` binary, driven as a user would (spawned processes, printed
//! output, exit codes), against a real sentinel gRPC server.
//!
//! The cluster comes from [`start_cluster`], the one place that knows how it is made:
//! today a sentinel on 127.0.0.1:0 in front of the in-memory back end; the embedded
//! cluster (`cbdc dev`, 2PC or atomizer) can take its place without touching the tests,
//! which only see an endpoint, an issuer key file and [`Cluster::wait_settled`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cbdc_core::{Limits, SecretKey, ShardMap, Validator};
use cbdc_proto::v1;
use cbdc_proto::v1::sentinel_client::SentinelClient;
use cbdc_sentinel::{serve, MemoryBackend, SentinelParams};
use serde_json::Value;
use tempfile::TempDir;

/// Longest any condition is waited for.
const WAIT: Duration = Duration::from_secs(30);

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
fn test_cli_interrupted_send_settled_by_sync() {
    let cluster = start_cluster();
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

    // The back end holds the transaction: the wallet gives up waiting (exit 3) and the
    // send stays pending, its input locked.
    cluster.backend.hold();
    let send = run(
        &alice,
        &["--json", "--timeout", "1", "send", "25", address.trim()],
    );
    assert_eq!(send.code, 3, "{send:?}");
    let error = send.json()["error"].clone();
    assert_eq!(error["kind"], "pending");
    let tx_id = error["tx_id"].as_str().unwrap().to_string();
    assert!(send.stderr.contains("sync"), "{}", send.stderr);
    let b = run(&alice, &["--json", "balance"]).json();
    assert_eq!(b["spendable"], "0.00");
    assert_eq!(b["pending_spend"], "100.00");
    assert_eq!(b["pending_sends"], 1);
    let text = run(&alice, &["balance"]).ok_stdout();
    assert!(text.contains("unsettled send"), "{text}");

    // The answer arrives later; sync settles the send and shows the payment.
    cluster.backend.release();
    cluster.wait_settled(&tx_id);
    let sync = run(&alice, &["--json", "sync"]).json();
    let sends = sync["sends"].as_array().unwrap();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["tx_id"], tx_id.as_str());
    assert_eq!(sends[0]["status"], "confirmed");
    assert_eq!(sync["spendable"], "75.00");
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
}

// --- helpers ---

/// A cluster for the wallet to talk to. Dropping it stops the server.
struct Cluster {
    endpoint: String,
    issuer_key: PathBuf,
    backend: Arc<MemoryBackend>,
    dir: TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the cluster every test here uses: a real sentinel gRPC server on 127.0.0.1:0
/// with the in-memory back end, on its own thread and runtime, and the issuer key in a
/// key file as `cbdc config init` writes it.
fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let issuer = SecretKey::from_bytes(&rand::random::<[u8; 32]>());
    let issuer_key = dir.path().join("issuer.key");
    cbdc_core::write_key_file(&issuer_key, &issuer).unwrap();
    let validator = Validator::new(Limits::default(), Some(issuer.public_key()));
    let sentinel_key = SecretKey::from_bytes(&rand::random::<[u8; 32]>());
    let mut params = SentinelParams::new(sentinel_key, validator, ShardMap::even(4).unwrap());
    params.max_batch_delay = Duration::from_millis(1);
    let backend = Arc::new(MemoryBackend::default());
    let served = backend.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = serve(listener, params, served, shutdown).await {
                eprintln!("sentinel stopped: {e}");
            }
        });
    });
    let addr = addr_rx.recv_timeout(WAIT).unwrap();
    Cluster {
        endpoint: addr.to_string(),
        issuer_key,
        backend,
        dir,
        _stop: stop,
    }
}

impl Cluster {
    fn wallet_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn issuer_key(&self) -> &str {
        path(&self.issuer_key)
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
                    .get_transaction_status(v1::GetTransactionStatusRequest { tx_id: id.clone() })
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
