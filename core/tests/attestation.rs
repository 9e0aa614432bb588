//! Batch attestations: every member of a batch verifies; any change to the proof, the
//! transaction, the root or the signature is refused; thresholds count distinct
//! sentinels; and the cache of verified roots never lets a bad proof through.

use cbdc_core::attestation::{root_from_proof, root_message, MerkleTree};
use cbdc_core::{
    attest_batch, p2pk_output, sign_transfer, Amount, Attestation, AttestationError,
    AttestationVerifier, CompactTransaction, Encode, Hash, Input, OutPoint, PublicKey, SecretKey,
    TxId,
};

#[test]
fn test_attest_batch_every_member_verifies() {
    for n in [1usize, 2, 3, 5, 8, 13] {
        let s = sentinel(1);
        let mut txs = batch(n);
        attest_batch(&s, &mut txs);
        let v = verifier(&[&s], 1);
        let depth = n.next_power_of_two().trailing_zeros() as usize;
        for (i, tx) in txs.iter().enumerate() {
            assert_eq!(tx.attestations.len(), 1);
            let a = &tx.attestations[0];
            assert_eq!(a.leaf_index, i as u32, "batch of {n}");
            assert_eq!(a.path.len(), depth, "batch of {n}");
            assert_eq!(a.sentinel, s.public_key());
            assert_eq!(v.verify_one(tx, a), Ok(()), "member {i} of {n}");
            assert_eq!(v.verify(tx), Ok(()), "member {i} of {n}");
        }
        // Every member shares the root, and it is the Merkle root of the leaf hashes.
        let leaves: Vec<Hash> = txs.iter().map(CompactTransaction::hash).collect();
        assert!(txs
            .iter()
            .all(|t| t.attestations[0].root == MerkleTree::new(&leaves).root()));
    }
}

#[test]
fn test_attest_single_member_root_is_leaf() {
    let s = sentinel(1);
    let mut txs = batch(1);
    attest_batch(&s, &mut txs);
    assert_eq!(txs[0].attestations[0].root, txs[0].hash());
    assert!(txs[0].attestations[0].path.is_empty());
}

#[test]
fn test_attest_merkle_root_formula() {
    // Three leaves padded to four with a zero leaf; inner nodes SHA-256(0x01 ‖ l ‖ r).
    let leaves = [Hash([1; 32]), Hash([2; 32]), Hash([3; 32])];
    let node = |l: &Hash, r: &Hash| Hash::digest_parts(&[&[0x01], l.as_bytes(), r.as_bytes()]);
    let want = node(
        &node(&leaves[0], &leaves[1]),
        &node(&leaves[2], &Hash::ZERO),
    );
    let tree = MerkleTree::new(&leaves);
    assert_eq!(tree.root(), want);
    assert_eq!(root_from_proof(&leaves[2], 2, &tree.proof(2)), Some(want));
    assert_eq!(
        root_message(&want),
        [b"cbdc/attestation/v1".as_slice(), want.as_bytes()].concat()
    );
}

#[test]
fn test_attest_wrong_path() {
    let (s, txs) = attested(5, 1);
    let v = verifier(&[&s], 1);
    for (h, tx) in txs.iter().enumerate() {
        for level in 0..tx.attestations[0].path.len() {
            let mut a = tx.attestations[0].clone();
            a.path[level].0[h % 32] ^= 1;
            assert_eq!(v.verify_one(tx, &a), Err(AttestationError::BadProof));
        }
        // A path one hash short, or one hash long, does not reach the root either.
        let mut short = tx.attestations[0].clone();
        short.path.pop();
        assert_eq!(v.verify_one(tx, &short), Err(AttestationError::BadProof));
        let mut long = tx.attestations[0].clone();
        long.path.push(Hash::ZERO);
        assert_eq!(v.verify_one(tx, &long), Err(AttestationError::BadProof));
    }
}

#[test]
fn test_attest_wrong_path_fails_threshold() {
    let (s, mut txs) = attested(4, 1);
    let v = verifier(&[&s], 1);
    txs[2].attestations[0].path[0].0[0] ^= 1;
    assert_eq!(
        v.verify(&txs[2]),
        Err(AttestationError::BelowThreshold {
            valid: 0,
            required: 1
        })
    );
}

