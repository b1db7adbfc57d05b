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
    let mut a = open_local(&dir, now).expect("anchorer");
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
    let mut a = open_local(&dir, now).expect("reopen");
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
    let a = open_local(&dir, now).expect("reopen");
    assert_eq!(a.epochs().len(), 3);
    assert_eq!(LocalLedger::read_entries(&dir).expect("ledger").len(), 3);
}

#[test]
fn an_edited_ledger_entry_is_detected() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("open");
    let now = || "2026-11-21T00:00:00.000Z".to_string();
    let mut a = open_local(&dir, now).expect("anchorer");
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

/// The anchorer of `dir` on the local ledger, epochs due every hour (tests tick by hand).
fn open_local(dir: &DataDir, now: fn() -> String) -> veritrace_anchor::Result<Anchorer> {
    Anchorer::open(
        dir,
        std::time::Duration::from_secs(3600),
        Backend::Local,
        now,
    )
}

/// Reads the published tiles from the data directory, as a tile client reads them from a
/// web server.
struct DirTiles(std::path::PathBuf);

impl tlog_tiles::tile::TileReader for DirTiles {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(
        &self,
        tiles: &[tlog_tiles::tile::Tile],
    ) -> Result<Vec<Vec<u8>>, tlog_tiles::tlog::Error> {
        tiles
            .iter()
            .map(|t| {
                // A partial tile that is gone: the full tile's prefix (C2SP tlog-tiles).
                // Go's sumdb paths name the height (tile/8/...); C2SP's do not.
                let c2sp = |t: &tlog_tiles::tile::Tile| t.path().replacen("tile/8/", "tile/", 1);
                let full = tlog_tiles::tile::Tile::new(8, t.level(), t.level_index(), 256, false);
                match std::fs::read(self.0.join(c2sp(t))) {
                    Ok(b) => Ok(b),
                    Err(_) => std::fs::read(self.0.join(c2sp(&full)))
                        .map(|b| b[..t.width() as usize * 32].to_vec()),
                }
                .map_err(|e| tlog_tiles::tlog::Error::InvalidInput(format!("{}: {e}", c2sp(t))))
            })
            .collect()
    }
    fn save_tiles(&self, _: &[tlog_tiles::tile::Tile], _: &[Vec<u8>]) {}
}

#[test]
fn the_log_grows_by_epochs_with_signed_checkpoints_and_tiles_a_tile_client_reads() {
    use veritrace_anchor::log;
    use veritrace_verify::checkpoint::{NoteKey, open_checkpoint};
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("open");
    let now = || "2026-12-04T00:00:00.000Z".to_string();
    let mut a = open_local(&dir, now).expect("anchorer");
    let vkey = NoteKey::parse_vkey(&log::verifier_key(&dir).expect("vkey")).expect("parse vkey");
    let mut offset = 0;
    let mut heads = Vec::new();
    for batches in [100u64, 200, 5] {
        for _ in 0..batches {
            a.add(seal(&mut w, offset, 1));
            offset += 1;
        }
        let rec = a
            .tick(std::time::Instant::now(), true, now)
            .expect("tick")
            .expect("epoch");
        let size = rec.log_size.expect("in the log");
        // The published checkpoint is the epoch's root at its log size, signed by the node.
        let bytes = std::fs::read(dir.log_checkpoint_file()).expect("checkpoint");
        let c = open_checkpoint(&bytes, &vkey).expect("signed by the node");
        assert_eq!((c.size, c.root), (size, rec.root));
        assert_eq!(c.origin, vkey.name);
        // The anchor commits to the same size and root.
        let entry = LocalLedger::read_entries(&dir)
            .expect("ledger")
            .remove(rec.epoch_id as usize);
        assert_eq!((entry.batch_count, entry.root), (size, rec.root));
        heads.push((size, rec.root));
    }
    assert_eq!(
        heads.iter().map(|h| h.0).collect::<Vec<_>>(),
        vec![100, 300, 305]
    );
    // Go's tile client (ported in tlog_tiles) reads the tiles against each checkpoint,
    // recomputes its root, and proves each earlier checkpoint a prefix of each later one.
    let tiles = DirTiles(dir.log_dir());
    for &(n, root) in &heads {
        let r = tlog_tiles::tile::TileHashReader::new(n, tlog_tiles::tlog::Hash(root.0), &tiles);
        let th = tlog_tiles::tlog::tree_hash(n, &r).expect("tree hash from the tiles");
        assert_eq!(th.0, root.0, "root at {n}");
        for &(m, old) in heads.iter().filter(|h| h.0 <= n) {
            let p = tlog_tiles::tlog::prove_tree(n, m, &r).expect("consistency from the tiles");
            let p: Vec<Digest> = p.into_iter().map(|h| Digest(h.0)).collect();
            merkle::verify_consistency(m, n, &old, &root, &p).expect("consistent");
        }
    }
    // Entry bundles hold the headers whose leaf hashes the level-0 tiles hold.
    let full = std::fs::read(dir.log_tile_file("tile/entries/000")).expect("full bundle");
    let part = std::fs::read(dir.log_tile_file("tile/entries/001.p/49")).expect("partial bundle");
    let t0 = std::fs::read(dir.log_tile_file("tile/0/000")).expect("tile");
    let t1 = std::fs::read(dir.log_tile_file("tile/0/001.p/49")).expect("partial tile");
    let entries: Vec<Vec<u8>> = [&full, &part]
        .iter()
        .flat_map(|b| veritrace_verify::logtree::read_entry_bundle(b).expect("bundle"))
        .map(<[u8]>::to_vec)
        .collect();
    let hashes: Vec<&[u8]> = t0.chunks(32).chain(t1.chunks(32)).collect();
    assert_eq!((entries.len(), hashes.len()), (305, 305));
    for (e, h) in entries.iter().zip(&hashes) {
        assert_eq!(merkle::leaf_hash(e).0.as_slice(), *h);
        let header: veritrace_anchor::BatchHeader = serde_json::from_slice(e).expect("a header");
        assert_eq!(header.stream, "s");
    }
    // A partial tile goes once its full tile is written (a client reads the full tile's
    // prefix, as above for the checkpoint of 100); the current one stays.
    assert!(!dir.log_tile_file("tile/0/000.p/100").exists());
    assert!(!dir.log_tile_file("tile/entries/000.p").exists());
    assert!(dir.log_tile_file("tile/0/001.p/49").exists());

    // `veritrace check` compares every published tile with the epochs' log.
    let check = || {
        veritrace_anchor::integrity::check(
            &dir,
            false,
            &mut veritrace_anchor::integrity::NoProgress,
        )
        .expect("check")
    };
    // (This test's events files are bare: only the log's findings count here.)
    let log_damage = |r: &veritrace_anchor::integrity::CheckReport| -> Vec<String> {
        r.damage
            .iter()
            .filter(|d| !d.path.starts_with(dir.events_dir()))
            .map(ToString::to_string)
            .collect()
    };
    let r = check();
    assert!(log_damage(&r).is_empty(), "{:?}", r.damage);
    assert!(r.log_tiles >= 4, "{}", r.log_tiles);
    let tile = dir.log_tile_file("tile/0/000");
    let good = std::fs::read(&tile).expect("tile");
    let mut bad = good.clone();
    bad[40] ^= 1;
    std::fs::write(&tile, &bad).expect("damage");
    let r = check();
    let found = log_damage(&r);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("its hashes are not the log's"),
        "{}",
        found[0]
    );
    std::fs::write(&tile, &good).expect("restore");

    // A rewritten history: the checkpoint published for 305 leaves had another root (the
    // operator showed another log). Opening the anchorer refuses to publish over it.
    let key = NoteKey::parse_vkey(&log::verifier_key(&dir).expect("vkey")).expect("vkey");
    let forged = log::sign_checkpoint(&dir, 305, Digest([9; 32])).expect("sign");
    std::fs::write(dir.log_checkpoint_file(), &forged).expect("write");
    assert!(open_checkpoint(forged.as_bytes(), &key).is_ok());
    drop(a);
    let err = open_local(&dir, now).expect_err("a published root that differs is refused");
    assert!(err.to_string().contains("the log was rewritten"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.log_checkpoint_file()).expect("kept"),
        forged
    );
}

