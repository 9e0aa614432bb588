//! The cluster file: generation, loading and every validation error a user can hit.

use cbdc_core::read_key_file;
use cbdc_node::config::{Architecture, ClusterConfig, ConfigError};
use cbdc_node::init::{init_cluster, InitError, InitOptions};

fn options(shards: usize, replicas: usize) -> InitOptions {
    InitOptions {
        architecture: Architecture::TwoPhaseCommit,
        shards,
        replicas,
        sentinels: 2,
        coordinators: 1,
        shard_copies: 1,
    }
}

fn generated() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = init_cluster(dir.path(), &options(4, 3)).unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    (dir, text)
}

#[test]
fn test_init_writes_a_valid_loadable_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = init_cluster(dir.path(), &options(4, 3)).unwrap();
    let config = ClusterConfig::load(&file).unwrap();
    assert_eq!(config.architecture, Architecture::TwoPhaseCommit);
    assert_eq!(config.shards.len(), 4);
    assert!(config.shards.iter().all(|s| s.replicas.len() == 3));
    assert_eq!(config.coordinators[0].replicas.len(), 3);
    assert_eq!(config.shard_map().unwrap().len(), 4);
    // Relative paths were resolved against the file's directory.
    assert!(config.shards[0].replicas[0]
        .data_dir
        .starts_with(dir.path()));
    // The sentinel key file matches the public key in the config.
    let key = read_key_file(&config.sentinels[0].key_file).unwrap();
    assert_eq!(key.public_key().to_string(), config.sentinels[0].public_key);
    let issuer = read_key_file(&dir.path().join("keys/issuer.key")).unwrap();
    assert_eq!(issuer.public_key(), config.issuer().unwrap());
}

#[test]
fn test_init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path(), &options(1, 1)).unwrap();
    assert!(matches!(
        init_cluster(dir.path(), &options(1, 1)),
        Err(InitError::Exists(_))
    ));
}

#[test]
fn test_init_rejects_zero_counts() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        init_cluster(dir.path(), &options(0, 1)),
        Err(InitError::BadOption(_))
    ));
}

#[test]
fn test_config_round_trips_through_toml() {
    let (_dir, text) = generated();
    let config = ClusterConfig::parse(&text).unwrap();
    assert_eq!(ClusterConfig::parse(&config.to_toml()).unwrap(), config);
}

#[test]
fn test_config_rejects_unknown_field() {
    let (_dir, text) = generated();
    let err = ClusterConfig::parse(&format!("bogus_setting = 3\n{text}")).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Parse { message, .. } if message.contains("bogus_setting")),
        "{err}"
    );
}

#[test]
fn test_config_rejects_overlapping_ranges() {
    let (_dir, text) = generated();
    // Shard 1 normally starts at 16384; make it start inside shard 0's range.
    let text = text.replacen("range_start = 16384", "range_start = 100", 1);
    let err = ClusterConfig::parse(&text).unwrap_err();
    assert!(matches!(err, ConfigError::Routing(_)), "{err}");
    assert!(err.to_string().contains("overlap"), "{err}");
}

#[test]
fn test_config_rejects_gap_in_ranges() {
    let (_dir, text) = generated();
    let text = text.replacen("range_end = 65535", "range_end = 65000", 1);
    let err = ClusterConfig::parse(&text).unwrap_err();
    assert!(err.to_string().contains("no shard owns"), "{err}");
}

#[test]
fn test_config_rejects_missing_and_bad_issuer_key() {
    let (_dir, text) = generated();
    let config = ClusterConfig::parse(&text).unwrap();
    let missing: String = text
        .lines()
        .filter(|l| !l.starts_with("issuer_public_key"))
        .collect::<Vec<_>>()
        .join("\n");
    let err = ClusterConfig::parse(&missing).unwrap_err();
    assert!(err.to_string().contains("issuer_public_key"), "{err}");
    let bad = text.replace(&config.issuer_public_key, "zz");
    assert!(matches!(
        ClusterConfig::parse(&bad),
        Err(ConfigError::BadKey { .. })
    ));
    // The identity point is a small-order ("weak") key: refused.
    let weak = format!("01{}", "00".repeat(31));
    let bad = text.replace(&config.issuer_public_key, &weak);
    assert!(matches!(
        ClusterConfig::parse(&bad),
        Err(ConfigError::BadKey { .. })
    ));
}

#[test]
fn test_config_rejects_duplicate_endpoint() {
    let (_dir, text) = generated();
    let config = ClusterConfig::parse(&text).unwrap();
    let a = config.sentinels[0].endpoint.to_string();
    let b = config.sentinels[1].endpoint.to_string();
    let err = ClusterConfig::parse(&text.replace(&b, &a)).unwrap_err();
    assert!(matches!(err, ConfigError::DuplicateEndpoint(_)), "{err}");
}

