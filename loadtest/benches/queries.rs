//! Query-stage benchmarks over a compacted, merged data directory of simulator events
//! (1,000,000 records; 20,000 when run once as a test): all events of one trace code, a
//! GROUP BY over all events (dictionary counts, and DataFusion's own plan for comparison),
//! a backward trace, and a proof bundle.
//! `cargo bench -p veritrace-loadtest --bench queries`

use std::time::Duration;

// The same allocator as the shipped binaries, so the numbers describe what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use arrow::array::{AsArray, RecordBatch};
use criterion::{Criterion, criterion_group, criterion_main};
use veritrace_loadtest::traces::{compact_all, fill};
use veritrace_queries::trace::Direction;
use veritrace_queries::{QueryEngine, QueryOptions};

const GROUP_BY: &str = "SELECT event_type, site, count(*) FROM events GROUP BY event_type, site";

fn first_string(batches: &[RecordBatch]) -> String {
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_string::<i32>().value(0).to_owned())
        .expect("a row")
}

fn queries(c: &mut Criterion) {
    // Criterion passes --bench when benchmarking; without it, each bench runs once as a test.
    let full = std::env::args().any(|a| a == "--bench");
    let records = if full { 1_000_000 } else { 20_000 };
    let dir = tempfile::tempdir().expect("temporary directory");
    fill(dir.path(), records).expect("fill");
    compact_all(dir.path()).expect("compact");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let open = |dictionary_count| {
        rt.block_on(QueryEngine::open_with(
            dir.path(),
            QueryOptions {
                dictionary_count,
                ..Default::default()
            },
        ))
        .expect("engine")
    };
    let engine = open(true);
    let plain = open(false);
    let sql = |e: &QueryEngine, q: &str| rt.block_on(e.sql(q)).expect("query");
    let product = first_string(&sql(
        &engine,
        // A sold product; in a short run, an assembled one.
        "SELECT trace_code FROM events WHERE event_type IN ('sale', 'assembly') \
         ORDER BY event_type DESC, event_id LIMIT 1",
    ));
    let event_id = first_string(&sql(
        &engine,
        "SELECT event_id FROM events WHERE event_type = 'production' ORDER BY event_id LIMIT 1",
    ));
    let lookup = format!("SELECT * FROM events WHERE trace_code = '{product}'");
    // Both plans agree before either is timed.
    let rows = |b: Vec<RecordBatch>| b.iter().map(RecordBatch::num_rows).sum::<usize>();
    assert_eq!(rows(sql(&engine, GROUP_BY)), rows(sql(&plain, GROUP_BY)));

    let mut g = c.benchmark_group("queries");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("lookup_trace_code", |b| b.iter(|| sql(&engine, &lookup)));
    g.bench_function("group_by_dictionary_count", |b| {
        b.iter(|| sql(&engine, GROUP_BY))
    });
    g.bench_function("group_by_datafusion_plan", |b| {
        b.iter(|| sql(&plain, GROUP_BY))
    });
    g.bench_function("trace_backward", |b| {
        b.iter(|| {
            rt.block_on(engine.trace(&product, Direction::Backward, None))
                .expect("trace")
        })
    });
    g.bench_function("proof_bundle", |b| {
        b.iter(|| rt.block_on(engine.proof(&event_id)).expect("proof"))
    });
    g.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
