//! `cbdc dev --demo`: a short scripted session against a sentinel, so a new user sees the
//! cluster settle money: an issuance, a payment, a double spend refused, and a retried
//! payment answered with its real outcome.

use std::fmt::Write as _;

use cbdc_core::{p2pk_output, sign_mint, sign_transfer, Hash, Input, SecretKey, Transaction};
use cbdc_proto::v1::sentinel_client::SentinelClient;
use cbdc_proto::v1::{self, OutputStatus, TxStatus};
use tonic::transport::Channel;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The sentinel could not be reached.
    #[error("cannot reach the sentinel at {endpoint}: {message}")]
    Connect {
        /// Where.
        endpoint: String,
        /// The transport's message.
        message: String,
    },
    /// A call failed.
    #[error("{step}: {status}")]
    Call {
        /// The step of the script.
        step: &'static str,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The cluster answered something the script did not expect.
    #[error("{step}: expected {expected}, got {got}")]
    Unexpected {
        /// The step of the script.
        step: &'static str,
        /// What should have happened.
        expected: &'static str,
        /// What happened.
        got: String,
    },
}

async fn submit(
    client: &mut SentinelClient<Channel>,
    step: &'static str,
    tx: &Transaction,
) -> Result<v1::TransactionResult, DemoError> {
    let request = v1::SubmitTransactionRequest {
        transaction: Some(tx.into()),
        options: Some(v1::SubmitOptions {
            wait: true,
            wait_timeout_ms: 0,
        }),
    };
    let response = client
        .submit_transaction(request)
        .await
        .map_err(|status| DemoError::Call {
            step,
            status: Box::new(status),
        })?;
    response
        .into_inner()
        .result
        .ok_or_else(|| DemoError::Unexpected {
            step,
            expected: "a result",
            got: "an empty response".into(),
        })
}

fn describe(result: &v1::TransactionResult) -> String {
    let status = result
        .status()
        .as_str_name()
        .trim_start_matches("TX_STATUS_");
    match result.status() {
        TxStatus::Rejected => format!(
            "{status} ({})",
            result
                .reject_reason()
                .as_str_name()
                .trim_start_matches("REJECT_REASON_")
        ),
        TxStatus::Invalid => format!("{status} ({})", result.message),
        _ => status.to_string(),
    }
}

fn expect(
    step: &'static str,
    result: &v1::TransactionResult,
    want: TxStatus,
    expected: &'static str,
) -> Result<(), DemoError> {
    if result.status() == want {
        Ok(())
    } else {
        Err(DemoError::Unexpected {
            step,
            expected,
            got: describe(result),
        })
    }
}

/// Runs the script against the sentinel at `endpoint` (`host:port`), minting with
/// `issuer`; returns the transcript.
pub async fn run_demo(endpoint: &str, issuer: &SecretKey) -> Result<String, DemoError> {
    let connect_error = |message: String| DemoError::Connect {
        endpoint: endpoint.to_string(),
        message,
    };
    let channel = Channel::from_shared(format!("http://{endpoint}"))
        .map_err(|e| connect_error(e.to_string()))?
        .connect()
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let mut client = SentinelClient::new(channel);
    let mut out = String::new();
    let mut rng = rand_core::OsRng;
    let alice = [SecretKey::generate(&mut rng), SecretKey::generate(&mut rng)];
    let bob = SecretKey::generate(&mut rng);

    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rng, &mut nonce);
    let mint = sign_mint(
        issuer,
        vec![
            p2pk_output(&alice[0], 10_000),
            p2pk_output(&alice[1], 5_000),
        ],
        Hash(nonce),
    );
    let result = submit(&mut client, "mint", &mint).await?;
    let _ = writeln!(
        out,
        "mint    100.00 + 50.00 to alice     tx {}…  {}",
        &mint.tx_id().to_hex()[..16],
        describe(&result)
    );
    expect("mint", &result, TxStatus::Confirmed, "CONFIRMED")?;

    let inputs: Vec<Input> = (0..2)
        .map(|i| Input {
            outpoint: mint.outpoint(i),
            spent: mint.outputs[i as usize],
        })
        .collect();
    let pay = sign_transfer(
        &[(inputs[0], &alice[0]), (inputs[1], &alice[1])],
        vec![p2pk_output(&bob, 12_000), p2pk_output(&alice[0], 3_000)],
    );
    let result = submit(&mut client, "payment", &pay).await?;
    let _ = writeln!(
        out,
        "pay     120.00 to bob, 30.00 change tx {}…  {}",
        &pay.tx_id().to_hex()[..16],
        describe(&result)
    );
    expect("payment", &result, TxStatus::Confirmed, "CONFIRMED")?;

    let double = sign_transfer(
        &[(inputs[0], &alice[0])],
        vec![p2pk_output(&alice[1], 10_000)],
    );
    let result = submit(&mut client, "double spend", &double).await?;
    let _ = writeln!(
        out,
        "respend alice's first 100.00       tx {}…  {}",
        &double.tx_id().to_hex()[..16],
        describe(&result)
    );
    expect("double spend", &result, TxStatus::Rejected, "REJECTED")?;

    let result = submit(&mut client, "retry", &pay).await?;
    let _ = writeln!(
        out,
        "retry   the same payment            tx {}…  {}",
        &pay.tx_id().to_hex()[..16],
        describe(&result)
    );
    expect(
        "retry",
        &result,
        TxStatus::Confirmed,
        "CONFIRMED (its real outcome)",
    )?;

    let bob_output = v1::OutputRef::from(&Input {
        outpoint: pay.outpoint(0),
        spent: pay.outputs[0],
    });
    let statuses = client
        .get_output_status(v1::GetOutputStatusRequest {
            outputs: vec![bob_output],
        })
        .await
        .map_err(|status| DemoError::Call {
            step: "output status",
            status: Box::new(status),
        })?
        .into_inner();
    let status = statuses
        .outputs
        .first()
        .map(|s| s.status())
        .unwrap_or(OutputStatus::Unspecified);
    let _ = writeln!(
        out,
        "status  bob's 120.00 output          {}",
        status.as_str_name().trim_start_matches("OUTPUT_STATUS_")
    );
    if status != OutputStatus::Unspent {
        return Err(DemoError::Unexpected {
            step: "output status",
            expected: "UNSPENT",
            got: status.as_str_name().into(),
        });
    }
    Ok(out)
}
