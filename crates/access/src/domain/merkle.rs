//! The audit log's Merkle tree, exactly as RFC 6962 §2.1 defines it (leaf and node hashing
//! domain-separated), with proof generation (§2.1.1, §2.1.2) and proof verification (RFC 9162
//! §2.1.3.2, §2.1.4.2).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]) over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(index, D[n]): the audit path of leaf `index`, from the leaf's sibling up.
/// `None` when `index` is not below the tree size.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(leaves, index, &mut proof);
    Some(proof)
}

fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(&leaves[..k], m, out);
        out.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], m - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// PROOF(m, D[n]): the consistency proof between the first `m` leaves and all of them.
/// `None` unless 1 <= m <= n.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    if m == 0 || m > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    subproof(leaves, m, true, &mut proof);
    Some(proof)
}

fn subproof(leaves: &[Hash], m: usize, complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(&leaves[..k], m, complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(&leaves[k..], m - k, false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Why a proof did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the leaf index is not below the tree size")]
    IndexOutOfRange,
    #[error("the tree sizes are not ordered (1 <= first <= second)")]
    SizesOutOfOrder,
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// The walk both verifications make along a proof (RFC 9162 §2.1.3.2 and §2.1.4.2), from node
/// `fnode` of a level whose last node is `snode`: `step` takes each hash and whether it is the
/// left sibling. A proof that ends before or after the root is WrongLength.
fn walk_proof(
    mut fnode: u64,
    mut snode: u64,
    proof: &[Hash],
    mut step: impl FnMut(&Hash, bool),
) -> Result<(), ProofError> {
    for hash in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        let left = fnode & 1 == 1 || fnode == snode;
        step(hash, left);
        if left {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: verifies that `leaf` is leaf `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    expected_root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange);
    }
    let mut r = *leaf;
    walk_proof(index, size - 1, proof, |p, left| {
        r = if left {
            node_hash(p, &r)
        } else {
            node_hash(&r, p)
        };
    })?;
    if &r != expected_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `first` leaves with `first_root` is a prefix of
/// the tree of `second` leaves with `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::SizesOutOfOrder);
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    walk_proof(fnode, snode, rest, |c, left| {
        if left {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    })?;
    if &fr != first_root || &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The roots of the perfect subtrees covering a growing log (its "frontier"), so the latest root
/// costs O(log n) instead of rehashing every leaf.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    // (height, root) of each perfect subtree, largest first.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// MTH of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Certificate Transparency reference test vectors (leaves and roots of trees of 1 to 8).
    fn ct_leaves() -> Vec<Hash> {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        data.iter().map(|d| leaf_hash(d)).collect()
    }

    fn h(hex_str: &str) -> Hash {
        hex::decode(hex_str).unwrap().try_into().unwrap()
    }

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_ct_vectors() {
        let leaves = ct_leaves();
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut frontier = Frontier::default();
        for (n, expected) in CT_ROOTS.iter().enumerate() {
            assert_eq!(
                hex::encode(root(&leaves[..=n])),
                *expected,
                "size {}",
                n + 1
            );
            frontier.push(leaves[n]);
            assert_eq!(
                hex::encode(frontier.root()),
                *expected,
                "frontier size {}",
                n + 1
            );
        }
    }

    #[test]
    fn proofs_match_the_ct_vectors() {
        let leaves = ct_leaves();
        assert_eq!(
            inclusion_proof(&leaves, 0).unwrap(),
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        assert_eq!(
            consistency_proof(&leaves, 1).unwrap(),
            inclusion_proof(&leaves, 0).unwrap()
        );
        assert_eq!(
            consistency_proof(&leaves, 6).unwrap(),
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
        assert_eq!(
            consistency_proof(&leaves[..5], 2).unwrap(),
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ]
        );
    }

    fn many(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_generated_proof_verifies_and_altered_ones_do_not() {
        let leaves = many(37);
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let r = root(tree);
            for i in 0..n {
                let proof = inclusion_proof(tree, i).unwrap();
                verify_inclusion(i as u64, n as u64, &tree[i], &proof, &r).unwrap();
                assert!(
                    verify_inclusion(i as u64, n as u64, &leaf_hash(b"x"), &proof, &r).is_err()
                );
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert_ne!(first, &bad[0]);
                    assert!(verify_inclusion(i as u64, n as u64, &tree[i], &bad, &r).is_err());
                    assert!(
                        verify_inclusion(i as u64, n as u64, &tree[i], &proof[1..], &r).is_err()
                    );
                }
            }
            for m in 1..=n {
                let proof = consistency_proof(tree, m).unwrap();
                let first_root = root(&tree[..m]);
                verify_consistency(m as u64, n as u64, &first_root, &r, &proof).unwrap();
                let mut altered = tree[..m].to_vec();
                altered[m / 2] = leaf_hash(b"tampered");
                assert!(
                    verify_consistency(m as u64, n as u64, &root(&altered), &r, &proof).is_err(),
                    "m={m} n={n}"
                );
                if !proof.is_empty() {
                    assert!(
                        verify_consistency(m as u64, n as u64, &first_root, &r, &proof[1..])
                            .is_err()
                    );
                }
            }
        }
        assert_eq!(inclusion_proof(&leaves, 37), None);
        assert_eq!(consistency_proof(&leaves, 0), None);
        assert_eq!(
            verify_inclusion(5, 5, &leaves[0], &[], &leaves[0]),
            Err(ProofError::IndexOutOfRange)
        );
        assert_eq!(
            verify_consistency(6, 5, &leaves[0], &leaves[0], &[]),
            Err(ProofError::SizesOutOfOrder)
        );
    }
}
