//! Consistency proof size and time at 10^9 leaves (BENCHMARKS.md, "The log at 10^9 leaves").
//!
//! One pass over synthetic leaf hashes (`leaf_hash(i as 8 little-endian bytes)`) builds the
//! log's right edge, the way a monitor does, and keeps the subtree hashes that the RFC 9162
//! consistency proof between two sizes is made of; the proof is then verified many times.
//! A node never needs such a pass: its tiles hold those subtrees (one tile read per level).
//!
//! `cargo run --release -p veritrace-verify --example log_billion -- [N] [M]`
//! (defaults: N = 1,000,000,000 leaves, M = 3N/4 + 12,345).

use std::time::Instant;

use veritrace_verify::Digest;
use veritrace_verify::logtree::LogTree;
use veritrace_verify::merkle::{leaf_hash, node_hash, verify_consistency};

/// The ranges `[lo, hi)` whose hashes make up `PROOF(m, D[0..n])`, in the proof's order.
fn proof_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    let split = |len: u64| 1u64 << (63 - (len - 1).leading_zeros());
    let mut out = Vec::new();
    let (mut lo, mut hi, mut m, mut whole) = (0u64, n, m, true);
    loop {
        let len = hi - lo;
        if m == len {
            if !whole {
                out.push((lo, hi));
            }
            break;
        }
        let k = split(len);
        if m <= k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
            m -= k;
            whole = false;
        }
    }
    out.reverse();
    out
}

/// A node of the right edge: the hash of the `2^level` leaves from `start`.
#[derive(Clone, Copy)]
struct Node {
    level: u32,
    start: u64,
    hash: Digest,
}

fn fold(nodes: &[Node]) -> Digest {
    let mut it = nodes.iter().rev();
    let last = it.next().expect("not empty").hash;
    it.fold(last, |r, left| node_hash(&left.hash, &r))
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.replace('_', "").parse().expect("a number of leaves"))
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000_000);
    let m = args.get(1).copied().unwrap_or(n / 4 * 3 + 12_345);
    assert!(0 < m && m < n, "0 < M < N");
    let ranges = proof_ranges(m, n);
    // Perfect aligned ranges complete at a known leaf; the others end at n (a suffix).
    let mut perfect: Vec<(u64, u32, u64, usize)> = Vec::new(); // (end, level, start, slot)
    for (slot, &(lo, hi)) in ranges.iter().enumerate() {
        let len = hi - lo;
        if len.is_power_of_two() && lo.is_multiple_of(len) {
            perfect.push((hi, len.trailing_zeros(), lo, slot));
        }
    }
    perfect.sort();
    let mut proof = vec![Digest::ZERO; ranges.len()];
    let mut next = 0;
    let mut stack: Vec<Node> = Vec::with_capacity(64);
    let mut old_root = Digest::ZERO;
    let started = Instant::now();
    for i in 0..n {
        // The wanted subtrees that complete with this leaf: caught as they are made (a
        // completed subtree may merge with its left sibling in the same push).
        let due = perfect[next..].iter().take_while(|p| p.0 == i + 1).count();
        let mut catch = |node: &Node| {
            for &(_, level, start, slot) in &perfect[next..next + due] {
                if node.level == level && node.start == start {
                    proof[slot] = node.hash;
                }
            }
        };
        let mut node = Node {
            level: 0,
            start: i,
            hash: leaf_hash(&i.to_le_bytes()),
        };
        catch(&node);
        while let Some(left) = stack.last().filter(|l| l.level == node.level) {
            node = Node {
                level: node.level + 1,
                start: left.start,
                hash: node_hash(&left.hash, &node.hash),
            };
            stack.pop();
            catch(&node);
        }
        stack.push(node);
        next += due;
        if i + 1 == m {
            old_root = fold(&stack);
        }
        if i > 0 && i % 100_000_000 == 0 {
            eprintln!("{i} leaves, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    let new_root = fold(&stack);
    for (slot, &(lo, hi)) in ranges.iter().enumerate() {
        if hi == n && !(hi - lo).is_power_of_two() {
            let from = stack
                .iter()
                .position(|x| x.start == lo)
                .expect("suffix start");
            proof[slot] = fold(&stack[from..]);
        }
    }
    let pass = started.elapsed();
    verify_consistency(m, n, &old_root, &new_root, &proof).expect("the proof verifies");
    let reps = 200_000u32;
    let t = Instant::now();
    for _ in 0..reps {
        verify_consistency(m, n, &old_root, &new_root, std::hint::black_box(&proof))
            .expect("verifies");
    }
    let per = t.elapsed() / reps;
    // The same proof from a tree kept as its levels (what the node's tiles hold), at a
    // size that fits in memory, for the cost of producing one.
    let small = (1u64 << 22) - 12_345;
    let tree = LogTree::from_leaves((0..small).map(|i| leaf_hash(&i.to_le_bytes())));
    let t = Instant::now();
    let mut len = 0;
    for k in 0..reps as u64 {
        len += tree
            .consistency_proof(small / 2 + 1 + k % 1000, small)
            .expect("proof")
            .len();
    }
    let make = t.elapsed() / reps;
    println!(
        "log of {n} leaves: one pass {:.1} s; consistency proof {m} -> {n}: {} hashes ({} bytes); verify {:.2} us; make from levels ({small} leaves) {:.2} us ({} hashes avg)",
        pass.as_secs_f64(),
        proof.len(),
        proof.len() * 32,
        per.as_secs_f64() * 1e6,
        make.as_secs_f64() * 1e6,
        len / reps as usize
    );
}
