//! Human-readable addresses: a witness program in bech32m with the prefix `usd`.
//!
//! The data part is `version ‖ program` (for P2PK: `0x00 ‖ pubkey`, 33 bytes), so an
//! address reads `usd1…`. Decoding accepts only bech32m (not bech32), only the `usd`
//! prefix, and only known program versions with their exact length.

use crate::keys::PublicKey;
use crate::transaction::{WitnessProgram, P2PK_VERSION};
use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use std::fmt;
use std::str::FromStr;

/// The human-readable part of every address.
pub const ADDRESS_HRP: &str = "usd";

/// Where money can be sent: a witness program.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address(pub WitnessProgram);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not bech32m, bad characters, or a wrong checksum.
    #[error("not a valid bech32m string: {0}")]
    Encoding(String),
    /// Another human-readable prefix.
    #[error("address prefix is {found:?}, expected \"usd\"")]
    WrongPrefix {
        /// The prefix found.
        found: String,
    },
    /// The data has the wrong length for its version.
    #[error("address holds {len} bytes, expected {expected}")]
    WrongLength {
        /// Bytes found.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A program version this software does not know.
    #[error("address has unknown program version {0}")]
    UnknownVersion(u8),
}

impl Address {
    /// The address paying to `key`.
    pub fn p2pk(key: PublicKey) -> Self {
        Address(WitnessProgram::P2pk(key))
    }

    /// The commitment an output paying to this address stores.
    pub fn commitment(&self) -> crate::hash::Hash {
        self.0.commitment()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = Vec::with_capacity(33);
        data.push(self.0.version());
        data.extend_from_slice(self.0.program_bytes());
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        match bech32::encode::<Bech32m>(hrp, &data) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let checked = CheckedHrpstring::new::<Bech32m>(s)
            .map_err(|e| AddressError::Encoding(e.to_string()))?;
        let hrp = checked.hrp();
        // bech32 strings may be all upper case (QR codes); the prefix compares the same.
        if !hrp.as_str().eq_ignore_ascii_case(ADDRESS_HRP) {
            return Err(AddressError::WrongPrefix {
                found: hrp.to_string(),
            });
        }
        let data: Vec<u8> = checked.byte_iter().collect();
        let Some((&version, program)) = data.split_first() else {
            return Err(AddressError::WrongLength {
                len: 0,
                expected: 33,
            });
        };
        if version != P2PK_VERSION {
            return Err(AddressError::UnknownVersion(version));
        }
        let key: [u8; 32] = program.try_into().map_err(|_| AddressError::WrongLength {
            len: data.len(),
            expected: 33,
        })?;
        Ok(Address::p2pk(PublicKey(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn test_address_round_trip_and_prefix() {
        let a = Address::p2pk(PublicKey([7; 32]));
        let s = a.to_string();
        assert!(s.starts_with("usd1"), "{s}");
        assert_eq!(s.parse::<Address>().unwrap(), a);
        assert_eq!(s.to_uppercase().parse::<Address>().unwrap(), a);
    }

    #[test]
    fn test_address_rejects_wrong_checksum() {
        let s = Address::p2pk(PublicKey([7; 32])).to_string();
        let mut chars: Vec<char> = s.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'q' { 'p' } else { 'q' };
        let bad: String = chars.into_iter().collect();
        assert!(matches!(
            bad.parse::<Address>(),
            Err(AddressError::Encoding(_))
        ));
    }

    #[test]
    fn test_address_rejects_wrong_prefix() {
        let data = [[0u8].as_slice(), &[7u8; 32]].concat();
        let s = bech32::encode::<Bech32m>(Hrp::parse_unchecked("eur"), &data).unwrap();
        assert_eq!(
            s.parse::<Address>(),
            Err(AddressError::WrongPrefix {
                found: "eur".into()
            })
        );
    }

    #[test]
    fn test_address_rejects_bech32_non_m() {
        let data = [[0u8].as_slice(), &[7u8; 32]].concat();
        let s = bech32::encode::<bech32::Bech32>(Hrp::parse_unchecked("usd"), &data).unwrap();
        assert!(matches!(
            s.parse::<Address>(),
            Err(AddressError::Encoding(_))
        ));
    }

    #[test]
    fn test_address_rejects_wrong_length_and_version() {
        let hrp = Hrp::parse_unchecked("usd");
        let short = bech32::encode::<Bech32m>(hrp, &[0u8; 20]).unwrap();
        assert!(matches!(
            short.parse::<Address>(),
            Err(AddressError::WrongLength { .. })
        ));
        let empty = bech32::encode::<Bech32m>(hrp, &[]).unwrap();
        assert!(matches!(
            empty.parse::<Address>(),
            Err(AddressError::WrongLength { len: 0, .. })
        ));
        let v1 = [[1u8].as_slice(), &[7u8; 32]].concat();
        let v1 = bech32::encode::<Bech32m>(hrp, &v1).unwrap();
        assert_eq!(v1.parse::<Address>(), Err(AddressError::UnknownVersion(1)));
    }

    proptest! {
        #[test]
        fn prop_address_parse_never_panics(s in "\\PC{0,120}") {
            let _ = s.parse::<Address>();
        }

        #[test]
        fn prop_address_round_trips(key in any::<[u8; 32]>()) {
            let a = Address::p2pk(PublicKey(key));
            prop_assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
        }
    }
}
