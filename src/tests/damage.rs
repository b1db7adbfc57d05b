//! Damage and recovery through the real binary (issue: "damage must be found and never made
//! worse"): a careless operator's edits to a demo directory, and the writers that run after
//! them. Each case was once observed to lose or rewrite data silently.

#[allow(dead_code)] // each test binary uses its own part
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{bin, count, demo, fails, ingest, new_events, ok, run};

/// Every file under `dir` with its size: what must survive a refused recovery unchanged.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|x| x != "lock") {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// `n` new valid events (production of fresh lots), one JSON line each.
#[test]
fn ingest_resumes_after_compaction_with_and_without_a_merge() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 20_000);
    let d = data.to_str().expect("p");
    let before = count(&data, "SELECT count(*) AS n FROM events");
    let dups = "SELECT count(*) AS n FROM rejected WHERE reason = 'duplicate_event_id'";
    let dups_before = count(&data, dups);
    // A compacted event sent again: its batch file is gone, its id must still be known.
    let again = ok(&[
        "sql",
        "--data",
        d,
        "--format",
        "json",
        "SELECT canonical FROM events WHERE trace_code IS NOT NULL ORDER BY event_id LIMIT 1",
    ]);
    let again: serde_json::Value = serde_json::from_str(&again).expect("json");
    let mut again: serde_json::Value =
        serde_json::from_str(again[0]["canonical"].as_str().expect("canonical")).expect("event");
    again.as_object_mut().expect("object").remove("version");
    let again = again.to_string();

    for (round, merge) in [(0, false), (1, true)] {
        let mut args = vec![
            "compact",
            "--data",
            d,
            "--min-files",
            "1",
            "--grace-secs",
            "0",
        ];
        if merge {
            args.push("--full-merge");
        }
        ok(&args);
        // Once: "open sealed batch .../events/demo-p000-....parquet: No such file", exit 2.
        let file = tmp.path().join(format!("tiny-{round}.jsonl"));
        std::fs::write(&file, new_events(&format!("R{round}"), 10) + &again + "\n").expect("write");
        let out = ingest(&data, &file);
        assert!(
            out.status.success(),
            "ingest after compaction (merge: {merge}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            count(&data, "SELECT count(*) AS n FROM events"),
            before + 10 * (round + 1),
            "merge: {merge}"
        );
        assert_eq!(
            count(&data, dups),
            dups_before + round + 1,
            "the compacted event sent again must be a duplicate (merge: {merge})"
        );
    }
}

#[test]
fn a_truncated_manifest_stops_ingest_and_deletes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    bin()
        .args([
            "demo",
            "--events",
            "10000",
            "--data",
            data.to_str().expect("p"),
            "--no-serve",
            "--batch-size",
            "400",
        ])
        .output()
        .expect("demo");
    let manifest = data.join("batches/demo-p000.jsonl");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() >= 4,
        "want several batches, got {}",
        lines.len()
    );
    let keep = lines.len() - 3;
    std::fs::write(&manifest, lines[..keep].join("\n") + "\n").expect("cut");
    let before = files(&data);

    // Once: 15 files (5 batches) deleted as "never committed", exit 0, and a new epoch.
    let file = tmp.path().join("tiny.jsonl");
    std::fs::write(&file, new_events("T", 20)).expect("write");
    let out = ingest(&data, &file);
    assert!(!out.status.success(), "ingest over a truncated manifest");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated or replaced"), "{err}");
    assert!(err.contains("demo-p000.jsonl"), "{err}");
    assert_eq!(files(&data), before, "a refused recovery changed files");
}

