//! # cbdc-core
//!
//! The pure heart of cbdc: everything about a transaction that can be decided without a
//! network, a disk or a clock. Sentinels, coordinators, shards, the atomizer, the wallet
//! and the benchmark all build on it; nothing here does I/O.
//!
//! Layout:
//! - [`amount`]: money as checked integer cents, parsed and printed as currency;
//! - [`hash`]: SHA-256 hashes, transaction ids and UHS ids;
//! - [`encoding`]: the canonical byte encoding and its strict decoder;
//! - [`transaction`]: inputs, outputs, witnesses, transactions and their compact form;
//! - [`keys`]: ed25519 keys and the one strict verification rule, single and batched;
//! - [`signing`]: building signed transfers and mints;
//! - [`validation`]: the stateless rules a sentinel enforces;
//! - [`attestation`]: Merkle-batched sentinel attestations and their verifier;
//! - [`routing`]: which shard owns a UHS id;
//! - [`address`]: bech32m `usd1…` addresses.

pub mod address;
pub mod amount;
pub mod attestation;
pub mod encoding;
pub mod hash;
pub mod key_file;
pub mod keys;
pub mod routing;
pub mod signing;
pub mod transaction;
pub mod validation;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError};
pub use attestation::{attest_batch, Attestation, AttestationError, AttestationVerifier};
pub use encoding::{Decode, DecodeError, Encode};
pub use hash::{Hash, IdHasher, IdMap, IdSet, TxId, UhsId};
pub use key_file::{read_key_file, write_key_file, KeyFileError};
pub use keys::{PublicKey, SecretKey, Signature, SignatureError};
pub use routing::{RoutingError, ShardMap, ShardRange};
pub use signing::{p2pk_output, sign_mint, sign_transfer};
pub use transaction::{
    decode_compact_batch, encode_compact_batch, CompactTransaction, HasTxId, IdentifiedTransaction,
    Input, OutPoint, Output, Transaction, Witness, WitnessProgram,
};
pub use validation::{Limits, ValidationError, Validator};
