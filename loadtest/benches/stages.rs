//! Per-stage benchmarks: each stage's own ceiling on one core.
//! `cargo bench -p veritrace-loadtest --bench stages`

use std::time::{Duration, Instant};

// The same allocator as the shipped binaries, so the numbers describe what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use veritrace_anchor::{BatchWriter, DataDir, SealInput};
use veritrace_processors::columns::EventColumns;
use veritrace_processors::event::{Limits, parse_event, process};
use veritrace_verify::merkle;

const N: usize = 10_000;
const NOW: i64 = 1_900_000_000_000;

fn stages(c: &mut Criterion) {
    let w = veritrace_loadtest::workload(N as u64, 7);
    let accepted: Vec<_> = w
        .records
        .iter()
        .filter_map(|(_, p)| process(p, NOW, &Limits::default()).ok())
        .collect();
    let events: Vec<_> = accepted.iter().map(|a| a.event.clone()).collect();
    let leaves: Vec<_> = accepted.iter().map(|a| a.leaf_hash).collect();

    let mut g = c.benchmark_group("stages");
    g.sample_size(20).measurement_time(Duration::from_secs(5));

    g.throughput(Throughput::Elements(w.records.len() as u64));
    g.bench_function("parse_validate", |b| {
        b.iter(|| {
            for (_, p) in &w.records {
                let _ = std::hint::black_box(parse_event(p, NOW, &Limits::default()));
            }
        })
    });

    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("canonicalise_leaf_hash", |b| {
        b.iter(|| {
            for e in &events {
                if let Ok(bytes) = e.canonical_bytes() {
                    std::hint::black_box(merkle::leaf_hash(&bytes));
                }
            }
        })
    });

    g.bench_function("merkle_root", |b| {
        b.iter(|| std::hint::black_box(merkle::root(&leaves)))
    });

    g.bench_function("arrow_columns", |b| {
        b.iter_batched(
            EventColumns::new,
            |mut cols| {
                for (i, a) in accepted.iter().enumerate() {
                    let _ = cols.push(&a.event, &a.canonical, &a.leaf_hash, i as u64, None, None);
                }
                std::hint::black_box(cols.finish("b", "s", 0))
            },
            BatchSize::LargeInput,
        )
    });

    g.bench_function("parquet_seal", |b| {
        b.iter_custom(|iters| {
            let tmp = tempfile::tempdir().expect("tmp");
            let dir = DataDir::create(tmp.path()).expect("dir");
            let mut w = BatchWriter::open(&dir, "bench", 0).expect("writer");
            let mut cols = EventColumns::new();
            let mut total = Duration::ZERO;
            for it in 0..iters {
                for (i, a) in accepted.iter().enumerate() {
                    let _ = cols.push(&a.event, &a.canonical, &a.leaf_hash, i as u64, None, None);
                }
                let first = it * N as u64;
                let batch = cols.finish("b", "bench", 0).expect("batch");
                let start = Instant::now();
                w.seal(SealInput {
                    first_offset: first,
                    last_offset: first + N as u64 - 1,
                    records: N as u64,
                    leaf_hashes: &leaves,
                    events: batch,
                    rejected: None,
                    edges: None,
                    sealed_at: String::new(),
                    retracts: Vec::new(),
                })
                .expect("seal");
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
