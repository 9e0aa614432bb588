//! The cluster file: one TOML document describing a whole cluster's topology, keys and
//! tuning, validated at load so that a mistake is reported before any process starts.
//!
//! Durations are human-readable (`"2ms"`, `"1s"`); paths are relative to the directory of
//! the cluster file; unknown fields are errors (a misspelt setting must not be silently
//! ignored).

use cbdc_core::{Limits, PublicKey, RoutingError, ShardMap, ShardRange};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a cluster file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or fields of the wrong type, missing or unknown.
    #[error("invalid cluster file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is not 64 hex digits of a valid ed25519 public key.
    #[error("{field} is not a valid ed25519 public key (64 hex digits): {value:?}")]
    BadKey {
        /// Where the key is.
        field: String,
        /// What was found.
        value: String,
    },
    /// Two items share an id that must be unique.
    #[error("duplicate {what} id {id}")]
    DuplicateId {
        /// Kind of item.
        what: &'static str,
        /// The id.
        id: u64,
    },
    /// Two listeners on one address.
    #[error("address {0} is used twice")]
    DuplicateEndpoint(SocketAddr),
    /// A section the architecture needs is missing or empty.
    #[error("{0}")]
    Missing(String),
    /// Shard ranges do not tile the prefix space.
    #[error("shard ranges: {0}")]
    Routing(#[from] RoutingError),
    /// A value out of its allowed range.
    #[error("{field}: {message}")]
    OutOfRange {
        /// The setting.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Which settlement back end the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// Parallel two-phase commit over locking shards.
    #[serde(rename = "2pc")]
    TwoPhaseCommit,
    /// An ordered sequencer producing blocks.
    #[serde(rename = "atomizer")]
    Atomizer,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Architecture::TwoPhaseCommit => "2pc",
            Architecture::Atomizer => "atomizer",
        })
    }
}

/// The whole cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The settlement back end.
    pub architecture: Architecture,
    /// The central bank's issuer public key (hex); only mints it signs are accepted.
    pub issuer_public_key: String,
    /// Distinct sentinels that must attest a transaction (0 turns checking off).
    #[serde(default = "default_threshold")]
    pub attestation_threshold: usize,
    /// Transaction size limits enforced by sentinels.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Storage tuning shared by every replica.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Raft timing shared by every replicated group.
    #[serde(default)]
    pub raft: RaftConfig,
    /// The public API endpoints.
    pub sentinels: Vec<SentinelConfig>,
    /// 2PC coordinator groups (2PC only).
    #[serde(default)]
    pub coordinators: Vec<CoordinatorGroupConfig>,
    /// Shard groups, each owning a range of UHS id prefixes. In an atomizer cluster the
    /// "replicas" of a group are independent shards owning the same range (redundancy).
    pub shards: Vec<ShardGroupConfig>,
    /// The atomizer group (atomizer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atomizer: Option<AtomizerConfig>,
    /// The block archive (atomizer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver: Option<ArchiverConfig>,
    /// The status service (atomizer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchtower: Option<WatchtowerConfig>,
}

/// The atomizer: a Raft group ordering transactions into blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtomizerConfig {
    /// Time between blocks: the floor of confirmation latency, and how much work one
    /// block (one Raft entry and one shard write batch) carries.
    #[serde(default = "default_block_interval", with = "humantime_serde")]
    pub block_interval: Duration,
    /// Blocks whose spent inputs the atomizer remembers: an input attestation or a
    /// partial transaction older than this many blocks is refused (STALE / INCOMPLETE).
    #[serde(default = "default_stxo_cache_depth")]
    pub stxo_cache_depth: u64,
    /// Most complete transactions per replicated command.
    #[serde(default = "default_atomizer_batch")]
    pub max_batch: usize,
    /// The group's replicas.
    pub replicas: Vec<ReplicaConfig>,
}

fn default_block_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_stxo_cache_depth() -> u64 {
    8
}
fn default_atomizer_batch() -> usize {
    10_000
}

