//! 32-byte SHA-256 hashes and the identifiers built from them.

use sha2::{Digest, Sha256};
use std::fmt;

/// A 32-byte SHA-256 digest.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Hash(pub [u8; 32]);

/// Feeds a hasher the first 16 bytes only. A digest's bytes are already uniform, and
/// nobody can make two digests share 16 bytes (2^64 work for a pair, 2^128 for a chosen
/// prefix), so the rest adds nothing to how keys spread in a map; hashing 16 bytes
/// instead of 32 and a length prefix makes every map keyed by ids cheaper (the shards'
/// state machines look up several per transaction).
impl std::hash::Hash for Hash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&self.0[..16]);
        state.write_u128(u128::from_le_bytes(prefix));
    }
}

/// The hasher of maps keyed by ids ([`Hash`], [`TxId`], [`UhsId`]): foldhash, seeded at
/// random per process like the standard library's SipHash (a client cannot aim keys at
/// one bucket), and several times faster on the 16 bytes an id feeds it.
pub type IdHasher = foldhash::fast::RandomState;

/// A map keyed by ids, with [`IdHasher`].
pub type IdMap<K, V> = std::collections::HashMap<K, V, IdHasher>;

/// A set of ids (or of keys led by one), with [`IdHasher`].
pub type IdSet<T> = std::collections::HashSet<T, IdHasher>;

impl Hash {
    /// All zero bytes; used as Merkle padding and as a transfer's nonce.
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of the concatenation of `parts`.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }

    /// Reads a hash from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        bytes.try_into().ok().map(Hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        pub struct $name(pub Hash);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }
            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Option<Self> {
                Hash::from_hex(s).map($name)
            }
            /// Reads an id from a slice of exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                Hash::from_slice(bytes).map($name)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0.to_hex())
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                $name(Hash(bytes))
            }
        }
    };
}

hash_id!(
    /// A transaction's id: SHA-256 of its canonical encoding without witnesses.
    TxId
);
hash_id!(
    /// An output's id in the unspent hash set:
    /// `SHA-256(tx_id ‖ index u32 LE ‖ commitment ‖ value u64 LE)`.
    UhsId
);

impl UhsId {
    /// The routing prefix: the first two bytes, big-endian.
    pub fn prefix(&self) -> u16 {
        u16::from_be_bytes([self.0 .0[0], self.0 .0[1]])
    }
}