#[test]
fn test_config_rejects_threshold_above_sentinels() {
    let (_dir, text) = generated();
    let text = text.replace("attestation_threshold = 1", "attestation_threshold = 3");
    assert!(matches!(
        ClusterConfig::parse(&text),
        Err(ConfigError::OutOfRange { .. })
    ));
}

#[test]
fn test_config_rejects_2pc_without_coordinators() {
    let dir = tempfile::tempdir().unwrap();
    let file = init_cluster(dir.path(), &options(1, 1)).unwrap();
    let mut config = ClusterConfig::load(&file).unwrap();
    config.coordinators.clear();
    assert!(matches!(config.validate(), Err(ConfigError::Missing(_))));
}

#[test]
fn test_config_load_reports_missing_file() {
    let err = ClusterConfig::load(std::path::Path::new("/nonexistent/cluster.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn test_config_durations_are_human_readable() {
    let (_dir, text) = generated();
    assert!(text.contains("batch_delay = \"2ms\""), "{text}");
    let text = text.replace("batch_delay = \"2ms\"", "batch_delay = \"1s 500ms\"");
    let config = ClusterConfig::parse(&text).unwrap();
    assert_eq!(
        config.coordinators[0].batch_delay,
        std::time::Duration::from_millis(1500)
    );
}

#[test]
fn test_atomizer_init_is_valid_and_its_rules_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        architecture: Architecture::Atomizer,
        shard_copies: 2,
        ..options(2, 3)
    };
    let file = init_cluster(dir.path(), &options).unwrap();
    let config = ClusterConfig::load(&file).unwrap();
    assert_eq!(config.architecture, Architecture::Atomizer);
    assert_eq!(config.atomizer.as_ref().unwrap().replicas.len(), 3);
    assert!(config.coordinators.is_empty());
    assert!(config
        .shards
        .iter()
        .all(|g| g.replicas.len() == 2 && g.replicas.iter().all(|r| r.raft_endpoint.is_none())));

    // An atomizer shard is not a Raft replica.
    let mut bad = config.clone();
    bad.shards[0].replicas[0].raft_endpoint = Some(config.sentinels[0].endpoint);
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::OutOfRange { .. })
    ));
    // An atomizer replica is.
    let mut bad = config.clone();
    bad.atomizer.as_mut().unwrap().replicas[0].raft_endpoint = None;
    assert!(matches!(bad.validate(), Err(ConfigError::Missing(_))));
    // The archiver and the watchtower are required.
    let mut bad = config.clone();
    bad.watchtower = None;
    assert!(matches!(bad.validate(), Err(ConfigError::Missing(_))));
    let mut bad = config;
    bad.atomizer.as_mut().unwrap().stxo_cache_depth = 0;
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::OutOfRange { .. })
    ));
}

#[test]
fn test_storage_tuning_reaches_the_replicas_and_defaults_when_absent() {
    let (_dir, text) = generated();
    let config = ClusterConfig::parse(&text).unwrap();
    assert_eq!(
        config.storage.compaction_rate_mib_s, 0,
        "no limit by default"
    );
    // A file written before the setting existed still loads.
    let without: String = text
        .lines()
        .filter(|line| !line.starts_with("compaction_rate_mib_s"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        ClusterConfig::parse(&without).unwrap().storage,
        config.storage
    );
    let tuned = text.replace("compaction_rate_mib_s = 0", "compaction_rate_mib_s = 24");
    assert_ne!(tuned, text, "the generated file names the setting");
    let tuning = ClusterConfig::parse(&tuned).unwrap().storage.tuning();
    assert_eq!(tuning.compaction_rate_bytes_per_s, 24 << 20);
    assert_eq!(tuning.block_cache_bytes, 256 << 20);
}

#[test]
fn test_sentinel_batch_delay_reaches_the_sentinel_and_defaults_when_absent() {
    let (dir, text) = generated();
    let config = ClusterConfig::parse(&text).unwrap();
    assert_eq!(
        config.sentinels[0].batch_delay,
        cbdc_sentinel::DEFAULT_BATCH_DELAY
    );
    // A file written before the setting existed still loads, with the default.
    let written = "batch_delay = \"10ms\"";
    let without: String = text
        .lines()
        .filter(|line| *line != written)
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(without, text, "the generated file names the setting");
    assert_eq!(
        ClusterConfig::parse(&without).unwrap().sentinels,
        config.sentinels
    );
    // `load` resolves the key files beside the cluster file, which the sentinel reads.
    let file = dir.path().join("tuned.toml");
    std::fs::write(&file, text.replace(written, "batch_delay = \"3ms\"")).unwrap();
    let tuned = ClusterConfig::load(&file).unwrap();
    let params = cbdc_node::roles::sentinel_params(&tuned, tuned.sentinels[0].id).unwrap();
    assert_eq!(params.max_batch_delay, std::time::Duration::from_millis(3));
}
