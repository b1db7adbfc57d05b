//! Proof verification per core (issue 18's numbers): a `veritrace.proof/1` bundle of the
//! test vectors verified whole (JSON parse, canonical event, leaf, batch and epoch paths,
//! ledger receipt), with the key pinned and with the ledger file; the inclusion check alone
//! (leaf and audit path against a root); and a consistency proof between two log sizes.
//!
//! `cargo bench -p veritrace-verify --bench proofs`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use veritrace_verify::bundle::ProofBundle;
use veritrace_verify::merkle;
use veritrace_verify::verify::{BundleVerifier, Options, verify_bundle, verify_bundle_json};

const BUNDLE: &str = include_str!("../vectors/valid/proof-1.json");
const LEDGER: &str = include_str!("../vectors/ledger.jsonl");

fn proofs(c: &mut Criterion) {
    let key = serde_json::from_str::<serde_json::Value>(LEDGER.lines().next().expect("entry"))
        .expect("ledger entry")["public_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let pinned = Options {
        pinned_key: Some(key),
        ..Options::default()
    };
    let ledger = Options {
        ledger: Some(LEDGER.to_owned()),
        ..Options::default()
    };
    let bundle = ProofBundle::from_json(BUNDLE.as_bytes()).expect("bundle");
    let mut g = c.benchmark_group("proofs");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bundle_json_pinned_key", |b| {
        b.iter(|| verify_bundle_json(BUNDLE.as_bytes(), &pinned).expect("valid"))
    });
    g.bench_function("bundle_parsed_pinned_key", |b| {
        b.iter(|| verify_bundle(&bundle, &pinned).expect("valid"))
    });
    g.bench_function("bundle_parsed_ledger_file", |b| {
        b.iter(|| verify_bundle(&bundle, &ledger).expect("valid"))
    });
    // Bundles of one epoch through one verifier: the receipt's signature is checked once,
    // every bundle's hashes each time (from JSON text, as files arrive).
    let many = BundleVerifier::new(&pinned);
    g.bench_function("bundle_parsed_same_epoch", |b| {
        b.iter(|| many.verify(&bundle).expect("valid"))
    });
    g.bench_function("bundle_json_same_epoch", |b| {
        b.iter(|| {
            let parsed = ProofBundle::from_json(BUNDLE.as_bytes()).expect("bundle");
            many.verify(&parsed).expect("valid")
        })
    });
    // The inclusion check alone, in a batch of 10,000 leaves.
    let leaves: Vec<_> = (0u32..10_000)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let tree = merkle::Tree::new(&leaves);
    let (root, path) = (tree.root(), tree.audit_path(4_321).expect("leaf"));
    g.bench_function("inclusion_10000_leaves", |b| {
        b.iter(|| {
            merkle::verify_inclusion("batch", &leaves[4_321], 4_321, 10_000, &path, &root)
                .expect("included")
        })
    });
    // A consistency proof between two sizes of a log of 100,000 leaves.
    let log: Vec<_> = (0u32..100_000)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let (old, new) = (65_537, 100_000);
    let proof = merkle::consistency_proof(&log, old).expect("proof");
    let (r_old, r_new) = (merkle::root(&log[..old]), merkle::root(&log));
    g.bench_function("consistency_65537_to_100000", |b| {
        b.iter(|| {
            merkle::verify_consistency(old as u64, new as u64, &r_old, &r_new, &proof)
                .expect("consistent")
        })
    });
    g.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
