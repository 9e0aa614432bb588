//! # cbdc-node
//!
//! The `cbdc` binary and what it needs:
//! - [`config`]: the cluster file, validated at load; [`init`]: its generator;
//! - [`roles`]: starting one shard replica, coordinator replica or sentinel from the file
//!   (`cbdc run`), with sockets from [`listeners`]; [`atomizer_roles`]: the same for an
//!   atomizer replica, an atomizer-mode shard, the archiver and the watchtower;
//! - [`cluster`]: every role of a cluster in one process (`cbdc dev`, tests, benchmarks);
//! - [`demo`]: the scripted mint-and-spend of `cbdc dev --demo`;
//! - [`bench_cmd`]: `cbdc bench` on the embedded cluster (seeded with genesis outputs) or
//!   an external one.

pub mod atomizer_roles;
pub mod bench_cmd;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod error;
pub mod init;
pub mod listeners;
pub mod roles;

pub use error::NodeError;
