//! Shared helpers of the node integration tests: build and sign transactions, talk to a
//! sentinel, audit shards.

#![allow(dead_code)]

pub mod processes;

use std::time::{Duration, Instant};

use cbdc_core::{
    p2pk_output, sign_mint, sign_transfer, Hash, Input, SecretKey, ShardMap, Transaction,
};
use cbdc_node::cluster::{prepare_dev_dir, Cluster, DevOptions};
use cbdc_proto::v1::{self, sentinel_client::SentinelClient, shard_query_client::ShardQueryClient};
use tempfile::TempDir;
use tonic::transport::Channel;

/// A spendable output and the key it is locked to.
#[derive(Clone)]
pub struct Coin {
    pub input: Input,
    pub key: SecretKey,
}

impl Coin {
    pub fn value(&self) -> u64 {
        self.input.spent.value.cents()
    }
}

/// The coins a transaction created, locked to `keys` in order.
pub fn coins_of(tx: &Transaction, keys: &[SecretKey]) -> Vec<Coin> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| Coin {
            input: Input {
                outpoint: tx.outpoint(i as u32),
                spent: tx.outputs[i],
            },
            key: key.clone(),
        })
        .collect()
}

pub fn fresh_key() -> SecretKey {
    SecretKey::generate(&mut rand_core::OsRng)
}

pub fn random_nonce() -> Hash {
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    Hash(nonce)
}

/// Outputs of `values`, each locked to its own fresh key.
fn fresh_outputs(values: &[u64]) -> (Vec<SecretKey>, Vec<cbdc_core::Output>) {
    let keys: Vec<SecretKey> = values.iter().map(|_| fresh_key()).collect();
    let outputs = keys
        .iter()
        .zip(values)
        .map(|(k, v)| p2pk_output(k, *v))
        .collect();
    (keys, outputs)
}

/// A mint of `values` to fresh keys; returns the tx and its coins.
pub fn mint(issuer: &SecretKey, values: &[u64]) -> (Transaction, Vec<Coin>) {
    let (keys, outputs) = fresh_outputs(values);
    let tx = sign_mint(issuer, outputs, random_nonce());
    let coins = coins_of(&tx, &keys);
    (tx, coins)
}

/// A transfer spending `coins` into fresh outputs of `values`.
pub fn transfer(coins: &[Coin], values: &[u64]) -> (Transaction, Vec<Coin>) {
    let (keys, outputs) = fresh_outputs(values);
    let spends: Vec<(Input, &SecretKey)> = coins.iter().map(|c| (c.input, &c.key)).collect();
    let tx = sign_transfer(&spends, outputs);
    let new = coins_of(&tx, &keys);
    (tx, new)
}

pub async fn connect(endpoint: impl std::fmt::Display) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Channel::from_shared(format!("http://{endpoint}"))
            .expect("endpoint")
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for {endpoint}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to {endpoint}: {e}"),
        }
    }
}

pub async fn sentinel(endpoint: impl std::fmt::Display) -> SentinelClient<Channel> {
    SentinelClient::new(connect(endpoint).await)
}

/// Submits and waits for the final answer.
pub async fn submit(
    client: &mut SentinelClient<Channel>,
    tx: &Transaction,
) -> Result<v1::TransactionResult, tonic::Status> {
    let response = client
        .submit_transaction(v1::SubmitTransactionRequest {
            transaction: Some(tx.into()),
            options: Some(v1::SubmitOptions {
                wait: true,
                wait_timeout_ms: 0,
            }),
        })
        .await?;
    Ok(response.into_inner().result.expect("a result"))
}

pub async fn output_status(
    client: &mut SentinelClient<Channel>,
    coins: &[Coin],
) -> Vec<v1::OutputStatus> {
    client
        .get_output_status(v1::GetOutputStatusRequest {
            outputs: coins
                .iter()
                .map(|c| v1::OutputRef::from(&c.input))
                .collect(),
        })
        .await
        .expect("output status")
        .into_inner()
        .outputs
        .iter()
        .map(|o| o.status())
        .collect()
}

/// The shard group owning each coin's UHS id.
pub fn shard_of(map: &ShardMap, coin: &Coin) -> usize {
    map.shard_for(&coin.input.uhs_id())
}

/// `(outputs, total value)` summed over one replica endpoint of each shard group.
pub async fn audit(shard_endpoints: &[String]) -> (u64, u64) {
    let mut count = 0;
    let mut value = 0;
    for endpoint in shard_endpoints {
        let mut client = ShardQueryClient::new(connect(endpoint).await);
        let audit = client
            .audit(v1::AuditRequest {})
            .await
            .expect("audit")
            .into_inner();
        count += audit.output_count;
        value += audit.total_value;
    }
    (count, value)
}

/// A cluster running in this process, its directory (removed when dropped) and the
/// issuer key.
pub struct Harness {
    pub dir: TempDir,
    pub cluster: Cluster,
    pub issuer: SecretKey,
    /// Whether the cluster was new (not restarted from its data).
    pub created: bool,
}

/// Starts a new cluster shaped by `options` in a fresh directory.
pub async fn start_dev(options: &DevOptions) -> Harness {
    start_dev_in(TempDir::new().unwrap(), options).await
}

/// Starts the cluster of `dir`: a new one shaped by `options`, or the one already there
/// (a restart from its data).
pub async fn start_dev_in(dir: TempDir, options: &DevOptions) -> Harness {
    let prepared = prepare_dev_dir(dir.path(), options).unwrap();
    let prepared_created = prepared.created;
    let issuer = cbdc_core::read_key_file(&dir.path().join("keys/issuer.key")).unwrap();
    let cluster = Cluster::start(prepared.config, prepared.listeners)
        .await
        .unwrap();
    Harness {
        dir,
        cluster,
        issuer,
        created: prepared_created,
    }
}
