//! `veritrace demo`: the first command a new user runs. It generates a realistic dataset
//! (plants, devices, a four-level bill of materials, QC, logistics, sales, plus invalid and
//! duplicate input), runs it through the production processors and anchor code over an
//! in-process channel, anchors epochs on the local ledger, proves and verifies a sample
//! event, and serves the HTTP API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use veritrace_anchor::DataDir;
use veritrace_processors::runtime::{self, Progress, RunReport, RuntimeConfig};
use veritrace_processors::{BatchPolicy, Reason};
use veritrace_queries::QueryEngine;
use veritrace_simulator::{SimConfig, Simulator};
use veritrace_verify::verify::{self, Options};

/// Marker file that lets the demo recreate its own data directory, and only its own.
const MARKER: &str = ".veritrace-demo";

/// Flags of `veritrace demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of input records to generate (valid, invalid and duplicate).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Data directory. The demo's own directory is recreated on each run; another
    /// directory must be empty or absent.
    #[arg(long, default_value = "veritrace-demo-data")]
    data: PathBuf,
    /// Process and verify, then exit instead of serving HTTP.
    #[arg(long)]
    no_serve: bool,
    /// Address for the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Partitions (processor threads), as on a Kafka topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Seed of the generated dataset.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seal a batch every N records per partition.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Seal and anchor an epoch every this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    epoch_ms: u64,
    /// Where epoch roots are anchored: `local` (the node's signed ledger) or `evm` (a real
    /// chain: needs --rpc and a key in --key-file or VERITRACE_EVM_KEY).
    #[arg(long, value_enum, default_value = "local")]
    chain: ChainArg,
    /// JSON-RPC URL of the EVM chain, with --chain evm.
    #[arg(long)]
    rpc: Option<String>,
    /// An already deployed VeritraceAnchor contract; without it the demo deploys one.
    #[arg(long)]
    contract: Option<String>,
    /// File holding the writer key (hex); default: the VERITRACE_EVM_KEY variable.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Confirmations before an epoch counts as anchored, with --chain evm.
    #[arg(long, default_value_t = 1)]
    confirmations: u64,
}

/// `--chain` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChainArg {
    /// The embedded local ledger.
    Local,
    /// An EVM chain over JSON-RPC.
    Evm,
}

/// Builds the EVM backend for the demo, deploying a contract when none is given.
fn evm_backend(args: &DemoArgs) -> anyhow::Result<veritrace_anchor::Backend> {
    use veritrace_anchor::evm;
    let Some(rpc) = &args.rpc else {
        bail!("--chain evm needs --rpc URL (for example an Anvil node: http://127.0.0.1:8545)");
    };
    let key = evm::load_key(args.key_file.as_deref())?;
    let contract = match &args.contract {
        Some(c) => c
            .parse()
            .map_err(|_| anyhow::anyhow!("--contract {c:?} is not an address"))?,
        None => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let d = rt.block_on(evm::deploy(rpc, key.clone(), evm::DEFAULT_POLL_INTERVAL))?;
            println!(
                "  deployed VeritraceAnchor at {} on chain {} (block {}), owner {}",
                d.contract, d.chain_id, d.block_number, d.owner
            );
            d.contract
        }
    };
    let defaults = crate::config::Config::default().anchor.evm;
    let mut s = defaults.settings_with(contract, key);
    s.rpc = rpc.clone();
    s.confirmations = args.confirmations.max(1);
    s.poll_interval = evm::DEFAULT_POLL_INTERVAL;
    Ok(veritrace_anchor::Backend::Evm(Box::new(s)))
}

