//! Load runs: `cargo run --release -p veritrace-loadtest -- <command>`.
//!
//! - `inprocess`: the simulator's records through the in-process pipeline.
//! - `generate`: write simulator records as JSON lines (for `veritrace ingest file`).
//! - `produce`: publish simulator records to Kafka at the broker's maximum rate.
//! - `bare-consume`: a consumer that does nothing with the records (the peer rate).
//! - `kafka`: the end-to-end benchmark: produce while `veritrace process` consumes, then
//!   report sustained events/s, event-to-sealed latency, and the bare consume rate.
//! - `cluster`: replicas and servers on one `s3://` bucket, killed and scaled while
//!   records stream in; checks that nothing is lost or doubled.
//! - `traces`: trace analytics questions, cold and warm, against DuckDB on the same files.
//! - `evm`: anchoring on Anvil: gas per epoch, seal-to-anchored latency, per-event peer.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the simulator's records through the in-process pipeline and reports rates.
    Inprocess {
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
    },
    /// Writes simulator records as JSON lines.
    Generate {
        /// Records to generate.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Dataset seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (`-`: standard output).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Publishes simulator records to Kafka as fast as the broker takes them.
    Produce {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Topic.
        #[arg(long, default_value = "veritrace.raw")]
        topic: String,
        /// Records to publish.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Dataset seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Reads a topic with a consumer that does nothing with the records.
    BareConsume {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Topic.
        #[arg(long, default_value = "veritrace.raw")]
        topic: String,
        /// Stop after this many records.
        #[arg(long)]
        events: u64,
    },
    /// End-to-end: publish while `veritrace process` consumes; report rates and latency.
    Kafka(veritrace_loadtest::kafka::E2eArgs),
    /// Several `veritrace process` replicas and query servers on one `s3://` data directory
    /// (moto_server), with kill -9 of each replica in turn and scaling down and up while
    /// records stream in and queries run; checks exactly once, intact chains, and every
    /// epoch anchored once.
    Cluster(veritrace_loadtest::cluster::ClusterArgs),
    /// Writes a genealogy whose truth is known: `events.jsonl` (for `veritrace ingest
    /// file`) and `truth.json` (every node's parents and children, and the events of
    /// each), through splits, merges, shared inputs and 7 levels.
    Genealogy {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Raw material batches.
        #[arg(long, default_value_t = 60)]
        raw_batches: usize,
        /// Items per assembly level.
        #[arg(long, default_value_t = 150)]
        items: usize,
        /// Seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Trace analytics: point lookup, backward and forward traces, GROUP BY; cold and warm,
    /// against DuckDB on the same Parquet files.
    Traces(veritrace_loadtest::traces::TracesArgs),
    /// Times SQL statements on a data directory: each cold (a fresh engine) then warm.
    Sql(veritrace_loadtest::traces::SqlArgs),
    /// Anchoring on a real EVM node (Anvil): gas per epoch, seal-to-anchored latency, and
    /// the per-event-transaction peer on the same node.
    Evm(veritrace_loadtest::evm::EvmArgs),
}

// mimalloc: the pipeline allocates on one thread and frees on another (records cross a
// channel); glibc's allocator spends a measurable share of a core on that, mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Inprocess {
            events,
            partitions,
            batch_size,
            seed,
        } => {
            let t = std::time::Instant::now();
            let w = veritrace_loadtest::workload(events, seed);
            let generated = t.elapsed();
            let (report, elapsed) = veritrace_loadtest::run_pipeline(&w, partitions, batch_size)?;
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
                "partitions": partitions,
                "batch_size": batch_size,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::Generate { events, seed, out } => {
            let w = veritrace_loadtest::workload(events, seed);
            let mut sink: Box<dyn Write> = if out == std::path::Path::new("-") {
                Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
            } else {
                Box::new(std::io::BufWriter::new(std::fs::File::create(&out)?))
            };
            for (_, payload) in &w.records {
                sink.write_all(payload)?;
                sink.write_all(b"\n")?;
            }
            sink.flush()?;
        }
        Cmd::Produce {
            brokers,
            topic,
            events,
            seed,
        } => {
            let w = veritrace_loadtest::workload(events, seed);
            let r = veritrace_loadtest::kafka::produce(&brokers, &topic, &w)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::BareConsume {
            brokers,
            topic,
            events,
        } => {
            let r = veritrace_loadtest::kafka::bare_consume(&brokers, &topic, events)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Kafka(a) => {
            let r = veritrace_loadtest::kafka::end_to_end(&a)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Cluster(a) => {
            let r = veritrace_loadtest::cluster::run(&a)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if !r.passed {
                anyhow::bail!("the cluster run found a broken promise (see the report above)");
            }
        }
        Cmd::Genealogy {
            out,
            raw_batches,
            items,
            seed,
        } => {
            let g = veritrace_loadtest::genealogy::Genealogy::generate(
                &veritrace_loadtest::genealogy::Shape {
                    raw_batches,
                    items_per_level: items,
                    seed,
                    ..Default::default()
                },
            );
            std::fs::create_dir_all(&out)?;
            let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("events.jsonl"))?);
            for (_, payload) in &g.records {
                f.write_all(payload)?;
                f.write_all(b"\n")?;
            }
            f.flush()?;
            std::fs::write(out.join("truth.json"), serde_json::to_vec(&g)?)?;
            eprintln!(
                "{} events, {} nodes, {} edge events in {}",
                g.records.len(),
                g.codes.len(),
                g.edge_events.len(),
                out.display()
            );
        }
        Cmd::Sql(a) => {
            let r = veritrace_loadtest::traces::time_sql(&a)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Traces(a) => {
            if let Some(r) = veritrace_loadtest::traces::run(&a)? {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
        }
        Cmd::Evm(a) => {
            let r = veritrace_loadtest::evm::run(&a)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}