/// The archiver: every block, forever, in RocksDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiverConfig {
    /// Where shards and the watchtower fetch old blocks.
    pub endpoint: SocketAddr,
    /// Where the archive's RocksDB lives.
    pub data_dir: PathBuf,
    /// After this many newly archived blocks the archiver lets the atomizer forget them.
    #[serde(default = "default_prune_every")]
    pub prune_every: u64,
}

fn default_prune_every() -> u64 {
    64
}

/// The watchtower: transaction and output status from blocks and shard error reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchtowerConfig {
    /// Where sentinels ask for final statuses and shards report errors.
    pub endpoint: SocketAddr,
    /// Most transactions (and outputs) remembered; the oldest are forgotten first.
    #[serde(default = "default_retention")]
    pub retention: usize,
}

fn default_retention() -> usize {
    10_000_000
}

fn default_threshold() -> usize {
    1
}

/// Transaction size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most inputs per transaction.
    pub max_inputs: usize,
    /// Most outputs per transaction.
    pub max_outputs: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_inputs: l.max_inputs,
            max_outputs: l.max_outputs,
        }
    }
}

impl From<LimitsConfig> for Limits {
    fn from(l: LimitsConfig) -> Self {
        Limits {
            max_inputs: l.max_inputs,
            max_outputs: l.max_outputs,
        }
    }
}

/// RocksDB tuning for every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Block cache per replica, in MiB.
    pub block_cache_mib: usize,
    /// Most MiB per second one replica's flushes and compactions may write together; 0:
    /// no limit. A limit spreads each compaction out instead of letting it take a core at
    /// once (on 2 cores at 10,600 tx/s, 24 MiB/s took the p99 latency of `cbdc bench`
    /// from 487 to 348 ms), but too low a limit lets compaction fall behind
    /// until writes stall: keep it several times above what a replica writes (see the
    /// README).
    pub compaction_rate_mib_s: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let t = cbdc_consensus::storage::StorageTuning::default();
        StorageConfig {
            block_cache_mib: t.block_cache_bytes >> 20,
            compaction_rate_mib_s: t.compaction_rate_bytes_per_s >> 20,
        }
    }
}

impl StorageConfig {
    /// The replicas' storage tuning.
    pub fn tuning(&self) -> cbdc_consensus::storage::StorageTuning {
        cbdc_consensus::storage::StorageTuning {
            block_cache_bytes: self.block_cache_mib.saturating_mul(1 << 20),
            compaction_rate_bytes_per_s: self.compaction_rate_mib_s.saturating_mul(1 << 20),
        }
    }
}

/// Raft timing of every group. Elections must outlast a few heartbeats, and a leader's
/// failure is noticed after `election_timeout_min` to `election_timeout_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// How often a leader sends heartbeats.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Shortest time without a leader before a follower stands for election.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// Longest such time (each follower picks a random one in between).
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Log entries between snapshot points (the log below a point is purged).
    pub snapshot_every: u64,
    /// Log entries kept below a snapshot point, so that a replica lagging by fewer
    /// catches up from the log instead of by a copy of the whole state.
    pub keep_logs_after_snapshot: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        let t = cbdc_consensus::RaftTuning::default();
        RaftConfig {
            heartbeat_interval: t.heartbeat_interval,
            election_timeout_min: t.election_timeout_min,
            election_timeout_max: t.election_timeout_max,
            snapshot_every: t.snapshot_every,
            keep_logs_after_snapshot: t.keep_logs_after_snapshot,
        }
    }
}

