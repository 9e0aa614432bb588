//! ed25519 edge cases from "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko,
//! 2020), file `data/ed25519-speccheck-cases.json` (see `data/README.md`).
//!
//! For every case the single check (`keys::verify`) and the batch check
//! (`keys::verify_batch`, alone and mixed among valid signatures) must give the same
//! verdict, and that verdict must be the one the rule at the top of `core/src/keys.rs`
//! prescribes: canonical, non-small-order `A` and `R`; canonical `S`; cofactored equation.

use cbdc_core::keys::{verify, verify_batch, PublicKey, SecretKey, Signature, SignatureCheck};
use cbdc_core::SignatureError;
use serde::Deserialize;

const ACCEPT: Result<(), SignatureError> = Ok(());
const BAD_KEY: Result<(), SignatureError> = Err(SignatureError::InvalidPublicKey);
const BAD_SIG: Result<(), SignatureError> = Err(SignatureError::InvalidSignature);

/// The expected verdict of each case, in file order.
const EXPECTED: [Result<(), SignatureError>; 10] = [
    // 0: A and R of small order, S = 0; the equation holds, but A is a weak key.
    BAD_KEY,
    // 1: A of small order (R mixed order, equation holds both ways): weak key.
    BAD_KEY,
    // 2: A mixed order (valid), R of small order: refused by the small-order-R rule.
    BAD_SIG,
    // 3: A and R mixed order, neither small; passes cofactored and cofactorless: accept.
    ACCEPT,
    // 4: A and R mixed order; passes only the cofactored equation, which is ours: accept.
    ACCEPT,
    // 5: A mixed order, R prime order; passes only the cofactored equation: accept.
    ACCEPT,
    // 6: S ≥ ℓ (the equation would hold with S reduced): non-canonical S, refused.
    BAD_SIG,
    // 7: S ≫ ℓ (high bits set; equation holds unreduced): non-canonical S, refused.
    BAD_SIG,
    // 8: R encoded non-canonically (y = p, the order-4 point (±1, 0)); fails anyway: refused.
    BAD_SIG,
    // 9: R encoded non-canonically (y = p); would pass if R were reduced: refused.
    BAD_SIG,
];

#[derive(Deserialize)]
struct Case {
    message: String,
    pub_key: String,
    signature: String,
}

struct Vector {
    message: Vec<u8>,
    key: PublicKey,
    signature: Signature,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("data/ed25519-speccheck-cases.json");
    let cases: Vec<Case> = serde_json::from_str(text).unwrap();
    cases
        .iter()
        .map(|c| Vector {
            message: hex::decode(&c.message).unwrap(),
            key: PublicKey(hex::decode(&c.pub_key).unwrap().try_into().unwrap()),
            signature: Signature(hex::decode(&c.signature).unwrap().try_into().unwrap()),
        })
        .collect()
}

impl Vector {
    fn check(&self) -> SignatureCheck<'_> {
        SignatureCheck {
            key: &self.key,
            message: &self.message,
            signature: &self.signature,
        }
    }
}

/// The verdict of a batch for the check at `position`.
fn verdict_at(
    result: &Result<(), Vec<(usize, SignatureError)>>,
    position: usize,
) -> Result<(), SignatureError> {
    match result {
        Ok(()) => Ok(()),
        Err(failures) => match failures.iter().find(|(i, _)| *i == position) {
            Some((_, e)) => Err(*e),
            None => Ok(()),
        },
    }
}

#[test]
fn test_speccheck_cases_single_verdicts() {
    let vectors = vectors();
    assert_eq!(vectors.len(), EXPECTED.len());
    for (i, (v, want)) in vectors.iter().zip(EXPECTED).enumerate() {
        assert_eq!(verify(&v.check()), want, "case {i}");
    }
}

#[test]
fn test_speccheck_cases_batch_alone_agrees_with_single() {
    for (i, v) in vectors().iter().enumerate() {
        let single = verify(&v.check());
        let batch = verify_batch(&[v.check()]);
        assert_eq!(verdict_at(&batch, 0), single, "case {i}");
        assert_eq!(batch.is_ok(), single.is_ok(), "case {i}");
    }
}

