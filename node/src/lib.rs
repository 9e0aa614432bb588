//! # cbdc-node
//!
//! The `cbdc` binary and what it needs: the cluster file ([`config`]) and its generator
//! ([`init`]). Roles are started from here once their crates exist.

pub mod config;
pub mod init;
