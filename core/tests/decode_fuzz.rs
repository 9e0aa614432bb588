//! Fuzz-style tests of the strict decoders: arbitrary bytes never panic them, whatever
//! they accept re-encodes to the same bytes, and truncation, trailing bytes and oversize
//! lengths are refused with the typed `DecodeError`.

use cbdc_core::encoding::{MAX_BYTES_LEN, MAX_LIST_ITEMS};
use cbdc_core::transaction::MAX_ATTESTATIONS;
use cbdc_core::{
    attest_batch, p2pk_output, sign_transfer, Attestation, CompactTransaction, Decode, DecodeError,
    Encode, Input, OutPoint, SecretKey, Transaction, TxId, WitnessProgram,
};
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn test_decode_random_bytes_never_panics(bytes in vec(any::<u8>(), 0..1024)) {
        check_all_decoders(&bytes);
    }

    #[test]
    fn test_decode_mutated_valid_encodings_never_panic(
        which in 0usize..3,
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        extend in vec(any::<u8>(), 0..8),
    ) {
        let samples = samples();
        let mut bytes = samples[which].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes.extend(extend);
        check_all_decoders(&bytes);
    }
}

#[test]
fn test_decode_random_lengths_never_panic() {
    // A few thousand byte strings of random length from a fixed-seed generator, plus
    // ones that start like a real encoding (small counts) so decoding gets further in.
    let mut rng = SplitMix(0x5EED);
    for i in 0..4000 {
        let len = (rng.next() % 600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if i % 2 == 0 && bytes.len() >= 8 {
            // Plausible list counts: 0..4.
            bytes[0..4].copy_from_slice(&((rng.next() % 4) as u32).to_le_bytes());
            let at = 4 + (rng.next() as usize % (bytes.len() - 7));
            bytes[at..at + 4].copy_from_slice(&((rng.next() % 4) as u32).to_le_bytes());
        }
        check_all_decoders(&bytes);
    }
}

#[test]
fn test_decode_every_truncation_is_truncated_error() {
    let [tx, compact, attestation] = samples();
    for len in 0..tx.len() {
        assert!(
            matches!(
                Transaction::decode(&tx[..len]),
                Err(DecodeError::Truncated { .. })
            ),
            "transaction cut at {len}"
        );
    }
    for len in 0..compact.len() {
        assert!(
            matches!(
                CompactTransaction::decode(&compact[..len]),
                Err(DecodeError::Truncated { .. })
            ),
            "compact transaction cut at {len}"
        );
    }
    for len in 0..attestation.len() {
        assert!(
            matches!(
                Attestation::decode(&attestation[..len]),
                Err(DecodeError::Truncated { .. })
            ),
            "attestation cut at {len}"
        );
    }
}

#[test]
fn test_decode_trailing_bytes_rejected() {
    let [tx, compact, attestation] = samples();
    for extra in 1..=3usize {
        let pad = vec![0u8; extra];
        assert_eq!(
            Transaction::decode(&[tx.as_slice(), &pad].concat()),
            Err(DecodeError::TrailingBytes { count: extra })
        );
        assert_eq!(
            CompactTransaction::decode(&[compact.as_slice(), &pad].concat()),
            Err(DecodeError::TrailingBytes { count: extra })
        );
        assert_eq!(
            Attestation::decode(&[attestation.as_slice(), &pad].concat()),
            Err(DecodeError::TrailingBytes { count: extra })
        );
    }
}

#[test]
fn test_decode_oversize_transaction_lists_rejected() {
    let too_many = (MAX_LIST_ITEMS + 1) as u32;
    // Input count just over the cap.
    let mut bytes = too_many.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 64]);
    assert_eq!(
        Transaction::decode(&bytes),
        Err(DecodeError::Oversize {
            what: "inputs",
            len: MAX_LIST_ITEMS + 1,
            max: MAX_LIST_ITEMS
        })
    );
    // The largest count a u32 can say.
    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 64]);
    assert!(matches!(
        Transaction::decode(&bytes),
        Err(DecodeError::Oversize { what: "inputs", .. })
    ));
    // No inputs, output count over the cap.
    let mut bytes = 0u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&too_many.to_le_bytes());
    assert!(matches!(
        Transaction::decode(&bytes),
        Err(DecodeError::Oversize {
            what: "outputs",
            ..
        })
    ));
    // Within the cap but far more than the bytes present: refused before allocating.
    let mut bytes = (MAX_LIST_ITEMS as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 76]);
    assert!(matches!(
        Transaction::decode(&bytes),
        Err(DecodeError::Truncated { what: "inputs", .. })
    ));
}

