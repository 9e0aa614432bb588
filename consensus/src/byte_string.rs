//! Serde for a `Vec<u8>` as one byte string (`#[serde(with = "cbdc_consensus::byte_string")]`).
//!
//! Serde's own `Vec<u8>` is a sequence of numbers: bincode writes and reads it one byte
//! per call, which `cbdc bench` profiles showed on every Raft entry (log append, log read,
//! AppendEntries). As a byte string bincode copies it in one go. The bytes on the wire and
//! on disk are the same either way (bincode 1: a `u64` length, then the bytes), so data
//! written before stays readable.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Writes `bytes` as one byte string.
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Reads a byte string (or, from a format without one, a sequence of bytes).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_byte_buf(ByteBuf)
}

struct ByteBuf;

impl<'de> Visitor<'de> for ByteBuf {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The size hint comes from the input: cap what it may reserve.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes(#[serde(with = "super")] Vec<u8>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSequence(Vec<u8>);

    #[test]
    fn test_bincode_bytes_are_those_of_a_plain_vec() {
        let data: Vec<u8> = (0..=255).collect();
        let bytes = bincode::serialize(&AsBytes(data.clone())).unwrap();
        assert_eq!(
            bytes,
            bincode::serialize(&AsSequence(data.clone())).unwrap()
        );
        let back: AsBytes = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back.0, data);
    }

    #[test]
    fn test_json_sequence_is_read_too() {
        let back: AsBytes = serde_json::from_str("[1,2,3]").unwrap();
        assert_eq!(back, AsBytes(vec![1, 2, 3]));
    }

    #[test]
    fn test_truncated_input_is_an_error() {
        let bytes = bincode::serialize(&AsBytes(vec![7; 10])).unwrap();
        assert!(bincode::deserialize::<AsBytes>(&bytes[..bytes.len() - 1]).is_err());
    }
}
