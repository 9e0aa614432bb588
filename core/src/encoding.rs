//! The canonical binary encoding: the one byte form used for hashing, for payment files
//! and wherever a transaction is stored.
//!
//! Rules, byte by byte:
//! - integers are fixed-width little-endian (`u32`: 4 bytes, `u64`: 8 bytes);
//! - hashes, public keys and nonces are their raw 32 bytes; signatures their raw 64;
//! - a list is a `u32` count followed by its items, each encoded in turn;
//! - a byte string is a `u32` length followed by its bytes.
//!
//! Decoding is strict: it refuses truncated input, trailing bytes, and counts or lengths
//! above fixed caps (which also keeps a hostile length prefix from reserving memory).
//! Per-type layouts are documented on the types in [`crate::transaction`] and
//! [`crate::attestation`].

use crate::hash::Hash;

/// Most items a decoded list may hold. Validation limits are far lower; this cap only
/// keeps decoding bounded.
pub const MAX_LIST_ITEMS: usize = 4096;
/// Longest byte string a decoded witness program may carry.
pub const MAX_BYTES_LEN: usize = 1024;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before `what` was complete.
    #[error("truncated input: {what} needs {needed} more bytes, {remaining} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// Bytes remained after a complete value.
    #[error("{count} trailing bytes after a complete value")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// A count or length above its cap.
    #[error("{what} has length {len}, above the maximum {max}")]
    Oversize {
        /// The list or string.
        what: &'static str,
        /// The length found.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A field held a value that has no meaning in this position.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// A value with a canonical encoding.
pub trait Encode {
    /// Appends the canonical encoding of `self` to `out`.
    fn encode_to(&self, out: &mut Vec<u8>);

    /// The canonical encoding of `self`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A value that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Reads one value from the front of `reader`.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes exactly one value: trailing bytes are an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

/// Appends a `u32` little-endian.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `u64` little-endian.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a list: its `u32` count, then each item.
pub fn put_list<T: Encode>(out: &mut Vec<u8>, items: &[T]) {
    put_len(out, items.len());
    for item in items {
        item.encode_to(out);
    }
}

/// Appends a `u32` length. Lengths above `u32::MAX` cannot be encoded; every list this
/// crate builds is bounded far below that by validation, so saturating would only ever
/// produce an encoding that fails to decode, never a wrong one that decodes.
pub fn put_len(out: &mut Vec<u8>, len: usize) {
    put_u32(out, u32::try_from(len).unwrap_or(u32::MAX));
}

/// A cursor over bytes being decoded.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the front of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.bytes.len(),
            })
        }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                remaining: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a `u32` little-endian.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u64` little-endian.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a 32-byte hash.
    pub fn hash(&mut self, what: &'static str) -> Result<Hash, DecodeError> {
        self.array(what).map(Hash)
    }

    /// Reads a length prefix and checks it against `max` and against the bytes left,
    /// given that each item takes at least `min_item_size` bytes.
    pub fn len(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_size: usize,
    ) -> Result<usize, DecodeError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(DecodeError::Oversize { what, len, max });
        }
        let needed = len.saturating_mul(min_item_size);
        if needed > self.bytes.len() {
            return Err(DecodeError::Truncated {
                what,
                needed,
                remaining: self.bytes.len(),
            });
        }
        Ok(len)
    }

    /// Reads a list of at most `max` items, each at least `min_item_size` bytes long.
    ///
    /// The vector is sized once from the length prefix (collecting `Result`s would grow
    /// it by doubling, from a size hint of zero); [`Reader::len`] has already checked
    /// that the bytes left can hold that many items, so what a hostile prefix can make it
    /// allocate stays in proportion to the input's size.
    pub fn list<T: Decode>(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_size: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let len = self.len(what, max, min_item_size)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(T::decode_from(self)?);
        }
        Ok(items)
    }

    /// Reads a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.len(what, max, 1)?;
        self.take(len, what)
    }
}

impl Encode for Hash {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Hash {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        reader.hash("hash")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reader_rejects_truncated_and_trailing() {
        assert!(matches!(
            Hash::decode(&[0u8; 31]),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            Hash::decode(&[0u8; 33]),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        assert_eq!(Hash::decode(&[7u8; 32]), Ok(Hash([7u8; 32])));
    }

    #[test]
    fn test_reader_rejects_oversize_length() {
        let mut bytes = Vec::new();
        put_u32(&mut bytes, u32::MAX);
        let mut reader = Reader::new(&bytes);
        assert!(matches!(
            reader.list::<Hash>("hashes", MAX_LIST_ITEMS, 32),
            Err(DecodeError::Oversize { .. })
        ));
        // Within the cap but longer than the input: refused before allocating.
        let mut bytes = Vec::new();
        put_u32(&mut bytes, 100);
        let mut reader = Reader::new(&bytes);
        assert!(matches!(
            reader.list::<Hash>("hashes", MAX_LIST_ITEMS, 32),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
