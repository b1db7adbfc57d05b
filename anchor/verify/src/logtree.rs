//! A growing RFC 6962 tree kept as its complete subtrees, level by level: the shape of C2SP
//! tlog-tiles.
//!
//! `levels[0]` holds the leaf hashes; `levels[k][i]` the hash of the complete subtree of the
//! `2^k` leaves from `i * 2^k`. Appending a leaf adds at most one hash per level, so the tree
//! costs about two hashes of memory per leaf, and the root, the inclusion proof and the
//! consistency proof of any earlier size are computed from `O(log^2 n)` stored hashes
//! (RFC 9162 sections 2.1.1, 2.1.3.1 and 2.1.4.1, read against a prefix of the leaves).
//!
//! A tile (C2SP tlog-tiles) at tile level `L` and index `N` is `levels[8L][256N..]`: up to
//! 256 hashes, full or partial ([`LogTree::tile`], [`tile_path`]).

use crate::merkle::{empty_root, node_hash};
use serde::{Deserialize, Serialize};

use crate::{Digest, Error, Result};

/// Hashes per full tile (C2SP tlog-tiles: tile height 8).
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;

/// A growing RFC 6962 tree (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTree {
    levels: Vec<Vec<Digest>>,
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

impl LogTree {
    /// An empty log.
    pub fn new() -> Self {
        LogTree::default()
    }

    /// The log of these leaf hashes, in order.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Digest>) -> Self {
        let mut t = LogTree::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// Leaves in the log.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Digest) -> u64 {
        let index = self.size();
        let mut h = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(h);
            // A complete pair closes a subtree one level up.
            if !row.len().is_multiple_of(2) {
                break;
            }
            h = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
        index
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Digest> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// `MTH(D[lo..hi])` for `lo < hi <= size` where `lo` is a multiple of the largest power
    /// of two not above `hi - lo` (every range RFC 9162's recursion asks for is).
    fn range(&self, lo: u64, hi: u64) -> Digest {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(lo >> k) as usize];
        }
        let k = split(n);
        node_hash(&self.range(lo, lo + k), &self.range(lo + k, hi))
    }

    /// The root of the first `size` leaves (`None` beyond the log's size).
    pub fn root_at(&self, size: u64) -> Option<Digest> {
        match size {
            0 => Some(empty_root()),
            s if s <= self.size() => Some(self.range(0, s)),
            _ => None,
        }
    }

    /// The root of the whole log.
    pub fn root(&self) -> Digest {
        self.root_at(self.size()).unwrap_or_else(empty_root)
    }

    /// The RFC 9162 inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Digest>> {
        if index >= size || size > self.size() {
            return None;
        }
        // PATH(m, D[lo..hi]), iteratively: collect from the root down, return leaf first.
        let mut out = Vec::new();
        let (mut lo, mut hi, m) = (0, size, index);
        while hi - lo > 1 {
            let k = split(hi - lo);
            if m < lo + k {
                out.push(self.range(lo + k, hi));
                hi = lo + k;
            } else {
                out.push(self.range(lo, lo + k));
                lo += k;
            }
        }
        out.reverse();
        Some(out)
    }

    /// The RFC 9162 consistency proof from the first `old` leaves to the first `new`
    /// (`0 < old <= new <= size`; empty when they are equal).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Digest>> {
        if old == 0 || old > new || new > self.size() {
            return None;
        }
        // SUBPROOF(m, D[lo..hi], b), iteratively; the hashes come out root first.
        let mut out = Vec::new();
        let (mut lo, hi_start, mut m, mut b) = (0, new, old, true);
        let mut hi = hi_start;
        loop {
            let n = hi - lo;
            if m == n {
                if !b {
                    out.push(self.range(lo, hi));
                }
                break;
            }
            let k = split(n);
            if m <= k {
                out.push(self.range(lo + k, hi));
                hi = lo + k;
            } else {
                out.push(self.range(lo, lo + k));
                lo += k;
                m -= k;
                b = false;
            }
        }
        out.reverse();
        Some(out)
    }

    /// The hashes of tile `index` at tile level `level` in the tree of the first `size`
    /// leaves: full (256 hashes) or the partial tile of that size (`None` when the tree of
    /// that size has no such tile).
    pub fn tile(&self, level: u32, index: u64, size: u64) -> Option<&[Digest]> {
        if size > self.size() {
            return None;
        }
        let tree_level = (level * TILE_HEIGHT) as usize;
        let row = self.levels.get(tree_level)?;
        // Complete nodes at that tree level in the tree of `size` leaves.
        let nodes = size >> tree_level;
        let start = index.checked_mul(TILE_WIDTH)?;
        if start >= nodes {
            return None;
        }
        let end = (start + TILE_WIDTH).min(nodes);
        row.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// Every tile of the tree of `size` leaves whose contents differ from those of the tree
    /// of `since` leaves, as `(level, index, width)`: what a writer publishes after growing
    /// from `since` to `size`.
    pub fn tiles_changed(&self, since: u64, size: u64) -> Vec<(u32, u64, u64)> {
        let mut out = Vec::new();
        let mut level = 0u32;
        loop {
            let shift = level * TILE_HEIGHT;
            if shift >= 64 {
                break;
            }
            let nodes = size >> shift;
            if nodes == 0 {
                break;
            }
            let before = since >> shift;
            if nodes > before {
                let first = before / TILE_WIDTH;
                let last = (nodes - 1) / TILE_WIDTH;
                for index in first..=last {
                    let width = (nodes - index * TILE_WIDTH).min(TILE_WIDTH);
                    out.push((level, index, width));
                }
            }
            level += 1;
        }
        out
    }
}