#[test]
fn test_decode_oversize_witness_program_rejected() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0u32.to_le_bytes()); // inputs
    bytes.extend_from_slice(&0u32.to_le_bytes()); // outputs
    bytes.extend_from_slice(&[1; 32]); // nonce
    bytes.extend_from_slice(&1u32.to_le_bytes()); // one witness
    bytes.push(7); // version
    bytes.extend_from_slice(&((MAX_BYTES_LEN + 1) as u32).to_le_bytes());
    bytes.extend_from_slice(&vec![0; MAX_BYTES_LEN + 1 + 64]);
    assert_eq!(
        Transaction::decode(&bytes),
        Err(DecodeError::Oversize {
            what: "witness program",
            len: MAX_BYTES_LEN + 1,
            max: MAX_BYTES_LEN
        })
    );
}

#[test]
fn test_decode_p2pk_program_wrong_length_rejected() {
    let a = SecretKey::from_bytes(&[1; 32]);
    let tx = sample_transaction(&a);
    let mut bytes = tx.encode();
    // The first witness starts right after the nonce; give its P2PK program 31 bytes.
    let witness_at = bytes.len() - tx.witnesses.len() * (1 + 4 + 32 + 64);
    assert_eq!(bytes[witness_at], 0, "version byte of a P2PK witness");
    bytes[witness_at + 1..witness_at + 5].copy_from_slice(&31u32.to_le_bytes());
    assert!(matches!(
        Transaction::decode(&bytes),
        Err(DecodeError::Invalid {
            what: "p2pk program",
            ..
        })
    ));
}

#[test]
fn test_decode_oversize_attestation_path_rejected() {
    let [_, _, attestation] = samples();
    let path_at = 32 + 32 + 64 + 4;
    let mut bytes = attestation[..path_at].to_vec();
    bytes.extend_from_slice(&33u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 33 * 32]);
    assert_eq!(
        Attestation::decode(&bytes),
        Err(DecodeError::Oversize {
            what: "attestation path",
            len: 33,
            max: 32
        })
    );
}

#[test]
fn test_decode_oversize_compact_lists_rejected() {
    let too_many = (MAX_LIST_ITEMS + 1) as u32;
    let mut bytes = vec![0u8; 32];
    bytes.extend_from_slice(&too_many.to_le_bytes());
    assert!(matches!(
        CompactTransaction::decode(&bytes),
        Err(DecodeError::Oversize {
            what: "compact inputs",
            ..
        })
    ));
    let mut bytes = vec![0u8; 32];
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&too_many.to_le_bytes());
    assert!(matches!(
        CompactTransaction::decode(&bytes),
        Err(DecodeError::Oversize {
            what: "compact outputs",
            ..
        })
    ));
    let mut bytes = vec![0u8; 32];
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&((MAX_ATTESTATIONS + 1) as u32).to_le_bytes());
    bytes.extend_from_slice(&vec![0; 200 * (MAX_ATTESTATIONS + 1)]);
    assert_eq!(
        CompactTransaction::decode(&bytes),
        Err(DecodeError::Oversize {
            what: "attestations",
            len: MAX_ATTESTATIONS + 1,
            max: MAX_ATTESTATIONS
        })
    );
}

// ---- helpers ----

/// Runs every decoder on `bytes`; whatever decodes must re-encode to exactly `bytes`
/// (the encoding is canonical: one byte string per value).
fn check_all_decoders(bytes: &[u8]) {
    if let Ok(tx) = Transaction::decode(bytes) {
        assert_eq!(tx.encode(), bytes);
    }
    if let Ok(tx) = CompactTransaction::decode(bytes) {
        assert_eq!(tx.encode(), bytes);
    }
    if let Ok(a) = Attestation::decode(bytes) {
        assert_eq!(a.encode(), bytes);
    }
}

/// A signed 2-in/2-out transfer.
fn sample_transaction(owner: &SecretKey) -> Transaction {
    let spend = |n: u8, cents| Input {
        outpoint: OutPoint {
            tx_id: TxId::from([n; 32]),
            index: u32::from(n),
        },
        spent: p2pk_output(owner, cents),
    };
    sign_transfer(
        &[(spend(1, 30), owner), (spend(2, 12), owner)],
        vec![p2pk_output(owner, 40), p2pk_output(owner, 2)],
    )
}

/// Valid encodings of a transaction (with an unknown-program witness too), a compact
/// transaction with two attestations, and an attestation with a 2-hash path.
fn samples() -> [Vec<u8>; 3] {
    let owner = SecretKey::from_bytes(&[1; 32]);
    let mut tx = sample_transaction(&owner);
    tx.witnesses[1].program = WitnessProgram::Unknown {
        version: 3,
        program: vec![5; 7],
    };
    let mut batch: Vec<CompactTransaction> = (0..3)
        .map(|i| {
            let mut c = sample_transaction(&owner).compact();
            c.id = TxId::from([i; 32]);
            c
        })
        .collect();
    attest_batch(&SecretKey::from_bytes(&[8; 32]), &mut batch);
    attest_batch(&SecretKey::from_bytes(&[9; 32]), &mut batch);
    let compact = batch[1].clone();
    let attestation = compact.attestations[0].clone();
    assert_eq!(attestation.path.len(), 2);
    [tx.encode(), compact.encode(), attestation.encode()]
}

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
