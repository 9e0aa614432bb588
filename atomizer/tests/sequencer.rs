//! The sequencer on a real 3-replica atomizer group (openraft over sockets, RocksDB).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cbdc_atomizer::machine::{AtomizerMachine, MachineParams};
use cbdc_atomizer::sequencer::{Sequencer, SequencerParams};
use cbdc_consensus::testkit::test_tuning;
use cbdc_consensus::{Replica, ReplicaConfig, ReplicaNode};
use cbdc_core::{Amount, CompactTransaction, TxId, UhsId};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

const MACHINE: MachineParams = MachineParams {
    stxo_cache_depth: 3,
};

fn mint(n: u8) -> CompactTransaction {
    CompactTransaction {
        id: TxId::from([n; 32]),
        inputs: Vec::new(),
        outputs: vec![(UhsId::from([n; 32]), Amount::from_cents(100))],
        attestations: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_leader_whose_followers_are_gone_still_stops() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let peer = TcpListener::bind("127.0.0.1:0").await?;
        let addr = peer.local_addr()?.to_string();
        // No client service in this test: the client address is never dialled.
        members.insert(id, ReplicaNode::new(addr.clone(), addr));
        listeners.insert(id, peer);
    }
    let mut replicas = BTreeMap::new();
    for (id, peer) in listeners {
        let config = ReplicaConfig {
            id,
            group: "atomizer".into(),
            data_dir: dir.path().join(format!("r{id}")),
            members: members.clone(),
            tuning: test_tuning(),
        };
        let replica = Replica::start(config, peer, |db| AtomizerMachine::open(db, MACHINE)).await?;
        replicas.insert(id, replica);
    }
    let deadline = Instant::now() + WAIT;
    let leader = loop {
        if let Some(id) = replicas
            .values()
            .find_map(|r| r.handle().leader().map(|l| l.0))
        {
            break id;
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let leading = replicas.remove(&leader).expect("the leader runs");
    let sequencer = Sequencer::start(
        leading.handle(),
        SequencerParams {
            block_interval: Duration::from_millis(20),
            max_batch: 100,
            stxo_cache_depth: MACHINE.stxo_cache_depth,
            max_partials: 1000,
        },
    );
    // The group works: a mint reaches a block.
    let heights = leading.handle().read(|m| m.subscribe_heights())?;
    sequencer.client().mint(vec![mint(1)])?;
    tokio::time::timeout(WAIT, heights.clone().wait_for(|&h| h >= 1)).await??;

    // The followers stop; the next write can never commit. Stopping the sequencer must
    // not wait for it.
    for (_, replica) in std::mem::take(&mut replicas) {
        replica.shutdown().await?;
    }
    sequencer.client().mint(vec![mint(2)])?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), sequencer.shutdown())
        .await
        .map_err(|_| anyhow::anyhow!("the sequencer did not stop"))?;
    leading.shutdown().await?;
    Ok(())
}