/// The right edge of a log (its compact range): the roots of the complete subtrees that
/// make up its first `size` leaves, largest first, one per bit set in `size`. Enough to
/// compute the root and to extend the log leaf by leaf: what a monitor keeps instead of the
/// leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frontier {
    /// Leaves so far.
    pub size: u64,
    /// The complete subtrees' roots, left to right.
    pub nodes: Vec<Digest>,
}

impl Frontier {
    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Digest) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// Whether the nodes fit the size (one per bit set): a frontier read from a file is
    /// checked with this before use.
    pub fn is_well_formed(&self) -> bool {
        self.nodes.len() == self.size.count_ones() as usize
    }

    /// The root of the leaves so far.
    pub fn root(&self) -> Digest {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |r, left| node_hash(left, &r))
    }
}

/// A tree head: the log's size and its root at that size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Leaves.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    pub root: Digest,
}

/// A consistency proof between two sizes of the log (`veritrace consistency`,
/// `GET /v1/log/consistency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// `veritrace.consistency/1`.
    pub format: String,
    /// The older tree head.
    pub from: TreeHead,
    /// The newer tree head.
    pub to: TreeHead,
    /// The RFC 9162 proof hashes (empty when the sizes are equal or `from` is 0).
    pub proof: Vec<Digest>,
}

/// The format string of [`ConsistencyProof`].
pub const CONSISTENCY_FORMAT: &str = "veritrace.consistency/1";

impl ConsistencyProof {
    /// Checks the proof's hashes against its two tree heads.
    pub fn verify(&self) -> Result<()> {
        crate::merkle::verify_consistency(
            self.from.size,
            self.to.size,
            &self.from.root,
            &self.to.root,
            &self.proof,
        )
    }
}

