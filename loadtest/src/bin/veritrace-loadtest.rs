//! End-to-end load run of the in-process pipeline: `cargo run --release -p veritrace-loadtest -- --events 1000000`.

use clap::Parser;

/// Runs the simulator's records through the whole in-process pipeline and reports rates.
#[derive(Debug, Parser)]
struct Args {
    /// Records to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Partitions (processor threads).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Records per batch.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Dataset seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

// mimalloc: the pipeline allocates on one thread and frees on another (records cross a
// channel); glibc's allocator spends a measurable share of a core on that, mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let t = std::time::Instant::now();
    let w = veritrace_loadtest::workload(a.events, a.seed);
    let generated = t.elapsed();
    let (report, elapsed) = veritrace_loadtest::run_pipeline(&w, a.partitions, a.batch_size)?;
    let s = &report.stats;
    let out = serde_json::json!({
        "records": s.consumed,
        "accepted": s.accepted,
        "rejected": s.rejected_total(),
        "batches": s.batches,
        "epochs": report.epochs,
        "payload_mb": w.bytes as f64 / 1e6,
        "generate_s": generated.as_secs_f64(),
        "pipeline_s": elapsed.as_secs_f64(),
        "records_per_s": s.consumed as f64 / elapsed.as_secs_f64(),
        "partitions": a.partitions,
        "batch_size": a.batch_size,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
