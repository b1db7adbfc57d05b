//! Proofs stay byte-for-byte the same for the same input, whatever the pipeline does inside
//! (issue 19: a faster parser, other compression, other file layouts must not move a byte
//! of what auditors hold).
//!
//! A fixed simulator run goes through the partition processor and the local ledger with a
//! fixed node key and fixed clocks. Every accepted event's proof bundle (as served: JSON)
//! is hashed in event order, and that digest, the input's digest and the first bundle in
//! full are compared with `tests/golden/proofs/`. Regenerate, only for an intended change
//! of the proof format, with `UPDATE_GOLDEN=1 cargo test -p veritrace-queries --test
//! proof_golden`, and say why in the commit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use veritrace_anchor::{Anchorer, Backend, DataDir};
use veritrace_processors::{BatchPolicy, PartitionProcessor};
use veritrace_queries::QueryEngine;
use veritrace_simulator::{SimConfig, Simulator};

/// 2026-11-21T00:00:00Z: every record's "now", every seal's and every epoch's time.
const NOW_MS: i64 = 1_795_219_200_000;
const NOW: &str = "2026-11-21T00:00:00.000Z";
/// Records in the run, and records per sealed batch (so several batches, several epochs).
const RECORDS: usize = 3_000;
const PER_BATCH: usize = 700;
const BATCHES_PER_EPOCH: usize = 2;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/proofs")
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn check_or_update(name: &str, actual: &str, what: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_GOLDEN=1 creates it", path.display()));
    assert!(
        expected == actual,
        "{what} changed ({}).\nexpected: {}\nactual:   {}",
        path.display(),
        expected.trim(),
        actual.trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_bundles_are_byte_identical_for_the_same_input() {
    let records: Vec<_> = Simulator::new(SimConfig {
        events: RECORDS as u64,
        seed: 19,
        ..SimConfig::default()
    })
    .collect();
    let mut input = Sha256::new();
    for r in &records {
        input.update((r.key.len() as u64).to_be_bytes());
        input.update(&r.key);
        input.update((r.payload.len() as u64).to_be_bytes());
        input.update(&r.payload);
    }
    // A different input is the simulator's change, not the pipeline's: said apart.
    check_or_update(
        "input.sha256",
        &format!("{}\n", hex(input.finalize())),
        "the simulator's records (not the pipeline): regenerate the goldens",
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("data");
    let dir = DataDir::create(&root).expect("create");
    std::fs::create_dir_all(dir.ledger_key_file().parent().expect("keys")).expect("keys dir");
    std::fs::write(dir.ledger_key_file(), "19".repeat(32)).expect("node key");
    let now = || NOW.to_owned();
    let mut anchorer =
        Anchorer::open(&dir, Duration::from_secs(3600), Backend::Local, now).expect("anchorer");
    let policy = BatchPolicy {
        max_records: usize::MAX,
        ..BatchPolicy::default()
    };
    let mut p = PartitionProcessor::open(&dir, "golden", 0, policy).expect("open");
    let mut accepted = Vec::new();
    for (n, chunk) in records.chunks(PER_BATCH).enumerate() {
        for (i, r) in chunk.iter().enumerate() {
            let offset = (n * PER_BATCH + i) as u64;
            let outcome = p
                .push(offset, Some(&r.key), &r.payload, NOW_MS)
                .expect("push");
            if outcome == veritrace_processors::partition::Outcome::Accepted {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
                accepted.push(v["event_id"].as_str().expect("id").to_owned());
            }
        }
        let header = p.seal(NOW_MS).expect("seal").expect("a batch");
        anchorer.add(header);
        if (n + 1) % BATCHES_PER_EPOCH == 0 {
            anchorer.tick(Instant::now(), true, now).expect("epoch");
        }
    }
    anchorer
        .tick(Instant::now(), true, now)
        .expect("last epoch");
    assert!(accepted.len() > RECORDS * 9 / 10, "{}", accepted.len());

    let engine = QueryEngine::open(&root).await.expect("engine");
    let mut all = Sha256::new();
    let mut first = None;
    for id in &accepted {
        let bundle = engine.proof(id).await.expect("proof");
        let json = serde_json::to_vec(&bundle).expect("json");
        all.update((json.len() as u64).to_be_bytes());
        all.update(&json);
        first.get_or_insert(json);
    }
    let first = String::from_utf8(first.expect("a bundle")).expect("utf8");
    check_or_update(
        "first-bundle.json",
        &format!("{first}\n"),
        "the first event's proof bundle",
    );
    check_or_update(
        "bundles.sha256",
        &format!("{} {} bundles\n", hex(all.finalize()), accepted.len()),
        "the proof bundles of the run",
    );
}