#[test]
fn test_attest_wrong_leaf_index() {
    let (s, txs) = attested(8, 1);
    let v = verifier(&[&s], 1);
    for tx in &txs {
        let good = tx.attestations[0].leaf_index;
        for index in [good ^ 1, good ^ 2, good ^ 4, good + 8, u32::MAX] {
            let mut a = tx.attestations[0].clone();
            a.leaf_index = index;
            assert_eq!(
                v.verify_one(tx, &a),
                Err(AttestationError::BadProof),
                "index {index} instead of {good}"
            );
        }
    }
}

#[test]
fn test_attest_other_members_proof_rejected() {
    let (s, txs) = attested(3, 1);
    let v = verifier(&[&s], 1);
    assert_eq!(
        v.verify_one(&txs[0], &txs[1].attestations[0]),
        Err(AttestationError::BadProof)
    );
}

#[test]
fn test_attest_tampered_transaction() {
    let (s, txs) = attested(5, 1);
    let v = verifier(&[&s], 1);
    let a = txs[3].attestations[0].clone();

    let mut value = txs[3].clone();
    value.outputs[0].1 = Amount::from_cents(value.outputs[0].1.cents() + 1);
    assert_eq!(v.verify_one(&value, &a), Err(AttestationError::BadProof));

    let mut id = txs[3].clone();
    id.id.0 .0[31] ^= 1;
    assert_eq!(v.verify_one(&id, &a), Err(AttestationError::BadProof));

    let mut input = txs[3].clone();
    input.inputs.pop();
    assert_eq!(v.verify_one(&input, &a), Err(AttestationError::BadProof));

    let mut extra_output = txs[3].clone();
    extra_output.outputs.push(extra_output.outputs[0]);
    assert_eq!(
        v.verify(&extra_output),
        Err(AttestationError::BelowThreshold {
            valid: 0,
            required: 1
        })
    );
}

#[test]
fn test_attest_tampered_root() {
    let (s, txs) = attested(5, 1);
    let v = verifier(&[&s], 1);
    let mut a = txs[0].attestations[0].clone();
    a.root.0[0] ^= 1;
    assert_eq!(v.verify_one(&txs[0], &a), Err(AttestationError::BadProof));
}

#[test]
fn test_attest_resigned_foreign_root() {
    // A known sentinel's valid signature over some other root does not vouch for a
    // transaction that is not under it.
    let s = sentinel(1);
    let (_, txs) = attested(4, 1);
    let other_root = Hash([0x42; 32]);
    let mut a = txs[0].attestations[0].clone();
    a.root = other_root;
    a.signature = s.sign(&root_message(&other_root));
    let v = verifier(&[&s], 1);
    assert_eq!(v.verify_one(&txs[0], &a), Err(AttestationError::BadProof));
}

#[test]
fn test_attest_unknown_sentinel() {
    let (s, txs) = attested(3, 1);
    let trusted = sentinel(2);
    let v = verifier(&[&trusted], 1);
    assert_eq!(
        v.verify_one(&txs[1], &txs[1].attestations[0]),
        Err(AttestationError::UnknownSentinel(s.public_key()))
    );
    assert_eq!(
        v.verify(&txs[1]),
        Err(AttestationError::BelowThreshold {
            valid: 0,
            required: 1
        })
    );
}

#[test]
fn test_attest_claimed_by_trusted_key_signed_by_other() {
    // The attestation names a trusted sentinel but was signed by an untrusted key.
    let trusted = sentinel(1);
    let (_, txs) = attested(3, 2);
    let mut a = txs[0].attestations[0].clone();
    a.sentinel = trusted.public_key();
    let v = verifier(&[&trusted], 1);
    assert_eq!(
        v.verify_one(&txs[0], &a),
        Err(AttestationError::BadSignature)
    );
}

