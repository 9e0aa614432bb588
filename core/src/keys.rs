//! ed25519 keys, signing, and strict signature verification, one at a time or in batches.
//!
//! # The verification rule
//!
//! One rule holds on every path (single, batch, and batch fallback), so the batch path
//! can never accept what the single path rejects. A signature `(R, S)` of message `M` by
//! key `A` is valid when:
//!
//! 1. `A` is a canonical encoding of a curve point that is **not of small order** (a
//!    small-order "weak" key would let anyone forge its owner's signatures);
//! 2. `R` is a canonical encoding of a curve point that is not of small order;
//! 3. `S` is canonical (`S < ℓ`);
//! 4. the **cofactored** equation holds: `[8]([S]B − [k]A − R) = 0`, with
//!    `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! Checks 1–3 are done here, per signature, before batching. ed25519-dalek's
//! `verify_batch` then checks the *cofactorless* random linear combination
//! `Σ zᵢ([Sᵢ]B − [kᵢ]Aᵢ − Rᵢ) = 0` (it does not multiply by the cofactor). Passing it
//! implies, except with negligible probability, that every signature's residue has no
//! prime-order part, i.e. that each cofactored equation holds, so a batch pass never
//! accepts what the single check rejects. A signature that holds only cofactored (a
//! residue of small order, possible with mixed-order keys or `R`) may make the batch
//! fail; the batch then falls back to the single cofactored check of each signature, which
//! decides. Either way the verdict is the single check's. This is the rule of ZIP-215
//! narrowed by checks 1–3; the vectors of "Taming the many EdDSAs" pin it in the tests
//! (`core/tests/ed25519_edge_cases.rs`). Honest signers (RFC 8032) always produce
//! signatures that pass, and pass the batch fast path.

use crate::hash::Hash;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use std::fmt;

/// Raw bytes of an ed25519 public key, as they appear on the wire. Not yet checked:
/// [`verify`] and [`verify_batch`] refuse invalid ones.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// Raw bytes of an ed25519 signature `R ‖ S`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

/// An ed25519 signing key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

/// Why a signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key is not a canonical, non-small-order point.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The signature is malformed or does not verify.
    #[error("invalid signature")]
    InvalidSignature,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl fmt::Debug for SecretKey {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

impl PublicKey {
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<PublicKey> {
        Hash::from_hex(s).map(|h| PublicKey(h.0))
    }

    /// Whether this key passes rule 1 (canonical, not small order).
    pub fn is_valid(&self) -> bool {
        decompress_strict(&self.0).is_some()
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        SecretKey(SigningKey::generate(rng))
    }

    /// A key from its 32-byte seed.
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed. Handle with care: it is the key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

/// One signature to check: `signature` of `message` by `key`.
#[derive(Clone, Copy, Debug)]
pub struct SignatureCheck<'a> {
    /// Claimed signer.
    pub key: &'a PublicKey,
    /// Signed bytes.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Decompresses a point, refusing non-canonical encodings and small-order points.
fn decompress_strict(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    if point.compress().0 != *bytes || point.is_small_order() {
        return None;
    }
    Some(point)
}

/// A check whose encodings passed rules 1–3, ready for the equation.
struct Parsed {
    key: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
}

fn parse(check: &SignatureCheck<'_>) -> Result<Parsed, SignatureError> {
    let key = decompress_strict(&check.key.0).ok_or(SignatureError::InvalidPublicKey)?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&check.signature.0[..32]);
    let r = decompress_strict(&r_bytes).ok_or(SignatureError::InvalidSignature)?;
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&check.signature.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(SignatureError::InvalidSignature)?;
    Ok(Parsed { key, r, s })
}

/// Checks one signature under the rule in the module documentation.
pub fn verify(check: &SignatureCheck<'_>) -> Result<(), SignatureError> {
    let parsed = parse(check)?;
    let mut hasher = Sha512::new();
    hasher.update(&check.signature.0[..32]);
    hasher.update(check.key.0);
    hasher.update(check.message);
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    // [k](-A) + [S]B − R, then clear the cofactor.
    let residue =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-parsed.key, &parsed.s) - parsed.r;
    if residue.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SignatureError::InvalidSignature)
    }
}