/// A demo directory whose ledger has several entries.
fn anchored_demo(root: &Path) -> PathBuf {
    let data = root.join("data");
    demo(&data, 4_000);
    // Each import seals and anchors an epoch of its own.
    for round in 0..4 {
        let file = root.join(format!("more-{round}.jsonl"));
        std::fs::write(&file, new_events(&format!("L{round}"), 5)).expect("write");
        let out = ingest(&data, &file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    data
}

#[test]
fn a_truncated_ledger_is_reported_and_never_signed_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = anchored_demo(tmp.path());
    let ledger = data.join("ledger/local.jsonl");
    let original = std::fs::read(&ledger).expect("ledger");
    let lines = original.iter().filter(|&&b| b == b'\n').count();
    assert!(lines >= 4, "want several ledger entries, got {lines}");
    let cut_at = |n: usize| -> Vec<u8> {
        let mut seen = 0;
        let end = original
            .iter()
            .position(|&b| {
                seen += usize::from(b == b'\n');
                seen == n
            })
            .map_or(0, |i| i + 1);
        original[..end].to_vec()
    };
    let mid_line = original[..original.len() - 20].to_vec();
    for (what, damaged) in [
        ("mid-line", mid_line),
        ("to 2 entries", cut_at(2)),
        ("to 0 bytes", Vec::new()),
    ] {
        std::fs::write(&ledger, &damaged).expect("damage");
        let before = files(&data);
        // Once: "0 of 8 waiting", exit 0, and epochs re-signed with new timestamps.
        let err = fails(&["anchor", "run", "--data", data.to_str().expect("p")]);
        assert!(err.contains("Restore the ledger"), "{what}: {err}");
        assert_eq!(files(&data), before, "{what}: anchor run changed files");
        // Queries say so instead of calling the epochs `sealed`.
        let err = fails(&[
            "sql",
            "--data",
            data.to_str().expect("p"),
            "SELECT status, count(*) FROM epochs GROUP BY status",
        ]);
        assert!(err.contains("truncated or replaced"), "{what}: {err}");
        // And new imports do not anchor over it.
        let file = tmp.path().join("after.jsonl");
        std::fs::write(&file, new_events("X", 3)).expect("write");
        assert!(!ingest(&data, &file).status.success(), "{what}");
        assert_eq!(files(&data), before, "{what}: ingest changed files");
    }
    // Restored from the backup, everything works again.
    std::fs::write(&ledger, &original).expect("restore");
    ok(&["anchor", "run", "--data", data.to_str().expect("p")]);
}

#[test]
fn a_truncated_epoch_log_is_reported_not_resealed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = anchored_demo(tmp.path());
    let epochs = data.join("epochs/epochs.jsonl");
    let text = std::fs::read_to_string(&epochs).expect("epochs");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&epochs, lines[..lines.len() - 2].join("\n") + "\n").expect("cut");
    let before = files(&data);
    let err = fails(&["anchor", "run", "--data", data.to_str().expect("p")]);
    assert!(err.contains("epoch log holds"), "{err}");
    assert_eq!(files(&data), before);
}

fn flip_middle_byte(path: &Path) {
    let mut b = std::fs::read(path).expect("read");
    let i = b.len() / 2;
    b[i] ^= 0x01;
    std::fs::write(path, b).expect("write");
}

fn check(data: &Path, deep: bool) -> (bool, String) {
    let mut args = vec!["check", "--data", data.to_str().expect("p")];
    if deep {
        args.push("--deep");
    }
    let out = run(&args);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "check could not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn first_events_file(data: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("events"))
        .expect("events")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files.into_iter().next().expect("an events file")
}