fn prepare_dir(path: &Path) -> anyhow::Result<DataDir> {
    // The demo recreates its directory and writes its sample files beside the data: a
    // local directory only (`file:///x` is the directory /x).
    let text = path.to_string_lossy();
    let path = match text.strip_prefix("file://") {
        Some(p) => Path::new(p),
        None if text.contains("://") => bail!(
            "{text}: the demo writes a local directory (it recreates it on every run); pass a path, \
             and use `veritrace ingest` or `veritrace process` for a bucket"
        ),
        None => path,
    };
    if path.exists() {
        let marker = path.join(MARKER);
        let empty = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .next()
            .is_none();
        if marker.exists() {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("recreating demo directory {}", path.display()))?;
        } else if !empty {
            bail!(
                "{} is not empty and was not made by the demo; pass --data with a new directory",
                path.display()
            );
        }
    }
    let dir = DataDir::create(path)?;
    std::fs::write(
        path.join(MARKER),
        "created by `veritrace demo`; the demo recreates this directory\n",
    )?;
    Ok(dir)
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let backend = match args.chain {
        ChainArg::Local => veritrace_anchor::Backend::Local,
        ChainArg::Evm => evm_backend(&args)?,
    };
    let dir = prepare_dir(&args.data)?;
    let root = dir
        .root()
        .canonicalize()
        .unwrap_or_else(|_| dir.root().to_owned());
    println!(
        "Veritrace demo: {} records from a simulated multi-plant manufacturer\n  pipeline: in-process channel ({} partitions) -> processors -> Merkle batches -> epochs -> {} anchor\n  data directory: {}\n",
        thousands(args.events),
        args.partitions,
        match args.chain {
            ChainArg::Local => "local ledger",
            ChainArg::Evm => "EVM chain",
        },
        root.display()
    );

    let cfg = RuntimeConfig {
        stream: "demo".into(),
        partitions: args.partitions,
        policy: BatchPolicy {
            max_records: args.batch_size,
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_millis(args.epoch_ms.max(10)),
        backend,
        anchor_drain: Duration::from_secs(120),
        signatures: Default::default(),
    };
    let sim = Simulator::new(SimConfig {
        events: args.events,
        seed: args.seed,
        ..SimConfig::default()
    });
    let progress = Arc::new(Progress::default());
    let bar = ProgressBar::new(args.events);
    bar.set_style(
        ProgressStyle::with_template("  [{elapsed_precise}] {bar:40.cyan/blue} {human_pos}/{human_len} records  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = {
        let bar = bar.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            while !bar.is_finished() {
                bar.set_position(progress.processed.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "batches {}  epochs {}",
                    progress.batches.load(Ordering::Relaxed),
                    progress.epochs.load(Ordering::Relaxed)
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let source = sim.map(|r| (Some(r.key), r.payload));
    let report = runtime::run(&dir, &cfg, source, progress.clone());
    bar.set_position(progress.processed.load(Ordering::Relaxed));
    bar.finish();
    let _ = ticker.join();
    let report = report?;
    print_summary(&report);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let engine = Arc::new(QueryEngine::open(&root).await?);
        let sample = sample_event(&engine).await?;
        let bundle = engine.proof(&sample).await?;
        let proof_path = root.join("sample-proof.json");
        std::fs::write(&proof_path, bundle.to_json_pretty()? + "\n")?;
        let ledger_path = root.join("ledger").join("local.jsonl");
        let opts = match args.chain {
            ChainArg::Local => Options {
                ledger: Some(std::fs::read_to_string(&ledger_path)?),
                ..Options::default()
            },
            ChainArg::Evm => Options::default(),
        };
        let ok = verify::verify_bundle(&bundle, &opts).context("the sample proof did not verify")?;
        println!("\nSample event {sample}");
        println!("  proof:    {} ({})", proof_path.display(), ok.status.as_str());
        println!("  verified: {} checks passed", ok.checks.len());
        if let (Some(rpc), Some(veritrace_verify::bundle::Anchor::Evm { receipt }), Some(epoch)) =
            (&args.rpc, &bundle.anchor, &bundle.epoch)
        {
            let checks = veritrace_anchor::evm::check_on_chain(
                rpc,
                receipt,
                &epoch.root,
                epoch.epoch_id,
                epoch.batch_count,
                None,
                Duration::from_secs(10),
            )
            .await
            .context("the chain does not back the sample proof")?;
            println!(
                "  on chain: {} checks passed (chain {}, tx {}, block {})",
                checks.len(),
                receipt.chain_id,
                receipt.tx_hash,
                receipt.block_number
            );
        }

        // Show that tampering is caught: change the recorded customer of the sale.
        let mut tampered = bundle.clone();
        if let Some(obj) = tampered.event.as_object_mut() {
            obj.insert("operator".into(), serde_json::Value::String("someone-else".into()));
        }
        let tampered_path = root.join("sample-proof-tampered.json");
        std::fs::write(&tampered_path, tampered.to_json_pretty()? + "\n")?;
        match verify::verify_bundle(&tampered, &opts) {
            Ok(_) => bail!("a tampered proof verified; this is a bug"),
            Err(e) => println!("  tampered copy {} is rejected: {e}", tampered_path.display()),
        }

        let exe = "cargo run --release --";
        let data = root.display();
        let verify_hint = match &args.rpc {
            Some(rpc) if args.chain == ChainArg::Evm => format!("--rpc {rpc}"),
            _ => format!("--ledger {data}/ledger/local.jsonl"),
        };
        if args.no_serve {
            println!("\nTry:\n  {exe} sql --data {data} \"SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY n DESC\"");
            println!("  {exe} proof --data {data} {sample} --out proof.json");
            println!("  {exe} verify proof.json {verify_hint}");
            return anyhow::Ok(());
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {} (pass --listen ADDR or --no-serve)", args.listen))?;
        let addr = listener.local_addr()?;
        let registry = prometheus::Registry::new();
        register_pipeline_metrics(&registry, &report)?;
        let app = veritrace_queries::http::router(engine, registry)?;
        println!("\nServing the HTTP API on http://{addr} (Ctrl-C to stop). Try:");
        println!("  curl -s http://{addr}/healthz");
        println!(
            "  curl -s http://{addr}/v1/sql -H 'content-type: application/json' -d '{{\"sql\": \"SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY n DESC\"}}'"
        );
        println!("  curl -s http://{addr}/v1/events/{sample}");
        println!("  curl -s http://{addr}/v1/events/{sample}/proof > proof.json");
        println!("  {exe} verify proof.json {verify_hint}");
        println!("  {exe} sql --data {data} \"SELECT reason, count(*) AS n FROM rejected GROUP BY reason ORDER BY n DESC\"");
        veritrace_metrics::serve(listener, app, crate::rt::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn sample_event(engine: &QueryEngine) -> anyhow::Result<String> {
    use arrow::array::AsArray;
    for sql in [
        "SELECT event_id FROM events WHERE event_type = 'sale' ORDER BY event_id LIMIT 1",
        "SELECT event_id FROM events ORDER BY event_id LIMIT 1",
    ] {
        let batches = engine.sql(sql).await?;
        if let Some(b) = batches.iter().find(|b| b.num_rows() > 0)
            && let Some(a) = b.column(0).as_string_opt::<i32>()
        {
            return Ok(a.value(0).to_owned());
        }
    }
    bail!("no accepted events to prove (was every record rejected?)")
}

/// The demo's run in the vocabulary `veritrace process` exports (`deploy/METRICS.md`):
/// the same counters, holding the run's totals.
fn register_pipeline_metrics(
    registry: &prometheus::Registry,
    report: &RunReport,
) -> anyhow::Result<()> {
    use veritrace_metrics as m;
    let s = &report.stats;
    m::counter(registry, &m::CONSUMED)?.inc_by(s.consumed);
    m::counter(registry, &m::ACCEPTED)?.inc_by(s.accepted);
    let rejected = m::counter_vec(registry, &m::REJECTED)?;
    for (r, n) in &s.rejected {
        rejected.with_label_values(&[r.as_str()]).inc_by(*n);
    }
    m::counter(registry, &m::DUPLICATES)?.inc_by(
        s.rejected
            .get(&Reason::DuplicateEventId)
            .copied()
            .unwrap_or(0),
    );
    m::counter(registry, &m::BATCHES)?.inc_by(s.batches);
    m::counter(registry, &m::CLONE_SIGHTINGS)?.inc_by(s.clone_sightings);
    m::counter(registry, &m::EPOCHS)?.inc_by(report.epochs);
    Ok(())
}

/// Prints the run summary.
pub fn print_summary(report: &RunReport) {
    let s = &report.stats;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!("\n  consumed   {:>12}", thousands(s.consumed));
    println!("  accepted   {:>12}", thousands(s.accepted));
    println!("  rejected   {:>12}", thousands(s.rejected_total()));
    for r in Reason::ALL {
        if let Some(n) = s.rejected.get(&r) {
            println!("    {:<22} {:>8}", r.as_str(), thousands(*n));
        }
    }
    println!("  batches    {:>12}", thousands(s.batches));
    if s.clone_sightings > 0 {
        println!(
            "  clones?    {:>12}  sightings of a serial too far from its last one to be one object (SELECT * FROM clone_suspects)",
            thousands(s.clone_sightings)
        );
    }
    println!(
        "  epochs     {:>12}  (anchored: {})",
        thousands(report.epochs),
        report.witness
    );
    if report.unanchored > 0 {
        println!(
            "  waiting    {:>12}  epochs sealed but not anchored yet (the chain was not reachable or slow); they stay sealed and the next run anchors them",
            thousands(report.unanchored as u64)
        );
    }
    println!(
        "  throughput {:>12} records/s ({:.2} s end to end)",
        thousands((s.consumed as f64 / secs) as u64),
        secs
    );
}

/// Formats with thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use veritrace_processors::Stats;
    use veritrace_processors::runtime::RunReport;

    use super::*;

    #[test]
    fn the_demo_reports_its_run_in_the_vocabulary_of_veritrace_process() {
        let report = RunReport {
            stats: Stats {
                consumed: 10,
                accepted: 7,
                rejected: BTreeMap::from([
                    (Reason::DuplicateEventId, 1),
                    (Reason::MalformedJson, 2),
                ]),
                batches: 2,
                replayed: 0,
                clone_sightings: 4,
            },
            epochs: 1,
            unanchored: 0,
            witness: "local".into(),
            anchored: Vec::new(),
            elapsed: std::time::Duration::from_secs(1),
        };
        let registry = prometheus::Registry::new();
        register_pipeline_metrics(&registry, &report).expect("register");
        assert_eq!(
            veritrace_metrics::off_catalog(&registry),
            Vec::<String>::new()
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode");
        for (name, want) in [
            (veritrace_metrics::CONSUMED.name, 10.0),
            (veritrace_metrics::ACCEPTED.name, 7.0),
            (veritrace_metrics::REJECTED.name, 3.0),
            (veritrace_metrics::DUPLICATES.name, 1.0),
            (veritrace_metrics::BATCHES.name, 2.0),
            (veritrace_metrics::CLONE_SIGHTINGS.name, 4.0),
            (veritrace_metrics::EPOCHS.name, 1.0),
        ] {
            let got: f64 = text
                .lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            assert_eq!(got, want, "{name}");
        }
    }
}
