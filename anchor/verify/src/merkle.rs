//! RFC 6962 / RFC 9162 Merkle trees over SHA-256.
//!
//! - leaf hash: `SHA-256(0x00 || bytes)`
//! - node hash: `SHA-256(0x01 || left || right)`
//! - a tree of `n > 1` leaves splits at the largest power of two below `n`; equivalently,
//!   built bottom-up, an odd node at the end of a level is promoted unchanged, never
//!   duplicated (duplication would let two different leaf lists share a root).
//! - the empty tree's root is `SHA-256("")`.
//!
//! Trees are built with `rs_merkle` through [`Rfc6962Hasher`], which adds the node prefix
//! and promotes odd nodes; leaves are hashed with [`leaf_hash`] before they enter the tree.
//! Verification ([`verify_inclusion`]) is the RFC 9162 section 2.1.3.2 algorithm, written
//! out so an auditor can read it; it shares [`node_hash`] with the builder.

use sha2::{Digest as _, Sha256};

use crate::{Digest, Error, Result};

/// Hash of a leaf: `SHA-256(0x00 || bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(bytes);
    Digest(h.finalize().into())
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Digest(h.finalize().into())
}

/// Root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Digest {
    Digest(Sha256::digest([]).into())
}

/// `rs_merkle` hasher with RFC 6962 node hashing and odd-node promotion. Leaves must already
/// be leaf hashes ([`leaf_hash`]); `hash` is only the plain SHA-256 the trait asks for.
#[derive(Clone, Copy, Debug)]
pub struct Rfc6962Hasher;

impl rs_merkle::Hasher for Rfc6962Hasher {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(&Digest(*left), &Digest(*r)).0,
            // RFC 6962: a lone node is promoted to the next level unchanged.
            None => *left,
        }
    }

    fn hash_size() -> usize {
        32
    }
}

fn as_arrays(leaves: &[Digest]) -> Vec<[u8; 32]> {
    leaves.iter().map(|d| d.0).collect()
}

/// Root of the tree whose leaf hashes are `leaves` (in order).
pub fn root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return empty_root();
    }
    let tree = rs_merkle::MerkleTree::<Rfc6962Hasher>::from_leaves(&as_arrays(leaves));
    tree.root().map(Digest).unwrap_or_else(empty_root)
}

/// A built tree, for producing many audit paths from one set of leaves.
pub struct Tree {
    inner: rs_merkle::MerkleTree<Rfc6962Hasher>,
    size: usize,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("size", &self.size)
            .field("root", &self.root())
            .finish()
    }
}