impl RaftConfig {
    /// The replication layer's tuning with these timings.
    pub fn tuning(&self) -> cbdc_consensus::RaftTuning {
        cbdc_consensus::RaftTuning {
            heartbeat_interval: self.heartbeat_interval,
            election_timeout_min: self.election_timeout_min,
            election_timeout_max: self.election_timeout_max,
            snapshot_every: self.snapshot_every,
            keep_logs_after_snapshot: self.keep_logs_after_snapshot,
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let out_of_range = |message: &str| ConfigError::OutOfRange {
            field: "raft".into(),
            message: message.into(),
        };
        if self.heartbeat_interval.is_zero() || self.snapshot_every == 0 {
            return Err(out_of_range(
                "heartbeat_interval and snapshot_every must be positive",
            ));
        }
        if self.election_timeout_min <= self.heartbeat_interval * 2
            || self.election_timeout_max <= self.election_timeout_min
        {
            return Err(out_of_range(
                "need heartbeat_interval * 2 < election_timeout_min < election_timeout_max",
            ));
        }
        Ok(())
    }
}

/// One sentinel: the public gRPC endpoint and its attestation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// Unique id.
    pub id: u64,
    /// Where clients connect.
    pub endpoint: SocketAddr,
    /// Attestation public key (hex), known to every verifier.
    pub public_key: String,
    /// File holding the attestation secret key (hex seed); read only by this sentinel.
    pub key_file: PathBuf,
    /// Longest a transaction waits for its batch to fill before the sentinel validates,
    /// attests and forwards the batch (default 10 ms): a longer wait makes fewer, larger
    /// batches under moderate load, each cheaper per transaction downstream (see
    /// `cbdc_sentinel::DEFAULT_BATCH_DELAY`); a shorter one answers a lone transaction
    /// sooner.
    #[serde(default = "default_sentinel_batch_delay", with = "humantime_serde")]
    pub batch_delay: Duration,
}

pub(crate) fn default_sentinel_batch_delay() -> Duration {
    cbdc_sentinel::DEFAULT_BATCH_DELAY
}

/// One replica of a Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// Raft node id, unique within the group.
    pub id: u64,
    /// Client-facing gRPC endpoint.
    pub endpoint: SocketAddr,
    /// Peer-only Raft endpoint (absent for an atomizer-mode shard, which is not a Raft
    /// replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_endpoint: Option<SocketAddr>,
    /// Where this replica keeps its RocksDB.
    pub data_dir: PathBuf,
}

/// A 2PC coordinator group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorGroupConfig {
    /// Unique group id.
    pub id: u64,
    /// Most transactions per distributed transaction.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a transaction waits for its batch to fill.
    #[serde(default = "default_batch_delay", with = "humantime_serde")]
    pub batch_delay: Duration,
    /// Distributed transactions in flight at once.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// The group's replicas.
    pub replicas: Vec<ReplicaConfig>,
}

pub(crate) fn default_batch_size() -> usize {
    2000
}
pub(crate) fn default_batch_delay() -> Duration {
    Duration::from_millis(2)
}
/// More dtxs in flight keep each smaller under moderate load: at 80 % of the 2-core
/// machine's throughput, 12 instead of 4 halved the median latency (137 → 83 ms) and
/// cost no throughput at saturation (`BENCHMARKS.md`).
pub(crate) fn default_in_flight() -> usize {
    12
}

/// A shard group owning one range of UHS id prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardGroupConfig {
    /// Unique group id.
    pub id: u64,
    /// First owned prefix (first two bytes of a UHS id, big-endian).
    pub range_start: u16,
    /// Last owned prefix, inclusive.
    pub range_end: u16,
    /// The group's replicas.
    pub replicas: Vec<ReplicaConfig>,
}

impl ShardGroupConfig {
    /// The range of UHS id prefixes this group owns.
    pub fn range(&self) -> ShardRange {
        ShardRange {
            start: self.range_start,
            end: self.range_end,
        }
    }
}

impl ClusterConfig {
    /// Client endpoints (`host:port`) of the atomizer replicas (empty without one).
    pub fn atomizer_endpoints(&self) -> Vec<String> {
        self.atomizer
            .iter()
            .flat_map(|a| a.replicas.iter().map(|r| r.endpoint.to_string()))
            .collect()
    }

