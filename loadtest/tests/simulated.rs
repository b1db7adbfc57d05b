//! The simulator's labels against the processors: every record gets exactly the outcome the
//! generator intended, and the pipeline accounts for every record (nothing lost, nothing
//! doubled).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use veritrace_anchor::DataDir;
use veritrace_processors::BatchPolicy;
use veritrace_processors::event::{Limits, process};
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_simulator::{Expect, SimConfig, Simulator};

const N: u64 = 60_000;

fn now() -> i64 {
    veritrace_processors::now_ms()
}

#[test]
fn every_record_gets_the_intended_outcome() {
    let mut expected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut valid = 0u64;
    for r in Simulator::new(SimConfig {
        events: N,
        seed: 3,
        ..SimConfig::default()
    }) {
        let got = process(&r.payload, now(), &Limits::default());
        match r.expect {
            Expect::Valid | Expect::Duplicate => {
                if let Err(e) = &got {
                    panic!(
                        "valid record rejected ({e}): {}",
                        String::from_utf8_lossy(&r.payload)
                    );
                }
                if matches!(r.expect, Expect::Valid) {
                    valid += 1;
                } else {
                    *expected.entry("duplicate_event_id").or_default() += 1;
                }
            }
            Expect::Invalid(reason) => {
                let e = got.err().unwrap_or_else(|| {
                    panic!(
                        "invalid ({reason}) accepted: {}",
                        String::from_utf8_lossy(&r.payload)
                    )
                });
                assert_eq!(
                    e.reason.as_str(),
                    reason,
                    "{}: {}",
                    e.detail,
                    String::from_utf8_lossy(&r.payload[..r.payload.len().min(400)])
                );
                *expected.entry(reason).or_default() += 1;
            }
        }
    }

    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let cfg = RuntimeConfig {
        stream: "sim".into(),
        partitions: 3,
        policy: BatchPolicy {
            max_records: 4_000,
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_millis(200),
        ..RuntimeConfig::default()
    };
    let source = Simulator::new(SimConfig {
        events: N,
        seed: 3,
        ..SimConfig::default()
    })
    .map(|r| (Some(r.key), r.payload));
    let report = runtime::run(&dir, &cfg, source, Arc::default()).expect("pipeline");
    assert_eq!(report.stats.consumed, N);
    assert_eq!(report.stats.accepted, valid);
    let got: BTreeMap<&'static str, u64> = report
        .stats
        .rejected
        .iter()
        .map(|(r, n)| (r.as_str(), *n))
        .collect();
    assert_eq!(got, expected);
    // Every batch is in an anchored epoch.
    let headers = dir.all_batch_headers().expect("headers");
    assert_eq!(headers.iter().map(|h| h.size).sum::<u64>(), valid);
    assert_eq!(headers.iter().map(|h| h.records).sum::<u64>(), N);
    let epochs = veritrace_anchor::EpochLog::read(&dir).expect("epochs");
    assert_eq!(
        epochs.records().iter().map(|e| e.batch_count).sum::<u64>(),
        headers.len() as u64
    );
    assert_eq!(
        veritrace_anchor::LocalLedger::read_entries(&dir)
            .expect("ledger")
            .len(),
        epochs.records().len()
    );

    // Sending the same input again (a re-uploaded ERP export) appends it to the stream:
    // no event becomes a second row; every valid one is recorded as a duplicate.
    let source = Simulator::new(SimConfig {
        events: N,
        seed: 3,
        ..SimConfig::default()
    })
    .map(|r| (Some(r.key), r.payload));
    let again = runtime::run(&dir, &cfg, source, Arc::default()).expect("replay");
    assert_eq!(again.stats.accepted, 0);
    assert_eq!(again.stats.consumed, N);
    let dups = again
        .stats
        .rejected
        .get(&veritrace_processors::Reason::DuplicateEventId)
        .copied()
        .unwrap_or(0);
    assert_eq!(
        dups,
        valid + expected.get("duplicate_event_id").copied().unwrap_or(0)
    );
    let all = dir.all_batch_headers().expect("headers");
    assert_eq!(all.iter().map(|h| h.size).sum::<u64>(), valid);
    assert_eq!(all.iter().map(|h| h.records).sum::<u64>(), 2 * N);
}
