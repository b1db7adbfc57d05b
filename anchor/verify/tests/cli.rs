//! `veritrace-verify`, the auditor's binary, run as an auditor runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use veritrace_verify::bundle::{BatchHeader, FORMAT, LeafProof, ProofBundle, Status};
use veritrace_verify::{Digest, canonical, merkle};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veritrace-verify"))
        .args(args)
        .output()
        .expect("run veritrace-verify")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A sealed (not yet anchored) bundle of a two-event batch.
fn bundle() -> ProofBundle {
    let events = [
        serde_json::json!({"event_id": "e1", "version": 1}),
        serde_json::json!({"event_id": "e2", "version": 1}),
    ];
    let leaves: Vec<Digest> = events
        .iter()
        .map(|e| merkle::leaf_hash(&canonical::to_vec(e).expect("jcs")))
        .collect();
    let root = merkle::root(&leaves);
    ProofBundle {
        format: FORMAT.into(),
        status: Status::Sealed,
        event: events[0].clone(),
        leaf: LeafProof {
            index: 0,
            hash: leaves[0],
            audit_path: merkle::Tree::new(&leaves).audit_path(0).expect("path"),
        },
        batch: BatchHeader {
            batch_id: "s-p000-0-1".into(),
            stream: "s".into(),
            partition: 0,
            seq: 0,
            first_offset: 0,
            last_offset: 1,
            records: 2,
            size: 2,
            root,
            prev_root: Digest::ZERO,
            sealed_at: "2026-11-21T00:00:00.000Z".into(),
            retracts: Vec::new(),
        },
        epoch: None,
        anchor: None,
        signed: None,
        disclosures: Vec::new(),
        checkpoint: None,
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("vt-verify-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        Dir(d)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_consistent_bundle_anchored_in_nothing_exits_3_with_each_check() {
    // A sealed bundle: every check passes, but no anchor ties it to anyone (anyone could
    // have made it), so it is not a plain success.
    let d = Dir::new("valid");
    let p = d.write("b.json", &serde_json::to_vec(&bundle()).expect("json"));
    let out = run(&[s(&p)]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.starts_with("UNANCHORED  e1 (sealed)"), "{text}");
    assert!(text.contains("  ok    "), "{text}");

    let out = run(&["--json", s(&p)]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["valid"], true);
    assert_eq!(v["anchored"], false);
    assert_eq!(v["event_id"], "e1");
    assert_eq!(v["status"], "sealed");
    assert!(v["checks"].as_array().is_some_and(|c| !c.is_empty()));
}

#[test]
fn a_tampered_bundle_exits_1_with_a_reason_code() {
    let d = Dir::new("tampered");
    let mut b = serde_json::to_value(bundle()).expect("json");
    b["event"]["version"] = 2.into();
    let p = d.write("b.json", &serde_json::to_vec(&b).expect("json"));
    let out = run(&[s(&p)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("INVALID"), "{}", stdout(&out));
    let out = run(&["--json", s(&p)]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["valid"], false);
    assert_eq!(v["code"], "root_mismatch", "{v}");

    // Not JSON at all: invalid too, with the parser's reason.
    let p = d.write("garbage.json", b"{\"format\": ");
    let out = run(&["--json", s(&p)]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["code"], "malformed", "{v}");
}

#[test]
fn what_cannot_be_decided_exits_2() {
    let out = run(&["/nonexistent/bundle.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("reading /nonexistent/bundle.json"),
        "{}",
        stderr(&out)
    );
    for args in [
        &[][..],
        &["--frobnicate", "x.json"],
        &["--rpc-timeout", "soon", "a.json"],
        &["--contract", "0x00", "a.json"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("usage: veritrace-verify"), "{args:?}");
    }
    // Several files: one that cannot be read leaves the run without a verdict.
    let out = run(&["/nonexistent/a.json", "/nonexistent/b.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("reading /nonexistent/a.json"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("--ledger FILE"));
}

#[test]
fn rpc_without_a_chain_to_ask_is_not_a_verdict() {
    let d = Dir::new("rpc");
    let p = d.write("b.json", &serde_json::to_vec(&bundle()).expect("json"));
    // A sealed bundle has no receipt: with the chain check built in, --rpc has nothing to
    // check and says so; without it, --rpc is refused as unavailable in this build.
    let out = run(&["--rpc", "http://127.0.0.1:9", s(&p)]);
    if cfg!(feature = "rpc") {
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("--rpc has nothing to check"),
            "{}",
            stdout(&out)
        );
    } else {
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("--features rpc"), "{}", stderr(&out));
    }
}

/// Documents written by Veritrace at commit 38d4cc2, before the layout issue moved the
/// code (`veritrace demo --events 3000`: its sample proof, a trace certificate and the
/// node's ledger): they must verify with every later verifier, and the tampered copy the
/// demo wrote must not.
#[test]
fn documents_written_before_the_layout_change_still_verify() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let f = |name: &str| fixtures.join(name);
    let ledger = f("ledger-38d4cc2.jsonl");
    let key = "d3070cbf1e36ca51040b4891d7bc78baaaa75cbb8f3e3001c757d4aae6cac4f9";
    let out = run(&[
        "--ledger",
        s(&ledger),
        "--key",
        key,
        s(&f("proof-38d4cc2.json")),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("VALID  plant-hu-02:maint:000000385 (anchored)"));
    assert!(
        stdout(&out).contains("hash chain and signatures intact"),
        "{}",
        stdout(&out)
    );

    let out = run(&[s(&f("certificate-38d4cc2.json"))]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "no anchor given: {}",
        stdout(&out)
    );
    assert!(stdout(&out).starts_with("UNANCHORED  certificate: backward trace"));
    let out = run(&["--ledger", s(&ledger), s(&f("certificate-38d4cc2.json"))]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("VALID  certificate: backward trace"));

    let out = run(&[
        "--json",
        "--ledger",
        s(&ledger),
        s(&f("proof-38d4cc2-tampered.json")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["code"], "root_mismatch", "{v}");
}

#[test]
fn several_files_are_verified_in_one_run_and_the_worst_decides_the_exit_status() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let valid = vectors.join("valid/proof-1.json");
    let later = vectors.join("valid/proof-1-later-checkpoint.json");
    let tampered = vectors.join("invalid/leaf-hash-flipped.json");
    let ledger = vectors.join("ledger.jsonl");
    // Both anchored in the ledger: 0, one report each.
    let out = run(&[
        "--ledger",
        s(&ledger),
        "--json",
        s(&valid),
        s(&later),
        s(&valid),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line per file"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|v| v["valid"] == true && v["anchored"] == true)
    );
    // One tampered among them: 1, and the others still reported valid.
    let out = run(&[
        "--ledger",
        s(&ledger),
        "--json",
        s(&valid),
        s(&tampered),
        s(&later),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let codes: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["code"].clone())
        .collect();
    assert_eq!(
        codes,
        vec![
            serde_json::Value::Null,
            serde_json::Value::String("root_mismatch".into()),
            serde_json::Value::Null
        ]
    );
    // Without anchors: all valid, none anchored: 3.
    let out = run(&[s(&valid), s(&later)]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out).matches("UNANCHORED").count(), 2);
}