/// The C2SP tlog-tiles path element of a tile or entry bundle index: groups of three
/// digits, every group but the last prefixed with `x` (`1234067` is `x001/x234/067`).
pub fn index_path(index: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    groups.reverse();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of a tile below the log's prefix: `tile/{L}/{N}` for a full tile,
/// `tile/{L}/{N}.p/{W}` for a partial one (C2SP tlog-tiles).
pub fn tile_path(level: u32, index: u64, width: u64) -> String {
    partial(format!("tile/{level}/{}", index_path(index)), width)
}

/// The path of an entry bundle: `tile/entries/{N}[.p/{W}]`.
pub fn entries_path(index: u64, width: u64) -> String {
    partial(format!("tile/entries/{}", index_path(index)), width)
}

fn partial(p: String, width: u64) -> String {
    if width == TILE_WIDTH {
        p
    } else {
        format!("{p}.p/{width}")
    }
}

/// What a tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileRef {
    /// A hash tile: tile level, index, width.
    Hashes(u32, u64, u64),
    /// An entry bundle: index, width.
    Entries(u64, u64),
}

/// Parses a tile path below `tile/` (`0/x001/234`, `entries/005.p/17`), strictly: no
/// leading zeros beyond the three digits of a group, widths 1 to 255 for partial tiles,
/// tile levels 0 to 63.
pub fn parse_tile_path(path: &str) -> Result<TileRef> {
    let bad = |why: &str| Error::Malformed {
        what: "tile path",
        detail: format!("{path:?}: {why}"),
    };
    let (kind, rest) = path.split_once('/').ok_or_else(|| bad("no level"))?;
    let (idx, width) = match rest.split_once(".p/") {
        Some((i, w)) => {
            if w.is_empty()
                || w.len() > 3
                || !w.bytes().all(|b| b.is_ascii_digit())
                || w.starts_with('0')
            {
                return Err(bad("a partial width is 1 to 255 without leading zeros"));
            }
            let w: u64 = w.parse().map_err(|_| bad("width"))?;
            if w == 0 || w >= TILE_WIDTH {
                return Err(bad("a partial width is 1 to 255"));
            }
            (i, w)
        }
        None => (rest, TILE_WIDTH),
    };
    let groups: Vec<&str> = idx.split('/').collect();
    if groups.len() > 7 {
        return Err(bad("too many index groups"));
    }
    let mut index: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i + 1 < groups.len() {
            g.strip_prefix('x')
                .ok_or_else(|| bad("groups before the last start with x"))?
        } else {
            g
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("index groups are three digits"));
        }
        let d: u64 = digits.parse().map_err(|_| bad("index"))?;
        index = index
            .checked_mul(1000)
            .and_then(|v| v.checked_add(d))
            .ok_or_else(|| bad("index too large"))?;
    }
    if index_path(index) != idx {
        return Err(bad("not the canonical index path"));
    }
    if kind == "entries" {
        return Ok(TileRef::Entries(index, width));
    }
    if kind.is_empty()
        || kind.len() > 2
        || !kind.bytes().all(|b| b.is_ascii_digit())
        || (kind.len() > 1 && kind.starts_with('0'))
    {
        return Err(bad("the level is a number from 0 to 63"));
    }
    let level: u32 = kind.parse().map_err(|_| bad("level"))?;
    if level > 63 {
        return Err(bad("the level is a number from 0 to 63"));
    }
    Ok(TileRef::Hashes(level, index, width))
}

