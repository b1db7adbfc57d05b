//! A second delivery of an event id is a duplicate however long after the first it comes,
//! also once the first id's hash has left memory for a dedupe run on disk, and after a
//! restart that opens the runs instead of reading every events file.

use veritrace_processors::reason::Reason;
use veritrace_processors::{BatchPolicy, Outcome, PartitionProcessor};

const NOW: i64 = 1_795_219_200_000; // 2026-11-21

fn event(id: &str) -> Vec<u8> {
    format!(
        r#"{{"event_id":"{id}","event_type":"production","event_time":"2026-11-01T00:00:00Z","participant":{{"id":"p","role":"manufacturer"}},"trace_code":"(01)09506000134352(21)A"}}"#
    )
    .into_bytes()
}

fn push(p: &mut PartitionProcessor, offset: u64, id: &str) -> Outcome {
    let out = p.push(offset, None, &event(id), NOW).expect("push");
    if p.is_full() {
        p.seal(NOW).expect("seal");
    }
    out
}

fn is_duplicate(out: &Outcome) -> bool {
    matches!(out, Outcome::Rejected(r) if r.reason == Reason::DuplicateEventId)
}

#[test]
fn ids_in_runs_on_disk_are_duplicates_before_and_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = veritrace_anchor::DataDir::create(tmp.path().join("d")).expect("dir");
    let policy = BatchPolicy {
        max_records: 10,
        dedupe_memory_ids: 25,
        ..Default::default()
    };
    let mut p = PartitionProcessor::open(&dir, "s", 0, policy).expect("open");
    for n in 0..300u64 {
        assert_eq!(
            push(&mut p, n, &format!("e-{n}")),
            Outcome::Accepted,
            "e-{n}"
        );
    }
    p.seal(NOW).expect("seal");
    let runs = tmp.path().join("d/dedupe/s-p000");
    let files = std::fs::read_dir(&runs)
        .expect("runs")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "ids"))
        })
        .count();
    assert!(files >= 1, "no dedupe run in {}", runs.display());
    // The oldest ids are in runs by now, not in memory.
    let mut offset = 300;
    for n in [0u64, 1, 57, 150, 299] {
        let out = push(&mut p, offset, &format!("e-{n}"));
        assert!(is_duplicate(&out), "e-{n} again: {out:?}");
        offset += 1;
    }
    // And some whose ids are still in memory at the restart (read again from their files).
    for n in 300..305u64 {
        assert_eq!(push(&mut p, offset, &format!("e-{n}")), Outcome::Accepted);
        offset += 1;
    }
    p.seal(NOW).expect("seal");
    drop(p);

    let mut p = PartitionProcessor::open(&dir, "s", 0, policy).expect("open again");
    for n in 0..305u64 {
        let out = push(&mut p, offset, &format!("e-{n}"));
        assert!(is_duplicate(&out), "e-{n} after the restart: {out:?}");
        offset += 1;
    }
    assert_eq!(push(&mut p, offset, "e-305"), Outcome::Accepted);
    p.seal(NOW).expect("seal");
}
