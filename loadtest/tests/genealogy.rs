//! Trace correctness against a genealogy whose truth is known (the generator keeps the
//! graph it wrote events for): every backward and forward trace returns exactly the true
//! nodes at their shortest depth and exactly the true events, each once, through splits,
//! merges, shared inputs and 7 levels; the SQL table functions agree; a cycle in bad data
//! is reported and the walk ends.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use veritrace_anchor::DataDir;
use veritrace_loadtest::genealogy::{Genealogy, Shape};
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_queries::QueryEngine;
use veritrace_queries::trace::Direction;

fn ingest(records: Vec<(Option<Vec<u8>>, Vec<u8>)>) -> (tempfile::TempDir, u64) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let cfg = RuntimeConfig {
        stream: "gen".into(),
        partitions: 3,
        policy: BatchPolicy {
            max_records: 700,
            max_age: Duration::from_secs(3600),
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_secs(3600),
        ..RuntimeConfig::default()
    };
    let report = runtime::run(&dir, &cfg, records, Arc::default()).expect("run");
    (tmp, report.stats.rejected_total())
}

fn event_ids(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let i = b.schema().index_of("event_id").expect("event_id column");
        let a = b.column(i).as_string::<i32>();
        out.extend((0..a.len()).map(|r| a.value(r).to_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_trace_matches_the_known_genealogy() {
    let g = Genealogy::generate(&Shape::default());
    let (tmp, rejected) = ingest(g.records.clone());
    assert_eq!(rejected, 0, "the generator writes only valid events");
    let engine = QueryEngine::open(tmp.path()).await.expect("engine");

    let top = *g.level.iter().max().expect("levels");
    assert!(top >= 6, "the genealogy is {top} levels deep");
    let mut checked = 0;
    let mut deepest = 0;
    let mut samples: Vec<(usize, Direction)> = Vec::new();
    for (n, &lvl) in g.level.iter().enumerate() {
        if lvl == top {
            samples.push((n, Direction::Backward));
        }
        if lvl == 0 {
            samples.push((n, Direction::Forward));
        }
        if lvl == top / 2 && n % 3 == 0 {
            samples.push((n, Direction::Backward));
            samples.push((n, Direction::Forward));
        }
    }
    for (n, direction) in samples {
        let forward = direction == Direction::Forward;
        let (dist, want_events) = g.truth(n, forward);
        let (walk, batches) = engine
            .trace(&g.codes[n], direction, None)
            .await
            .expect("trace");
        let got_nodes: HashMap<&str, u32> = walk
            .nodes
            .iter()
            .map(|x| (x.code.as_str(), x.depth))
            .collect();
        assert_eq!(got_nodes.len(), walk.nodes.len(), "a node appears twice");
        let want_nodes: HashMap<&str, u32> = dist
            .iter()
            .map(|(&k, &d)| (g.codes[k].as_str(), d))
            .collect();
        assert_eq!(
            got_nodes, want_nodes,
            "{direction:?} trace of {}",
            g.codes[n]
        );
        let ids = event_ids(&batches);
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "an event appears twice");
        assert_eq!(set, want_events, "{direction:?} events of {}", g.codes[n]);
        assert!(walk.cycles.is_empty());
        deepest = deepest.max(walk.nodes.iter().map(|x| x.depth).max().unwrap_or(0));
        checked += 1;
    }
    assert!(checked > 200, "{checked} traces checked");
    assert!(deepest >= 6, "deepest trace {deepest} levels");
    let named = g
        .records
        .iter()
        .filter(|(_, v)| {
            let v: serde_json::Value = serde_json::from_slice(v).expect("json");
            v["event_type"] == "transformation" && v.get("trace_code").is_some()
        })
        .count();
    assert!(named > 10, "{named} transformations name a work order");

    // Edges files from before they kept each event's own trace code: the same traces,
    // found by searching event ids instead.
    for e in std::fs::read_dir(tmp.path().join("edges")).expect("edges dir") {
        let path = e.expect("entry").path();
        let f = std::fs::File::open(&path).expect("open");
        let r =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .expect("reader")
                .build()
                .expect("build");
        let mut old = Vec::new();
        for b in r {
            let b = b.expect("batch");
            let i = b.schema().index_of("event_trace_code").expect("column");
            let mut b = b;
            b.remove_column(i);
            old.push(b);
        }
        let out = std::fs::File::create(&path).expect("rewrite");
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(out, old[0].schema(), None)
            .expect("writer");
        for b in &old {
            w.write(b).expect("write");
        }
        w.close().expect("close");
    }
    let legacy = QueryEngine::open(tmp.path()).await.expect("engine");
    let mut compared = 0;
    for (n, &lvl) in g.level.iter().enumerate().step_by(7) {
        for direction in [Direction::Backward, Direction::Forward] {
            let (_, batches) = legacy
                .trace(&g.codes[n], direction, None)
                .await
                .expect("trace");
            let ids = event_ids(&batches);
            let set: BTreeSet<String> = ids.iter().cloned().collect();
            assert_eq!(set.len(), ids.len(), "an event appears twice");
            let want = g.truth(n, direction == Direction::Forward).1;
            assert_eq!(
                set, want,
                "{direction:?} trace of {} (level {lvl})",
                g.codes[n]
            );
            compared += 1;
        }
    }
    assert!(compared > 20);

    // The SQL table functions return the same, and compose with SQL.
    let product = g.level.iter().position(|&l| l == top).expect("a product");
    let raw = 0;
    for (sql, n, forward) in [
        (
            format!(
                "SELECT event_id FROM trace_backward('{}')",
                g.codes[product]
            ),
            product,
            false,
        ),
        (
            format!("SELECT event_id FROM trace_forward('{}')", g.codes[raw]),
            raw,
            true,
        ),
    ] {
        let got: BTreeSet<String> = event_ids(&engine.sql(&sql).await.expect("sql"))
            .into_iter()
            .collect();
        assert_eq!(got, g.truth(n, forward).1, "{sql}");
    }
    let by_site = engine
        .sql(&format!(
            "SELECT site, count(*) AS n FROM trace_forward('{}') WHERE event_type = 'sale' GROUP BY site",
            g.codes[raw]
        ))
        .await
        .expect("group by");
    let total: i64 = by_site
        .iter()
        .map(|b| {
            b.column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .flatten()
                .sum::<i64>()
        })
        .sum();
    let (dist, _) = g.truth(raw, true);
    let sold = dist.keys().filter(|&&k| g.level[k] == top).count() as i64;
    assert_eq!(
        total, sold,
        "every product reached from the batch is sold once"
    );

    // A depth limit keeps exactly the nodes within it.
    let (walk, _) = engine
        .trace(&g.codes[product], Direction::Backward, Some(2))
        .await
        .expect("trace");
    let (dist, _) = g.truth(product, false);
    assert_eq!(walk.nodes.len(), dist.values().filter(|&&d| d <= 2).count());
    assert!(walk.depth_limited);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_in_bad_data_is_reported_and_the_trace_ends() {
    let code = |s: &str| format!("(01)09506000134352(21){s}");
    let asm = |id: &str, out: &str, input: &str| {
        let v = serde_json::json!({
            "event_id": id, "event_type": "assembly", "event_time": "2026-11-01T00:00:00Z",
            "trace_code": code(out), "inputs": [code(input)],
            "participant": {"id": "p", "role": "assembler"},
        });
        (Some(code(out).into_bytes()), v.to_string().into_bytes())
    };
    let (tmp, rejected) = ingest(vec![
        asm("c1", "A", "B"),
        asm("c2", "B", "C"),
        asm("c3", "C", "A"),
        asm("c4", "D", "A"),
    ]);
    assert_eq!(rejected, 0);
    let engine = QueryEngine::open(tmp.path()).await.expect("engine");
    for direction in [Direction::Backward, Direction::Forward] {
        let (walk, batches) = engine
            .trace(&code("A"), direction, None)
            .await
            .expect("trace");
        assert_eq!(walk.cycles.len(), 1, "{direction:?}: {:?}", walk.cycles);
        let ids = event_ids(&batches);
        let set: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
    }
    let (walk, _) = engine
        .trace(&code("A"), Direction::Backward, None)
        .await
        .expect("trace");
    assert_eq!(walk.nodes.len(), 3);
}
