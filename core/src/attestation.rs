//! Batch attestations: a sentinel vouches for every transaction it validated with one
//! signature per batch.
//!
//! The sentinel builds a Merkle tree over the [`CompactTransaction::hash`] of each
//! transaction in the batch (leaves are already domain-separated with a 0x00 prefix; inner
//! nodes are `SHA-256(0x01 ‖ left ‖ right)`; the leaf count is padded to a power of two
//! with all-zero nodes) and signs `"cbdc/attestation/v1" ‖ root`. Each transaction carries
//! its leaf index and the sibling path, so a verifier needs a few hashes per transaction
//! and one signature check per distinct root, which [`AttestationVerifier`] caches.
//!
//! Attestation layout: `sentinel[32] ‖ root[32] ‖ signature[64] ‖ leaf_index u32 ‖
//! list<Hash> path`.

use crate::encoding::{put_list, put_u32, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, IdMap, IdSet};
use crate::keys::{verify, PublicKey, SecretKey, Signature, SignatureCheck};
use crate::transaction::CompactTransaction;
use std::sync::Mutex;

/// Deepest Merkle path accepted (batches of up to 2^32 transactions).
pub const MAX_MERKLE_DEPTH: usize = 32;
/// Smallest encoded attestation (empty path).
pub const MIN_ATTESTATION_SIZE: usize = 32 + 32 + 64 + 4 + 4;
/// Prefix of the message a sentinel signs, so that an attestation signature can never be
/// mistaken for a transaction witness.
pub const ATTESTATION_DOMAIN: &[u8] = b"cbdc/attestation/v1";
/// Verified roots remembered by an [`AttestationVerifier`] before its cache is reset.
pub const ROOT_CACHE_CAPACITY: usize = 65_536;

/// One sentinel's statement that a transaction passed its validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// The attesting sentinel's key.
    pub sentinel: PublicKey,
    /// Root of the batch's Merkle tree.
    pub root: Hash,
    /// The sentinel's signature of [`root_message`].
    pub signature: Signature,
    /// Position of this transaction's leaf in the batch.
    pub leaf_index: u32,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

/// Why an attestation was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// The signer is not one of the cluster's sentinels.
    #[error("attestation by unknown sentinel {0}")]
    UnknownSentinel(PublicKey),
    /// The Merkle path does not lead from this transaction to the signed root.
    #[error("attestation path does not match the root")]
    BadProof,
    /// The root's signature does not verify.
    #[error("attestation signature is invalid")]
    BadSignature,
    /// Fewer distinct sentinels vouched for the transaction than the cluster requires.
    #[error("{valid} valid attestations from distinct sentinels, {required} required")]
    BelowThreshold {
        /// Distinct sentinels with a valid attestation.
        valid: usize,
        /// The cluster's threshold.
        required: usize,
    },
}

/// The bytes a sentinel signs for a batch root.
pub fn root_message(root: &Hash) -> Vec<u8> {
    [ATTESTATION_DOMAIN, root.as_bytes()].concat()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[0x01], left.as_bytes(), right.as_bytes()])
}

/// A Merkle tree over a batch's leaf hashes, kept whole so that every proof can be read
/// off it.
pub struct MerkleTree {
    /// `levels[0]` are the padded leaves; the last level is the root alone.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree. An empty batch has the all-zero root.
    pub fn new(leaves: &[Hash]) -> Self {
        let width = leaves.len().max(1).next_power_of_two();
        let mut level = leaves.to_vec();
        level.resize(width, Hash::ZERO);
        let mut levels = vec![level];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
            levels.push(above);
        }
        MerkleTree { levels }
    }

    /// The root.
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(Hash::ZERO)
    }

    /// The sibling path of leaf `index`, bottom up.
    pub fn proof(&self, index: usize) -> Vec<Hash> {
        let mut path = Vec::with_capacity(self.levels.len().saturating_sub(1));
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            path.push(level[i ^ 1]);
            i /= 2;
        }
        path
    }
}

/// Whether `index` names a leaf of a tree as deep as `path` is long.
fn fits(index: u32, path: &[Hash]) -> bool {
    path.len() <= MAX_MERKLE_DEPTH && (path.len() >= 32 || u64::from(index) >> path.len() == 0)
}

/// The parent of the node at position `index` of its level, given its sibling.
fn parent(node: &Hash, index: u32, sibling: &Hash) -> Hash {
    if index & 1 == 0 {
        node_hash(node, sibling)
    } else {
        node_hash(sibling, node)
    }
}

