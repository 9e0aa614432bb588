//! `cbdc-raft-testnode`: a TEST FIXTURE, not a product. Runs one replica of a Raft group of
//! the key-value test state machine (`cbdc_consensus::testkit::KvStateMachine`), serving
//! `RaftPeer` on its peer endpoint and `GroupClient` on its client endpoint, until SIGTERM
//! or Ctrl-C. The multi-process tests spawn it until the real `cbdc` binary exists.
//!
//! ```text
//! cbdc-raft-testnode --id 1 --data-dir DIR \
//!     --member 1=127.0.0.1:7001=127.0.0.1:8001 --member 2=... --member 3=... \
//!     [--snapshot-every N] [--keep-logs N]
//! ```
//! A member is `ID=PEER_ADDR=CLIENT_ADDR`; this replica listens on its own two addresses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use cbdc_consensus::testkit::KvStateMachine;
use cbdc_consensus::{GroupClientService, RaftTuning, Replica, ReplicaConfig, ReplicaNode};
use tokio::net::TcpListener;

fn parse_args() -> anyhow::Result<ReplicaConfig> {
    let mut id = None;
    let mut data_dir = None;
    let mut members = BTreeMap::new();
    let mut tuning = RaftTuning::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--id" => id = Some(value()?.parse().context("--id")?),
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--member" => {
                let v = value()?;
                let parts: Vec<&str> = v.split('=').collect();
                let [mid, peer, client] = parts.as_slice() else {
                    bail!("--member wants ID=PEER_ADDR=CLIENT_ADDR, got {v:?}");
                };
                members.insert(
                    mid.parse().context("member id")?,
                    ReplicaNode::new(*peer, *client),
                );
            }
            "--snapshot-every" => {
                tuning.snapshot_every = value()?.parse().context("--snapshot-every")?
            }
            "--keep-logs" => {
                tuning.keep_logs_after_snapshot = value()?.parse().context("--keep-logs")?
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(ReplicaConfig {
        id: id.ok_or_else(|| anyhow!("--id is required"))?,
        group: "testnode".into(),
        data_dir: data_dir.ok_or_else(|| anyhow!("--data-dir is required"))?,
        members,
        tuning,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGTERM handler");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = parse_args()?;
    let me = config
        .members
        .get(&config.id)
        .cloned()
        .ok_or_else(|| anyhow!("replica {} is not a member", config.id))?;
    let peer_listener = TcpListener::bind(&me.peer_addr)
        .await
        .with_context(|| format!("bind peer endpoint {}", me.peer_addr))?;
    let client_listener = TcpListener::bind(&me.client_addr)
        .await
        .with_context(|| format!("bind client endpoint {}", me.client_addr))?;
    let replica = Replica::start(config, peer_listener, KvStateMachine::new).await?;

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let service = GroupClientService::new(replica.handle()).into_server();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(cbdc_proto::incoming(client_listener), async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            }),
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "client server failed"),
        Err(e) => tracing::warn!(error = %e, "client server task failed"),
    }
    replica.shutdown().await?;
    Ok(())
}