#[test]
fn test_speccheck_cases_batch_mixed_agrees_with_single() {
    // Each case in the middle of honest signatures, and all cases together: only the
    // cases the single check rejects may fail, and with the same error.
    let keys: Vec<SecretKey> = (1..=6u8).map(|s| SecretKey::from_bytes(&[s; 32])).collect();
    let pks: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
    let messages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
    let sigs: Vec<Signature> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let honest = |j: usize| SignatureCheck {
        key: &pks[j],
        message: &messages[j],
        signature: &sigs[j],
    };
    let vectors = vectors();
    for (i, v) in vectors.iter().enumerate() {
        let single = verify(&v.check());
        let mut batch: Vec<SignatureCheck<'_>> = (0..3).map(honest).collect();
        batch.push(v.check());
        batch.extend((3..6).map(honest));
        let result = verify_batch(&batch);
        for position in 0..batch.len() {
            let want = if position == 3 { single } else { Ok(()) };
            assert_eq!(
                verdict_at(&result, position),
                want,
                "case {i}, position {position}"
            );
        }
    }
    let mut all: Vec<SignatureCheck<'_>> = vectors.iter().map(Vector::check).collect();
    all.extend((0..6).map(honest));
    let result = verify_batch(&all);
    for (position, check) in all.iter().enumerate() {
        assert_eq!(
            verdict_at(&result, position),
            verify(check),
            "position {position}"
        );
    }
}

#[test]
fn test_speccheck_accepted_cases_accepted_by_batch_of_accepted() {
    // A batch of only the accepted (mixed-order) cases plus honest ones is accepted whole.
    let vectors = vectors();
    let k = SecretKey::from_bytes(&[7; 32]);
    let pk = k.public_key();
    let sig = k.sign(b"m");
    let mut batch: Vec<SignatureCheck<'_>> = vectors
        .iter()
        .zip(EXPECTED)
        .filter(|(_, want)| want.is_ok())
        .map(|(v, _)| v.check())
        .collect();
    assert_eq!(batch.len(), 3);
    batch.push(SignatureCheck {
        key: &pk,
        message: b"m",
        signature: &sig,
    });
    assert_eq!(verify_batch(&batch), Ok(()));
}

#[test]
fn test_non_canonical_public_key_rejected() {
    // Cases 10–11 of the paper (non-canonical A) are not in the data file. y = 3 + p
    // decodes to the same (mixed-order, not small) point as the canonical y = 3, which is
    // a valid key; the non-canonical encoding must be refused on every path.
    let mut canonical = [0u8; 32];
    canonical[0] = 3;
    let mut non_canonical = [0xFFu8; 32];
    non_canonical[0] = 0xF0; // 2^255 - 19 + 3, little-endian
    non_canonical[31] = 0x7F;
    let canonical = PublicKey(canonical);
    let non_canonical = PublicKey(non_canonical);
    assert!(canonical.is_valid());
    assert!(!non_canonical.is_valid());
    let honest = SecretKey::from_bytes(&[1; 32]);
    let sig = honest.sign(b"m");
    let mut with_sign_bit = non_canonical;
    with_sign_bit.0[31] |= 0x80;
    for key in [non_canonical, with_sign_bit] {
        let check = SignatureCheck {
            key: &key,
            message: b"m",
            signature: &sig,
        };
        assert_eq!(verify(&check), BAD_KEY);
        assert_eq!(
            verify_batch(&[check]),
            Err(vec![(0, SignatureError::InvalidPublicKey)])
        );
    }
}

#[test]
fn test_small_order_points_all_rejected_as_keys_and_r() {
    // The eight points of small order, as keys and as R, in canonical encodings.
    let small_order: [&str; 8] = [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    ];
    let honest = SecretKey::from_bytes(&[1; 32]);
    let pk = honest.public_key();
    for hex_point in small_order {
        let point: [u8; 32] = hex::decode(hex_point).unwrap().try_into().unwrap();
        let key = PublicKey(point);
        assert!(!key.is_valid(), "{hex_point} as a key");
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&point);
        let check = SignatureCheck {
            key: &key,
            message: b"m",
            signature: &Signature(sig),
        };
        assert_eq!(verify(&check), BAD_KEY, "{hex_point} as a key");
        let as_r = SignatureCheck {
            key: &pk,
            message: b"m",
            signature: &Signature(sig),
        };
        assert_eq!(verify(&as_r), BAD_SIG, "{hex_point} as R");
        assert_eq!(
            verify_batch(&[check, as_r]),
            Err(vec![
                (0, SignatureError::InvalidPublicKey),
                (1, SignatureError::InvalidSignature)
            ])
        );
    }
}