/// Checks many signatures at once. Returns every failure with its position in `checks`.
///
/// Malformed keys and signatures are refused individually first; the rest are checked in
/// one batch equation, and only if that fails is each checked alone to name the bad ones.
pub fn verify_batch(checks: &[SignatureCheck<'_>]) -> Result<(), Vec<(usize, SignatureError)>> {
    let mut failures = Vec::new();
    let mut positions = Vec::with_capacity(checks.len());
    let mut messages = Vec::with_capacity(checks.len());
    let mut signatures = Vec::with_capacity(checks.len());
    let mut keys = Vec::with_capacity(checks.len());
    for (i, check) in checks.iter().enumerate() {
        match parse(check) {
            Ok(parsed) => {
                positions.push(i);
                messages.push(check.message);
                signatures.push(ed25519_dalek::Signature::from_bytes(&check.signature.0));
                keys.push(VerifyingKey::from(parsed.key));
            }
            Err(e) => failures.push((i, e)),
        }
    }
    let batch_ok =
        positions.is_empty() || ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    if !batch_ok {
        for &i in &positions {
            if let Err(e) = verify(&checks[i]) {
                failures.push((i, e));
            }
        }
        failures.sort_by_key(|(i, _)| *i);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn test_verify_accepts_honest_signature() {
        let k = key(1);
        let sig = k.sign(b"hello");
        let check = SignatureCheck {
            key: &k.public_key(),
            message: b"hello",
            signature: &sig,
        };
        assert_eq!(verify(&check), Ok(()));
        assert_eq!(verify_batch(&[check]), Ok(()));
    }

    #[test]
    fn test_verify_rejects_wrong_message_and_key() {
        let k = key(1);
        let sig = k.sign(b"hello");
        let pk = k.public_key();
        let other = key(2).public_key();
        let wrong_msg = SignatureCheck {
            key: &pk,
            message: b"hellO",
            signature: &sig,
        };
        let wrong_key = SignatureCheck {
            key: &other,
            message: b"hello",
            signature: &sig,
        };
        assert_eq!(verify(&wrong_msg), Err(SignatureError::InvalidSignature));
        assert_eq!(verify(&wrong_key), Err(SignatureError::InvalidSignature));
    }

    #[test]
    fn test_verify_batch_names_every_bad_signature() {
        let keys: Vec<_> = (1..=5).map(key).collect();
        let pks: Vec<_> = keys.iter().map(SecretKey::public_key).collect();
        let mut sigs: Vec<_> = keys.iter().map(|k| k.sign(b"m")).collect();
        sigs[1].0[40] ^= 1;
        sigs[3] = keys[3].sign(b"other");
        let weak = PublicKey([0u8; 32]); // not canonical-nonsmall: the identity's y=0 is invalid
        let checks: Vec<_> = (0..5)
            .map(|i| SignatureCheck {
                key: if i == 4 { &weak } else { &pks[i] },
                message: b"m",
                signature: &sigs[i],
            })
            .collect();
        let failures = verify_batch(&checks).unwrap_err();
        assert_eq!(
            failures,
            vec![
                (1, SignatureError::InvalidSignature),
                (3, SignatureError::InvalidSignature),
                (4, SignatureError::InvalidPublicKey),
            ]
        );
    }

    #[test]
    fn test_verify_rejects_small_order_key() {
        // The identity point (y = 1) is of small order: anyone could "sign" for it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let pk = PublicKey(identity);
        assert!(!pk.is_valid());
        // R = identity, S = 0 satisfies the equation for the identity key and any message.
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let check = SignatureCheck {
            key: &pk,
            message: b"anything",
            signature: &Signature(sig),
        };
        assert_eq!(verify(&check), Err(SignatureError::InvalidPublicKey));
        assert!(verify_batch(&[check]).is_err());
    }
}
