//! The whole in-process pipeline on one partition (one processor thread): parse, validate,
//! dedupe, canonicalise, hash, Arrow, Parquet, manifests, epochs and the local ledger.
//! `cargo bench -p veritrace-loadtest --bench pipeline`

use std::time::Duration;

// The same allocator as the shipped binaries, so the numbers describe what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn pipeline(c: &mut Criterion) {
    let w = veritrace_loadtest::workload(200_000, 11);
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(w.records.len() as u64));
    g.bench_function("in_process_1_partition", |b| {
        b.iter(|| veritrace_loadtest::run_pipeline(&w, 1, 10_000).expect("pipeline run"))
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