/// The root reached from `leaf` at `index` along `path`, or `None` when the index does
/// not fit the path's depth.
pub fn root_from_proof(leaf: &Hash, index: u32, path: &[Hash]) -> Option<Hash> {
    if !fits(index, path) {
        return None;
    }
    let mut node = *leaf;
    let mut i = index;
    for sibling in path {
        node = parent(&node, i, sibling);
        i >>= 1;
    }
    Some(node)
}

/// Nodes of batch trees already proven to lead to their root, remembered while one run of
/// transactions is verified ([`AttestationVerifier::verify_all`]).
///
/// The transactions of one sentinel batch share most of their Merkle paths: checking each
/// path whole hashes the top of the tree once per transaction, about ten hashes each for
/// a batch of 512. Once a path is proven, every node on it and every sibling it names
/// are known; the next path of the same root hashes only up to the first known node (for
/// a neighbour, one level up) and compares the rest of its steps with the known
/// siblings. It accepts exactly the paths that hashing them whole accepts (short of a
/// SHA-256 collision), whatever else the run holds. Leaves and inner nodes hash with
/// different prefixes, so a known node stands only for the subtree under it.
#[derive(Default)]
struct ProvenNodes {
    /// `(root, level, position in the level)` → the node's hash; level 0 are the leaves,
    /// and the root itself sits at the tree's depth, position 0.
    nodes: IdMap<(Hash, u8, u32), Hash>,
    /// Root signatures this run already found valid: a run holds a few sentinel batches,
    /// so a short list spares each transaction the shared cache's lock.
    signed_roots: Vec<SignedRoot>,
}

impl ProvenNodes {
    /// Whether `leaf` at `index` leads to `root` along `path`, using and extending what is
    /// already proven.
    fn prove(&mut self, leaf: &Hash, index: u32, path: &[Hash], root: &Hash) -> bool {
        if !fits(index, path) {
            return false;
        }
        // `fits` bounds the depth by 32, so every level fits a `u8`.
        let key = |level: usize, position: u32| (*root, level as u8, position);
        // Nodes this path computes and the siblings it names, known once it is proven.
        let mut fresh: Vec<((Hash, u8, u32), Hash)> = Vec::with_capacity(2 * path.len() + 1);
        let mut node = *leaf;
        let mut i = index;
        let mut level = 0;
        while level < path.len() {
            if let Some(known) = self.nodes.get(&key(level, i)) {
                if *known != node {
                    return false;
                }
                break;
            }
            fresh.push((key(level, i), node));
            fresh.push((key(level, i ^ 1), path[level]));
            node = parent(&node, i, &path[level]);
            i >>= 1;
            level += 1;
        }
        if level == path.len() {
            // Hashed all the way up: the top must be the root.
            if node != *root {
                return false;
            }
            fresh.push((key(level, 0), node));
        } else {
            // Met a known node: the rest of the path must name the known siblings, and
            // end where the known root is.
            let rest_known = (level..path.len())
                .all(|l| self.nodes.get(&key(l, (index >> l) ^ 1)) == Some(&path[l]));
            if !rest_known || self.nodes.get(&key(path.len(), 0)) != Some(root) {
                return false;
            }
        }
        self.nodes.extend(fresh);
        true
    }
}

/// Attests a batch: appends this sentinel's attestation to every transaction in `txs`.
pub fn attest_batch(key: &SecretKey, txs: &mut [CompactTransaction]) {
    let leaves: Vec<Hash> = txs.iter().map(CompactTransaction::hash).collect();
    let tree = MerkleTree::new(&leaves);
    let root = tree.root();
    let signature = key.sign(&root_message(&root));
    let sentinel = key.public_key();
    for (i, tx) in txs.iter_mut().enumerate() {
        tx.attestations.push(Attestation {
            sentinel,
            root,
            signature,
            leaf_index: i as u32,
            path: tree.proof(i),
        });
    }
}

/// Checks attestations against a cluster's sentinel keys and threshold, caching roots
/// whose signature already verified.
#[derive(Debug)]
pub struct AttestationVerifier {
    sentinels: IdSet<PublicKey>,
    threshold: usize,
    /// `(sentinel, root, signature)` triples already verified. A `std` mutex: it is held
    /// for a lookup or an insert, never across a signature check or an await.
    verified: Mutex<IdSet<SignedRoot>>,
}

/// A sentinel's signature of a batch root, as an attestation carries it.
type SignedRoot = (PublicKey, Hash, Signature);