impl Tree {
    /// Builds the tree over leaf hashes.
    pub fn new(leaves: &[Digest]) -> Self {
        Tree {
            inner: rs_merkle::MerkleTree::<Rfc6962Hasher>::from_leaves(&as_arrays(leaves)),
            size: leaves.len(),
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The root ([`empty_root`] for no leaves).
    pub fn root(&self) -> Digest {
        self.inner.root().map(Digest).unwrap_or_else(empty_root)
    }

    /// The RFC 9162 inclusion proof (audit path, leaf to root) of leaf `index`, or `None`
    /// when `index` is not a leaf of this tree.
    pub fn audit_path(&self, index: usize) -> Option<Vec<Digest>> {
        if index >= self.size {
            return None;
        }
        let proof = self.inner.proof(&[index]);
        Some(proof.proof_hashes().iter().copied().map(Digest).collect())
    }
}

/// Recomputes the root from a leaf hash and its audit path (RFC 9162 section 2.1.3.2) and
/// checks it against `expected_root`. `level` names the tree in errors (`batch`, `epoch`).
pub fn verify_inclusion(
    level: &'static str,
    leaf: &Digest,
    index: u64,
    size: u64,
    path: &[Digest],
    expected_root: &Digest,
) -> Result<()> {
    let computed = root_from_path(level, leaf, index, size, path)?;
    if &computed != expected_root {
        return Err(Error::RootMismatch {
            what: if level == "batch" {
                "batch root"
            } else {
                "epoch root"
            },
            expected: *expected_root,
            computed,
        });
    }
    Ok(())
}

/// The root implied by a leaf hash, its index, the tree size and the audit path.
pub fn root_from_path(
    level: &'static str,
    leaf: &Digest,
    index: u64,
    size: u64,
    path: &[Digest],
) -> Result<Digest> {
    if index >= size {
        return Err(Error::BadPath {
            level,
            detail: format!("leaf index {index} is not below tree size {size}"),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return Err(Error::BadPath {
                level,
                detail: format!(
                    "audit path has {} hashes, more than the tree needs",
                    path.len()
                ),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                // Right-most node of a level with no sibling: skip promoted levels.
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(Error::BadPath {
            level,
            detail: format!(
                "audit path has {} hashes, fewer than the tree needs",
                path.len()
            ),
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Digest {
        Digest::from_hex(s).expect("test vector hex")
    }

    /// Certificate Transparency reference leaves (transparency-dev/merkle test data).
    fn ct_leaves() -> Vec<Digest> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|x| leaf_hash(&hex::decode(x).expect("hex")))
        .collect()
    }

    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
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
    fn roots_match_certificate_transparency_vectors() {
        let leaves = ct_leaves();
        for (n, want) in CT_ROOTS.iter().enumerate() {
            assert_eq!(root(&leaves[..n]), h(want), "tree size {n}");
            assert_eq!(Tree::new(&leaves[..n]).root(), h(want), "tree size {n}");
        }
    }

    #[test]
    fn audit_paths_match_certificate_transparency_vectors() {
        let leaves = ct_leaves();
        let cases: [(usize, usize, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let tree = Tree::new(&leaves[..size]);
            let path = tree.audit_path(index).expect("index in tree");
            let want: Vec<Digest> = want.iter().map(|x| h(x)).collect();
            assert_eq!(path, want, "leaf {index} of {size}");
            verify_inclusion(
                "batch",
                &leaves[index],
                index as u64,
                size as u64,
                &path,
                &h(CT_ROOTS[size]),
            )
            .expect("reference proof verifies");
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(empty_root(), h(CT_ROOTS[0]));
        assert!(Tree::new(&[]).audit_path(0).is_none());
    }

    fn synthetic(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_tree_size_up_to_300_proves_and_verifies() {
        let all = synthetic(300);
        for n in 1..=300usize {
            let tree = Tree::new(&all[..n]);
            let r = tree.root();
            assert_eq!(r, root(&all[..n]));
            for (i, leaf) in all[..n].iter().enumerate() {
                let path = tree.audit_path(i).expect("leaf in tree");
                verify_inclusion("batch", leaf, i as u64, n as u64, &path, &r)
                    .unwrap_or_else(|e| panic!("leaf {i} of {n}: {e}"));
                // The wrong index never verifies the same path. (The tree size is not
                // authenticated by a path alone; the batch header commits to it.)
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(
                        verify_inclusion("batch", &all[i], other as u64, n as u64, &path, &r)
                            .is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_or_extended_paths_fail() {
        let all = synthetic(13);
        let tree = Tree::new(&all);
        let path = tree.audit_path(6).expect("leaf");
        let r = tree.root();
        assert!(verify_inclusion("batch", &all[6], 6, 13, &path[..path.len() - 1], &r).is_err());
        let mut longer = path.clone();
        longer.push(r);
        assert!(verify_inclusion("batch", &all[6], 6, 13, &longer, &r).is_err());
        assert!(verify_inclusion("batch", &all[6], 13, 13, &path, &r).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any single flipped bit in the leaf, any path element, or the root fails.
        #[test]
        fn any_flipped_bit_fails(n in 1usize..=300, i_seed in any::<usize>(), which in any::<usize>(), bit in 0usize..256) {
            let all = synthetic(n);
            let i = i_seed % n;
            let tree = Tree::new(&all);
            let path = tree.audit_path(i).expect("leaf");
            let r = tree.root();
            let flip = |d: &Digest| { let mut x = *d; x.0[bit / 8] ^= 1 << (bit % 8); x };
            let target = which % (path.len() + 2);
            let (mut leaf, mut p, mut rt) = (all[i], path.clone(), r);
            if target == 0 { leaf = flip(&leaf) } else if target == 1 { rt = flip(&rt) } else { p[target - 2] = flip(&p[target - 2]) }
            prop_assert!(verify_inclusion("batch", &leaf, i as u64, n as u64, &p, &rt).is_err());
        }
    }
}
