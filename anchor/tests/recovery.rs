//! Crash recovery and tamper detection of batches, epochs and the local ledger.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use veritrace_anchor::{
    Anchorer, Backend, BatchWriter, DataDir, EpochLog, Error, LocalLedger, SealInput,
};
use veritrace_verify::{Digest, merkle};

fn rows(n: usize) -> (RecordBatch, Vec<Digest>) {
    let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    let leaves = ids
        .iter()
        .map(|s| merkle::leaf_hash(s.as_bytes()))
        .collect();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "event_id",
        DataType::Utf8,
        false,
    )]));
    let col: ArrayRef = Arc::new(StringArray::from(ids));
    (
        RecordBatch::try_new(schema, vec![col]).expect("batch"),
        leaves,
    )
}

fn seal(w: &mut BatchWriter, first: u64, n: usize) -> veritrace_anchor::BatchHeader {
    let (events, leaves) = rows(n);
    w.seal(SealInput {
        first_offset: first,
        last_offset: first + n as u64 - 1,
        records: n as u64,
        leaf_hashes: &leaves,
        events,
        rejected: None,
        edges: None,
        sealed_at: "2026-11-21T00:00:00.000Z".into(),
        retracts: Vec::new(),
    })
    .expect("seal")
}

#[test]
fn batches_chain_and_resume_after_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("open");
    let a = seal(&mut w, 0, 5);
    let b = seal(&mut w, 5, 3);
    assert_eq!(b.prev_root, a.root);
    assert_eq!(b.seq, 1);
    let w = BatchWriter::open(&dir, "s", 0).expect("reopen");
    assert_eq!(w.committed_offset(), Some(7));
    assert!(dir.events_file(&b.batch_id).exists());
}

#[test]
fn overlapping_offsets_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("open");
    seal(&mut w, 0, 5);
    let (events, leaves) = rows(2);
    let r = w.seal(SealInput {
        first_offset: 3,
        last_offset: 4,
        records: 2,
        leaf_hashes: &leaves,
        events,
        rejected: None,
        edges: None,
        sealed_at: String::new(),
        retracts: Vec::new(),
    });
    assert!(matches!(r, Err(Error::Invalid(_))));
}

#[test]
fn torn_manifest_line_and_uncommitted_files_are_cleaned_on_open() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 1).expect("open");
    let a = seal(&mut w, 0, 4);
    let b = seal(&mut w, 4, 4);
    drop(w);
    // Simulate a crash in the middle of appending b's manifest line: cut the file inside it.
    let manifest = dir.manifest_file("s", 1);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let cut = text.len() - 20;
    std::fs::write(&manifest, &text[..cut]).expect("truncate");
    let w = BatchWriter::open(&dir, "s", 1).expect("reopen after crash");
    assert_eq!(
        w.last().map(|h| h.batch_id.clone()),
        Some(a.batch_id.clone())
    );
    assert_eq!(w.committed_offset(), Some(3));
    // b's Parquet file was never committed: removed, to be sealed again from the input.
    assert!(!dir.events_file(&b.batch_id).exists());
    assert!(dir.events_file(&a.batch_id).exists());
    assert!(
        std::fs::read_to_string(&manifest)
            .expect("manifest")
            .ends_with('\n')
    );
}

#[test]
fn a_removed_batch_breaks_the_chain() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("open");
    for i in 0..3 {
        seal(&mut w, i * 10, 10);
    }
    drop(w);
    let manifest = dir.manifest_file("s", 0);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&manifest, format!("{}\n{}\n", lines[0], lines[2])).expect("rewrite");
    let err = BatchWriter::open(&dir, "s", 0).expect_err("gap must be detected");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn epochs_anchor_in_order_and_recover_unanchored_work() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w0 = BatchWriter::open(&dir, "s", 0).expect("open");
    let mut w1 = BatchWriter::open(&dir, "s", 1).expect("open");
    let now = || "2026-11-21T00:00:00.000Z".to_string();
    let mut a = Anchorer::open(
        &dir,
        std::time::Duration::from_secs(3600),
        Backend::Local,
        now,
    )
    .expect("anchorer");
    a.add(seal(&mut w0, 0, 3));
    a.add(seal(&mut w1, 0, 2));
    let rec = a
        .tick(std::time::Instant::now(), true, now)
        .expect("tick")
        .expect("epoch");
    assert_eq!((rec.epoch_id, rec.batch_count, rec.events), (0, 2, 5));
    let done = a.drive().expect("drive");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].epoch_id, 0);
    let entry = LocalLedger::read_entries(&dir).expect("ledger").remove(0);
    assert_eq!(entry.root, rec.root);
    entry.verify_signature().expect("signed");
    // A batch sealed but never handed to the anchorer (crash) is picked up on next open.
    let lost = seal(&mut w0, 3, 2);
    drop(a);
    let mut a = Anchorer::open(
        &dir,
        std::time::Duration::from_secs(3600),
        Backend::Local,
        now,
    )
    .expect("reopen");
    assert_eq!(a.pending_batches(), 1);
    let rec = a
        .tick(std::time::Instant::now(), true, now)
        .expect("tick")
        .expect("epoch");
    assert_eq!(rec.batch_ids, vec![lost.batch_id]);
    // An epoch sealed but not anchored (crash between the two appends) is anchored on open.
    let mut log = EpochLog::open_writer(&dir).expect("log");
    log.seal(vec![seal(&mut w1, 2, 1)], now())
        .expect("seal")
        .expect("epoch 2");
    drop(log);
    let a = Anchorer::open(
        &dir,
        std::time::Duration::from_secs(3600),
        Backend::Local,
        now,
    )
    .expect("reopen");
    assert_eq!(a.epochs().len(), 3);
    assert_eq!(LocalLedger::read_entries(&dir).expect("ledger").len(), 3);
}

#[test]
fn an_edited_ledger_entry_is_detected() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("open");
    let now = || "2026-11-21T00:00:00.000Z".to_string();
    let mut a = Anchorer::open(
        &dir,
        std::time::Duration::from_secs(3600),
        Backend::Local,
        now,
    )
    .expect("anchorer");
    for i in 0..3 {
        a.add(seal(&mut w, i * 2, 2));
        a.tick(std::time::Instant::now(), true, now).expect("tick");
    }
    drop(a);
    let path = dir.ledger_file();
    let text = std::fs::read_to_string(&path).expect("ledger");
    let edited = text.replacen("\"batch_count\":1", "\"batch_count\":2", 1);
    assert_ne!(text, edited);
    std::fs::write(&path, edited).expect("edit");
    let err = LocalLedger::open(&dir).expect_err("edited entry must fail");
    assert!(err.to_string().contains("signature"), "{err}");
}

#[test]
fn node_key_is_private_and_stable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let k1 = LocalLedger::open(&dir)
        .expect("open")
        .public_key_hex()
        .to_owned();
    let k2 = LocalLedger::open(&dir)
        .expect("open")
        .public_key_hex()
        .to_owned();
    assert_eq!(k1, k2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.ledger_key_file())
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
    }
    let debug = format!("{:?}", LocalLedger::open(&dir).expect("open"));
    let secret = std::fs::read_to_string(dir.ledger_key_file()).expect("key");
    assert!(!debug.contains(secret.trim()));
    let _ = std::io::stderr().flush();
}
