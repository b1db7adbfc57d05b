//! Compaction under load: queries run continuously while the compactor rewrites batch
//! files into large sorted files; every query sees every event exactly once, and every
//! proof taken before compaction is the same bundle, still valid, after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use veritrace_anchor::DataDir;
use veritrace_anchor::compact::{CompactOptions, compact, read_compactions};
use veritrace_ingest::simulate::{SimConfig, Simulator};
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_queries::QueryEngine;
use veritrace_verify::verify::{Options, verify_bundle};

async fn counts(engine: &QueryEngine) -> (i64, i64) {
    let b = engine
        .sql("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")
        .await
        .expect("count query");
    let n = b[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let d = b[0]
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    (n, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_see_every_event_once_while_compacting_and_proofs_survive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let cfg = RuntimeConfig {
        stream: "c".into(),
        partitions: 3,
        policy: BatchPolicy {
            max_records: 800,
            max_age: Duration::from_secs(3600),
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_secs(3600),
        ..RuntimeConfig::default()
    };
    let records: Vec<_> = Simulator::new(SimConfig {
        events: 60_000,
        seed: 5,
        ..SimConfig::default()
    })
    .map(|r| (Some(r.key), r.payload))
    .collect();
    runtime::run(&dir, &cfg, records, Arc::default()).expect("run");
    let engine = Arc::new(QueryEngine::open(tmp.path()).await.expect("engine"));
    let (total, distinct) = counts(&engine).await;
    assert_eq!(total, distinct);
    let files_before = std::fs::read_dir(dir.events_dir()).expect("ls").count();
    assert!(files_before > 50, "{files_before} batch files");

    // Proofs of a sample before compaction.
    let ids = engine
        .sql("SELECT event_id FROM events ORDER BY event_id LIMIT 25")
        .await
        .expect("ids");
    let ids: Vec<String> = ids
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut before = Vec::new();
    for id in &ids {
        before.push(engine.proof(id).await.expect("proof"));
    }

    // The compactor, in small steps so that many commits happen while queries run.
    let done = Arc::new(AtomicBool::new(false));
    let compactor = {
        let dir = dir.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let opts = CompactOptions {
                target_rows: 4_000,
                min_files: 2,
                grace: Duration::from_millis(500),
                row_group_rows: 1_024,
                max_files: 1,
            };
            let mut passes = 0;
            loop {
                let r = compact(&dir, &opts).expect("compact").expect("lock");
                passes += 1;
                if r.files_written == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            // Let the grace period pass, then remove the superseded files.
            std::thread::sleep(Duration::from_millis(600));
            compact(&dir, &opts).expect("compact").expect("lock");
            done.store(true, Ordering::SeqCst);
            passes
        })
    };
    let mut queries = 0;
    while !done.load(Ordering::SeqCst) {
        assert_eq!(counts(&engine).await, (total, total), "during compaction");
        queries += 1;
    }
    let passes = compactor.join().expect("compactor");
    assert!(
        passes >= 3 && queries >= 3,
        "{passes} passes, {queries} queries"
    );
    assert_eq!(counts(&engine).await, (total, total), "after compaction");

    let compactions = read_compactions(&dir).expect("compactions");
    assert!(compactions.len() >= 3);
    let left = std::fs::read_dir(dir.events_dir()).expect("ls").count();
    assert!(
        left < files_before / 4,
        "{left} batch files left of {files_before}"
    );

    // Compacted files are sorted by trace code.
    for c in &compactions {
        let f = std::fs::File::open(dir.compacted_dir().join(&c.file)).expect("open");
        let r =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .expect("reader")
                .build()
                .expect("build");
        let mut prev: Option<String> = None;
        for b in r {
            let b = b.expect("batch");
            let i = b.schema().index_of("trace_code").expect("col");
            let a = b.column(i).as_string::<i32>();
            for r in 0..a.len() {
                if a.is_null(r) {
                    prev = Some(String::from("\u{10FFFF}"));
                    continue;
                }
                let v = a.value(r).to_owned();
                if let Some(p) = &prev {
                    assert!(p.as_str() <= v.as_str(), "{} not sorted: {p} > {v}", c.file);
                }
                prev = Some(v);
            }
        }
    }

    // Every proof is the same bundle and still verifies.
    for (id, b) in ids.iter().zip(&before) {
        let after = engine.proof(id).await.expect("proof after compaction");
        assert_eq!(&after, b, "{id}");
        verify_bundle(&after, &Options::default()).expect("verifies");
    }
}