impl AttestationVerifier {
    /// A verifier trusting `sentinels` and requiring `threshold` distinct ones (0 turns
    /// checking off).
    pub fn new(sentinels: impl IntoIterator<Item = PublicKey>, threshold: usize) -> Self {
        AttestationVerifier {
            sentinels: sentinels.into_iter().collect(),
            threshold,
            verified: Mutex::new(IdSet::default()),
        }
    }

    /// Checks one attestation of `tx`.
    pub fn verify_one(
        &self,
        tx: &CompactTransaction,
        attestation: &Attestation,
    ) -> Result<(), AttestationError> {
        self.verify_leaf(&tx.hash(), attestation, None)
    }

    fn verify_leaf(
        &self,
        leaf: &Hash,
        a: &Attestation,
        proven: Option<&mut ProvenNodes>,
    ) -> Result<(), AttestationError> {
        if !self.sentinels.contains(&a.sentinel) {
            return Err(AttestationError::UnknownSentinel(a.sentinel));
        }
        let entry = (a.sentinel, a.root, a.signature);
        let signed_roots = match proven {
            Some(proven) => {
                if !proven.prove(leaf, a.leaf_index, &a.path, &a.root) {
                    return Err(AttestationError::BadProof);
                }
                if proven.signed_roots.contains(&entry) {
                    return Ok(());
                }
                Some(&mut proven.signed_roots)
            }
            None if root_from_proof(leaf, a.leaf_index, &a.path) == Some(a.root) => None,
            None => return Err(AttestationError::BadProof),
        };
        if self.cache().contains(&entry) {
            if let Some(roots) = signed_roots {
                roots.push(entry);
            }
            return Ok(());
        }
        let message = root_message(&a.root);
        verify(&SignatureCheck {
            key: &a.sentinel,
            message: &message,
            signature: &a.signature,
        })
        .map_err(|_| AttestationError::BadSignature)?;
        let mut cache = self.cache();
        if cache.len() >= ROOT_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(entry);
        if let Some(roots) = signed_roots {
            roots.push(entry);
        }
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, IdSet<SignedRoot>> {
        // A panic while holding the lock cannot leave the set inconsistent (inserts are
        // atomic), so a poisoned lock is safe to keep using.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that at least `threshold` distinct known sentinels validly attest `tx`.
    pub fn verify(&self, tx: &CompactTransaction) -> Result<(), AttestationError> {
        self.verify_with(tx, None)
    }

    /// [`AttestationVerifier::verify`] of each of `txs`, in order, hashing the nodes that
    /// transactions of one batch share once (see `ProvenNodes`). For a run of
    /// transactions, such as a dtx or a shard's slice of one.
    pub fn verify_all<'a>(
        &self,
        txs: impl IntoIterator<Item = &'a CompactTransaction>,
    ) -> Vec<Result<(), AttestationError>> {
        let mut proven = ProvenNodes::default();
        txs.into_iter()
            .map(|tx| self.verify_with(tx, Some(&mut proven)))
            .collect()
    }

    fn verify_with(
        &self,
        tx: &CompactTransaction,
        mut proven: Option<&mut ProvenNodes>,
    ) -> Result<(), AttestationError> {
        if self.threshold == 0 {
            return Ok(());
        }
        let leaf = tx.hash();
        // Distinct sentinels whose attestation held so far: a handful at most, and none
        // is ever stored with the usual threshold of one.
        let mut distinct: Vec<PublicKey> = Vec::new();
        for a in &tx.attestations {
            if !distinct.contains(&a.sentinel)
                && self.verify_leaf(&leaf, a, proven.as_deref_mut()).is_ok()
            {
                if distinct.len() + 1 >= self.threshold {
                    return Ok(());
                }
                distinct.push(a.sentinel);
            }
        }
        Err(AttestationError::BelowThreshold {
            valid: distinct.len(),
            required: self.threshold,
        })
    }
}

impl Attestation {
    /// Length of the canonical encoding, so that an encoder can size its buffer once.
    pub fn encoded_len(&self) -> usize {
        MIN_ATTESTATION_SIZE + self.path.len() * 32
    }
}

impl Encode for Attestation {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sentinel.0);
        out.extend_from_slice(self.root.as_bytes());
        out.extend_from_slice(&self.signature.0);
        put_u32(out, self.leaf_index);
        put_list(out, &self.path);
    }
}

impl Decode for Attestation {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Attestation {
            sentinel: PublicKey(r.array("attestation sentinel")?),
            root: r.hash("attestation root")?,
            signature: Signature(r.array("attestation signature")?),
            leaf_index: r.u32("attestation leaf index")?,
            path: r.list("attestation path", MAX_MERKLE_DEPTH, 32)?,
        })
    }
}
