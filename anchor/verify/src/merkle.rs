//! RFC 6962 / RFC 9162 Merkle trees over SHA-256.
//!
//! - leaf hash: `SHA-256(0x00 || bytes)`
//! - node hash: `SHA-256(0x01 || left || right)`
//! - a tree of `n > 1` leaves splits at the largest power of two below `n`; equivalently,
//!   built bottom-up, an odd node at the end of a level is promoted unchanged, never
//!   duplicated (duplication would let two different leaf lists share a root).
//! - the empty tree's root is `SHA-256("")`.
//!
//! Trees are built bottom-up over leaf hashes ([`leaf_hash`]), promoting odd nodes.
//! Verification ([`verify_inclusion`]) is the RFC 9162 section 2.1.3.2 algorithm, written
//! out so an auditor can read it; it shares [`node_hash`] with the builder. Consistency
//! proofs between two sizes of one growing tree ([`consistency_proof`],
//! [`verify_consistency`]) are RFC 9162 sections 2.1.4.1 and 2.1.4.2.

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

/// Root of the tree whose leaf hashes are `leaves` (in order).
pub fn root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return empty_root();
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = parent_level(&level);
    }
    level[0]
}

/// The level above `below`: pairs hashed; an odd node at the end is promoted unchanged
/// (RFC 6962), never duplicated.
fn parent_level(below: &[Digest]) -> Vec<Digest> {
    below
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node_hash(left, right),
            _ => pair[0],
        })
        .collect()
}

/// A built tree, for producing many audit paths from one set of leaves: every level kept,
/// bottom-up, so an audit path is one sibling read per level.
pub struct Tree {
    /// `levels[0]` the leaf hashes, each next level half as long (rounded up); the last
    /// holds the root. Empty for a tree of no leaves.
    levels: Vec<Vec<Digest>>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("size", &self.size())
            .field("root", &self.root())
            .finish()
    }
}

