//! The trace analytics benchmark: a data directory filled by the simulator (realistic bill
//! of materials), compacted, then the questions data teams ask, cold and warm, against
//! Veritrace and against DuckDB (PyPI `duckdb`, recursive CTEs for the traces) on the same
//! Parquet files in the same invocation.
//!
//! Questions: all events of one trace code; the backward trace of a finished product; the
//! forward trace of the raw material batch that reached the most objects; a GROUP BY over
//! all events. "Cold" is a fresh engine (a fresh DuckDB connection) answering its first
//! question: metadata, file footers and the trace graph are read then; the operating
//! system's page cache is not dropped (that needs privileges CI does not have). Cold is the
//! median of `--cold-repeat` fresh engines (connections), since a single first run varies
//! with the kernel's memory state. "Warm" is the median of the repeats that follow.
//!
//! With `--participant ID` the same run also asks the Veritrace questions as that participant
//! would (`QueryEngine::scoped(&Scope::Participant(ID))`: the events it takes part in, edges
//! of those events, traces with the other nodes hidden), each right after its unscoped peer,
//! and reports those timings and rows beside the unscoped ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::Array;
use serde::Serialize;
use veritrace_anchor::DataDir;
use veritrace_anchor::compact::{CompactOptions, compact};
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_queries::QueryEngine;
use veritrace_queries::access::Scope;
use veritrace_queries::trace::Direction;
use veritrace_simulator::{SimConfig, Simulator};

/// GTIN prefix (in `(01)`) of the simulator's e-bikes: its company prefix 6975412, item
/// references 10300-10303.
const BIKE_GTIN_PREFIX: &str = "(01)069754121030";
/// The simulator's powder coating batches (GTINs of its two coating suppliers).
const COATING_HUACAI: &str = "(01)06951187102381";
const COATING_NORDPULVER: &str = "(01)04056731102557";

/// Flags of `veritrace-loadtest traces`.
#[derive(Debug, Clone, clap::Args)]
pub struct TracesArgs {
    /// Data directory: filled with `--events` simulator records when empty or absent.
    #[arg(long)]
    pub data: PathBuf,
    /// Records to generate into an empty data directory.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Warm repeats per question.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Cold runs per question (each a fresh engine or connection); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub cold_repeat: usize,
    /// Python with `duckdb` (default: `VERITRACE_PYTHON`, else the venv scripts/test builds).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Fill the data directory and stop (no compaction, no questions).
    #[arg(long)]
    pub fill_only: bool,
    /// Do not write the trace index after compacting (a fresh engine then reads every
    /// edges file at its first trace, as before the index existed).
    #[arg(long)]
    pub no_trace_index: bool,
    /// Also ask the Veritrace questions as this participant (`Scope::Participant`), each
    /// right after its unscoped peer, and report both.
    #[arg(long)]
    pub participant: Option<String>,
}

/// Flags of `veritrace-loadtest sql`.
#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// Data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Warm repeats per statement.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// The statements.
    #[arg(required = true)]
    pub sql: Vec<String>,
}

/// One statement's timings from `veritrace-loadtest sql`.
#[derive(Debug, Serialize)]
pub struct SqlTiming {
    /// The statement.
    pub sql: String,
    /// Rows returned.
    pub rows: usize,
    /// A fresh engine's open plus its first answer (ms).
    pub cold_ms: f64,
    /// Every warm repeat (ms).
    pub warm_ms: Vec<f64>,
    /// Their median (ms).
    pub warm_median_ms: f64,
}

/// Times each statement cold (a fresh engine) and warm.
pub fn time_sql(a: &SqlArgs) -> anyhow::Result<Vec<SqlTiming>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut out = Vec::new();
        for sql in &a.sql {
            let t = Instant::now();
            let engine = QueryEngine::open(&a.data).await?;
            let rows: usize = engine.sql(sql).await?.iter().map(|b| b.num_rows()).sum();
            let cold_ms = ms(t.elapsed());
            let mut warm_ms = Vec::new();
            for _ in 0..a.repeat.max(1) {
                let t = Instant::now();
                engine.sql(sql).await?;
                warm_ms.push(ms(t.elapsed()));
            }
            out.push(SqlTiming {
                sql: sql.clone(),
                rows,
                cold_ms,
                warm_median_ms: median(warm_ms.clone()),
                warm_ms,
            });
        }
        Ok(out)
    })
}

