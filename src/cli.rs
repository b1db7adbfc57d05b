//! Command-line interface.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use veritrace_queries::{Format, QueryEngine, output};
use veritrace_verify::verify::{self, Options};

use crate::config::Config;

/// Veritrace: verifiable traceability for industrial products.
#[derive(Debug, Parser)]
#[command(name = "veritrace", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: ./veritrace.toml if present). Environment variables
    /// VERITRACE__SECTION__KEY override it; flags override both.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic dataset, run it through the pipeline, anchor it, and serve it.
    Demo(crate::demo::DemoArgs),
    /// Feed records into the pipeline.
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Run a SQL query over a data directory (tables: events, rejected, batches, epochs).
    Sql(SqlArgs),
    /// Write the proof bundle of one event.
    Proof(ProofArgs),
    /// Verify a proof bundle offline; exits 0 when valid, 1 when not.
    Verify(VerifyArgs),
    /// Serve the HTTP API over a data directory.
    Serve(ServeArgs),
}

#[derive(Debug, Subcommand)]
enum IngestCommand {
    /// Process a JSON-lines file (one event per line) into a data directory, embedded
    /// (no Kafka): validate, batch, seal and anchor on the local ledger.
    File(IngestFileArgs),
}

#[derive(Debug, Args)]
struct IngestFileArgs {
    /// JSON-lines file (`-` for standard input).
    path: PathBuf,
    /// Data directory (created if missing) [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Stream name recorded in batch ids [config: pipeline.stream].
    #[arg(long)]
    stream: Option<String>,
    /// Partitions; events are spread by trace code, like Kafka [config: pipeline.partitions].
    #[arg(long)]
    partitions: Option<u32>,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output format: table, json, csv or arrow (IPC stream).
    #[arg(long, default_value = "table")]
    format: Format,
    /// The SQL statement.
    sql: String,
}

#[derive(Debug, Args)]
struct ProofArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// The event id.
    event_id: String,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The proof bundle (JSON).
    bundle: PathBuf,
    /// The node's local ledger file: checks the whole hash chain and that the receipt is in it.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// The node's published Ed25519 public key (hex) to pin the signer.
    #[arg(long)]
    key: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on [config: http.listen].
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The demo runs on embedded defaults and its own flags; everything else reads the config.
    if let Command::Demo(args) = cli.command {
        return crate::demo::run(args);
    }
    let cfg = Config::load(cli.config.as_deref())?;
    let data_of = |flag: Option<PathBuf>| flag.unwrap_or_else(|| cfg.data_dir.clone());
    match cli.command {
        Command::Demo(_) => unreachable!("handled above"),
        Command::Ingest(IngestCommand::File(a)) => ingest_file(a, &cfg),
        Command::Sql(a) => {
            let data = data_of(a.data);
            let rt = runtime()?;
            let out = rt.block_on(async {
                let engine = QueryEngine::open(&data).await?;
                let batches = engine.sql(&a.sql).await?;
                output::encode(&batches, a.format)
            })?;
            std::io::stdout().write_all(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proof(a) => {
            let data = data_of(a.data);
            let rt = runtime()?;
            let bundle = rt.block_on(async {
                let engine = QueryEngine::open(&data).await?;
                engine.proof(&a.event_id).await
            })?;
            let text = bundle.to_json_pretty()? + "\n";
            match a.out {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
                    eprintln!(
                        "proof ({}) written to {}",
                        bundle.status.as_str(),
                        p.display()
                    );
                }
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(a) => verify_cmd(a),
        Command::Serve(a) => {
            let data = data_of(a.data);
            let listen = a.listen.unwrap_or(cfg.http.listen);
            let rt = runtime()?;
            rt.block_on(async {
                let engine = Arc::new(QueryEngine::open(&data).await?);
                let registry = prometheus::Registry::new();
                let app = veritrace_queries::http::router(engine, registry)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                eprintln!(
                    "serving {} on http://{}",
                    data.display(),
                    listener.local_addr()?
                );
                veritrace_queries::http::serve(listener, app, shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn verify_cmd(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    let ledger = match &a.ledger {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading ledger {}", p.display()))?,
        ),
        None => None,
    };
    let opts = Options {
        ledger,
        pinned_key: a.key.clone(),
    };
    match verify::verify_bundle_json(&bytes, &opts) {
        Ok(report) => {
            if a.json {
                let v = serde_json::json!({
                    "valid": true,
                    "event_id": report.event_id,
                    "status": report.status.as_str(),
                    "checks": report.checks,
                    "notes": report.notes,
                });
                println!("{v}");
            } else {
                println!(
                    "VALID  {} ({})",
                    report.event_id.as_deref().unwrap_or("?"),
                    report.status.as_str()
                );
                for c in &report.checks {
                    println!("  ok    {c}");
                }
                for n in &report.notes {
                    println!("  note  {n}");
                }
                println!("  note  chain: no public chain consulted (local backend)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "error": e.to_string()})
                );
            } else {
                println!("INVALID  {}: {e}", a.bundle.display());
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn ingest_file(a: IngestFileArgs, cfg: &Config) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    let dir = veritrace_anchor::DataDir::create(a.data.as_ref().unwrap_or(&cfg.data_dir))?;
    let reader: Box<dyn BufRead> = if a.path == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&a.path)
                .with_context(|| format!("opening {}", a.path.display()))?,
        ))
    };
    let mut read_error = None;
    let records = reader.split(b'\n').map_while(|line| match line {
        Ok(l) => Some(l),
        Err(e) => {
            read_error = Some(e);
            None
        }
    });
    let source = records
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| {
            let key = crate::demo::key_of(&l);
            (key, l)
        });
    let mut rt_cfg = cfg.runtime();
    if let Some(s) = a.stream {
        rt_cfg.stream = s;
    }
    if let Some(p) = a.partitions {
        rt_cfg.partitions = p.max(1);
    }
    let report = veritrace_processors::runtime::run(&dir, &rt_cfg, source, Default::default())?;
    if let Some(e) = read_error {
        bail!(
            "reading {} stopped early: {e} (everything read before that is sealed)",
            a.path.display()
        );
    }
    crate::demo::print_summary(&report);
    Ok(ExitCode::SUCCESS)
}