#[test]
fn test_attest_bad_signature() {
    let (s, txs) = attested(5, 1);
    let v = verifier(&[&s], 1);
    let mut a = txs[2].attestations[0].clone();
    a.signature.0[50] ^= 1;
    assert_eq!(
        v.verify_one(&txs[2], &a),
        Err(AttestationError::BadSignature)
    );
    // A signature of the bare root (without the domain prefix) is refused too.
    let mut bare = txs[2].attestations[0].clone();
    bare.signature = s.sign(bare.root.as_bytes());
    assert_eq!(
        v.verify_one(&txs[2], &bare),
        Err(AttestationError::BadSignature)
    );
}

#[test]
fn test_attest_below_threshold_one_sentinel() {
    let (a, b) = (sentinel(1), sentinel(2));
    let mut txs = batch(3);
    attest_batch(&a, &mut txs);
    let v = verifier(&[&a, &b], 2);
    assert_eq!(
        v.verify(&txs[0]),
        Err(AttestationError::BelowThreshold {
            valid: 1,
            required: 2
        })
    );
    attest_batch(&b, &mut txs);
    for tx in &txs {
        assert_eq!(v.verify(tx), Ok(()));
    }
}

#[test]
fn test_attest_below_threshold_same_key_counted_once() {
    let (a, b) = (sentinel(1), sentinel(2));
    let mut txs = batch(3);
    attest_batch(&a, &mut txs);
    attest_batch(&a, &mut txs);
    assert_eq!(txs[0].attestations.len(), 2);
    let v = verifier(&[&a, &b], 2);
    assert_eq!(
        v.verify(&txs[0]),
        Err(AttestationError::BelowThreshold {
            valid: 1,
            required: 2
        })
    );
}

#[test]
fn test_attest_threshold_skips_invalid_attestations() {
    // One bad attestation among good ones: the good ones still count.
    let (a, b, c) = (sentinel(1), sentinel(2), sentinel(3));
    let mut txs = batch(2);
    attest_batch(&a, &mut txs);
    attest_batch(&b, &mut txs);
    attest_batch(&c, &mut txs);
    txs[1].attestations[1].signature.0[40] ^= 1;
    let v = verifier(&[&a, &b, &c], 2);
    assert_eq!(v.verify(&txs[1]), Ok(()));
    let v3 = verifier(&[&a, &b, &c], 3);
    assert_eq!(
        v3.verify(&txs[1]),
        Err(AttestationError::BelowThreshold {
            valid: 2,
            required: 3
        })
    );
}

#[test]
fn test_attest_threshold_zero_accepts_anything() {
    let v = AttestationVerifier::new(Vec::<PublicKey>::new(), 0);
    let mut txs = batch(2);
    assert_eq!(v.verify(&txs[0]), Ok(()));
    txs[1].attestations.push(Attestation {
        sentinel: PublicKey([7; 32]),
        root: Hash([1; 32]),
        signature: cbdc_core::Signature([0; 64]),
        leaf_index: 99,
        path: vec![],
    });
    assert_eq!(v.verify(&txs[1]), Ok(()));
}

#[test]
fn test_attest_no_attestations_below_threshold() {
    let s = sentinel(1);
    let v = verifier(&[&s], 1);
    assert_eq!(
        v.verify(&batch(1)[0]),
        Err(AttestationError::BelowThreshold {
            valid: 0,
            required: 1
        })
    );
}

#[test]
fn test_attest_cached_root_still_checks_proof() {
    let (s, txs) = attested(8, 1);
    let v = verifier(&[&s], 1);
    // First verification checks the signature and caches the root.
    assert_eq!(v.verify(&txs[0]), Ok(()));
    // Other members under the cached root verify without a fresh signature check...
    for tx in &txs[1..] {
        assert_eq!(v.verify(tx), Ok(()));
    }
    // ...but the path is still checked against the cached root every time.
    let mut a = txs[5].attestations[0].clone();
    a.path[1].0[3] ^= 1;
    assert_eq!(v.verify_one(&txs[5], &a), Err(AttestationError::BadProof));
    let mut wrong_index = txs[5].attestations[0].clone();
    wrong_index.leaf_index = 4;
    assert_eq!(
        v.verify_one(&txs[5], &wrong_index),
        Err(AttestationError::BadProof)
    );
    let mut tampered = txs[5].clone();
    tampered.inputs[0].0 .0[0] ^= 1;
    assert_eq!(
        v.verify_one(&tampered, &txs[5].attestations[0]),
        Err(AttestationError::BadProof)
    );
}

