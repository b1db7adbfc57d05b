//! The proof test vectors (`anchor/verify/vectors/`, specified by PROOFS.md): every vector
//! in `vectors.json` is verified as the `veritrace-verify` binary verifies it and must give
//! exactly the outcome the manifest states, `valid` (anchored or not) or the reason code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use veritrace_verify::report::verify_document;
use veritrace_verify::verify::{Options, verify_bundle_json};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn manifest() -> Value {
    let path = dir().join("vectors.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("vector {v} has no string {k:?}"))
}

/// What is wrong with one vector's outcome, or `None` when it is the expected one.
fn check(v: &Value) -> Option<String> {
    let file = field(v, "file");
    let bytes = std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let ledger = v["ledger"]
        .as_str()
        .map(|l| std::fs::read_to_string(dir().join(l)).unwrap_or_else(|e| panic!("{l}: {e}")));
    let opts = Options {
        ledger,
        pinned_key: v["key"].as_str().map(str::to_owned),
        ..Options::default()
    };
    let verdict = verify_document(file, &bytes, &opts, None)
        .unwrap_or_else(|e| panic!("{file}: no chain is asked, yet: {e}"));
    let expect = field(v, "expect");
    let got = &verdict.json;
    let wrong = |what: String| Some(format!("{file} ({}): {what}", field(v, "change")));
    if expect == "valid" {
        let anchored = v["anchored"]
            .as_bool()
            .expect("a valid vector says anchored");
        if !verdict.valid || verdict.anchored != anchored {
            return wrong(format!(
                "expected valid with anchored {anchored}, got {got}"
            ));
        }
        return None;
    }
    if verdict.valid {
        return wrong(format!("expected {expect}, got valid: {}", verdict.text));
    }
    let code = match (field(v, "kind"), v["event"].as_str()) {
        ("certificate" | "rows", _) if expect == "trace_problem" => {
            let problem = field(v, "problem");
            let problems = got["problems"].as_array().cloned().unwrap_or_default();
            if !problems
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.contains(problem)))
            {
                return wrong(format!("expected a problem {problem:?}, got {got}"));
            }
            return None;
        }
        ("certificate" | "rows", Some(event)) => got["events"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["event_id"] == event))
            .map(|e| e["code"].clone()),
        ("bundle", _) => {
            // The library's own error, not only its rendering in the report.
            let direct = verify_bundle_json(&bytes, &opts)
                .err()
                .map(|e| e.code().to_owned());
            if direct.as_deref() != Some(expect) {
                return wrong(format!(
                    "verify_bundle_json gave {direct:?}, expected {expect}"
                ));
            }
            Some(got["code"].clone())
        }
        _ => Some(got["code"].clone()),
    };
    if code.as_ref().and_then(Value::as_str) != Some(expect) {
        return wrong(format!("expected {expect}, got {got}"));
    }
    None
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let m = manifest();
    let vectors = m["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 40, "{} vectors", vectors.len());
    let failures: Vec<String> = vectors.iter().filter_map(check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors gave another outcome:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

/// Each valid document verifies as itself, and every invalid one differs from the document
/// it was derived from: a vector that lost its change would pass for the wrong reason.
#[test]
fn invalid_vectors_are_derived_from_valid_documents() {
    let m = manifest();
    for v in m["vectors"].as_array().expect("vectors") {
        let Some(base) = v["derived_from"].as_str() else {
            continue;
        };
        assert!(base.starts_with("valid/"), "{v}");
        let read = |f: &str| std::fs::read(dir().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_ne!(read(base), read(field(v, "file")), "{v}");
    }
}

/// Every file in the directory is named by the manifest (as a document or a ledger) and
/// every file the manifest names exists.
#[test]
fn the_manifest_lists_every_file() {
    let m = manifest();
    let mut named = BTreeSet::new();
    named.insert(field(&m, "ledger").to_owned());
    for v in m["vectors"].as_array().expect("vectors") {
        named.insert(field(v, "file").to_owned());
        if let Some(l) = v["ledger"].as_str() {
            named.insert(l.to_owned());
        }
    }
    let mut present = BTreeSet::new();
    for sub in ["", "valid", "invalid"] {
        for entry in std::fs::read_dir(dir().join(sub)).expect("vectors dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let document = [".json", ".jsonl", ".cbor"]
                .iter()
                .any(|x| name.ends_with(x));
            if entry.path().is_file() && document {
                let rel = if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                };
                present.insert(rel);
            }
        }
    }
    present.remove("vectors.json");
    assert_eq!(named, present);
}

/// The key the manifest publishes is the one every entry of its ledger is signed with.
#[test]
fn the_ledger_is_signed_by_the_published_key() {
    let m = manifest();
    let text = std::fs::read_to_string(dir().join(field(&m, "ledger"))).expect("ledger");
    let entries = veritrace_verify::verify::verify_ledger(&text).expect("ledger verifies");
    assert!(entries.len() >= 3, "{} entries", entries.len());
    for e in &entries {
        assert_eq!(e.public_key, field(&m, "ledger_public_key"));
    }
}