/// An entry bundle's bytes: each entry as a big-endian `u16` length and its bytes.
pub fn entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| Error::Malformed {
            what: "log entry",
            detail: format!("{} bytes, over 65,535", e.len()),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries.
pub fn read_entry_bundle(mut bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 2 {
            return Err(Error::Malformed {
                what: "entry bundle",
                detail: "it ends inside a length".into(),
            });
        }
        let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
        let rest = &bytes[2..];
        if rest.len() < len {
            return Err(Error::Malformed {
                what: "entry bundle",
                detail: format!("an entry of {len} bytes runs past its end"),
            });
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, leaf_hash};

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn roots_and_proofs_of_every_prefix_equal_the_slice_trees() {
        let all = leaves(140);
        let log = LogTree::from_leaves(all.iter().copied());
        assert_eq!(log.size(), 140);
        for n in 0..=140usize {
            assert_eq!(
                log.root_at(n as u64),
                Some(merkle::root(&all[..n])),
                "root {n}"
            );
            let tree = merkle::Tree::new(&all[..n]);
            for i in 0..n {
                assert_eq!(
                    log.inclusion_proof(i as u64, n as u64),
                    tree.audit_path(i),
                    "path {i} of {n}"
                );
            }
            for m in 1..=n {
                assert_eq!(
                    log.consistency_proof(m as u64, n as u64),
                    merkle::consistency_proof(&all[..n], m),
                    "consistency {m} -> {n}"
                );
            }
        }
        assert_eq!(log.root_at(141), None);
        assert_eq!(log.inclusion_proof(3, 141), None);
        assert_eq!(log.inclusion_proof(140, 140), None);
        assert_eq!(log.consistency_proof(0, 5), None);
        assert_eq!(log.consistency_proof(6, 5), None);
    }

    #[test]
    fn a_frontier_has_the_root_of_every_prefix() {
        let all = leaves(300);
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        for (i, l) in all.iter().enumerate() {
            f.push(*l);
            assert!(f.is_well_formed());
            assert_eq!(f.root(), merkle::root(&all[..=i]), "{}", i + 1);
        }
        let back: Frontier =
            serde_json::from_str(&serde_json::to_string(&f).expect("json")).expect("read");
        assert_eq!(back, f);
        assert!(
            !Frontier {
                size: 3,
                nodes: vec![all[0]]
            }
            .is_well_formed()
        );
    }

    #[test]
    fn tiles_are_the_stored_levels_and_change_only_at_the_right_edge() {
        let all = leaves(70_000);
        let log = LogTree::from_leaves(all.iter().copied());
        // Level 0: leaf hashes.
        assert_eq!(
            log.tile(0, 0, 70_000).map(<[Digest]>::to_vec),
            Some(all[..256].to_vec())
        );
        let last = log.tile(0, 273, 70_000).expect("partial");
        assert_eq!(last.len(), 70_000 - 273 * 256);
        // Level 1 holds roots of 256-leaf subtrees.
        let t1 = log.tile(1, 0, 70_000).expect("level 1");
        assert_eq!(t1.len(), 256);
        assert_eq!(t1[3], merkle::root(&all[3 * 256..4 * 256]));
        assert_eq!(log.tile(1, 1, 70_000).map(<[Digest]>::len), Some(273 - 256));
        // Level 2: one partial tile of one node (65,536 leaves).
        assert_eq!(
            log.tile(2, 0, 70_000),
            Some(&[merkle::root(&all[..65_536])][..])
        );
        assert_eq!(log.tile(3, 0, 70_000), None);
        // Growing from 65,000 to 70,000 touches level-0 tiles 253..=273, level-1 tile 0
        // (now full) and 1, and the new level-2 tile.
        let changed = log.tiles_changed(65_000, 70_000);
        assert_eq!(changed.first(), Some(&(0, 253, 256)));
        assert!(changed.contains(&(0, 273, 70_000 - 273 * 256)));
        assert!(changed.contains(&(1, 0, 256)));
        assert!(changed.contains(&(1, 1, 17)));
        assert!(changed.contains(&(2, 0, 1)));
        assert_eq!(changed.len(), 21 + 2 + 1);
        assert!(log.tiles_changed(70_000, 70_000).is_empty());
    }

    /// Go's tile client (ported in `tlog_tiles`) reads tiles straight from the tree.
    struct Tiles<'a>(&'a LogTree, u64);

    impl tlog_tiles::tile::TileReader for Tiles<'_> {
        fn height(&self) -> u8 {
            8
        }
        fn read_tiles(
            &self,
            tiles: &[tlog_tiles::tile::Tile],
        ) -> Result<Vec<Vec<u8>>, tlog_tiles::tlog::Error> {
            Ok(tiles
                .iter()
                .map(|t| {
                    let got = self
                        .0
                        .tile(u32::from(t.level()), t.level_index(), self.1)
                        .expect("tile");
                    assert_eq!(got.len() as u32, t.width(), "{}", t.path());
                    // Go's sumdb paths name the height; C2SP's do not.
                    assert_eq!(
                        tile_path(u32::from(t.level()), t.level_index(), u64::from(t.width())),
                        t.path().replacen("tile/8/", "tile/", 1)
                    );
                    got.iter().flat_map(|d| d.0).collect()
                })
                .collect())
        }
        fn save_tiles(&self, _: &[tlog_tiles::tile::Tile], _: &[Vec<u8>]) {}
    }

    #[test]
    fn a_tile_client_reads_roots_and_proofs_from_the_tiles_and_publishes_the_same_tiles() {
        let all = leaves(66_000);
        let log = LogTree::from_leaves(all.iter().copied());
        for (n, m) in [
            (1u64, 1u64),
            (255, 17),
            (256, 256),
            (257, 1),
            (65_536, 300),
            (66_000, 65_537),
        ] {
            let root = log.root_at(n).expect("root");
            let tiles = Tiles(&log, n);
            let r =
                tlog_tiles::tile::TileHashReader::new(n, tlog_tiles::tlog::Hash(root.0), &tiles);
            assert_eq!(
                tlog_tiles::tlog::tree_hash(n, &r).expect("tree hash").0,
                root.0,
                "{n}"
            );
            let theirs = tlog_tiles::tlog::prove_tree(n, m, &r).expect("prove tree");
            let ours = log.consistency_proof(m, n).expect("ours");
            assert_eq!(
                ours,
                theirs.into_iter().map(|h| Digest(h.0)).collect::<Vec<_>>(),
                "{m} -> {n}"
            );
            let rec = tlog_tiles::tlog::prove_record(n, m - 1, &r).expect("prove record");
            let ours = log.inclusion_proof(m - 1, n).expect("ours");
            assert_eq!(
                ours,
                rec.into_iter().map(|h| Digest(h.0)).collect::<Vec<_>>(),
                "{m} in {n}"
            );
        }
        for (old, new) in [
            (0u64, 1u64),
            (100, 101),
            (1023, 1025),
            (1024, 1030),
            (1030, 10_000),
            (65_000, 66_000),
            (5, 5),
        ] {
            let theirs: Vec<(u32, u64, u64)> = tlog_tiles::tile::Tile::new_tiles(8, old, new)
                .iter()
                .map(|t| (u32::from(t.level()), t.level_index(), u64::from(t.width())))
                .collect();
            assert_eq!(log.tiles_changed(old, new), theirs, "{old} -> {new}");
        }
    }

    #[test]
    fn tile_paths_follow_c2sp() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 5, 17), "tile/1/005.p/17");
        assert_eq!(entries_path(0, 3), "tile/entries/000.p/3");
        assert_eq!(
            parse_tile_path("0/x001/x234/067").expect("ok"),
            TileRef::Hashes(0, 1_234_067, 256)
        );
        assert_eq!(
            parse_tile_path("entries/005.p/17").expect("ok"),
            TileRef::Entries(5, 17)
        );
        for bad in [
            "0/x000/001",
            "0/1",
            "0/0001",
            "0/001.p/0",
            "0/001.p/256",
            "0/001.p/07",
            "64/000",
            "00/000",
            "0/001/",
            "0/x001",
            "a/000",
            "",
            "0",
            "0/001.p/",
            "1/x1000/000",
        ] {
            assert!(parse_tile_path(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn entry_bundles_round_trip_and_refuse_truncation() {
        let b = entry_bundle([&b"ab"[..], b"", b"xyz"]).expect("bundle");
        assert_eq!(b, [0, 2, b'a', b'b', 0, 0, 0, 3, b'x', b'y', b'z']);
        assert_eq!(
            read_entry_bundle(&b).expect("read"),
            vec![&b"ab"[..], b"", b"xyz"]
        );
        assert!(read_entry_bundle(&b[..b.len() - 1]).is_err());
        assert!(read_entry_bundle(&b[..1]).is_err());
        assert!(entry_bundle([&vec![0u8; 70_000][..]]).is_err());
    }
}