#[test]
fn test_attest_cached_root_does_not_vouch_for_other_signature() {
    // The cache is keyed on (sentinel, root, signature): a cached root with a different,
    // bad signature is checked, not waved through.
    let (s, txs) = attested(4, 1);
    let v = verifier(&[&s], 1);
    assert_eq!(v.verify(&txs[0]), Ok(()));
    let mut a = txs[1].attestations[0].clone();
    a.signature.0[45] ^= 1;
    assert_eq!(
        v.verify_one(&txs[1], &a),
        Err(AttestationError::BadSignature)
    );
    // And the genuine one is still accepted afterwards.
    assert_eq!(v.verify_one(&txs[1], &txs[1].attestations[0]), Ok(()));
}

#[test]
fn test_attest_cache_per_verifier_sentinel_set() {
    // A root cached by a verifier that trusts `s` does not make `s` trusted elsewhere.
    let (s, txs) = attested(2, 1);
    let trusting = verifier(&[&s], 1);
    assert_eq!(trusting.verify(&txs[0]), Ok(()));
    let other = verifier(&[&sentinel(9)], 1);
    assert_eq!(
        other.verify_one(&txs[0], &txs[0].attestations[0]),
        Err(AttestationError::UnknownSentinel(s.public_key()))
    );
}

/// `verify_all` shares proven Merkle nodes between the transactions of a run; whatever
/// the mix of batches, order and damage, it must answer exactly what checking each
/// transaction alone answers.
mod verify_all {
    use super::*;
    use proptest::prelude::*;

    /// Ways to damage one transaction's attestation or content.
    #[derive(Debug, Clone, Copy)]
    enum Damage {
        None,
        /// Flip a bit of the path at this level (modulo its depth).
        Path(usize),
        /// Claim another leaf index.
        Index(u32),
        /// Change an output value: the leaf no longer matches.
        Tamper,
        /// Carry the attestation of the transaction at this position.
        Borrow(usize),
        /// Drop the last path step.
        Short,
        /// Add a step past the root.
        Long,
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            4 => Just(Damage::None),
            1 => (0usize..8).prop_map(Damage::Path),
            1 => (0u32..64).prop_map(Damage::Index),
            1 => Just(Damage::Tamper),
            1 => (0usize..64).prop_map(Damage::Borrow),
            1 => Just(Damage::Short),
            1 => Just(Damage::Long),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn test_verify_all_answers_as_one_by_one(
            first in 1usize..24,
            second in 1usize..24,
            damages in prop::collection::vec(damage(), 48),
            order in any::<u64>(),
        ) {
            let (a, b) = (sentinel(1), sentinel(2));
            let all = batch(first + second);
            let mut one = all[..first].to_vec();
            let mut two = all[first..].to_vec();
            attest_batch(&a, &mut one);
            attest_batch(&b, &mut two);
            let mut txs: Vec<CompactTransaction> = one.into_iter().chain(two).collect();
            let originals = txs.clone();
            for (i, tx) in txs.iter_mut().enumerate() {
                let att = &mut tx.attestations[0];
                match damages[i] {
                    Damage::None => {}
                    Damage::Path(level) => {
                        if !att.path.is_empty() {
                            let level = level % att.path.len();
                            att.path[level].0[i % 32] ^= 1;
                        }
                    }
                    Damage::Index(index) => att.leaf_index = index,
                    Damage::Tamper => tx.outputs[0].1 = Amount::from_cents(999_999),
                    Damage::Borrow(j) => {
                        *att = originals[j % originals.len()].attestations[0].clone();
                    }
                    Damage::Short => {
                        att.path.pop();
                    }
                    Damage::Long => att.path.push(Hash::ZERO),
                }
            }
            // Shuffle deterministically from the drawn seed, so that damaged transactions
            // come both before and after the good ones they share nodes with.
            let mut seed = order;
            for i in (1..txs.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                txs.swap(i, (seed >> 33) as usize % (i + 1));
            }
            let v = verifier(&[&a, &b], 1);
            let alone: Vec<_> = txs.iter().map(|tx| v.verify(tx)).collect();
            let fresh = verifier(&[&a, &b], 1);
            prop_assert_eq!(fresh.verify_all(&txs), alone);
        }
    }

