//! Command-line interface.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use veritrace_queries::flight::FlightSql;
use veritrace_queries::{Format, QueryEngine, output};
use veritrace_verify::verify::Options;

use crate::config::Config;

/// Veritrace: verifiable traceability for industrial products.
#[derive(Debug, Parser)]
#[command(name = "veritrace", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: ./veritrace.toml if present). Environment variables
    /// VERITRACE__SECTION__KEY override it; flags override both.
    #[arg(long, global = true, env = "VERITRACE_CONFIG")]
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
    /// Trace a product, part or batch: backward (what went into it) or forward (where it
    /// went), through any number of assembly and transformation levels.
    Trace(TraceArgs),
    /// A recall: every object a lot or part went into (forward), each with its last known
    /// state, place and custodian; with --reverse, what went into a product, down to the
    /// lots that could have caused a complaint. table, json, csv or epcis, and a trace
    /// certificate with --certificate.
    Recall(crate::recall::RecallArgs),
    /// Compact the sealed batches' small events files into large files sorted by trace code
    /// (every proof still verifies; queries never see an event twice or miss one).
    Compact(CompactArgs),
    /// Publish the committed `events`, `rejected` and `edges` tables as Delta Lake tables
    /// (roots: the data directory, rejected/, edges/), so Spark, Trino, DuckDB or the
    /// deltalake package read exactly the committed files, never a file twice during a
    /// compaction. After the first run, every sealed epoch and every compaction publishes.
    /// Prints one JSON line per table.
    Publish(PublishArgs),
    /// Write the proof bundle of one event.
    Proof(ProofArgs),
    /// Print the log's latest signed checkpoint (C2SP tlog-checkpoint in a signed note), or
    /// with --vkey the note verifier key that witnesses and monitors pin.
    Checkpoint(CheckpointArgs),
    /// Print the RFC 9162 consistency proof between two sizes of the log (JSON, checked
    /// before it is printed): the tree of --from leaves is a prefix of the tree of --to.
    Consistency(ConsistencyArgs),
    /// A transparency-log witness (C2SP tlog-witness): serve it, print its key, or submit
    /// this node's checkpoint to one and keep the cosignature.
    #[command(subcommand)]
    Witness(crate::witness_cmd::WitnessCommand),
    /// Follow a node's log from outside (its HTTP API and the published verifier key):
    /// checkpoint signatures, consistency, every new entry, partition chains without gaps,
    /// anchors. Alarms on rollback, split view, inconsistency, gaps and missing anchors
    /// (log line, metric, exit status 1 with --once).
    Monitor(crate::monitor_cmd::MonitorArgs),
    /// Verify a proof bundle or trace certificate (offline, or against the chain with
    /// --rpc); exits 0 when valid and anchored in the --ledger, --key or --rpc you gave, 3
    /// when valid but anchored in nothing you gave (first line UNANCHORED: anyone with a key
    /// of their own can make such a file), 1 when not valid, 2 when it could not be checked
    /// (file unreadable, RPC down).
    Verify(VerifyArgs),
    /// Serve the HTTP API over a data directory.
    Serve(ServeArgs),
    /// Verify a whole data directory: manifests and their hash chains, every committed file
    /// against its recorded digest, every batch root, epochs, the ledger and chain receipts
    /// (--deep: every leaf hash from its stored event). Read only. Exits 0 when intact, 1
    /// with the list of damage, 2 when the check could not run.
    Check(CheckArgs),
    /// Consume Kafka topics as a consumer group member: validate, seal, anchor (runs until
    /// SIGTERM or Ctrl-C). All processors of a group share one data directory.
    Process(crate::process::ProcessArgs),
    /// HTTP ingest for devices and connectors: POST /v1/ingest publishes to the raw topic
    /// and answers 202 once Kafka acknowledged every record (runs until SIGTERM or Ctrl-C).
    Gateway(crate::gateway_cmd::GatewayArgs),
    /// Bridge an MQTT broker to Kafka: subscribes with a persistent QoS 1 session and
    /// acknowledges each message only once Kafka acknowledged it (runs until SIGTERM).
    MqttBridge(crate::mqtt_cmd::BridgeArgs),
    /// Kafka topic administration.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// On-chain anchoring (EVM).
    #[command(subcommand)]
    Anchor(AnchorCommand),
    /// Signing keys for devices and participants.
    #[command(subcommand)]
    Keys(crate::signing::KeysCommand),
    /// Sign a JSON event, or a file of them (JSON lines), with a key file: JWS (one per line)
    /// or COSE_Sign1 (a CBOR sequence), claims iss (--issuer), sub (the event's trace code)
    /// and iat.
    Sign(crate::signing::SignArgs),
    /// The identity registry: participants (companies) and their admin keys.
    #[command(subcommand)]
    Participant(crate::registry_cmd::ParticipantCommand),
    /// The identity registry: devices, their keys, rotation and revocation.
    #[command(subcommand)]
    Device(crate::registry_cmd::DeviceCommand),
    /// Serialised codes that prove themselves: issue them signed (GS1 DigSig, AI 8030),
    /// verify one offline.
    #[command(subcommand)]
    Codes(crate::codes_cmd::CodesCommand),
    /// Business types of this deployment's own (`[types.NAME]` in the config): list them,
    /// record their versions in the log, check the log holds them.
    #[command(subcommand)]
    Types(crate::types_cmd::TypesCommand),
    /// Erase the private values of an event (a data-protection request, a trade secret at
    /// the end of a contract): values and salts are deleted, every proof still verifies with
    /// the field shown as committed, and the erasure is an entry of the audit log, sealed
    /// and anchored.
    Erase(EraseArgs),
    /// API tokens for `veritrace serve`: create (shown once, stored as a hash), list,
    /// revoke.
    #[command(subcommand)]
    Tokens(crate::tokens_cmd::TokensCommand),
    /// The configuration itself.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load the configuration as every command does (the file, then VERITRACE__* variables)
    /// and validate it: exits 0 and names what was read when it is valid, 2 with the key at
    /// fault when not (an unknown key, a bad value). For deployment checks (containers,
    /// ConfigMaps) before a rollout.
    Check,
}

