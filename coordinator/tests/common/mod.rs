//! Fixtures of the coordinator's integration tests: in-memory locking shards that model
//! locks (and can be taken down), coordinator replicas on 127.0.0.1 port 0 with RocksDB
//! in a temp dir, and transaction builders.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cbdc_consensus::testkit::test_tuning;
use cbdc_consensus::{Replica, ReplicaConfig, ReplicaHandle, ReplicaNode};
use cbdc_coordinator::{
    Coordinator, CoordinatorMachine, CoordinatorParams, LockVote, ShardError, ShardGroups,
};
use cbdc_core::{
    attest_batch, Amount, AttestationVerifier, CompactTransaction, Hash, SecretKey, ShardMap, TxId,
    UhsId,
};
use cbdc_proto::v1::{DtxId, RejectReason};

/// Polls `condition` every 10 ms until it holds; fails after `timeout`.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// How a memory shard recorded a transaction it owns the tx id of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Committed,
    Aborted(RejectReason),
}

#[derive(Debug, Clone)]
struct MemDtx {
    txs: Vec<CompactTransaction>,
    votes: Vec<LockVote>,
    applied: bool,
}

/// One in-memory locking shard.
#[derive(Debug, Default)]
pub struct MemShard {
    pub uhs: HashMap<UhsId, Amount>,
    /// Locked input → (coordinator, dtx sequence, position in the slice).
    pub locks: HashMap<UhsId, (u32, u64, usize)>,
    dtxs: HashMap<(u32, u64), MemDtx>,
    pub outcomes: HashMap<TxId, Recorded>,
    /// While set, every call fails as UNAVAILABLE.
    pub down: bool,
    /// Every call, answered or refused as down.
    pub attempts: u64,
    pub lock_calls: u64,
    pub apply_calls: u64,
    pub discard_calls: u64,
}

/// In-memory shard groups behind the [`ShardGroups`] trait.
pub struct MemoryShards {
    map: ShardMap,
    shards: Vec<Mutex<MemShard>>,
}

impl MemoryShards {
    pub fn new(count: usize) -> Arc<Self> {
        let map = ShardMap::even(count).expect("valid shard count");
        Arc::new(Self {
            map,
            shards: (0..count)
                .map(|_| Mutex::new(MemShard::default()))
                .collect(),
        })
    }

    pub fn shard(&self, index: usize) -> MutexGuard<'_, MemShard> {
        self.shards[index].lock().unwrap()
    }

    /// Creates an unspent output on the shard owning it.
    pub fn fund(&self, id: UhsId, value: u64) {
        let shard = self.map.shard_for(&id);
        self.shard(shard).uhs.insert(id, Amount::from_cents(value));
    }

    pub fn is_unspent(&self, id: &UhsId) -> bool {
        self.shard(self.map.shard_for(id)).uhs.contains_key(id)
    }

    pub fn recorded(&self, id: &TxId) -> Option<Recorded> {
        self.shard(self.map.shard_for_tx(id))
            .outcomes
            .get(id)
            .copied()
    }

    pub fn set_down(&self, shard: usize, down: bool) {
        self.shard(shard).down = down;
    }

    pub fn total_locks(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.shard(i).locks.len())
            .sum()
    }

    pub fn total_dtxs(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.shard(i).dtxs.len())
            .sum()
    }

    pub fn lock_calls(&self, shard: usize) -> u64 {
        self.shard(shard).lock_calls
    }

    pub fn attempts(&self, shard: usize) -> u64 {
        self.shard(shard).attempts
    }

    pub fn total_lock_calls(&self) -> u64 {
        (0..self.shards.len()).map(|i| self.lock_calls(i)).sum()
    }

    fn check(&self, shard: usize) -> Result<MutexGuard<'_, MemShard>, ShardError> {
        let guard = self.shards.get(shard).ok_or(ShardError::UnknownShard {
            shard,
            count: self.shards.len(),
        })?;
        let mut guard = guard.lock().unwrap();
        guard.attempts += 1;
        if guard.down {
            return Err(ShardError::Unavailable {
                shard,
                reason: "down for the test".into(),
            });
        }
        Ok(guard)
    }

    fn owns(&self, shard: usize, id: &UhsId) -> bool {
        self.map.shard_for(id) == shard
    }
}

#[async_trait]
impl ShardGroups for MemoryShards {
    fn shard_map(&self) -> &ShardMap {
        &self.map
    }

