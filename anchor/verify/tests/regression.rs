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