#[derive(Debug, Subcommand)]
enum AnchorCommand {
    /// Deploy the VeritraceAnchor contract; prints chain id, address, transaction and block
    /// as JSON. The deploying key becomes the contract's owner.
    Deploy(DeployArgs),
    /// Seal batches that are in no epoch yet and anchor every sealed epoch with the
    /// configured backend ([anchor] in the config), waiting up to --timeout-secs. For data
    /// directories fed by `ingest file` whose run ended before the chain answered. Exits 0
    /// when everything is anchored, 3 when epochs still wait (they stay sealed); 0 with the
    /// process named when another process (a processor, a server) anchors the directory.
    Run(AnchorRunArgs),
}

#[derive(Debug, Args)]
struct AnchorRunArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// How long to wait for the chain.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// JSON-RPC endpoint of the chain, e.g. http://127.0.0.1:8545.
    #[arg(long)]
    rpc: String,
    /// File holding the owner's private key (hex); default: the VERITRACE_EVM_KEY variable.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the raw and rejected topics (existing ones are left unchanged).
    Create(crate::process::TopicsCreateArgs),
}

#[derive(Debug, Subcommand)]
enum IngestCommand {
    /// Import a file of events: JSON lines, a JSON array, or CSV with a column mapping.
    /// Embedded by default (validate, batch, seal and anchor into a data directory, no
    /// Kafka); with --kafka, publish to the raw topic for the processors instead.
    File(IngestFileArgs),
}

#[derive(Debug, Args)]
struct IngestFileArgs {
    /// The file (`-` for standard input).
    path: PathBuf,
    /// jsonl, json (an array), csv, cose (a CBOR sequence of COSE_Sign1 envelopes) or
    /// epcis (a GS1 EPCIS 2.0 JSON-LD document, `.jsonld`); detected from the name and
    /// content when omitted. JSON lines may be signed JWS.
    #[arg(long)]
    format: Option<veritrace_ingest::file::FileFormat>,
    /// For EPCIS documents: the participant that records their events, `ID:ROLE` (EPCIS
    /// events do not name it), e.g. `plant-sh-01:manufacturer`.
    #[arg(long)]
    recorder: Option<veritrace_processors::epcis::Recorder>,
    /// Column mapping for CSV (TOML; see `veritrace_ingest::file`).
    #[arg(long)]
    csv_map: Option<PathBuf>,
    /// Publish to Kafka (idempotent producer, keyed by trace code) instead of processing
    /// embedded.
    #[arg(long)]
    kafka: bool,
    /// Bootstrap servers, with --kafka [config: kafka.brokers].
    #[arg(long, requires = "kafka")]
    brokers: Option<String>,
    /// Topic, with --kafka [config: kafka.raw-topic].
    #[arg(long, requires = "kafka")]
    topic: Option<String>,
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
    /// Also write a query certificate: every row with the proof of the event it came from
    /// (the result needs an event_id column; at most 100,000 rows), for `veritrace verify`.
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// The SQL statement.
    sql: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("direction").required(true).args(["backward", "forward"])))]
struct TraceArgs {
    /// The trace code (GS1 element string or Digital Link).
    code: String,
    /// What went into it: inputs down to raw material batches.
    #[arg(long)]
    backward: bool,
    /// Where it went: sub-assemblies, products, pallets, shipments, customers.
    #[arg(long)]
    forward: bool,
    /// At most this many levels.
    #[arg(long)]
    depth: Option<u32>,
    /// tree (nodes and their events), table, json, csv or arrow (every event column), or
    /// epcis (an EPCIS 2.0 query document: imported events as imported, native events in
    /// their EPCIS form, each with its proof reference as the `vt:proof` extension).
    #[arg(long, default_value = "tree")]
    format: String,
    /// Also write a trace certificate: every event of the trace with its proof, in one
    /// file that `veritrace verify` checks offline.
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CompactArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Rows per compacted file (each is sorted in memory: about 1 KB per row).
    #[arg(long, default_value_t = 250_000)]
    target_rows: usize,
    /// Do nothing until this many batch files are uncompacted.
    #[arg(long, default_value_t = 8)]
    min_files: usize,
    /// Delete superseded batch files this many seconds after their compaction (queries
    /// planned before it may still read them).
    #[arg(long, default_value_t = 120)]
    grace_secs: u64,
    /// At most this many compacted files per run.
    #[arg(long, default_value_t = 64)]
    max_files: usize,
    /// Merge sorted runs of similar size (within 4x) into one once this many exist, so
    /// lookups by trace code open one file per run (0: never merge).
    #[arg(long, default_value_t = 8)]
    merge_fanin: usize,
    /// Rows per file of a merged run.
    #[arg(long, default_value_t = 1_000_000)]
    merge_file_rows: usize,
    /// Merge every sorted run into one now (after a bulk import; rewrites everything).
    #[arg(long)]
    full_merge: bool,
    /// Do not write the trace index (`index/trace-graph.vtg`, the trace graph a fresh
    /// server reads instead of every edges file; written when batches were sealed since).
    #[arg(long)]
    no_trace_index: bool,
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ProofArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Disclose private fields in the proof: `all`, or fields separated by commas
    /// (`attributes.price,counterparty.name`); the others stay committed.
    #[arg(long, default_value = "")]
    disclose: String,
    /// Also write the event's COSE Receipt (RFC 9942, RFC 9162_SHA256: its batch in the
    /// log, signed with the node's key) to this file, for SCITT tools.
    #[arg(long)]
    receipt: Option<PathBuf>,
    /// Prove against the checkpoint of this log size (a later epoch's, as
    /// `veritrace sql "SELECT log_size FROM epochs"` lists them) instead of the epoch the
    /// event was sealed in.
    #[arg(long)]
    checkpoint: Option<u64>,
    /// The event id.
    event_id: String,
}

