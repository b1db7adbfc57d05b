//! Data teams' own engines (issue 16): the committed tables published as Delta Lake tables
//! (`veritrace publish`) and read by a reader that is not ours, the `deltalake` package
//! (delta-rs, from PyPI via tools/python), which reads every column of every table. Counts
//! must equal `veritrace sql` before, during and after a compaction: never a file twice,
//! never a file that is gone.

#[allow(dead_code)] // each test binary uses its own part
mod common;

use std::path::{Path, PathBuf};

use common::{count, demo, ingest, new_events, ok};

fn python() -> PathBuf {
    veritrace_testkit::python::require_python("the deltalake package")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What the deltalake package reads from the three tables.
fn outside(data: &Path) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/python/delta_tables.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(data)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "delta_tables.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Both readers agree on every table: rows, and no row twice.
fn agree(data: &Path, when: &str) -> serde_json::Value {
    let seen = outside(data);
    for (table, sql) in [
        ("events", "SELECT count(*) AS n FROM events"),
        ("rejected", "SELECT count(*) AS n FROM rejected"),
        ("edges", "SELECT count(*) AS n FROM edges"),
    ] {
        let ours = count(data, sql);
        assert!(ours > 0, "{when}: the demo has {table}");
        assert_eq!(seen[table]["rows"], ours, "{when}: {table}: {seen}");
        assert_eq!(
            seen[table]["distinct"], ours,
            "{when}: {table} read a row twice: {seen}"
        );
    }
    seen
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_outside_engine_reads_exactly_the_committed_files_through_compaction() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 20_000);
    let d = data.to_str().expect("p");

    // Before publication there is no table to read.
    assert!(!data.join("_delta_log").exists());
    let first: Vec<serde_json::Value> = ok(&["publish", "--data", d])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(
        first
            .iter()
            .all(|t| t["version"] == 0 && t["added"].as_u64() > Some(0))
    );
    let v0 = agree(&data, "published");
    // Publishing again with nothing new writes no version.
    ok(&["publish", "--data", d]);
    assert_eq!(outside(&data)["events"]["version"], v0["events"]["version"]);

    // New batches are published by the epoch that seals them: no `publish` needed.
    let file = tmp.path().join("more.jsonl");
    std::fs::write(&file, new_events("DL", 50)).expect("write");
    let out = ingest(&data, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v1 = agree(&data, "after an ingest");
    assert!(v1["events"]["version"].as_u64() > v0["events"]["version"].as_u64());
    assert_eq!(
        v1["events"]["rows"].as_u64(),
        v0["events"]["rows"].as_u64().map(|n| n + 50)
    );

    // Compaction with a grace period: the small files are still on disk (queries planned
    // before may read them), yet the table names only the compacted file.
    let small = files_in(&data.join("events"));
    common::compact(d, "3600");
    assert_eq!(files_in(&data.join("events")), small, "nothing deleted yet");
    let during = agree(&data, "during the grace period");
    assert!(
        during["events"]["files"].as_u64() < Some(small as u64),
        "{during}"
    );

    // After the grace period the small files are gone, and no published file with them.
    common::compact(d, "0");
    assert_eq!(files_in(&data.join("events")), 0);
    agree(&data, "after the small files were deleted");
    assert!(ok(&["check", "--data", d]).contains("INTACT"));
}

#[test]
fn a_table_whose_log_lost_a_version_is_reported_and_not_extended() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 4_000);
    let d = data.to_str().expect("p");
    ok(&["publish", "--data", d]);
    let file = tmp.path().join("more.jsonl");
    std::fs::write(&file, new_events("LOST", 5)).expect("write");
    assert!(ingest(&data, &file).status.success());
    let log = data.join("_delta_log");
    let first = log.join(format!("{:020}.json", 0));
    assert!(
        log.join(format!("{:020}.json", 1)).exists(),
        "published by the epoch"
    );
    std::fs::remove_file(&first).expect("rm");
    let err = common::fails(&["publish", "--data", d]);
    assert!(
        err.contains("00000000000000000001.json") && err.contains("missing"),
        "{err}"
    );
    assert!(
        !log.join(format!("{:020}.json", 2)).exists(),
        "no version written over a broken log"
    );
}

#[test]
fn a_committed_file_that_is_gone_is_reported_and_not_left_out_of_the_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 4_000);
    let d = data.to_str().expect("p");
    for (dir, root) in [
        ("events", data.clone()),
        ("rejected", data.join("rejected")),
    ] {
        let gone = std::fs::read_dir(data.join(dir))
            .expect("ls")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "parquet"))
            .expect("a file");
        let kept = tmp.path().join("kept.parquet");
        std::fs::rename(&gone, &kept).expect("move away");
        let err = common::fails(&["publish", "--data", d]);
        let name = gone.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(
            err.contains(name) && err.contains("committed and gone"),
            "{dir}: {err}"
        );
        assert!(
            !root
                .join("_delta_log")
                .join(format!("{:020}.json", 0))
                .exists(),
            "{dir}: no version published over damage"
        );
        std::fs::rename(&kept, &gone).expect("restore");
    }
    ok(&["publish", "--data", d]);
    agree(&data, "restored");
}
