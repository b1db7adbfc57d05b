//! Compaction under load: queries run continuously while the compactor rewrites batch
//! files into large sorted files and merges those into sorted runs; every query sees every
//! event exactly once, lookups by trace code return the same rows, and every proof taken
//! before compaction is the same bundle, still valid, after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use veritrace_anchor::DataDir;
use veritrace_anchor::compact::{CompactOptions, CompactionLog, compact, read_compactions};
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_queries::QueryEngine;
use veritrace_simulator::{SimConfig, Simulator};
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

/// A row's place in the sort order: (no trace code, code and id, or id).
type RowKey = (bool, String);

/// Sets the flag when dropped (also while unwinding).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The first column of a query's rows, as strings.
async fn strings(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let b = engine.sql(sql).await.expect(sql);
    b.iter()
        .flat_map(|b| {
            let a = b.column(0).as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The event ids of one trace code, sorted.
async fn by_code(engine: &QueryEngine, code: &str) -> Vec<String> {
    strings(
        engine,
        &format!("SELECT event_id FROM events WHERE trace_code = '{code}' ORDER BY event_id"),
    )
    .await
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
    let ids = strings(
        &engine,
        "SELECT event_id FROM events ORDER BY event_id LIMIT 25",
    )
    .await;
    let mut before = Vec::new();
    for id in &ids {
        before.push(engine.proof(id).await.expect("proof"));
    }
    let codes = strings(
        &engine,
        "SELECT DISTINCT trace_code FROM events WHERE trace_code IS NOT NULL ORDER BY trace_code LIMIT 40",
    )
    .await;
    let mut by_code_before = std::collections::HashMap::new();
    for c in &codes {
        by_code_before.insert(c.as_str(), by_code(&engine, c).await);
    }

    // The compactor, in small steps so that many commits happen while queries run.
    let done = Arc::new(AtomicBool::new(false));
    let compactor = {
        let dir = dir.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            // Stop the queries even if this thread panics (the join reports it).
            let _done = SetOnDrop(done);
            let opts = CompactOptions {
                target_rows: 4_000,
                min_files: 2,
                grace: Duration::from_millis(500),
                row_group_rows: 1_024,
                max_files: 1,
                merge_fanin: 3,
                merge_file_rows: 5_000,
                full_merge: false,
            };
            let mut passes = 0;
            loop {
                let r = compact(&dir, &opts).expect("compact").expect("lock");
                passes += 1;
                if r.files_written == 0 && r.files_merged == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            // Everything into one sorted run, while queries go on.
            let full = CompactOptions {
                full_merge: true,
                ..opts.clone()
            };
            compact(&dir, &full).expect("compact").expect("lock");
            // Let the grace period pass, then remove the superseded files.
            std::thread::sleep(Duration::from_millis(600));
            compact(&dir, &opts).expect("compact").expect("lock");
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

    // One sorted run is left: its files hold disjoint, ascending key ranges, each file is
    // sorted by (trace code, rows without one last, event id) and matches its recorded range.
    let log = CompactionLog::read(&dir).expect("log");
    assert!(log.merges.len() >= 2, "{} merges", log.merges.len());
    let live = log.live_files();
    assert!(live.len() >= 2);
    assert!(live.iter().all(|f| f.run == live[0].run), "one run");
    let mut rows = 0;
    let mut prev_file_max: Option<RowKey> = None;
    for f in &live {
        let keys = f.keys.clone().expect("key range");
        let file = std::fs::File::open(dir.compacted_dir().join(&f.file)).expect("open");
        let r = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            file,
        )
        .expect("reader")
        .build()
        .expect("build");
        let mut first: Option<RowKey> = None;
        let mut last: Option<RowKey> = None;
        let mut nulls = 0;
        for b in r {
            let b = b.expect("batch");
            let code = b.column(b.schema().index_of("trace_code").expect("col"));
            let code = code.as_string::<i32>();
            let id = b.column(b.schema().index_of("event_id").expect("col"));
            let id = id.as_string::<i32>();
            for r in 0..b.num_rows() {
                rows += 1;
                // (no code, code or id): rows with a code first, in code order, then by id.
                let key = if code.is_null(r) {
                    nulls += 1;
                    (true, id.value(r).to_owned())
                } else {
                    (false, format!("{}\u{0}{}", code.value(r), id.value(r)))
                };
                if let Some(p) = &last {
                    assert!(*p <= key, "{} not sorted: {p:?} > {key:?}", f.file);
                }
                first.get_or_insert_with(|| key.clone());
                last = Some(key);
            }
        }
        assert_eq!(nulls, keys.null_rows, "{}", f.file);
        if let (Some(p), Some(first)) = (&prev_file_max, &first) {
            assert!(p < first, "{} overlaps the file before it", f.file);
        }
        prev_file_max = last;
    }
    assert_eq!(rows, total, "the run holds every event once");
    // Lookups by trace code (pruned to the run's file holding it) find what they did.
    for code in &codes {
        assert_eq!(
            by_code(&engine, code).await,
            by_code_before[code.as_str()],
            "{code}"
        );
    }

    // Every proof is the same bundle and still verifies.
    for (id, b) in ids.iter().zip(&before) {
        let after = engine.proof(id).await.expect("proof after compaction");
        assert_eq!(&after, b, "{id}");
        verify_bundle(&after, &Options::default()).expect("verifies");
    }
}