    /// Client endpoints (`host:port`) of each shard group's replicas, in file order.
    pub fn shard_endpoints(&self) -> Vec<Vec<String>> {
        self.shards
            .iter()
            .map(|g| g.replicas.iter().map(|r| r.endpoint.to_string()).collect())
            .collect()
    }

    /// Reads, parses and validates a cluster file; relative paths become relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates cluster TOML (paths left as written).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, numbers and lists cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for s in &mut self.sentinels {
            fix(&mut s.key_file);
        }
        for r in self.replicas_mut() {
            fix(&mut r.data_dir);
        }
        if let Some(archiver) = &mut self.archiver {
            fix(&mut archiver.data_dir);
        }
    }

    fn replicas_mut(&mut self) -> impl Iterator<Item = &mut ReplicaConfig> {
        self.coordinators
            .iter_mut()
            .flat_map(|g| g.replicas.iter_mut())
            .chain(self.shards.iter_mut().flat_map(|g| g.replicas.iter_mut()))
            .chain(self.atomizer.iter_mut().flat_map(|a| a.replicas.iter_mut()))
    }

    /// Every replica of every group, with whether it is a Raft replica.
    fn replicas(&self) -> impl Iterator<Item = (&ReplicaConfig, bool)> {
        let raft_shards = self.architecture == Architecture::TwoPhaseCommit;
        self.coordinators
            .iter()
            .flat_map(|g| g.replicas.iter().map(|r| (r, true)))
            .chain(
                self.shards
                    .iter()
                    .flat_map(move |g| g.replicas.iter().map(move |r| (r, raft_shards))),
            )
            .chain(
                self.atomizer
                    .iter()
                    .flat_map(|a| a.replicas.iter().map(|r| (r, true))),
            )
    }

    /// The issuer key.
    pub fn issuer(&self) -> Result<PublicKey, ConfigError> {
        parse_key("issuer_public_key", &self.issuer_public_key)
    }

    /// The sentinels' attestation keys.
    pub fn sentinel_keys(&self) -> Result<Vec<PublicKey>, ConfigError> {
        self.sentinels
            .iter()
            .map(|s| parse_key(&format!("sentinels[{}].public_key", s.id), &s.public_key))
            .collect()
    }

    /// The routing map of the shard groups, in the order they are listed.
    pub fn shard_map(&self) -> Result<ShardMap, ConfigError> {
        Ok(ShardMap::new(
            self.shards
                .iter()
                .map(|s| ShardRange {
                    start: s.range_start,
                    end: s.range_end,
                })
                .collect(),
        )?)
    }

    /// Checks everything that can be checked without starting anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.issuer()?;
        let keys = self.sentinel_keys()?;
        if self.sentinels.is_empty() {
            return Err(ConfigError::Missing(
                "at least one [[sentinels]] is required".into(),
            ));
        }
        unique_ids("sentinel", self.sentinels.iter().map(|s| s.id))?;
        if self.attestation_threshold > keys.iter().collect::<HashSet<_>>().len() {
            return Err(ConfigError::OutOfRange {
                field: "attestation_threshold".into(),
                message: format!(
                    "{} is more than the number of distinct sentinel keys",
                    self.attestation_threshold
                ),
            });
        }
        self.raft.validate()?;
        if self.limits.max_inputs == 0 || self.limits.max_outputs == 0 {
            return Err(ConfigError::OutOfRange {
                field: "limits".into(),
                message: "max_inputs and max_outputs must be at least 1".into(),
            });
        }
        if self.shards.is_empty() {
            return Err(ConfigError::Missing(
                "at least one [[shards]] group is required".into(),
            ));
        }
        unique_ids("shard group", self.shards.iter().map(|s| s.id))?;
        self.shard_map()?;
        for shard in &self.shards {
            check_group(&format!("shards[{}]", shard.id), &shard.replicas)?;
        }
        match self.architecture {
            Architecture::TwoPhaseCommit => {
                if self.coordinators.is_empty() {
                    return Err(ConfigError::Missing(
                        "a 2pc cluster needs at least one [[coordinators]] group".into(),
                    ));
                }
                unique_ids("coordinator group", self.coordinators.iter().map(|c| c.id))?;
                for group in &self.coordinators {
                    let name = format!("coordinators[{}]", group.id);
                    check_group(&name, &group.replicas)?;
                    if group.batch_size == 0 || group.max_in_flight == 0 {
                        return Err(ConfigError::OutOfRange {
                            field: name,
                            message: "batch_size and max_in_flight must be at least 1".into(),
                        });
                    }
                }
            }
            Architecture::Atomizer => self.validate_atomizer()?,
        }
        for (r, raft) in self.replicas() {
            match (raft, r.raft_endpoint) {
                (true, None) => {
                    return Err(ConfigError::Missing(format!(
                        "replica {} at {} needs a raft_endpoint",
                        r.id, r.endpoint
                    )))
                }
                (false, Some(_)) => {
                    return Err(ConfigError::OutOfRange {
                        field: format!("shard replica {} at {}", r.id, r.endpoint),
                        message: "atomizer-mode shards are not Raft replicas: remove raft_endpoint"
                            .into(),
                    })
                }
                _ => {}
            }
        }
        let mut endpoints = HashSet::new();
        let listeners = self
            .sentinels
            .iter()
            .map(|s| s.endpoint)
            .chain(
                self.replicas()
                    .flat_map(|(r, _)| std::iter::once(r.endpoint).chain(r.raft_endpoint)),
            )
            .chain(self.archiver.iter().map(|a| a.endpoint))
            .chain(self.watchtower.iter().map(|w| w.endpoint));
        for addr in listeners {
            if !endpoints.insert(addr) {
                return Err(ConfigError::DuplicateEndpoint(addr));
            }
        }
        Ok(())
    }
}