impl Tree {
    /// Builds the tree over leaf hashes.
    pub fn new(leaves: &[Digest]) -> Self {
        let mut levels = Vec::new();
        if !leaves.is_empty() {
            levels.push(leaves.to_vec());
        }
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let next = parent_level(below);
            levels.push(next);
        }
        Tree { levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// The root ([`empty_root`] for no leaves).
    pub fn root(&self) -> Digest {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_else(empty_root)
    }

    /// The RFC 9162 inclusion proof (audit path, leaf to root) of leaf `index`, or `None`
    /// when `index` is not a leaf of this tree.
    pub fn audit_path(&self, index: usize) -> Option<Vec<Digest>> {
        if index >= self.size() {
            return None;
        }
        let mut path = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            // A node without a sibling (the odd one at a level's end) is promoted: no
            // hash on the path for that level.
            if let Some(sibling) = level.get(i ^ 1) {
                path.push(*sibling);
            }
            i >>= 1;
        }
        Some(path)
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

/// The RFC 9162 (section 2.1.4.1) consistency proof that the tree of the first `old`
/// leaves is a prefix of the tree of all `leaves`; `None` unless `0 < old <= leaves.len()`
/// (every tree extends the empty one: no proof is needed). Empty when `old` is all of them.
pub fn consistency_proof(leaves: &[Digest], old: usize) -> Option<Vec<Digest>> {
    if old == 0 || old > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    subproof(old, leaves, true, &mut proof);
    Some(proof)
}

/// `SUBPROOF(m, D[n], b)` of RFC 9162: `b` is true while `m` is the whole old tree.
fn subproof(m: usize, d: &[Digest], b: bool, out: &mut Vec<Digest>) {
    let n = d.len();
    if m == n {
        if !b {
            out.push(root(d));
        }
        return;
    }
    // The largest power of two smaller than n.
    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    if m <= k {
        subproof(m, &d[..k], b, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

fn log_path(detail: String) -> Error {
    Error::BadPath {
        level: "log",
        detail,
    }
}

/// Checks an RFC 9162 consistency proof (section 2.1.4.2): the tree of `old_size` leaves
/// with root `old_root` is a prefix of the tree of `new_size` leaves with root `new_root`.
/// The empty tree is a prefix of every tree (its proof is empty); equal sizes need equal
/// roots and an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Digest,
    new_root: &Digest,
    proof: &[Digest],
) -> Result<()> {
    if old_size > new_size {
        return Err(log_path(format!(
            "the old size {old_size} is larger than the new size {new_size}: a log only grows"
        )));
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(log_path(format!(
                "{} hashes where the proof between sizes {old_size} and {new_size} has none",
                proof.len()
            )));
        }
        if old_size == new_size && old_root != new_root {
            return Err(Error::RootMismatch {
                what: "log root of the same size",
                expected: *old_root,
                computed: *new_root,
            });
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(log_path(format!(
            "an empty proof between sizes {old_size} and {new_size}"
        )));
    }
    // A power-of-two old tree is a node of the new one: the proof starts from its root.
    let mut path = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(log_path(format!(
                "the proof has {} hashes, more than the trees need",
                proof.len()
            )));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(log_path(format!(
            "the proof has {} hashes, fewer than the trees need",
            proof.len()
        )));
    }
    if fr != *old_root {
        return Err(Error::RootMismatch {
            what: "old log root",
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(Error::RootMismatch {
            what: "new log root",
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
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

    /// The largest power of two below `n` (n > 1).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// RFC 9162 section 2.1.1's definition, read literally: MTH(D[n]) splits at the largest
    /// power of two below n.
    fn mth(d: &[Digest]) -> Digest {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    /// RFC 9162 section 2.1.3.1's PATH(m, D[n]).
    fn rfc_path(m: usize, d: &[Digest]) -> Vec<Digest> {
        let n = d.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n);
        if m < k {
            let mut p = rfc_path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = rfc_path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    #[test]
    fn levels_built_bottom_up_give_the_rfc_definitions_root_and_paths() {
        let all = synthetic(130);
        for n in 0..=130usize {
            let d = &all[..n];
            let tree = Tree::new(d);
            assert_eq!(tree.size(), n);
            assert_eq!(tree.root(), mth(d), "root of {n}");
            assert_eq!(root(d), mth(d), "root of {n}");
            for m in 0..n {
                assert_eq!(
                    tree.audit_path(m),
                    Some(rfc_path(m, d)),
                    "PATH({m}, D[{n}])"
                );
            }
            assert_eq!(tree.audit_path(n), None);
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

    /// An independent implementation (Go's tlog, ported in the `tlog_tiles` crate) reads
    /// its stored hashes from a plain in-memory list.
    struct Stored(Vec<tlog_tiles::tlog::Hash>);

    impl tlog_tiles::tlog::HashReader for Stored {
        fn read_hashes(
            &self,
            indexes: &[u64],
        ) -> Result<Vec<tlog_tiles::tlog::Hash>, tlog_tiles::tlog::Error> {
            Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
        }
    }

    fn stored(leaves: &[Digest]) -> Stored {
        let mut s = Stored(Vec::new());
        for (n, l) in leaves.iter().enumerate() {
            let add = tlog_tiles::tlog::stored_hashes_for_record_hash(
                n as u64,
                tlog_tiles::tlog::Hash(l.0),
                &s,
            )
            .expect("stored hashes");
            s.0.extend(add);
        }
        s
    }

    #[test]
    fn consistency_proofs_verify_between_every_pair_of_sizes_and_agree_with_go_tlog() {
        let all = synthetic(70);
        let go = stored(&all);
        for new in 1..=all.len() {
            let new_root = root(&all[..new]);
            let go_root = tlog_tiles::tlog::tree_hash(new as u64, &go).expect("tree hash");
            assert_eq!(go_root.0, new_root.0, "root of {new}");
            for old in 1..=new {
                let old_root = root(&all[..old]);
                let proof = consistency_proof(&all[..new], old).expect("proof");
                verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof)
                    .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
                // The same proof, byte for byte, as Go's checksum database would give.
                let theirs =
                    tlog_tiles::tlog::prove_tree(new as u64, old as u64, &go).expect("go proof");
                let theirs: Vec<Digest> = theirs.into_iter().map(|h| Digest(h.0)).collect();
                assert_eq!(proof, theirs, "{old} -> {new}");
            }
        }
        // The empty tree is a prefix of any tree, with no proof.
        assert!(consistency_proof(&all, 0).is_none());
        verify_consistency(0, 5, &empty_root(), &root(&all[..5]), &[]).expect("empty");
    }

    #[test]
    fn a_rewritten_history_shrinking_or_a_wrong_proof_fails() {
        let all = synthetic(40);
        let old = 13;
        let proof = consistency_proof(&all, old).expect("proof");
        let (r_old, r_new) = (root(&all[..old]), root(&all));
        // A log that rewrote leaf 3 after size 13 has another root at 40.
        let mut rewritten = all.clone();
        rewritten[3] = leaf_hash(b"rewritten");
        let forged = consistency_proof(&rewritten, old).expect("proof");
        assert!(verify_consistency(old as u64, 40, &r_old, &root(&rewritten), &forged).is_err());
        // Shrinking, a truncated or extended proof, equal sizes with other roots.
        assert!(verify_consistency(40, 13, &r_new, &r_old, &proof).is_err());
        assert!(verify_consistency(13, 40, &r_old, &r_new, &proof[..proof.len() - 1]).is_err());
        let mut longer = proof.clone();
        longer.push(r_old);
        assert!(verify_consistency(13, 40, &r_old, &r_new, &longer).is_err());
        assert!(verify_consistency(13, 40, &r_old, &r_new, &[]).is_err());
        assert!(verify_consistency(40, 40, &r_old, &r_new, &[]).is_err());
        verify_consistency(40, 40, &r_new, &r_new, &[]).expect("same tree");
        assert!(verify_consistency(40, 40, &r_new, &r_new, &proof).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any flipped bit in either root or any proof hash fails.
        #[test]
        fn any_flipped_bit_in_a_consistency_proof_fails(new in 2usize..=200, old_seed in any::<usize>(), which in any::<usize>(), bit in 0usize..256) {
            let all = synthetic(new);
            let old = 1 + old_seed % (new - 1);
            let proof = consistency_proof(&all, old).expect("proof");
            let (r_old, r_new) = (root(&all[..old]), root(&all));
            let flip = |d: &Digest| { let mut x = *d; x.0[bit / 8] ^= 1 << (bit % 8); x };
            let target = which % (proof.len() + 2);
            let (mut a, mut b, mut p) = (r_old, r_new, proof.clone());
            if target == 0 { a = flip(&a) } else if target == 1 { b = flip(&b) } else { p[target - 2] = flip(&p[target - 2]) }
            prop_assert!(verify_consistency(old as u64, new as u64, &a, &b, &p).is_err());
        }
    }
}