    async fn lock(
        &self,
        shard: usize,
        dtx: DtxId,
        txs: &[&CompactTransaction],
    ) -> Result<Vec<LockVote>, ShardError> {
        let mut state = self.check(shard)?;
        state.lock_calls += 1;
        let key = (dtx.coordinator, dtx.sequence);
        if let Some(known) = state.dtxs.get(&key) {
            return Ok(known.votes.clone());
        }
        let mut votes = Vec::with_capacity(txs.len());
        for (position, tx) in txs.iter().enumerate() {
            let owns_id = self.map.shard_for_tx(&tx.id) == shard;
            if owns_id && state.outcomes.get(&tx.id) == Some(&Recorded::Committed) {
                votes.push(LockVote::committed_before());
                continue;
            }
            let mut refusal = None;
            for (i, input) in tx.inputs.iter().enumerate() {
                if !self.owns(shard, input) {
                    continue;
                }
                if !state.uhs.contains_key(input) {
                    refusal = Some(LockVote::refused(RejectReason::InputsSpent, Some(i as u32)));
                    break;
                }
                if state.locks.contains_key(input) {
                    refusal = Some(LockVote::refused(
                        RejectReason::InputsLocked,
                        Some(i as u32),
                    ));
                    break;
                }
            }
            if refusal.is_none()
                && tx
                    .outputs
                    .iter()
                    .any(|(o, _)| self.owns(shard, o) && state.uhs.contains_key(o))
            {
                refusal = Some(LockVote::refused(RejectReason::OutputExists, None));
            }
            match refusal {
                Some(vote) => votes.push(vote),
                None => {
                    for input in tx.inputs.iter().filter(|i| self.owns(shard, i)) {
                        state
                            .locks
                            .insert(*input, (dtx.coordinator, dtx.sequence, position));
                    }
                    votes.push(LockVote::locked());
                }
            }
        }
        state.dtxs.insert(
            key,
            MemDtx {
                txs: txs.iter().map(|tx| (*tx).clone()).collect(),
                votes: votes.clone(),
                applied: false,
            },
        );
        Ok(votes)
    }

    async fn apply(
        &self,
        shard: usize,
        dtx: DtxId,
        commit: &[bool],
        reasons: &[RejectReason],
    ) -> Result<(), ShardError> {
        let mut state = self.check(shard)?;
        state.apply_calls += 1;
        let key = (dtx.coordinator, dtx.sequence);
        let Some(record) = state.dtxs.get(&key).cloned() else {
            return Ok(()); // discarded already: applied before
        };
        if record.applied {
            return Ok(());
        }
        if commit.len() != record.txs.len() || reasons.len() != record.txs.len() {
            return Err(ShardError::Refused {
                shard,
                code: tonic::Code::InvalidArgument,
                message: "flag count".into(),
            });
        }
        for (position, tx) in record.txs.iter().enumerate() {
            let owned_inputs: Vec<UhsId> = tx
                .inputs
                .iter()
                .copied()
                .filter(|i| self.owns(shard, i))
                .collect();
            let held = |state: &MemShard, i: &UhsId| {
                state.locks.get(i) == Some(&(dtx.coordinator, dtx.sequence, position))
            };
            let owns_id = self.map.shard_for_tx(&tx.id) == shard;
            if commit[position] {
                assert!(record.votes[position].locked, "commit of an unlocked tx");
                for input in &owned_inputs {
                    assert!(held(&state, input), "commit without the lock");
                    state.locks.remove(input);
                    state.uhs.remove(input);
                }
                for (output, value) in &tx.outputs {
                    if self.owns(shard, output) {
                        state.uhs.insert(*output, *value);
                    }
                }
                if owns_id {
                    state.outcomes.insert(tx.id, Recorded::Committed);
                }
            } else {
                for input in &owned_inputs {
                    if held(&state, input) {
                        state.locks.remove(input);
                    }
                }
                if owns_id && state.outcomes.get(&tx.id) != Some(&Recorded::Committed) {
                    state
                        .outcomes
                        .insert(tx.id, Recorded::Aborted(reasons[position]));
                }
            }
        }
        if let Some(record) = state.dtxs.get_mut(&key) {
            record.applied = true;
        }
        Ok(())
    }

    async fn discard(&self, shard: usize, dtx: DtxId) -> Result<(), ShardError> {
        let mut state = self.check(shard)?;
        state.discard_calls += 1;
        state.dtxs.remove(&(dtx.coordinator, dtx.sequence));
        Ok(())
    }
}

/// Unique ids for a test: `tag` picks the first byte (so the shard), `n` the rest.
pub fn hash(tag: u8, n: u64) -> Hash {
    static SALT: AtomicU64 = AtomicU64::new(1);
    let salt = SALT.fetch_add(1, Ordering::Relaxed);
    let mut bytes = Hash::digest_parts(&[&n.to_le_bytes(), &salt.to_le_bytes()]).0;
    bytes[0] = tag;
    Hash(bytes)
}

/// A compact transaction spending `inputs` into `outputs`.
pub fn tx(inputs: &[UhsId], outputs: &[UhsId]) -> CompactTransaction {
    CompactTransaction {
        id: TxId(hash(rand_tag(), 0)),
        inputs: inputs.to_vec(),
        outputs: outputs
            .iter()
            .map(|o| (*o, Amount::from_cents(10)))
            .collect(),
        attestations: Vec::new(),
    }
}

fn rand_tag() -> u8 {
    rand::random()
}

/// A fresh UHS id with a random prefix.
pub fn uhs() -> UhsId {
    UhsId(hash(rand_tag(), 0))
}