    /// A forged path cannot ride on nodes an honest neighbour proved: the neighbour's
    /// nodes are checked for equality, not taken as proof of anything that meets them.
    #[test]
    fn test_verify_all_refuses_forgery_after_honest_neighbour() {
        let (s, txs) = attested(8, 1);
        let v = verifier(&[&s], 1);
        let mut forged = txs[1].clone();
        forged.outputs[0].1 = Amount::from_cents(1);
        let mut wrong_index = txs[2].clone();
        wrong_index.attestations[0].leaf_index = 3;
        let run = [&txs[0], &forged, &txs[3], &wrong_index, &txs[2]];
        assert_eq!(
            v.verify_all(run),
            vec![
                Ok(()),
                Err(AttestationError::BelowThreshold {
                    valid: 0,
                    required: 1
                }),
                Ok(()),
                Err(AttestationError::BelowThreshold {
                    valid: 0,
                    required: 1
                }),
                Ok(()),
            ]
        );
    }

    /// The roots a run found validly signed vouch only for that signature: a bad
    /// signature over the same root, later in the run, is checked and refused — also
    /// when the shared cache already holds the root from an earlier run.
    #[test]
    fn test_verify_all_run_memo_keeps_checking_signatures() {
        let (s, txs) = attested(4, 1);
        let below = Err(AttestationError::BelowThreshold {
            valid: 0,
            required: 1,
        });
        let mut bad = txs[1].clone();
        bad.attestations[0].signature.0[45] ^= 1;
        for v in [verifier(&[&s], 1), {
            let warm = verifier(&[&s], 1);
            assert_eq!(warm.verify(&txs[3]), Ok(()));
            warm
        }] {
            assert_eq!(
                v.verify_all([&txs[0], &bad, &txs[2]]),
                vec![Ok(()), below.clone(), Ok(())]
            );
        }
    }
}

#[test]
fn test_encoded_len_is_the_encoding_length() {
    // Unattested, attested by one sentinel (paths of 0, 1 and 3 steps), and by two.
    let mut txs = batch(1);
    for n in [1, 2, 5] {
        txs.extend(attested(n, 1).1);
    }
    let mut twice = attested(4, 1).1.remove(2);
    let mut other = attested(4, 2).1.remove(2);
    twice.attestations.append(&mut other.attestations);
    txs.push(twice);
    for tx in &txs {
        assert_eq!(tx.encoded_len(), tx.encode().len());
        for a in &tx.attestations {
            assert_eq!(a.encoded_len(), a.encode().len());
        }
    }
}

// ---- builders ----

fn sentinel(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[0x50 + seed; 32])
}

fn verifier(sentinels: &[&SecretKey], threshold: usize) -> AttestationVerifier {
    AttestationVerifier::new(sentinels.iter().map(|k| k.public_key()), threshold)
}

/// `n` compact 2-in/2-out transactions with distinct ids and UHS ids.
fn batch(n: usize) -> Vec<CompactTransaction> {
    let owner = SecretKey::from_bytes(&[1; 32]);
    (0..n)
        .map(|i| {
            let spend = |k: u32, cents| Input {
                outpoint: OutPoint {
                    tx_id: TxId::from([i as u8; 32]),
                    index: k,
                },
                spent: p2pk_output(&owner, cents),
            };
            sign_transfer(
                &[(spend(0, 10 + i as u64), &owner), (spend(1, 5), &owner)],
                vec![p2pk_output(&owner, 7), p2pk_output(&owner, 8 + i as u64)],
            )
            .compact()
        })
        .collect()
}

/// A batch of `n` attested by `sentinel(seed)`.
fn attested(n: usize, seed: u8) -> (SecretKey, Vec<CompactTransaction>) {
    let s = sentinel(seed);
    let mut txs = batch(n);
    attest_batch(&s, &mut txs);
    (s, txs)
}
