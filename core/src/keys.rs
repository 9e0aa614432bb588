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
//! Checks 1–3 are done here, per signature, decompressing each point once (canonicity is
//! checked on the bytes: the `y` coordinate must be below `p`; the two points with
//! `x = 0` are of small order and refused anyway). The batch path then checks the
//! **cofactored** random linear combination `[8] Σ zᵢ([Sᵢ]B − [kᵢ]Aᵢ − Rᵢ) = 0` with
//! random 128-bit `zᵢ`, in one variable-time multiscalar multiplication over the points
//! already decompressed. It holds, except with negligible probability, exactly when each
//! cofactored equation holds, so a batch pass never accepts what the single check
//! rejects; if it fails, each signature is checked alone to name the bad ones. This is
//! the rule of ZIP-215 narrowed by checks 1–3; the vectors of "Taming the many EdDSAs"
//! pin it in the tests (`core/tests/ed25519_edge_cases.rs`). Honest signers (RFC 8032)
//! always produce signatures that pass.
//!
//! Why not `ed25519_dalek::verify_batch`: it decompresses `R` and compresses `A` again
//! (the checks above already had both points), which made point (de)compression — a
//! field exponentiation each — the largest cost of a sentinel in profiles.

use crate::hash::Hash;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey};
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
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        SecretKey::from_bytes(&seed)
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

/// Whether the `y` coordinate encoded in `bytes` (the low 255 bits) is below
/// `p = 2^255 − 19`, i.e. the encoding is canonical (the sign bit is checked by the
/// small-order rule: only `x = 0` points could carry a meaningless sign bit).
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// Decompresses a point, refusing non-canonical encodings and small-order points.
fn decompress_strict(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !canonical_y(bytes) {
        return None;
    }
    let point = CompressedEdwardsY(*bytes).decompress()?;
    if point.is_small_order() {
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

/// `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
fn challenge(check: &SignatureCheck<'_>) -> Scalar {
    let mut hasher = Sha512::new();
    hasher.update(&check.signature.0[..32]);
    hasher.update(check.key.0);
    hasher.update(check.message);
    Scalar::from_bytes_mod_order_wide(&hasher.finalize().into())
}

/// Checks one signature under the rule in the module documentation.
pub fn verify(check: &SignatureCheck<'_>) -> Result<(), SignatureError> {
    let parsed = parse(check)?;
    let k = challenge(check);
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
    let mut parsed = Vec::with_capacity(checks.len());
    for (i, check) in checks.iter().enumerate() {
        match parse(check) {
            Ok(p) => {
                positions.push(i);
                parsed.push((p, challenge(check)));
            }
            Err(e) => failures.push((i, e)),
        }
    }
    if !parsed.is_empty() && !batch_equation_holds(&parsed) {
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

/// The instructions the batch equation's multiscalar multiplication runs on in this
/// process: `"avx512-ifma"`, `"avx2"` or `"serial"`. curve25519-dalek picks its vector
/// backend when the process starts, from what the CPU has and what the build allowed
/// (the AVX-512 one only with the `curve25519_dalek_backend="avx512"` cfg of
/// `.cargo/config.toml`, which this crate sees too); this mirrors that choice so that a
/// ceiling measured on one machine can be told apart from one measured on another. The
/// batch equation costs about half as much on AVX-512 IFMA as on AVX2; decompressing the
/// points does not use vector instructions at all.
pub fn signature_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        #[cfg(curve25519_dalek_backend = "avx512")]
        if std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512-ifma";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "serial"
}

/// `[8] Σ zᵢ([Sᵢ]B − [kᵢ]Aᵢ − Rᵢ) = 0` for random 128-bit `zᵢ` (derived from one
/// OS-random seed per batch, so a forger cannot predict them).
fn batch_equation_holds(parsed: &[(Parsed, Scalar)]) -> bool {
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    let zs: Vec<Scalar> = (0..parsed.len() as u64)
        .map(|i| {
            let digest = Sha512::new()
                .chain_update(seed)
                .chain_update(i.to_le_bytes())
                .finalize();
            let mut z = [0u8; 32];
            z[..16].copy_from_slice(&digest[..16]);
            Scalar::from_bytes_mod_order(z)
        })
        .collect();
    let b_coefficient: Scalar = zs.iter().zip(parsed).map(|(z, (p, _))| z * p.s).sum();
    let scalars = std::iter::once(b_coefficient)
        .chain(zs.iter().map(|z| -z))
        .chain(zs.iter().zip(parsed).map(|(z, (_, k))| -(z * k)));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(parsed.iter().map(|(p, _)| p.r))
        .chain(parsed.iter().map(|(p, _)| p.key));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_canonical_y_boundary_at_p() {
        // p − 1 = 0x7fff…ffec (little-endian: 0xec, 0xff…, 0x7f) is canonical; p and
        // 2^255 − 1 are not, whatever the sign bit.
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        assert!(canonical_y(&p_minus_1));
        let mut p = p_minus_1;
        p[0] = 0xed;
        assert!(!canonical_y(&p));
        let all_ones = [0xffu8; 32];
        assert!(!canonical_y(&all_ones));
        let mut p_signed = p;
        p_signed[31] |= 0x80;
        assert!(!canonical_y(&p_signed));
        assert!(canonical_y(&[0u8; 32]));
        // Agrees with decompress-and-recompress on random valid points.
        for seed in 0..32u8 {
            let bytes = SecretKey::from_bytes(&[seed; 32]).public_key().0;
            let point = CompressedEdwardsY(bytes).decompress().unwrap();
            assert_eq!(canonical_y(&bytes), point.compress().0 == bytes);
        }
    }

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
    #[cfg(target_arch = "x86_64")]
    fn test_build_lets_signature_checks_use_avx512_ifma() {
        if std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            assert_eq!(
                signature_backend(),
                "avx512-ifma",
                "built without the cfg of .cargo/config.toml (an explicit RUSTFLAGS replaces \
                 it): signature checks run on AVX2 although this CPU has AVX-512 IFMA"
            );
        }
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