#[derive(Debug, Args)]
struct CheckpointArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the node's note verifier key (`origin+keyhash+key`) instead.
    #[arg(long)]
    vkey: bool,
}

#[derive(Debug, Args)]
struct ConsistencyArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// The older size (leaves; 0 proves nothing but is allowed).
    #[arg(long)]
    from: u64,
    /// The newer size (default: the log's size now).
    #[arg(long)]
    to: Option<u64>,
}

#[derive(Debug, Args)]
struct EraseArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// The event whose private values are erased.
    #[arg(long)]
    event: String,
    /// Only this private field (repeatable); default: every private field of the event.
    #[arg(long = "field")]
    fields: Vec<String>,
    /// Why (a data-protection request, the end of a contract): kept in the audit log.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The documents: proof bundles, certificates, consistency proofs (JSON) or COSE
    /// receipts. Several are verified with the same anchors, each receipt's signature once;
    /// the exit status is the worst of them.
    #[arg(required = true)]
    bundles: Vec<PathBuf>,
    /// The node's local ledger file (or the s3://bucket/prefix data directory holding it): checks
    /// the whole hash chain and that the receipt is in it.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// The node's published Ed25519 public key (hex) to pin the signer.
    #[arg(long)]
    key: Option<String>,
    /// JSON-RPC URL of the chain an `evm` receipt names: reads the root back from the
    /// contract and the Anchored log from the receipt's block. Without it the chain is
    /// not consulted (and the report says so).
    #[arg(long)]
    rpc: Option<String>,
    /// The operator's published VeritraceAnchor address, to pin the contract (with --rpc).
    #[arg(long, requires = "rpc")]
    contract: Option<String>,
    /// Deadline of each JSON-RPC request, in seconds.
    #[arg(long, default_value_t = 10)]
    rpc_timeout: u64,
    /// A witness's cosigner key (`veritrace witness vkey`); repeatable: the bundle's
    /// checkpoint must carry their cosignatures (--witnesses of them).
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned (default: all).
    #[arg(long = "witnesses", requires = "witnesses")]
    witness_quorum: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also recompute every leaf hash from its stored canonical event (reads every event).
    #[arg(long)]
    deep: bool,
    /// Print the report as JSON on stdout.
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
    /// Address for Arrow Flight SQL (gRPC) [config: http.flight-listen].
    #[arg(long)]
    flight_listen: Option<SocketAddr>,
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The demo runs on embedded defaults and its own flags; everything else reads the config.
    if let Command::Demo(args) = cli.command {
        return crate::demo::run(args);
    }
    // Signing needs no configuration: integrators run it on their own machines.
    if let Command::Keys(k) = cli.command {
        return crate::signing::keys_cmd(k);
    }
    if let Command::Sign(a) = cli.command {
        return crate::signing::sign_cmd(a);
    }
    if let Command::Codes(c) = cli.command {
        return crate::codes_cmd::codes_cmd(c);
    }
    let cfg = Config::load(cli.config.as_deref())?;
    // The deployment's business types, for every pipeline this process runs.
    veritrace_processors::types::install(cfg.business_types()?);
    // Every s3:// data directory this process opens reaches its store this way.
    veritrace_anchor::store::S3Options::configure(cfg.storage.options()?);
    let data_of = |flag: Option<PathBuf>| flag.unwrap_or_else(|| cfg.data_dir.clone());
    match cli.command {
        Command::Demo(_) | Command::Keys(_) | Command::Sign(_) | Command::Codes(_) => {
            unreachable!("handled above")
        }
        Command::Ingest(IngestCommand::File(a)) => ingest_file(a, &cfg),
        Command::Participant(c) => crate::registry_cmd::participant_cmd(c, &cfg),
        Command::Device(c) => crate::registry_cmd::device_cmd(c, &cfg),
        Command::Tokens(c) => crate::tokens_cmd::tokens_cmd(c, &cfg),
        Command::Types(c) => crate::types_cmd::types_cmd(c, &cfg),
        Command::Config(ConfigCommand::Check) => {
            let file = match cli.config.as_deref() {
                Some(p) => p.display().to_string(),
                None if Path::new(crate::config::DEFAULT_FILE).is_file() => {
                    crate::config::DEFAULT_FILE.to_string()
                }
                None => "no file (built-in defaults)".to_string(),
            };
            let mut vars: Vec<String> = std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .filter(|k| k.starts_with("VERITRACE__"))
                .collect();
            vars.sort();
            println!("configuration ok: {file}");
            for v in vars {
                println!("  overridden by {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Erase(a) => erase_cmd(a, &cfg),
        Command::Process(a) => crate::process::process(a, cfg),
        Command::Gateway(a) => crate::gateway_cmd::gateway(a, cfg),
        Command::MqttBridge(a) => crate::mqtt_cmd::bridge(a, cfg),
        Command::Topics(TopicsCommand::Create(a)) => crate::process::topics_create(a, cfg),
        Command::Anchor(AnchorCommand::Deploy(a)) => {
            use veritrace_anchor::evm;
            let key = evm::load_key(a.key_file.as_deref())?;
            let rt = crate::rt::runtime()?;
            let d = rt.block_on(evm::deploy(&a.rpc, key, evm::DEFAULT_POLL_INTERVAL))?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            eprintln!(
                "deployed VeritraceAnchor at {} on chain {} (block {}); owner {}",
                d.contract, d.chain_id, d.block_number, d.owner
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Anchor(AnchorCommand::Run(a)) => {
            anchor_run(&data_of(a.data), a.timeout_secs, &cfg)
        }
        Command::Sql(a) => {
            let data = data_of(a.data);
            let rt = crate::rt::runtime()?;
            let out = rt.block_on(async {
                let engine = QueryEngine::open_with(&data, cfg.query.options()).await?;
                let Some(path) = &a.certificate else {
                    return Ok(output::encode(&engine.sql(&a.sql).await?, a.format)?);
                };
                let (batches, cert) = engine
                    .rows_certificate(&a.sql, "all", veritrace_queries::MAX_CERTIFICATE_ROWS)
                    .await?;
                std::fs::write(path, serde_json::to_vec_pretty(&cert)?)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                eprintln!(
                    "certificate: {} rows, {} events, {} batches, {} epoch receipts -> {}",
                    cert.rows.len(),
                    cert.events.len(),
                    cert.batches.len(),
                    cert.anchors.len(),
                    path.display()
                );
                Ok::<_, anyhow::Error>(output::encode(&batches, a.format)?)
            })?;
            std::io::stdout().write_all(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proof(a) => {
            let data = data_of(a.data);
            let rt = crate::rt::runtime()?;
            let bundle = rt.block_on(async {
                let engine = QueryEngine::open(&data).await?;
                let bundle = engine
                    .proof_disclosing(
                        &a.event_id,
                        &veritrace_queries::Disclose::parse(&a.disclose),
                    )
                    .await?;
                let bundle = match a.checkpoint {
                    Some(size) => engine.prove_at(bundle, size).await?,
                    None => bundle,
                };
                if let Some(path) = &a.receipt {
                    let cose = engine.receipt(&bundle).await?;
                    std::fs::write(path, cose).map_err(|e| {
                        veritrace_queries::Error::Output(format!("{}: {e}", path.display()))
                    })?;
                    eprintln!("COSE receipt written to {}", path.display());
                }
                Ok::<_, veritrace_queries::Error>(bundle)
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
        Command::Checkpoint(a) => {
            let dir = veritrace_anchor::DataDir::open(data_of(a.data))?;
            let text = if a.vkey {
                veritrace_anchor::log::verifier_key(&dir)? + "\n"
            } else {
                match veritrace_anchor::log::published(&dir)? {
                    Some((text, _)) => text,
                    None => anyhow::bail!(
                        "no checkpoint is published yet: the log begins with the first epoch this version seals"
                    ),
                }
            };
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Consistency(a) => {
            let data = data_of(a.data);
            let rt = crate::rt::runtime()?;
            let proof = rt.block_on(async {
                let engine = QueryEngine::open(&data).await?;
                let to = match a.to {
                    Some(t) => t,
                    None => engine.log_head().await?.size,
                };
                engine.consistency(a.from, to).await
            })?;
            proof
                .verify()
                .context("the consistency proof the node computed does not verify")?;
            let text = serde_json::to_string_pretty(&proof)? + "\n";
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Monitor(a) => crate::monitor_cmd::run(a),
        Command::Witness(c) => crate::witness_cmd::run(c, data_of),
        Command::Verify(a) => verify_cmd(a),
        Command::Compact(a) => {
            let dir = veritrace_anchor::DataDir::open(data_of(a.data))?;
            let opts = veritrace_anchor::compact::CompactOptions {
                target_rows: a.target_rows.max(1),
                min_files: a.min_files,
                grace: std::time::Duration::from_secs(a.grace_secs),
                max_files: a.max_files.max(1),
                merge_fanin: a.merge_fanin,
                merge_file_rows: a.merge_file_rows.max(1),
                full_merge: a.full_merge,
                ..Default::default()
            };
            match veritrace_anchor::compact::compact(&dir, &opts)? {
                Some(r) => {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                    // The trace graph persisted for fresh engines. `build_index` takes the
                    // compactor's lock again (released when `compact` returned); a compactor
                    // that took it in between writes the index after its own compaction.
                    if !a.no_trace_index {
                        let t = std::time::Instant::now();
                        let built = veritrace_queries::trace::build_index(&dir)
                            .context("writing the trace index")?;
                        if let Some(ix) = built {
                            eprintln!(
                                "trace index: {} links of {} batches ({} codes, {} events, {} bytes) in {:.1} s: {}",
                                ix.edges,
                                ix.batches,
                                ix.codes,
                                ix.events,
                                ix.bytes,
                                t.elapsed().as_secs_f64(),
                                ix.path.display()
                            );
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!(
                        "another compactor is running on {} ({})",
                        dir.root().display(),
                        dir.lock_holder(&dir.compactor_lock_file())
                    );
                    Ok(ExitCode::from(3))
                }
            }
        }
        Command::Publish(a) => {
            let dir = veritrace_anchor::DataDir::open(data_of(a.data))?;
            for t in veritrace_anchor::delta::publish(&dir)? {
                println!("{}", serde_json::to_string(&t)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace(a) => {
            let data = data_of(a.data.clone());
            trace_cmd(a, &data)
        }
        Command::Recall(a) => {
            let data = data_of(a.data.clone());
            crate::recall::run(a, &data)
        }
        Command::Check(a) => check_cmd(&data_of(a.data), a.deep, a.json),
        Command::Serve(a) => {
            let data = data_of(a.data);
            let listen = a.listen.unwrap_or(cfg.http.listen);
            let flight_listen = a.flight_listen.unwrap_or(cfg.http.flight_listen);
            let grace = cfg.query.shutdown_grace;
            let tls_files = cfg.http.tls.files("http.tls")?;
            for (what, addr) in [("the HTTP API", listen), ("Flight SQL", flight_listen)] {
                veritrace_net::check_plaintext(
                    what,
                    addr,
                    tls_files.is_some(),
                    cfg.http.allow_plaintext,
                )
                .map_err(anyhow::Error::msg)?;
            }
            let tls = tls_files
                .map(veritrace_net::Tls::load)
                .transpose()
                .context("http.tls")?;
            let opts = veritrace_net::ServeOptions {
                tls: tls.clone(),
                ..veritrace_net::ServeOptions::default()
            };
            let loopback = listen.ip().is_loopback() && flight_listen.ip().is_loopback();
            let auth_settings = cfg.auth.settings(&data, loopback)?;
            let mut options = cfg.query.options();
            options.registry_root = cfg.signatures.root()?;
            let audit_cfg = if cfg.auth.audit {
                let r = cfg.runtime()?;
                Some(veritrace_processors::embedded::EmbeddedConfig {
                    stream: String::new(),
                    policy: r.policy,
                    epoch_interval: r.epoch_interval,
                    backend: r.backend,
                    signatures: Default::default(),
                    queue: 4096,
                    holder: format!("veritrace serve (pid {})", std::process::id()),
                    kind: Default::default(),
                })
            } else {
                None
            };
            let node = format!(
                "{}:{}",
                std::env::var("HOSTNAME")
                    .ok()
                    .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "veritrace".into()),
                listen.port()
            );
            let mut audit_slot: Option<Arc<veritrace_queries::audit::AuditLog>> = None;
            let rt = crate::rt::runtime()?;
            let result = rt.block_on(async {
                let auth = Arc::new(
                    veritrace_queries::access::Authenticator::new(auth_settings)
                        .await
                        .map_err(anyhow::Error::msg)
                        .context("[auth]")?,
                );
                match auth.anonymous() {
                    Some(r) => eprintln!(
                        "requests without credentials are served as {r} (set [auth] anonymous = \"none\" to refuse them)"
                    ),
                    None => eprintln!(
                        "every request but /healthz needs `Authorization: Bearer <token>` (veritrace tokens create)"
                    ),
                }
                let engine = Arc::new(
                    QueryEngine::open_with(&data, options)
                        .await?
                        .with_brand_keys(cfg.codes.keys()?),
                );
                let registry = prometheus::Registry::new();
                let audit = match audit_cfg {
                    None => None,
                    Some(c) => Some(Arc::new(
                        veritrace_queries::audit::AuditLog::start(
                            engine.data_dir(),
                            c,
                            node.clone(),
                            &registry,
                        )
                        .map_err(anyhow::Error::msg)
                        .context("[auth] audit: the audit log cannot be written to the data directory (audit = false turns it off)")?,
                    )),
                };
                audit_slot.clone_from(&audit);
                let app = veritrace_queries::http::router_with_auth(
                    engine.clone(),
                    registry,
                    auth.clone(),
                    audit.clone(),
                )?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                let flight = tokio::net::TcpListener::bind(flight_listen)
                    .await
                    .with_context(|| format!("binding {flight_listen} for Flight SQL"))?;
                let (http, grpc) = if tls.is_some() {
                    ("https", "grpc+tls")
                } else {
                    ("http", "grpc")
                };
                eprintln!(
                    "serving {} on {http}://{} and Flight SQL on {grpc}://{}",
                    data.display(),
                    listener.local_addr()?,
                    flight.local_addr()?
                );
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let stopped = move || {
                    let mut rx = stop_rx.clone();
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    }
                };
                let stats = Arc::new(veritrace_net::AcceptStats::default());
                let flight_task = match &tls {
                    None => tokio::spawn(veritrace_queries::flight::serve(
                        flight,
                        FlightSql::with_auth(engine.clone(), auth.clone())
                            .with_audit(audit.clone()),
                        stopped(),
                    )),
                    Some(t) => tokio::spawn(veritrace_queries::flight::serve_incoming(
                        veritrace_net::tls_incoming(flight, t.clone(), &opts, stats.clone()),
                        FlightSql::with_auth(engine.clone(), auth.clone())
                            .with_audit(audit.clone()),
                        stopped(),
                    )),
                };
                let servers = async {
                    veritrace_net::serve(listener, app, opts, stats, stopped()).await?;
                    flight_task
                        .await
                        .context("the Flight SQL server task")?
                        .context("Flight SQL server")?;
                    anyhow::Ok(())
                };
                // SIGTERM: stop accepting, let running requests finish for the grace period,
                // then cancel what is left (queries are aborted when their futures drop).
                crate::rt::serve_until_signal(servers, stop_tx, grace)
                    .await
                    .unwrap_or(Ok(()))
            });
            // Blocking reads still running must not hold the exit.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            // The last entries are sealed before the process ends, within a deadline: with
            // the data directory unreachable the store client retries for minutes, and an
            // orchestrator kills the pod long before. What is not sealed stays in the
            // audit journal (every answered request's entry was durable there first) and
            // the next start seals it.
            if let Some(a) = audit_slot {
                let (done_tx, done_rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let r = match Arc::try_unwrap(a) {
                        Ok(a) => a.stop().map_err(anyhow::Error::msg),
                        // Still shared by a stopped task: dropping it seals what was queued.
                        Err(a) => {
                            drop(a);
                            Ok(())
                        }
                    };
                    let _ = done_tx.send(r);
                });
                match done_rx.recv_timeout(AUDIT_SEAL_DEADLINE) {
                    Ok(r) => r.context("sealing the audit log")?,
                    Err(_) => anyhow::bail!(
                        "the audit log's last entries were not sealed within {AUDIT_SEAL_DEADLINE:?} \
                         (is the data directory reachable?); they stay in its journal and the next start seals them"
                    ),
                }
            }
            result?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How long `serve` waits, after its requests ended, for the audit log's last seal.
const AUDIT_SEAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

fn erase_cmd(a: EraseArgs, cfg: &crate::config::Config) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !a.reason.trim().is_empty(),
        "--reason is required: it goes into the audit log"
    );
    let data = a.data.clone().unwrap_or_else(|| cfg.data_dir.clone());
    let rt = crate::rt::runtime()?;
    let loc = rt.block_on(async {
        let engine = QueryEngine::open(&data).await?;
        engine.event(&a.event).await
    })?;
    let dir = veritrace_anchor::DataDir::open(&data)?;
    let erased = veritrace_processors::privacy::erase(&dir, &loc.batch_id, &a.event, &a.fields)?;
    anyhow::ensure!(
        !erased.is_empty(),
        "event {} has no private values held{} (never private, or erased already)",
        a.event,
        if a.fields.is_empty() {
            String::new()
        } else {
            format!(" for {}", a.fields.join(", "))
        }
    );
    let mut id = [0u8; 12];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let now = veritrace_processors::now_ms();
    let who = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let entry = veritrace_processors::audit::AuditEntry {
        entry_id: format!("audit:{}", hex::encode(id)),
        at_ms: now,
        node: "cli".into(),
        who: format!("cli:{who}"),
        role: "admin".into(),
        participant: None,
        protocol: "cli".into(),
        route: "erase".into(),
        target: Some(a.event.clone()),
        sql: None,
        sql_sha256: None,
        rows: None,
        result_sha256: None,
        status: 0,
        outcome: "erased".into(),
        duration_ms: 0,
        detail: Some(format!("{}: {}", erased.join(", "), a.reason.trim())),
    };
    let holder = format!("veritrace erase (pid {})", std::process::id());
    let policy = cfg.runtime()?.policy;
    let header =
        veritrace_processors::audit::append(&dir, policy, &holder, std::slice::from_ref(&entry))?
            .context("the erasure's audit entry was not sealed")?;
    let anchored = veritrace_anchor::epoch_loop::anchor_once(
        &dir,
        cfg.pipeline.epoch_interval,
        cfg.backend()?,
        &holder,
        std::time::Duration::from_secs(30),
    )?;
    println!(
        "{}",
        serde_json::json!({
            "event_id": a.event,
            "erased": erased,
            "audit_entry": entry.entry_id,
            "batch_id": header.batch_id,
            "epoch": anchored.and_then(|r| r.sealed).map(|e| e.epoch_id),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr for `veritrace check`.
struct CheckBar(indicatif::ProgressBar);

impl veritrace_anchor::integrity::Progress for CheckBar {
    fn start(&mut self, total: u64) {
        self.0.set_length(total);
    }
    fn step(&mut self, label: &str) {
        self.0.set_message(label.to_owned());
        self.0.inc(1);
    }
}

fn check_cmd(data: &std::path::Path, deep: bool, json: bool) -> anyhow::Result<ExitCode> {
    let dir = veritrace_anchor::DataDir::open(data)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("checking {bar:30} {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = CheckBar(bar);
    let mut report = veritrace_anchor::integrity::check(&dir, deep, &mut progress)?;
    progress.0.finish_and_clear();
    // The trace index is derived (the edges files are the truth; a server falls back to
    // them), but damage to it is damage to report, with the remedy.
    let index = veritrace_queries::trace::index_path(&dir);
    if let Err(e) = veritrace_queries::trace::GraphFile::open(&dir)
        .and_then(|f| f.map_or(Ok(()), |f| f.verify_all()))
    {
        report.damage.push(veritrace_anchor::integrity::Damage {
            path: index,
            batch: None,
            problem: format!(
                "{e}; traces read the edges files instead until `veritrace compact` rewrites it"
            ),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let r = &report;
        println!(
            "{}: {} manifests, {} batches ({} roots recomputed{}), {} files hashed ({} MB), {} without a recorded digest, {} epochs, {} ledger entries, {} chain receipts, {} log tiles",
            data.display(),
            r.manifests,
            r.batches,
            r.roots_recomputed,
            if deep {
                format!(", {} leaves from their events", r.leaves_recomputed)
            } else {
                String::new()
            },
            r.files_verified,
            r.bytes_hashed / 1_000_000,
            r.files_without_digest,
            r.epochs,
            r.ledger_entries,
            r.evm_receipts,
            r.log_tiles
        );
        if r.damage.is_empty() {
            println!("INTACT");
        } else {
            println!("DAMAGED: {} problem(s)", r.damage.len());
            for d in &r.damage {
                println!("  {d}");
            }
        }
    }
    Ok(if report.damage.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verify_cmd(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    use veritrace_verify::chain::RpcChain;
    use veritrace_verify::report::{ChainCheck, DocumentVerifier};
    let ledger = match &a.ledger {
        // The ledger of a data directory on an object store (s3://bucket/prefix), read
        // with the auditor's own credentials.
        Some(p) if p.to_string_lossy().starts_with("s3://") => {
            let dir = veritrace_anchor::DataDir::open(p)
                .with_context(|| format!("opening {}", p.display()))?;
            let entries: Vec<serde_json::Value> = dir
                .read_jsonl(&dir.ledger_file())
                .with_context(|| format!("reading the ledger of {}", p.display()))?;
            Some(entries.iter().map(|e| format!("{e}\n")).collect())
        }
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading ledger {}", p.display()))?,
        ),
        None => None,
    };
    let opts = Options {
        ledger,
        pinned_key: a.key.clone(),
        witnesses: a.witnesses.clone(),
        witness_quorum: a.witness_quorum,
    };
    let chain = match &a.rpc {
        Some(rpc) => Some(
            RpcChain::new(
                rpc,
                a.contract.as_deref(),
                std::time::Duration::from_secs(a.rpc_timeout),
            )
            .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let verifier = DocumentVerifier::new(&opts, chain.as_ref().map(|c| c as &dyn ChainCheck));
    // 0 valid and anchored in what the auditor supplied, 3 valid but anchored in nothing
    // (anyone can make such a file), 1 invalid: the worst of the documents.
    let mut worst = 0u8;
    for file in &a.bundles {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let verdict = verifier.verify(&file.display().to_string(), &bytes)?;
        emit(&if a.json {
            format!("{}\n", verdict.json)
        } else {
            verdict.text.clone()
        });
        worst = worst.max(match (verdict.valid, verdict.anchored) {
            (true, true) => 0,
            (true, false) => 1,
            (false, _) => 2,
        });
    }
    Ok(ExitCode::from(match worst {
        2 => 1,
        1 => 3,
        _ => 0,
    }))
}

/// A trace walk and its events, with what a command asked beside them.
pub(crate) struct Traced {
    /// The objects reached.
    pub(crate) walk: veritrace_queries::trace::Walk,
    /// Every event of the walk.
    pub(crate) batches: Vec<arrow::record_batch::RecordBatch>,
    /// The events as an EPCIS document, when asked for.
    pub(crate) epcis: Option<serde_json::Value>,
}

/// Walks the trace graph from `code`; writes the walk's trace certificate to
/// `certificate` and builds the EPCIS document named `epcis` when asked.
pub(crate) fn traced(
    data: &std::path::Path,
    code: &str,
    direction: veritrace_queries::trace::Direction,
    depth: Option<u32>,
    certificate: Option<&std::path::Path>,
    epcis: Option<&str>,
) -> anyhow::Result<Traced> {
    let rt = crate::rt::runtime()?;
    let (walk, batches, cert, doc) = rt.block_on(async {
        let engine = QueryEngine::open(data).await?;
        let (walk, batches) = engine.trace(code, direction, depth).await?;
        let cert = match certificate {
            Some(_) => Some(engine.certificate(code, direction, depth).await?),
            None => None,
        };
        let doc = match epcis {
            Some(name) => Some(epcis_export(&engine, &batches, name).await?),
            None => None,
        };
        Ok::<_, anyhow::Error>((walk, batches, cert, doc))
    })?;
    if let (Some(path), Some(cert)) = (certificate, &cert) {
        std::fs::write(path, serde_json::to_vec_pretty(cert)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "certificate: {} events, {} batches, {} epoch receipts -> {}",
            cert.events.len(),
            cert.batches.len(),
            cert.anchors.len(),
            path.display()
        );
    }
    Ok(Traced {
        walk,
        batches,
        epcis: doc,
    })
}

fn trace_cmd(a: TraceArgs, data: &std::path::Path) -> anyhow::Result<ExitCode> {
    use veritrace_queries::trace::{self, Direction};
    let direction = if a.backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let tree = a.format == "tree";
    let epcis = a.format == "epcis";
    let format: Format = if tree || epcis {
        Format::Table
    } else {
        a.format
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{e} (or tree, the default, or epcis)"))?
    };
    let name = format!(
        "veritrace:trace:{}:{}",
        if a.backward { "backward" } else { "forward" },
        a.code
    );
    let Traced {
        walk,
        batches,
        epcis: epcis_doc,
    } = traced(
        data,
        &a.code,
        direction,
        a.depth,
        a.certificate.as_deref(),
        epcis.then_some(name.as_str()),
    )?;
    let out = if let Some(doc) = &epcis_doc {
        serde_json::to_vec_pretty(doc)?
    } else if tree {
        trace::render_tree(&walk, &batches).into_bytes()
    } else if format == Format::Table {
        output::encode(&trace::project(&batches, &trace::SUMMARY_COLUMNS)?, format)?
    } else {
        output::encode(&batches, format)?
    };
    std::io::stdout().write_all(&out)?;
    let events: usize = batches.iter().map(|b| b.num_rows()).sum();
    eprintln!(
        "{} trace of {}: {} nodes, {} events, {} levels",
        match direction {
            Direction::Backward => "backward",
            Direction::Forward => "forward",
        },
        walk.root,
        walk.nodes.len(),
        events,
        walk.nodes.iter().map(|n| n.depth).max().unwrap_or(0)
    );
    if walk.depth_limited {
        eprintln!(
            "note: stopped at --depth {}; the graph goes further",
            a.depth.unwrap_or(0)
        );
    }
    for c in &walk.cycles {
        eprintln!(
            "warning: cycle in the trace graph (bad data), reported once: {}",
            c.join(" -> ")
        );
    }
    if walk.nodes.len() == 1 && events == 0 {
        eprintln!("note: no events and no edges for {}", walk.root);
    }
    Ok(ExitCode::SUCCESS)
}

/// The events of a trace as an EPCIS 2.0 query document
/// ([`veritrace_queries::epcis`]): imported events as they were imported (a part of a split
/// EPCIS event brings the whole event, once), native events in their EPCIS form; events
/// with no EPCIS form are named on stderr, never dropped silently.
pub(crate) async fn epcis_export(
    engine: &QueryEngine,
    batches: &[arrow::record_batch::RecordBatch],
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let (events, left_out) = veritrace_queries::epcis::epcis_events(engine, batches).await?;
    for l in &left_out {
        eprintln!("not in the EPCIS document: {l}");
    }
    let created = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    Ok(veritrace_processors::epcis::export::query_document(
        events, name, &created,
    ))
}

fn anchor_run(data: &std::path::Path, timeout_secs: u64, cfg: &Config) -> anyhow::Result<ExitCode> {
    use veritrace_anchor::DataDir;
    let dir = DataDir::open(data)?;
    let holder = format!("veritrace anchor run (pid {})", std::process::id());
    let Some(r) = veritrace_anchor::epoch_loop::anchor_once(
        &dir,
        cfg.pipeline.epoch_interval,
        cfg.backend()?,
        &holder,
        std::time::Duration::from_secs(timeout_secs),
    )?
    else {
        // Anchoring is in hand: a scheduled `anchor run` next to a running processor or
        // server has nothing to do, and says who does it.
        println!(
            "nothing to do: another process anchors {} ({}); it seals and anchors this directory's epochs itself",
            data.display(),
            dir.lock_holder(&dir.anchorer_lock_file())
        );
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(e) = &r.sealed {
        eprintln!("sealed epoch {} over {} batches", e.epoch_id, e.batch_count);
    }
    println!(
        "{} epochs anchored ({}), {} of {} waiting before, {} still waiting",
        r.anchored.len(),
        r.witness,
        r.waiting_before,
        r.epochs,
        r.waiting_after
    );
    if r.waiting_after > 0 {
        if let Some(err) = &r.last_error {
            println!("last chain error: {err}");
        }
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn ingest_file(a: IngestFileArgs, cfg: &Config) -> anyhow::Result<ExitCode> {
    let mapping = match &a.csv_map {
        Some(p) => Some(veritrace_ingest::file::CsvMapping::load(p)?),
        None => None,
    };
    let schema = cfg.epcis.schema()?;
    let records = veritrace_ingest::file::open_records(
        &a.path,
        a.format,
        mapping.as_ref(),
        a.recorder.as_ref(),
        schema.as_ref(),
    )?;
    if a.kafka {
        return crate::process::ingest_to_kafka(records, cfg, a.brokers, a.topic);
    }
    let dir = veritrace_anchor::DataDir::create(a.data.as_ref().unwrap_or(&cfg.data_dir))?
        .with_dedupe_dir(&cfg.pipeline.dedupe_dir);
    let mut read_error = None;
    let source = records
        .map_while(|r| match r {
            Ok(rec) => Some(rec),
            Err(e) => {
                read_error = Some(e);
                None
            }
        })
        .map(|r| (veritrace_ingest::key_of(&r), r));
    let mut rt_cfg = cfg.runtime()?;
    if let Some(s) = a.stream {
        rt_cfg.stream = s;
    }
    if let Some(p) = a.partitions {
        rt_cfg.partitions = p.max(1);
    }
    let report = veritrace_processors::runtime::run(&dir, &rt_cfg, source, Default::default())?;
    crate::demo::print_summary(&report);
    if let Some(e) = read_error {
        anyhow::bail!("{e}; everything read before that is sealed");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the report to stdout. A reader that went away (`verify ... | head -1`) is not an
/// error: the exit status still gives the verdict.
fn emit(report: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(report.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("writing the report: {e}");
    }
}