#[test]
fn check_finds_edited_truncated_deleted_and_reordered_files_of_every_kind() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let out = bin()
        .args([
            "demo",
            "--events",
            "6000",
            "--no-serve",
            "--batch-size",
            "500",
            "--data",
        ])
        .arg(&data)
        .output()
        .expect("demo");
    assert!(out.status.success());
    let (intact, out) = check(&data, true);
    assert!(intact, "{out}");
    assert!(out.contains("INTACT"), "{out}");
    let pristine = tmp.path().join("pristine");
    copy_dir(&data, &pristine);
    let events = first_events_file(&data);
    let manifest = data.join("batches/demo-p000.jsonl");
    let edges = std::fs::read_dir(data.join("edges"))
        .expect("edges")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("an edges file");
    type Damage = Box<dyn Fn()>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a byte flipped in an events file",
            Box::new({
                let p = events.clone();
                move || flip_middle_byte(&p)
            }),
            "altered",
        ),
        (
            "an events file truncated",
            Box::new({
                let p = events.clone();
                move || {
                    let b = std::fs::read(&p).expect("read");
                    std::fs::write(&p, &b[..b.len() - 100]).expect("cut");
                }
            }),
            "truncated or rewritten",
        ),
        (
            "an events file deleted",
            Box::new({
                let p = events.clone();
                move || std::fs::remove_file(&p).expect("rm")
            }),
            "missing",
        ),
        (
            "an edges file edited",
            Box::new({
                let p = edges.clone();
                move || flip_middle_byte(&p)
            }),
            "altered",
        ),
        (
            "manifest lines reordered",
            Box::new({
                let p = manifest.clone();
                move || {
                    let text = std::fs::read_to_string(&p).expect("read");
                    let mut lines: Vec<&str> = text.lines().collect();
                    lines.swap(0, 1);
                    std::fs::write(&p, lines.join("\n") + "\n").expect("write");
                }
            }),
            "demo-p000.jsonl",
        ),
        (
            "the epoch log edited",
            Box::new({
                let p = data.join("epochs/epochs.jsonl");
                move || {
                    let text = std::fs::read_to_string(&p).expect("read");
                    let edited = text.replacen("\"events\":", "\"events\":1", 1);
                    std::fs::write(&p, edited).expect("write");
                }
            }),
            "epochs.jsonl",
        ),
    ];
    for (what, damage, expect) in cases {
        damage();
        let (intact, out) = check(&data, false);
        assert!(!intact, "{what}: check said intact\n{out}");
        assert!(out.contains(expect), "{what}: {out}");
        // Restore for the next case.
        std::fs::remove_dir_all(&data).expect("rm");
        copy_dir(&pristine, &data);
    }
    // Restored, the directory checks intact again.
    let (intact, out) = check(&data, true);
    assert!(intact, "{out}");

    // Compacted files: checked against their digests, and deep, row by row against the
    // batches they replaced.
    let d = data.to_str().expect("p");
    ok(&[
        "compact",
        "--data",
        d,
        "--min-files",
        "1",
        "--grace-secs",
        "0",
    ]);
    let (intact, out) = check(&data, true);
    assert!(intact, "{out}");
    let compacted: PathBuf = std::fs::read_dir(data.join("compacted"))
        .expect("compacted")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("a compacted file");
    flip_middle_byte(&compacted);
    let (intact, out) = check(&data, true);
    assert!(!intact && out.contains("altered"), "{out}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).expect("copy");
        }
    }
}

#[test]
fn a_damaged_or_deleted_events_file_fails_queries_and_health_instead_of_changing_answers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 6_000);
    let s = common::Server::start(&data, &[]);
    let (st, _) = s.request("GET", "/healthz", "");
    assert_eq!(st, 200);
    // Once: SQL returned a changed `canonical` silently and /healthz said ok.
    let events = first_events_file(&data);
    flip_middle_byte(&events);
    let file = events
        .file_name()
        .expect("n")
        .to_string_lossy()
        .into_owned();
    let mut health = serde_json::Value::Null;
    common::wait_for(
        "/healthz to report the damage",
        std::time::Duration::from_secs(60),
        || {
            let (st, h) = s.request("GET", "/healthz", "");
            health = h;
            st == 503
        },
    );
    assert_eq!(health["error"]["code"], "data_damaged", "{health}");
    assert!(health.to_string().contains(&file), "{health}");
    // Damage makes the server unready (route around it), not dead (a restart mends nothing).
    let (st, ready) = s.request("GET", "/readyz", "");
    assert_eq!(
        (st, &ready["error"]["code"]),
        (503, &"data_damaged".into()),
        "{ready}"
    );
    let (st, live) = s.request("GET", "/livez", "");
    assert_eq!((st, &live["status"]), (200, &"alive".into()), "{live}");
    assert_eq!(s.metric("veritrace_damaged_files"), 1.0);
    let (st, r) = s.sql("SELECT count(*) AS n FROM events");
    assert_eq!(
        (st, r["error"]["code"].as_str()),
        (500, Some("data_damaged")),
        "{r}"
    );
    assert!(r.to_string().contains(&file), "{r}");
    drop(s);

    // Once: count(*) dropped by a batch's events with exit 0.
    std::fs::remove_file(&events).expect("rm");
    let err = fails(&[
        "sql",
        "--data",
        data.to_str().expect("p"),
        "SELECT count(*) FROM events",
    ]);
    assert!(err.contains("missing") && err.contains(&file), "{err}");
    let (intact, out) = check(&data, false);
    assert!(!intact && out.contains(&file), "{out}");
}