#[test]
fn epochs_sealed_before_the_log_stay_as_they_were_and_the_log_covers_their_batches() {
    use veritrace_anchor::EpochRecord;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("open");
    let now = || "2026-12-04T00:00:00.000Z".to_string();
    // An epoch as an earlier version sealed it: its own tree, no log size.
    let old: Vec<_> = (0..3).map(|i| seal(&mut w, i, 1)).collect();
    let leaves: Vec<Digest> = old.iter().map(|h| h.leaf_hash().expect("hash")).collect();
    let rec = EpochRecord {
        epoch_id: 0,
        root: merkle::root(&leaves),
        batch_count: 3,
        events: 3,
        batch_ids: old.iter().map(|h| h.batch_id.clone()).collect(),
        sealed_at: now(),
        log_size: None,
    };
    let path = dir.epochs_file();
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, serde_json::to_string(&rec).expect("json") + "\n").expect("write");
    let mut a = open_local(&dir, now).expect("anchorer");
    // Anchored as it was: its own root and batch count.
    let e0 = LocalLedger::read_entries(&dir).expect("ledger").remove(0);
    assert_eq!((e0.root, e0.batch_count), (rec.root, 3));
    assert!(!dir.log_checkpoint_file().exists(), "no log epoch yet");
    a.add(seal(&mut w, 3, 1));
    a.add(seal(&mut w, 4, 1));
    let next = a
        .tick(std::time::Instant::now(), true, now)
        .expect("tick")
        .expect("epoch");
    // The first log epoch's log holds the old batches too.
    assert_eq!((next.batch_count, next.log_size), (2, Some(5)));
    let headers = dir.all_batch_headers().expect("headers");
    let all: Vec<Digest> = headers
        .iter()
        .map(|h| h.leaf_hash().expect("hash"))
        .collect();
    assert_eq!(next.root, merkle::root(&all));
    let e1 = LocalLedger::read_entries(&dir).expect("ledger").remove(1);
    assert_eq!((e1.root, e1.batch_count), (next.root, 5));
    // The whole-directory check agrees (this test's events files are bare: its findings
    // about them do not count here).
    let report = veritrace_anchor::integrity::check(
        &dir,
        false,
        &mut veritrace_anchor::integrity::NoProgress,
    )
    .expect("check");
    assert!(
        report
            .damage
            .iter()
            .all(|d| d.path.starts_with(dir.events_dir())),
        "{:?}",
        report.damage
    );
    // An epoch log whose log size disagrees with its epochs is refused.
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("\"log_size\":5", "\"log_size\":6")).expect("write");
    let err = EpochLog::read(&dir).expect_err("miscounted");
    assert!(
        err.to_string().contains("says the log has 6 leaves"),
        "{err}"
    );
}
