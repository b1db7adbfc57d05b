//! One test per bug fixed, named after what broke.

use veritrace_verify::bundle::{BatchHeader, FORMAT, LeafProof, ProofBundle, Status};
use veritrace_verify::verify::{Options, verify_bundle};
use veritrace_verify::{Digest, canonical, merkle};

fn sealed_bundle(first_offset: u64, last_offset: u64, records: u64) -> ProofBundle {
    let event = serde_json::json!({"event_id": "e1", "version": 1});
    let leaf = merkle::leaf_hash(&canonical::to_vec(&event).expect("jcs"));
    ProofBundle {
        format: FORMAT.into(),
        status: Status::Sealed,
        event,
        leaf: LeafProof {
            index: 0,
            hash: leaf,
            audit_path: vec![],
        },
        batch: BatchHeader {
            batch_id: "s-p000-0-5".into(),
            stream: "s".into(),
            partition: 0,
            seq: 0,
            first_offset,
            last_offset,
            records,
            size: 1,
            root: leaf,
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

#[test]
fn a_batch_with_offset_gaps_was_refused() {
    // Kafka offsets skip (compaction, transaction markers): 2 records may span offsets 0..=5.
    let report =
        verify_bundle(&sealed_bundle(0, 5, 2), &Options::default()).expect("gaps are valid");
    assert_eq!(report.status, Status::Sealed);
    // More records than offsets is still impossible.
    assert!(verify_bundle(&sealed_bundle(0, 1, 3), &Options::default()).is_err());
}

#[test]
fn duplicate_keys_in_a_bundle_could_show_one_value_and_hash_another() {
    let b = sealed_bundle(0, 0, 1);
    let text = serde_json::to_string(&b).expect("json");
    let forged = text.replacen(
        r#""event_id":"e1""#,
        r#""event_id":"e1","event_id":"e2""#,
        1,
    );
    assert_ne!(text, forged);
    assert!(ProofBundle::from_json(forged.as_bytes()).is_err());
}

fn vector(path: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vectors")
        .join(path);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("json")
}

fn code_of(doc: &serde_json::Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(doc).expect("json");
    veritrace_verify::verify::verify_bundle_json(&bytes, &Options::default())
        .map(drop)
        .map_err(|e| format!("{}: {e}", e.code()))
}

#[test]
fn a_format_1_bundle_carrying_a_statement_was_checked_as_format_2() {
    let mut b = vector("valid/proof-2.json");
    b["format"] = FORMAT.into();
    let e = code_of(&b).expect_err("refused");
    assert!(
        e.starts_with("inconsistent:") && e.contains("does not carry a signed statement"),
        "{e}"
    );
}

#[test]
fn a_format_2_bundle_without_its_statement_was_valid() {
    let mut b = vector("valid/proof-2.json");
    b.as_object_mut().expect("object").remove("signed");
    let e = code_of(&b).expect_err("refused");
    assert!(e.starts_with("inconsistent:"), "{e}");
    // A format 1 bundle of a signed event (what a certificate's event is) stays valid,
    // its signature noted as not checked.
    b["format"] = FORMAT.into();
    code_of(&b).expect("valid");
}

#[test]
fn a_digest_that_is_not_64_hex_digits_was_malformed_not_bad_hash() {
    let b = vector("valid/proof-1.json");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 4] = [
        ("bad hash leaf.hash:", |b| b["leaf"]["hash"] = "00".into()),
        ("bad hash epoch.audit_path[0]:", |b| {
            b["epoch"]["audit_path"][0] = "zz".repeat(32).into()
        }),
        ("bad hash ledger_entry.prev_entry_hash:", |b| {
            b["anchor"]["ledger_entry"]["prev_entry_hash"] = "0".repeat(65).into()
        }),
        ("bad hash batch.root:", |b| b["batch"]["root"] = "".into()),
    ];
    for (want, edit) in cases {
        let mut d = b.clone();
        edit(&mut d);
        let e = code_of(&d).expect_err(want);
        assert!(e.starts_with(&format!("bad_hash: {want}")), "{want}: {e}");
    }
    // A digest that is not even a string is a malformed document, as before.
    let mut d = b.clone();
    d["leaf"]["hash"] = 7.into();
    assert!(code_of(&d).expect_err("refused").starts_with("malformed:"));
}

#[test]
fn a_ledger_entry_with_a_weak_key_verified_for_any_message() {
    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
    // The identity point as the key and as R, s = 0: [s]B - [k]A = R for every message.
    let weak_key = format!("01{}", "00".repeat(31));
    let weak_sig = format!("01{}", "00".repeat(63));
    let key =
        VerifyingKey::from_bytes(&hex::decode(&weak_key).expect("hex").try_into().expect("32"))
            .expect("a point");
    let sig = Signature::from_bytes(&hex::decode(&weak_sig).expect("hex").try_into().expect("64"));
    assert!(
        key.verify(b"any message at all", &sig).is_ok(),
        "the hole being closed"
    );
    let mut b = vector("valid/proof-1.json");
    b["anchor"]["ledger_entry"]["public_key"] = weak_key.into();
    b["anchor"]["ledger_entry"]["signature"] = weak_sig.into();
    let e = code_of(&b).expect_err("refused");
    assert!(e.starts_with("bad_signature:"), "{e}");
}

#[test]
fn an_unknown_format_version_was_read_as_another_kind_of_document() {
    use veritrace_verify::report::verify_document;
    for (file, format, lists) in [
        (
            "valid/certificate.json",
            "veritrace.certificate/2",
            "veritrace.certificate/1",
        ),
        (
            "valid/proof-1.json",
            "veritrace.proof/3",
            "veritrace.proof/1 and veritrace.proof/2",
        ),
    ] {
        let mut d = vector(file);
        d["format"] = format.into();
        // An unknown version of a format may have another shape: refused for its version.
        d["added_in_a_later_version"] = true.into();
        let bytes = serde_json::to_vec(&d).expect("json");
        let v = verify_document(file, &bytes, &Options::default(), None).expect("verdict");
        assert_eq!(v.json["code"], "unsupported_format", "{}", v.json);
        let error = v.json["error"].as_str().expect("error");
        assert!(error.contains(lists), "{error}");
    }
}