impl ClusterConfig {
    fn validate_atomizer(&self) -> Result<(), ConfigError> {
        let atomizer = self.atomizer.as_ref().ok_or_else(|| {
            ConfigError::Missing("an atomizer cluster needs an [atomizer] section".into())
        })?;
        check_group("atomizer", &atomizer.replicas)?;
        if atomizer.block_interval.is_zero()
            || atomizer.stxo_cache_depth == 0
            || atomizer.max_batch == 0
        {
            return Err(ConfigError::OutOfRange {
                field: "atomizer".into(),
                message: "block_interval, stxo_cache_depth and max_batch must be positive".into(),
            });
        }
        if self.archiver.is_none() || self.watchtower.is_none() {
            return Err(ConfigError::Missing(
                "an atomizer cluster needs [archiver] and [watchtower] sections".into(),
            ));
        }
        if !self.coordinators.is_empty() {
            return Err(ConfigError::OutOfRange {
                field: "coordinators".into(),
                message: "an atomizer cluster has no coordinator groups".into(),
            });
        }
        Ok(())
    }
}

fn parse_key(field: &str, value: &str) -> Result<PublicKey, ConfigError> {
    PublicKey::from_hex(value)
        .filter(PublicKey::is_valid)
        .ok_or_else(|| ConfigError::BadKey {
            field: field.to_string(),
            value: value.to_string(),
        })
}

fn unique_ids(what: &'static str, ids: impl Iterator<Item = u64>) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(ConfigError::DuplicateId { what, id });
        }
    }
    Ok(())
}

fn check_group(name: &str, replicas: &[ReplicaConfig]) -> Result<(), ConfigError> {
    if replicas.is_empty() {
        return Err(ConfigError::Missing(format!("{name} has no replicas")));
    }
    unique_ids("replica", replicas.iter().map(|r| r.id))?;
    let dirs: HashSet<_> = replicas.iter().map(|r| &r.data_dir).collect();
    if dirs.len() != replicas.len() {
        return Err(ConfigError::OutOfRange {
            field: name.to_string(),
            message: "two replicas share a data_dir".into(),
        });
    }
    Ok(())
}