/// A fresh UHS id owned by `shard` of `count` even shards.
pub fn uhs_on(shard: usize, count: usize) -> UhsId {
    let width = 256 / count;
    let tag = shard * width + rand::random::<usize>() % width;
    UhsId(hash(tag as u8, 0))
}

/// A fresh tx id owned by `shard` of `count` even shards.
pub fn tx_id_on(shard: usize, count: usize) -> TxId {
    TxId(uhs_on(shard, count).0)
}

/// The sentinel key of the tests and a verifier requiring its attestation.
pub struct Sentinel {
    pub key: SecretKey,
    pub verifier: Arc<AttestationVerifier>,
}

impl Sentinel {
    pub fn new() -> Self {
        let key = SecretKey::from_bytes(&[7u8; 32]);
        let verifier = Arc::new(AttestationVerifier::new([key.public_key()], 1));
        Self { key, verifier }
    }

    /// Attests `txs` as one sentinel batch.
    pub fn attest(&self, mut txs: Vec<CompactTransaction>) -> Vec<CompactTransaction> {
        attest_batch(&self.key, &mut txs);
        txs
    }
}

/// Parameters for tests: small batches, short delay.
pub fn params() -> CoordinatorParams {
    CoordinatorParams {
        group: 3,
        batch_size: 64,
        batch_delay: Duration::from_millis(5),
        max_in_flight: 4,
        request_timeout: Duration::from_secs(20),
    }
}

/// A coordinator group of replicas on 127.0.0.1 (ports chosen by the OS) with data
/// under `base/node-<id>`.
pub struct Group {
    base: std::path::PathBuf,
    pub members: BTreeMap<u64, ReplicaNode>,
    pub replicas: BTreeMap<u64, Replica<CoordinatorMachine>>,
    /// The client listeners, until a test serves on them.
    pub client_listeners: BTreeMap<u64, tokio::net::TcpListener>,
}

impl Group {
    pub async fn start(base: &Path, n: u64) -> anyhow::Result<Self> {
        let mut peers = BTreeMap::new();
        let mut clients = BTreeMap::new();
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let client = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            members.insert(
                id,
                ReplicaNode::new(
                    peer.local_addr()?.to_string(),
                    client.local_addr()?.to_string(),
                ),
            );
            peers.insert(id, peer);
            clients.insert(id, client);
        }
        let mut group = Self {
            base: base.to_path_buf(),
            members,
            replicas: BTreeMap::new(),
            client_listeners: clients,
        };
        for (id, peer) in peers {
            group.launch(id, peer).await?;
        }
        Ok(group)
    }

    async fn launch(&mut self, id: u64, peer: tokio::net::TcpListener) -> anyhow::Result<()> {
        let config = ReplicaConfig {
            id,
            group: "coordinator-test".into(),
            data_dir: self.base.join(format!("node-{id}")),
            members: self.members.clone(),
            tuning: test_tuning(),
        };
        let replica = Replica::start(config, peer, CoordinatorMachine::new).await?;
        self.replicas.insert(id, replica);
        Ok(())
    }

    pub fn handle(&self, id: u64) -> ReplicaHandle<CoordinatorMachine> {
        self.replicas[&id].handle()
    }

    /// Waits until a running replica leads, and returns its id.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((id, _)) = self.replicas.iter().find(|(_, r)| r.handle().is_leader()) {
                return Ok(*id);
            }
            if Instant::now() > deadline {
                anyhow::bail!("no leader after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(replica) = self.replicas.remove(&id) {
            replica.shutdown().await?;
        }
        Ok(())
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let ids: Vec<u64> = self.replicas.keys().copied().collect();
        for id in ids {
            self.stop(id).await?;
        }
        Ok(())
    }
}

/// Starts a coordinator over replica `id` of `group` and waits until it takes work when
/// `wait` is set.
pub async fn start_coordinator(
    group: &Group,
    id: u64,
    sentinel: &Sentinel,
    shards: Arc<MemoryShards>,
) -> anyhow::Result<Coordinator> {
    let coordinator = Coordinator::start(
        group.handle(id),
        params(),
        sentinel.verifier.clone(),
        shards,
    )?;
    Ok(coordinator)
}

/// A single-replica group with its coordinator, accepting work.
pub async fn single(
    dir: &Path,
    shards: Arc<MemoryShards>,
    sentinel: &Sentinel,
) -> anyhow::Result<(Group, Coordinator)> {
    let group = Group::start(dir, 1).await?;
    group.wait_leader(Duration::from_secs(20)).await?;
    let coordinator = start_coordinator(&group, 1, sentinel, shards).await?;
    wait_until(
        "the coordinator to accept work",
        Duration::from_secs(20),
        || coordinator.is_accepting(),
    )
    .await?;
    Ok((group, coordinator))
}

/// How many dtxs the replica still has unfinished.
pub fn unfinished(handle: &ReplicaHandle<CoordinatorMachine>) -> usize {
    handle
        .read(|sm| sm.unfinished_count())
        .unwrap_or(usize::MAX)
}