/// One question's timings.
#[derive(Debug, Serialize)]
pub struct Timing {
    /// The question.
    pub question: String,
    /// Rows returned (both engines must agree).
    pub rows: u64,
    /// Veritrace, cold (ms).
    pub veritrace_cold_ms: f64,
    /// Veritrace, warm median (ms).
    pub veritrace_warm_ms: f64,
    /// DuckDB, cold (ms).
    pub duckdb_cold_ms: f64,
    /// DuckDB, warm median (ms).
    pub duckdb_warm_ms: f64,
    /// DuckDB warm / Veritrace warm (above 1: Veritrace is faster).
    pub warm_ratio: f64,
    /// The same question as `--participant` (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<ScopedTiming>,
}

/// One question asked through `QueryEngine::scoped(&Scope::Participant(..))`.
#[derive(Debug, Serialize)]
pub struct ScopedTiming {
    /// Rows the participant sees.
    pub rows: u64,
    /// Cold (ms): a fresh engine, its scoped view, then the first answer.
    pub cold_ms: f64,
    /// Warm median (ms).
    pub warm_ms: f64,
    /// Scoped warm / unscoped warm - 1, in percent (the visibility filter's cost).
    pub warm_cost_pct: f64,
    /// Scoped cold / unscoped cold - 1, in percent.
    pub cold_cost_pct: f64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct TracesReport {
    /// Accepted events in the data directory.
    pub events: u64,
    /// Parquet bytes of the events files.
    pub events_bytes: u64,
    /// Events files scanned.
    pub event_files: usize,
    /// Trace-graph edges.
    pub edges: u64,
    /// `--participant`, and the events it may see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<(String, u64)>,
    /// The questions.
    pub timings: Vec<Timing>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Fills an empty data directory with `n` simulator records (streamed, 4 partitions).
pub fn fill(path: &Path, n: u64) -> anyhow::Result<()> {
    let dir = DataDir::create(path)?;
    let cfg = RuntimeConfig {
        stream: "bench".into(),
        partitions: 4,
        policy: BatchPolicy::default(),
        epoch_interval: Duration::from_secs(10),
        ..RuntimeConfig::default()
    };
    let start = Instant::now();
    // A long run starts early enough to end now: no event time in the future.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let sim = Simulator::new(
        SimConfig {
            events: n,
            seed: 42,
            ..SimConfig::default()
        }
        .ending_by(now_ms - 3_600_000),
    )
    .map(|r| (Some(r.key), r.payload));
    let report = runtime::run(&dir, &cfg, sim, Arc::default())?;
    eprintln!(
        "filled {}: {} events in {:.1} s",
        path.display(),
        report.stats.accepted,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Compacts every batch (`veritrace compact`), then merges all compacted files into one
/// sorted run (`veritrace compact --full-merge`), as after a bulk import.
pub fn compact_all(path: &Path) -> anyhow::Result<()> {
    let dir = DataDir::open(path)?;
    let start = Instant::now();
    let opts = CompactOptions {
        grace: Duration::ZERO,
        max_files: usize::MAX,
        min_files: 1,
        merge_fanin: 0,
        ..CompactOptions::default()
    };
    let mut files = 0;
    while let Some(r) = compact(&dir, &opts)? {
        files += r.files_written;
        if r.files_written == 0 {
            break;
        }
    }
    eprintln!(
        "compacted into {files} files in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let r = compact(
        &dir,
        &CompactOptions {
            full_merge: true,
            ..opts
        },
    )?
    .context("another compactor holds the lock")?;
    eprintln!(
        "merged {} files into a sorted run of {} in {:.1} s",
        r.files_merged,
        r.run_files_written,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn count(engine: &QueryEngine, sql: &str) -> anyhow::Result<u64> {
    let b = engine.sql(sql).await?;
    let a = b
        .first()
        .map(|b| b.column(0).clone())
        .context("no result")?;
    Ok(arrow::array::cast::as_primitive_array::<arrow::datatypes::Int64Type>(&a).value(0) as u64)
}

async fn first_string(engine: &QueryEngine, sql: &str) -> anyhow::Result<String> {
    use arrow::array::AsArray;
    let b = engine.sql(sql).await?;
    let b = b.iter().find(|b| b.num_rows() > 0).context("no row")?;
    Ok(b.column(0).as_string::<i32>().value(0).to_owned())
}

/// The Python with `duckdb`: `VERITRACE_PYTHON`, else the virtualenv scripts/test builds.
pub fn default_python() -> PathBuf {
    veritrace_testkit::python::python()
}

/// Runs the benchmark (None with `--fill-only`).
pub fn run(a: &TracesArgs) -> anyhow::Result<Option<TracesReport>> {
    // DuckDB reads the Parquet files in place and the report sizes them on disk: a local
    // directory only.
    anyhow::ensure!(
        !a.data.to_string_lossy().contains("://"),
        "the traces benchmark needs a local data directory given as a path (DuckDB reads its files in place), not {}",
        a.data.display()
    );
    let empty = !a.data.join("batches").is_dir();
    if empty {
        fill(&a.data, a.events)?;
    }
    if a.fill_only {
        return Ok(None);
    }
    compact_all(&a.data)?;
    if !a.no_trace_index {
        let start = Instant::now();
        let dir = DataDir::open(&a.data)?;
        match veritrace_queries::trace::build_index(&dir)? {
            Some(r) => eprintln!(
                "trace index: {} links, {} codes, {} events of {} batches, {} MB, in {:.1} s",
                r.edges,
                r.codes,
                r.events,
                r.batches,
                r.bytes / 1_000_000,
                start.elapsed().as_secs_f64()
            ),
            None => eprintln!("trace index: up to date"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = DataDir::open(&a.data)?;
    // Pick the questions' codes.
    let (product, raw, files, edges_count) = rt.block_on(async {
        let engine = QueryEngine::open(&a.data).await?;
        // A sold product; in a short run, the last assembled one.
        let product = match first_string(
            &engine,
            "SELECT trace_code FROM events WHERE event_type = 'sale' ORDER BY event_id LIMIT 1",
        )
        .await
        {
            Ok(p) => p,
            Err(_) => {
                first_string(
                    &engine,
                    "SELECT trace_code FROM events WHERE event_type = 'assembly' ORDER BY event_time DESC, event_id LIMIT 1",
                )
                .await?
            }
        };
        // The raw material batch whose forward trace reaches the most finished products
        // (e-bikes): candidates are the batches split into part lots and the bulk powder
        // coating batches every frame set draws from.
        let candidates = engine
            .sql(&format!(
                "SELECT DISTINCT parent FROM edges WHERE parent LIKE '{COATING_HUACAI}%' \
                 OR parent LIKE '{COATING_NORDPULVER}%' \
                 UNION SELECT * FROM (SELECT DISTINCT parent FROM edges \
                 WHERE event_type = 'transformation' LIMIT 400)"
            ))
            .await?;
        let mut best = (0usize, String::new());
        for b in &candidates {
            use arrow::array::AsArray;
            let col = b.column(0).as_string::<i32>();
            for i in 0..col.len() {
                let code = col.value(i);
                let walk = engine.trace_walk(code, Direction::Forward, None).await?;
                let products = walk
                    .nodes
                    .iter()
                    .filter(|n| n.code.starts_with(BIKE_GTIN_PREFIX) && n.code.contains("(21)"))
                    .count();
                if products > best.0 {
                    best = (products, code.to_owned());
                }
            }
        }
        let edges_count = count(&engine, "SELECT count(*) FROM edges").await?;
        eprintln!("forward trace root {}: reaches {} products", best.1, best.0);
        anyhow::Ok((product, best, engine.event_files().await?, edges_count))
    })?;
    let (raw_products, raw) = raw;
    let events_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let edge_files: Vec<PathBuf> = std::fs::read_dir(dir.edges_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    let questions: Vec<(String, String)> = vec![
        (
            "all events of one trace code".into(),
            format!("SELECT count(*) FROM (SELECT * FROM events WHERE trace_code = '{product}')"),
        ),
        (
            "backward trace of a finished product".into(),
            format!("SELECT count(*) FROM (SELECT * FROM trace_backward('{product}'))"),
        ),
        (
            format!("forward trace of a raw material batch ({raw_products} products)"),
            format!("SELECT count(*) FROM (SELECT * FROM trace_forward('{raw}'))"),
        ),
        (
            "GROUP BY over all events".into(),
            "SELECT count(*) FROM (SELECT event_type, site, count(*) FROM events GROUP BY event_type, site)".into(),
        ),
    ];
    // Veritrace: fresh engines per question for the cold time, then warm repeats; with
    // `--participant`, the same through the participant's scoped engine right after.
    let scope = a.participant.clone().map(Scope::Participant);
    let ask = |sql: &str, scope: Option<&Scope>| {
        rt.block_on(async {
            let mut cold = Vec::new();
            let mut last = None;
            for _ in 0..a.cold_repeat.max(1) {
                drop(last.take());
                let t = Instant::now();
                let engine = QueryEngine::open(&a.data).await?;
                let engine = match scope {
                    Some(s) => engine.scoped(s).await?,
                    None => engine,
                };
                let rows = count(&engine, sql).await?;
                cold.push(ms(t.elapsed()));
                last = Some((engine, rows));
            }
            let (engine, rows) = last.context("no cold run")?;
            let mut warm = Vec::new();
            for _ in 0..a.repeat.max(1) {
                let t = Instant::now();
                count(&engine, sql).await?;
                warm.push(ms(t.elapsed()));
            }
            anyhow::Ok((median(cold), rows, median(warm)))
        })
    };
    let mut vt = Vec::new();
    let mut scoped = Vec::new();
    for (q, sql) in &questions {
        let (cold, rows, warm) = ask(sql, None)?;
        vt.push((cold, rows, warm));
        scoped.push(match &scope {
            Some(s) => {
                let (s_cold, s_rows, s_warm) = ask(sql, Some(s))?;
                eprintln!(
                    "{q}: {rows} rows, warm {warm:.1} ms, cold {cold:.0} ms; as participant: \
                     {s_rows} rows, warm {s_warm:.1} ms, cold {s_cold:.0} ms"
                );
                Some(ScopedTiming {
                    rows: s_rows,
                    cold_ms: s_cold,
                    warm_ms: s_warm,
                    warm_cost_pct: (s_warm / warm.max(1e-9) - 1.0) * 100.0,
                    cold_cost_pct: (s_cold / cold.max(1e-9) - 1.0) * 100.0,
                })
            }
            None => None,
        });
    }
    // DuckDB over the same files.
    let python = a.python.clone().unwrap_or_else(default_python);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/python/duckdb_traces.py");
    let input = serde_json::json!({
        "events": files,
        "edges": edge_files,
        "product": product,
        "raw": raw,
        "repeat": a.repeat.max(1),
        "cold_repeat": a.cold_repeat.max(1),
    });
    // The file lists go through a file: thousands of paths do not fit an argument list.
    let input_file = tempfile::NamedTempFile::new()?;
    std::fs::write(input_file.path(), input.to_string())?;
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(format!("@{}", input_file.path().display()))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "duckdb run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut timings = Vec::new();
    for (i, (q, _)) in questions.iter().enumerate() {
        let d = &duck["questions"][i];
        let (cold, rows, warm) = vt[i];
        let d_rows = d["rows"].as_u64().unwrap_or(u64::MAX);
        anyhow::ensure!(
            d_rows == rows,
            "{q}: Veritrace returned {rows} rows, DuckDB {d_rows}"
        );
        let dw = d["warm_ms"].as_f64().unwrap_or_default();
        timings.push(Timing {
            question: q.clone(),
            rows,
            veritrace_cold_ms: cold,
            veritrace_warm_ms: warm,
            duckdb_cold_ms: d["cold_ms"].as_f64().unwrap_or_default(),
            duckdb_warm_ms: dw,
            warm_ratio: dw / warm.max(1e-9),
            participant: scoped[i].take(),
        });
    }
    let (events, participant) = rt.block_on(async {
        let engine = QueryEngine::open(&a.data).await?;
        let events = count(&engine, "SELECT count(*) FROM events").await?;
        let participant = match &scope {
            Some(s) => {
                let seen = count(&engine.scoped(s).await?, "SELECT count(*) FROM events").await?;
                a.participant.clone().map(|p| (p, seen))
            }
            None => None,
        };
        anyhow::Ok((events, participant))
    })?;
    Ok(Some(TracesReport {
        events,
        events_bytes,
        event_files: files.len(),
        edges: edges_count,
        participant,
        timings,
    }))
}
