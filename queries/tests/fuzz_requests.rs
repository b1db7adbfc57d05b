//! Generated hostile requests against the HTTP API and the Flight SQL service, in process.
//!
//! Every request is attacker-controlled input: arbitrary methods, paths (percent-encoded,
//! very long, unicode, NUL), query strings, bodies (random bytes, JSON of the wrong shape,
//! deep nesting, huge numbers) and SQL statements from a small generator that mixes valid
//! SQL over the real tables with mutations, deep nesting, long literals, writes and random
//! tokens. For every request:
//!
//! - nothing panics and a response arrives;
//! - the HTTP status is one the API documents (200, 400, 404, 405, 413, 415, 422, 503,
//!   504); a 500 means a bug (`internal_error`) or damage (`data_damaged`), and the data
//!   directory here is intact, so any 500 fails the test;
//! - every error body that is JSON is `{"error": {"code": "<non-empty>", ...}}`;
//! - `GET /healthz` answers 200 after every case;
//! - Flight SQL errors are `tonic::Status` with a non-empty message, never `internal`,
//!   `unknown` or `data_loss`, and a stream that opens can be drained and decoded.
//!
//! `PROPTEST_CASES` sets the number of cases of each test (defaults below keep a debug build
//! well under a minute on two cores). The libFuzzer targets in `fuzz/` run the same
//! handlers for longer; what they found is pinned by the regression tests at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, Any,
    CommandGetSqlInfo, CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt,
    TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor, FlightInfo, Ticket};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri, header};
use futures::{StreamExt, TryStreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use prost::Message;
// `tower_service::Service`, re-exported by tonic: drives the axum router in process.
use tonic::codegen::Service;
use veritrace_anchor::DataDir;
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_queries::flight::FlightSql;
use veritrace_queries::{QueryEngine, QueryLimits, QueryOptions};

// ------------------------------------------------------------------------------------------
// The dataset: a small genealogy (raw lots -> part lots -> bikes, a cycle), telemetry and
// rejected records, sealed into batches and epochs as in production.
// ------------------------------------------------------------------------------------------

const GTIN: &str = "09506000134352";

fn lot(name: &str) -> String {
    format!("(01){GTIN}(10){name}")
}

fn serial(name: &str) -> String {
    format!("(01){GTIN}(21){name}")
}

/// Event ids and trace codes the generators use (all exist in the dataset unless noted).
const KNOWN_IDS: &[&str] = &[
    "fz:prod:0",
    "fz:prod:39",
    "fz:tf:3",
    "fz:asm:1",
    "fz:sale:2",
    "fz:tel:5",
    "fz:cyc:1",
    "fz:missing",
];

const KNOWN_CODES: &[&str] = &[
    "(01)09506000134352(10)RAW000",
    "(01)09506000134352(10)PART005",
    "(01)09506000134352(21)BIKE001",
    "https://id.gs1.org/01/09506000134352/21/BIKE002",
    "https://id.gs1.org/01/9506000134352/10/PART001",
    "(01)09506000134352(10)CYC-A",
    "(00)106141411234567897",
    "(01)09506000134353(21)X",
    "urn:epc:id:sgtin:1",
];

fn records() -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let base_ms = 1_740_000_000_000i64;
    let mut n = 0i64;
    let mut time = || {
        n += 1;
        veritrace_processors::rfc3339_ms(base_ms + n * 1_000)
    };
    let mut out = Vec::new();
    let mut push = |key: &str, v: serde_json::Value| {
        out.push((Some(key.as_bytes().to_vec()), v.to_string().into_bytes()));
    };
    let supplier = serde_json::json!({"id": "sup-1", "name": "Supplier 1", "role": "supplier"});
    let plant = serde_json::json!({"id": "plant-1", "role": "manufacturer"});
    for i in 0..40 {
        let code = lot(&format!("RAW{i:03}"));
        push(
            &code,
            serde_json::json!({
                "event_id": format!("fz:prod:{i}"), "event_type": "production",
                "event_time": time(), "trace_code": code, "participant": supplier,
                "object": {"product_id": GTIN, "batch_number": format!("RAW{i:03}")},
                "quantity": {"value": 10.5 + f64::from(i), "unit": "kg"},
                "location": {"lat": 31.2, "lon": 121.4}, "attributes": {"n": i, "tags": ["a", "b"]},
            }),
        );
        push(
            &code,
            serde_json::json!({
                "event_id": format!("fz:qc:{i}"), "event_type": "quality_check",
                "event_time": time(), "trace_code": code, "participant": plant,
                "result": if i % 7 == 0 { "fail" } else { "pass" },
                "attachments": [{"name": "r.pdf", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}],
            }),
        );
    }
    for k in 0..20 {
        let inputs = [
            lot(&format!("RAW{:03}", 2 * k)),
            lot(&format!("RAW{:03}", 2 * k + 1)),
        ];
        push(
            &inputs[0],
            serde_json::json!({
                "event_id": format!("fz:tf:{k}"), "event_type": "transformation",
                "event_time": time(), "participant": plant,
                "inputs": inputs, "outputs": [lot(&format!("PART{k:03}"))],
            }),
        );
    }
    for b in 0..10 {
        let code = serial(&format!("BIKE{b:03}"));
        push(
            &code,
            serde_json::json!({
                "event_id": format!("fz:asm:{b}"), "event_type": "assembly",
                "event_time": time(), "participant": plant, "trace_code": code,
                "inputs": [lot(&format!("PART{:03}", 2 * b)), lot(&format!("PART{:03}", 2 * b + 1))],
            }),
        );
        push(
            &code,
            serde_json::json!({
                "event_id": format!("fz:sale:{b}"), "event_type": "sale",
                "event_time": time(), "participant": {"id": "shop-1", "role": "retailer"},
                "trace_code": format!("https://id.gs1.org/01/{GTIN}/21/BIKE{b:03}"),
                "counterparty": {"id": format!("cust-{b}"), "role": "customer"},
            }),
        );
    }
    // A cycle in the graph: A -> B -> A.
    for (i, (from, to)) in [("CYC-A", "CYC-B"), ("CYC-B", "CYC-A")].iter().enumerate() {
        push(
            &lot(from),
            serde_json::json!({
                "event_id": format!("fz:cyc:{i}"), "event_type": "transformation",
                "event_time": time(), "participant": plant,
                "inputs": [lot(from)], "outputs": [lot(to)],
            }),
        );
    }
    for d in 0..60 {
        let device = format!("dev-{}", d % 4);
        push(
            &device,
            serde_json::json!({
                "event_id": format!("fz:tel:{d}"), "event_type": "telemetry",
                "event_time": time(), "participant": plant, "device_id": device,
                "readings": {"temp_c": 20.5 + f64::from(d), "rpm": d * 10},
            }),
        );
    }
    // Rejected records: bytes kept as sent, with a reason code.
    for (i, bad) in [
        &b"{"[..],
        b"[]",
        b"\xff\xfe\x00garbage",
        br#"{"event_id":"fz:bad:1"}"#,
        br#"{"event_id":"fz:bad:2","event_type":"teleport","event_time":"2025-01-01T00:00:00Z","participant":{"id":"p","role":"supplier"}}"#,
        br#"{"event_id":"fz:prod:0","event_type":"production","event_time":"2025-01-01T00:00:00Z","trace_code":"(01)09506000134352(10)RAW000","participant":{"id":"p","role":"supplier"}}"#,
        b"",
        b"null",
    ]
    .iter()
    .enumerate()
    {
        out.push((Some(format!("bad-{i}").into_bytes()), bad.to_vec()));
    }
    out
}

/// Short deadline so generated heavy queries (cross joins, huge series) end quickly.
fn options() -> QueryOptions {
    QueryOptions {
        limits: QueryLimits {
            timeout: Duration::from_secs(2),
            queue_timeout: Duration::from_secs(5),
            threads: 2,
            ..QueryLimits::default()
        },
        ..QueryOptions::default()
    }
}

struct Fixture {
    engine: Arc<QueryEngine>,
    _dir: tempfile::TempDir,
}

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
});

/// One dataset for the tests running at once; the last one to finish removes it.
fn fixture() -> Arc<Fixture> {
    static SLOT: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
    let mut slot = SLOT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = slot.upgrade() {
        return f;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("data dir");
    let cfg = RuntimeConfig {
        stream: "fuzz".into(),
        partitions: 2,
        policy: BatchPolicy {
            max_records: 40,
            max_age: Duration::from_secs(3600),
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_secs(3600),
        anchor_drain: Duration::from_secs(30),
        ..RuntimeConfig::default()
    };
    runtime::run(&dir, &cfg, records(), Arc::default()).expect("ingest");
    let engine = RT
        .block_on(QueryEngine::open_with(tmp.path(), options()))
        .expect("open");
    let f = Arc::new(Fixture {
        engine: Arc::new(engine),
        _dir: tmp,
    });
    *slot = Arc::downgrade(&f);
    f
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: cases(default_cases),
        // Failures print the shrunk input; no regression files are written into the tree.
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("{name}: {why}\nminimal input: {input:#?}")
        }
        Err(TestError::Abort(why)) => panic!("{name}: aborted: {why}"),
    }
}

// ------------------------------------------------------------------------------------------
// SQL generator
// ------------------------------------------------------------------------------------------

const TABLES: &[&str] = &[
    "events",
    "events_as_recorded",
    "clone_suspects",
    "code_lifecycle",
    "rejected",
    "batches",
    "epochs",
    "edges",
    "audit",
];

const EVENT_COLUMNS: &[&str] = &[
    "*",
    "event_id",
    "event_type",
    "event_time",
    "trace_code",
    "inputs",
    "outputs",
    "readings",
    "attributes",
    "canonical",
    "leaf_hash",
    "lat",
    "quantity",
    "count(*)",
];

/// Statements that are valid over the real tables (some fail at run time on purpose:
/// casts of text, division by zero).
fn valid_sql() -> BoxedStrategy<String> {
    let id = prop::sample::select(KNOWN_IDS);
    let code = prop::sample::select(KNOWN_CODES);
    let table = prop::sample::select(TABLES);
    let col = prop::sample::select(EVENT_COLUMNS);
    let n = prop_oneof![0u64..20, Just(u64::MAX), Just(1 << 31), 0u64..100_000];
    prop_oneof![
        (table.clone(), n.clone()).prop_map(|(t, n)| format!("SELECT * FROM {t} LIMIT {n}")),
        (col.clone(), id.clone()).prop_map(|(c, id)| format!(
            "SELECT {c} FROM events WHERE event_id = '{id}'"
        )),
        col.clone().prop_map(|c| format!("SELECT {c} FROM events ORDER BY event_time DESC")),
        Just("SELECT event_type, count(*) FROM events GROUP BY event_type ORDER BY 2 DESC".into()),
        Just("SELECT DISTINCT participant_role FROM events".into()),
        Just("SELECT reason, count(*) FROM rejected GROUP BY reason".into()),
        Just("SELECT payload, key FROM rejected".into()),
        Just("SELECT b.batch_id, e.status FROM batches b LEFT JOIN epochs e ON b.epoch_id = e.epoch_id".into()),
        code.clone().prop_map(|c| format!("SELECT * FROM trace_backward('{c}')")),
        (code.clone(), any::<i64>()).prop_map(|(c, d)| format!(
            "SELECT event_id, event_type FROM trace_forward('{c}', {d})"
        )),
        (code.clone(), 0u32..5).prop_map(|(c, d)| format!(
            "SELECT count(*) FROM trace_backward('{c}', {d}) t JOIN events e ON t.event_id = e.event_id"
        )),
        code.clone().prop_map(|c| format!("SELECT * FROM edges WHERE parent = '{c}' OR child = '{c}'")),
        Just("SELECT * FROM trace_backward()".into()),
        Just("SELECT * FROM trace_forward(1, 2, 3)".into()),
        Just("SELECT * FROM trace_backward(NULL)".into()),
        Just("SELECT * FROM trace_forward((SELECT trace_code FROM events LIMIT 1))".into()),
        Just("EXPLAIN SELECT * FROM events WHERE trace_code LIKE '%BIKE%'".into()),
        Just("EXPLAIN ANALYZE SELECT count(*) FROM events".into()),
        Just("WITH t AS (SELECT event_id FROM events) SELECT count(*) FROM t a JOIN t b USING (event_id)".into()),
        Just("SELECT readings['temp_c'], unnest(inputs) FROM events".into()),
        Just("SELECT CAST(event_type AS INT) FROM events".into()),
        Just("SELECT 1 / 0".into()),
        Just("SELECT event_id FROM events WHERE 1 / (leaf_index - leaf_index) > 0".into()),
        Just("SELECT arrow_cast(canonical, 'Int64') FROM events".into()),
        Just("SELECT * FROM information_schema.tables".into()),
        Just("SELECT * FROM information_schema.df_settings".into()),
        Just("SHOW TABLES".into()),
        Just("SHOW ALL".into()),
        Just("DESCRIBE events".into()),
        Just("SELECT sha256(canonical), md5(event_id) FROM events LIMIT 3".into()),
        Just("SELECT regexp_replace(canonical, '(a+)+$', 'x') FROM events".into()),
        Just("SELECT regexp_like(event_id, '[') FROM events".into()),
        Just("SELECT to_timestamp('not a time')".into()),
        Just("SELECT make_array(1, 2)[0], [1,2,3][-1]".into()),
        Just("SELECT * FROM unnest([1, 2, 3])".into()),
        Just("SELECT $1".into()),
        Just("SELECT ?".into()),
        (0u64..100_000).prop_map(|n| format!("SELECT count(*) FROM generate_series(1, {n})")),
        (0u64..10_000_000).prop_map(|n| format!("SELECT length(repeat('x', {n}))")),
        Just("SELECT count(*) FROM range(100000000000)".into()),
        Just("SELECT count(*) FROM events a, events b, events c".into()),
        Just("SELECT * FROM events a, events b".into()),
        // Writes, settings and files: all refused, none may take effect.
        Just("CREATE TABLE t AS SELECT 1".into()),
        Just("CREATE VIEW v AS SELECT * FROM events".into()),
        Just("INSERT INTO events SELECT * FROM events".into()),
        Just("DELETE FROM events".into()),
        Just("UPDATE events SET event_type = 'x'".into()),
        Just("DROP TABLE events".into()),
        Just("SET datafusion.execution.batch_size = 1".into()),
        Just("RESET datafusion.execution.batch_size".into()),
        Just("COPY (SELECT 1) TO '/tmp/veritrace-fuzz-copy.csv'".into()),
        Just("COPY events TO '/tmp/veritrace-fuzz-copy.parquet' STORED AS PARQUET".into()),
        Just("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'".into()),
        Just("SELECT * FROM '/etc/passwd'".into()),
        Just("PREPARE p AS SELECT $1".into()),
        Just("EXECUTE p(1)".into()),
        Just("BEGIN TRANSACTION".into()),
        Just("SELECT 1; SELECT 2".into()),
        Just(";".into()),
        Just("".into()),
    ]
    .boxed()
}

/// Statements that nest or chain deeply: refused as `statement_too_complex` past the limits,
/// answered below them.
fn deep_sql() -> BoxedStrategy<String> {
    let n = prop_oneof![1usize..140, 120usize..700, Just(2_000)];
    (n, 0u8..9)
        .prop_map(|(n, kind)| match kind {
            0 => format!("SELECT {}", vec!["1"; n].join("+")),
            1 => format!(
                "SELECT count(*) FROM events WHERE {}",
                (0..n)
                    .map(|i| format!("event_id = 'fz:prod:{i}'"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            2 => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
            3 => format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n)),
            4 => format!(
                "SELECT * FROM {}events{} x",
                "(SELECT * FROM ".repeat(n.min(200)),
                ") t".repeat(n.min(200))
            ),
            5 => vec!["SELECT 1"; n.min(200)].join(" UNION ALL "),
            6 => format!(
                "SELECT 1 FROM {}",
                (0..n.min(200))
                    .map(|i| format!("epochs e{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            7 => format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(n),
                " END".repeat(n)
            ),
            _ => format!("SELECT 1 WHERE {}true", "NOT ".repeat(n)),
        })
        .boxed()
}

/// Long literals and identifiers, around the statement size limit (64 KiB).
fn long_sql() -> BoxedStrategy<String> {
    let len = prop_oneof![1usize..100, Just(10_000), Just(65_000), Just(70_000)];
    (
        len,
        prop::sample::select(&['x', 'é', '字', '\0', '\'', '"'][..]),
        0u8..4,
    )
        .prop_map(|(n, c, kind)| {
            let s: String = std::iter::repeat_n(c, n).collect();
            match kind {
                0 => format!("SELECT '{}'", s.replace('\'', "''")),
                1 => format!("SELECT \"{}\" FROM events", s.replace('"', "\"\"")),
                2 => format!("SELECT * FROM events WHERE event_id = '{s}"),
                _ => format!("SELECT * FROM trace_backward('{}')", s.replace('\'', "''")),
            }
        })
        .boxed()
}

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "JOIN",
    "ON",
    "UNION",
    "ALL",
    "WITH",
    "RECURSIVE",
    "AS",
    "(",
    ")",
    ",",
    ";",
    "*",
    "+",
    "-",
    "/",
    "%",
    "=",
    "<>",
    "||",
    "::",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "$1",
    "?",
    "NULL",
    "NOT",
    "AND",
    "OR",
    "IN",
    "CASE",
    "WHEN",
    "THEN",
    "END",
    "CAST",
    "INT",
    "events",
    "rejected",
    "batches",
    "epochs",
    "edges",
    "trace_backward",
    "trace_forward",
    "event_id",
    "count",
    "unnest",
    "VALUES",
    "EXPLAIN",
    "COPY",
    "CREATE",
    "INSERT",
    "SET",
    "1",
    "-1",
    "1e309",
    "18446744073709551616",
    "0.5",
    "'x'",
    "'%'",
    "E'\\x00'",
    "X'ff'",
    "--",
    "/*",
    "*/",
    "\u{0}",
    "\u{202e}",
    "🦀",
];

/// Mutates a statement: deletes, inserts, swaps or cuts at random places.
fn mutate(sql: String, ops: Vec<(u8, usize, &'static str)>) -> String {
    let mut chars: Vec<char> = sql.chars().collect();
    for (op, pos, tok) in ops {
        let at = if chars.is_empty() {
            0
        } else {
            pos % (chars.len() + 1)
        };
        match op % 5 {
            0 => {
                let end = (at + 1 + pos % 7).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            1 | 2 => {
                for (i, c) in format!(" {tok} ").chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            3 => chars.truncate(at),
            _ => {
                if let Some(c) = chars.get(at).copied() {
                    chars.insert(at, c);
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn sql() -> BoxedStrategy<String> {
    let ops = prop::collection::vec(
        (any::<u8>(), any::<usize>(), prop::sample::select(TOKENS)),
        1..4,
    );
    prop_oneof![
        8 => valid_sql(),
        3 => (valid_sql(), ops).prop_map(|(s, ops)| mutate(s, ops)),
        2 => deep_sql(),
        1 => long_sql(),
        2 => prop::collection::vec(prop::sample::select(TOKENS), 0..30).prop_map(|t| t.join(" ")),
        1 => any::<String>(),
    ]
    .boxed()
}

// ------------------------------------------------------------------------------------------
// HTTP request generator
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Segment {
    Known(&'static str),
    Text(String),
    /// A character repeated: very long segments without a huge Debug print.
    Long(char, usize),
    /// Inserted as written (already URI syntax, e.g. `%ff`, `..`).
    Raw(&'static str),
}

/// A path segment: mostly one of `known`, else anything.
fn segment(known: &'static [&'static str]) -> BoxedStrategy<Segment> {
    prop_oneof![
        5 => prop::sample::select(known).prop_map(Segment::Known),
        1 => prop::sample::select(KNOWN_CODES).prop_map(Segment::Known),
        3 => any::<String>().prop_map(Segment::Text),
        1 => (prop::sample::select(&['a', 'é', '字', '\0', '/', '%', '🦀'][..]), 1usize..8_000)
            .prop_map(|(c, n)| Segment::Long(c, n)),
        2 => prop::sample::select(&[
            "%00", "%ff%fe", "%", "%zz", "%2F", "..", ".", "", "%C0%AF", "%E2%80%AE", "a%20b",
            "%25", "+", "?", "#",
        ][..]).prop_map(Segment::Raw),
    ]
    .boxed()
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Segment {
    fn render(&self) -> String {
        match self {
            Segment::Known(s) => encode(s),
            Segment::Text(s) => encode(s),
            Segment::Long(c, n) => encode(&std::iter::repeat_n(*c, *n).collect::<String>()),
            Segment::Raw(s) => (*s).to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
enum Target {
    Sql(&'static str),
    Event(Segment),
    Proof(Segment),
    Trace(Segment, String),
    Health,
    Metrics,
    Path(Vec<Segment>, String),
}

fn trace_query() -> BoxedStrategy<String> {
    let direction = prop_oneof![
        Just("direction=backward".to_owned()),
        Just("direction=forward".to_owned()),
        Just("direction=sideways".to_owned()),
        Just("direction=".to_owned()),
        Just(String::new()),
        "[a-z]{0,8}".prop_map(|d| format!("direction={d}")),
    ];
    let depth = prop_oneof![
        Just(String::new()),
        (0u32..6).prop_map(|d| format!("&depth={d}")),
        Just("&depth=-1".to_owned()),
        Just("&depth=4294967296".to_owned()),
        Just("&depth=99999999999999999999999".to_owned()),
        Just("&depth=1.5".to_owned()),
        Just("&depth=abc".to_owned()),
        Just("&depth=1&depth=2".to_owned()),
        Just("&limit=1".to_owned()),
    ];
    let raw = any::<String>().prop_map(|s| encode(&s));
    prop_oneof![
        4 => (direction, depth).prop_map(|(a, b)| format!("{a}{b}")),
        1 => raw,
        1 => Just("%zz=%ff".to_owned()),
    ]
    .boxed()
}

fn target() -> BoxedStrategy<Target> {
    prop_oneof![
        10 => Just(Target::Sql("/v1/sql")),
        2 => prop::sample::select(&["/v1/sql/", "//v1/sql", "/V1/SQL", "/v1/sql?x=1", "/v1/%73ql"][..])
            .prop_map(Target::Sql),
        3 => segment(KNOWN_IDS).prop_map(Target::Event),
        2 => segment(KNOWN_IDS).prop_map(Target::Proof),
        3 => (segment(KNOWN_CODES), trace_query()).prop_map(|(s, q)| Target::Trace(s, q)),
        1 => Just(Target::Health),
        1 => Just(Target::Metrics),
        2 => (prop::collection::vec(segment(KNOWN_IDS), 0..5), prop_oneof![Just(String::new()), any::<String>().prop_map(|s| encode(&s))])
            .prop_map(|(s, q)| Target::Path(s, q)),
    ]
    .boxed()
}

impl Target {
    fn render(&self) -> String {
        match self {
            Target::Sql(p) => (*p).to_owned(),
            Target::Event(s) => format!("/v1/events/{}", s.render()),
            Target::Proof(s) => format!("/v1/events/{}/proof", s.render()),
            Target::Trace(s, q) => format!("/v1/trace/{}?{q}", s.render()),
            Target::Health => "/healthz".into(),
            Target::Metrics => "/metrics".into(),
            Target::Path(segs, q) => {
                let p: Vec<String> = segs.iter().map(Segment::render).collect();
                if q.is_empty() {
                    format!("/{}", p.join("/"))
                } else {
                    format!("/{}?{q}", p.join("/"))
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Payload {
    Empty,
    Bytes(Vec<u8>),
    /// `{"sql": ..., "max_rows": ...}` with `extra` spliced in.
    Sql {
        sql: String,
        max_rows: Option<&'static str>,
        extra: Option<&'static str>,
    },
    /// JSON text as written.
    Json(&'static str),
    /// `depth` nested arrays or objects (`{"sql": {"sql": ...}}`).
    Deep(usize, bool),
    /// `len` bytes of one byte value: beyond the body limit (2 MiB) at the top.
    Huge(u8, usize),
}

const MAX_ROWS: &[&str] = &["0", "1", "10", "10000", "10001", "18446744073709551615"];

const BAD_MAX_ROWS: &[&str] = &[
    "-1",
    "1.5",
    "1e3",
    "1e400",
    "18446744073709551616",
    "99999999999999999999999999999",
    "\"10\"",
    "[]",
    "{}",
    "true",
];

const JSON_SHAPES: &[&str] = &[
    "[]",
    "{}",
    "null",
    "1",
    "\"SELECT 1\"",
    "{\"sql\": 1}",
    "{\"sql\": null}",
    "{\"sql\": [\"SELECT 1\"]}",
    "{\"SQL\": \"SELECT 1\"}",
    "{\"sql\": \"SELECT 1\", \"sql\": \"SELECT 2\"}",
    "{\"sql\": \"SELECT 1\"",
    "{\"sql\": \"SELECT 1\"} trailing",
    "{\"sql\": \"SELECT \\ud800\"}",
    "{\"sql\": \"SELECT '\\u0000'\"}",
    "{\"sql\": \"SELECT 1\", \"max_rows\": 1, \"format\": \"csv\"}",
    "{'sql': 'SELECT 1'}",
    "\u{feff}{\"sql\": \"SELECT 1\"}",
];

fn payload() -> BoxedStrategy<Payload> {
    prop_oneof![
        1 => Just(Payload::Empty),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Payload::Bytes),
        10 => (sql(), prop_oneof![
                3 => Just(None),
                2 => prop::sample::select(MAX_ROWS).prop_map(Some),
                1 => prop::sample::select(BAD_MAX_ROWS).prop_map(Some),
            ], prop::option::weighted(0.1, prop::sample::select(&["\"x\": 1", "\"max_rows\": 2", "\"sql\": \"SELECT 2\""][..])))
            .prop_map(|(sql, max_rows, extra)| Payload::Sql { sql, max_rows, extra }),
        2 => prop::sample::select(JSON_SHAPES).prop_map(Payload::Json),
        1 => (prop_oneof![1usize..200, Just(10_000), Just(200_000)], any::<bool>()).prop_map(|(d, o)| Payload::Deep(d, o)),
        1 => (any::<u8>(), prop_oneof![Just(2 * 1024 * 1024 + 1), Just(3 * 1024 * 1024)]).prop_map(|(b, n)| Payload::Huge(b, n)),
    ]
    .boxed()
}

impl Payload {
    fn render(&self) -> Vec<u8> {
        match self {
            Payload::Empty => Vec::new(),
            Payload::Bytes(b) => b.clone(),
            Payload::Sql {
                sql,
                max_rows,
                extra,
            } => {
                let mut s = format!("{{\"sql\": {}", serde_json::Value::from(sql.as_str()));
                if let Some(m) = max_rows {
                    s.push_str(&format!(", \"max_rows\": {m}"));
                }
                if let Some(e) = extra {
                    s.push_str(&format!(", {e}"));
                }
                s.push('}');
                s.into_bytes()
            }
            Payload::Json(j) => j.as_bytes().to_vec(),
            Payload::Deep(depth, objects) => {
                let (open, close) = if *objects {
                    ("{\"sql\": ", "}")
                } else {
                    ("[", "]")
                };
                format!(
                    "{}\"SELECT 1\"{}",
                    open.repeat(*depth),
                    close.repeat(*depth)
                )
                .into_bytes()
            }
            Payload::Huge(b, n) => vec![*b; *n],
        }
    }
}

#[derive(Debug, Clone)]
struct HttpCase {
    method: Method,
    target: Target,
    content_type: Option<&'static str>,
    payload: Payload,
}

fn method() -> BoxedStrategy<Method> {
    prop_oneof![
        6 => Just(Method::POST),
        6 => Just(Method::GET),
        1 => prop::sample::select(vec![
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::PATCH,
            Method::TRACE,
            Method::CONNECT,
        ]),
        1 => "[A-Z!#$%&'*+.^_`|~0-9a-z-]{1,20}".prop_filter_map("a method token", |m| Method::from_bytes(m.as_bytes()).ok()),
    ]
    .boxed()
}

impl Target {
    /// The method the route answers.
    fn method(&self) -> Method {
        match self {
            Target::Sql(_) => Method::POST,
            _ => Method::GET,
        }
    }
}

fn http_case() -> BoxedStrategy<HttpCase> {
    (
        // Mostly the route's own method, so most requests reach a handler.
        prop::option::weighted(0.25, method()),
        target(),
        prop::option::of(prop::sample::select(
            &[
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "garbage",
            ][..],
        )),
        payload(),
    )
        .prop_map(|(method, target, content_type, payload)| HttpCase {
            method: method.unwrap_or_else(|| target.method()),
            target,
            content_type,
            payload,
        })
        .boxed()
}

// ------------------------------------------------------------------------------------------
// HTTP checks
// ------------------------------------------------------------------------------------------

/// Statuses the API answers with. 500 is not here: `internal_error` is a bug and
/// `data_damaged` cannot happen over an intact data directory.
const DOCUMENTED: &[u16] = &[200, 400, 404, 405, 413, 415, 422, 503, 504];

#[derive(Default)]
struct Tally {
    inputs: AtomicU64,
    by_status: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn count(&self, key: String) {
        self.inputs.fetch_add(1, Ordering::Relaxed);
        let mut m = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_default() += 1;
    }

    /// Notes a case that took long (deadlines, heavy plans), for the summary.
    fn timed(&self, took: Duration, what: impl FnOnce() -> String) {
        if took > Duration::from_millis(500) {
            self.count_only(format!("slow (> 0.5 s): {}", what()));
        }
    }

    fn count_only(&self, key: String) {
        let mut m = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_default() += 1;
    }

    fn print(&self, what: &str, started: Instant) {
        let m = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        eprintln!(
            "{what}: {} inputs tried in {:.1?}",
            self.inputs.load(Ordering::Relaxed),
            started.elapsed()
        );
        for (k, v) in m.iter() {
            eprintln!("  {k}: {v}");
        }
    }
}

/// A response, read whole.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let mut app = app.clone();
    let resp =
        match std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx)).await {
            Ok(()) => app.call(req).await,
            Err(e) => match e {},
        };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("the response body is readable")
        .to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// The checks every answer passes; `Err` says what is wrong. A HEAD answer has the headers
/// of a GET and no body.
fn check_answer(a: &Answer, head: bool) -> Result<(), String> {
    let text = || String::from_utf8_lossy(&a.body[..a.body.len().min(2_000)]).into_owned();
    if !DOCUMENTED.contains(&a.status.as_u16()) {
        return Err(format!(
            "undocumented status {} ({}): {}",
            a.status,
            a.content_type,
            text()
        ));
    }
    if a.content_type.starts_with("application/json") && !head {
        let v: serde_json::Value = serde_json::from_slice(&a.body).map_err(|e| {
            format!(
                "a JSON content type with a body that is not JSON ({e}): {}",
                text()
            )
        })?;
        if !a.status.is_success() {
            let code = v
                .get("error")
                .and_then(|e| e.get("code"))
                .and_then(|c| c.as_str())
                .unwrap_or("");
            if code.is_empty() {
                return Err(format!(
                    "{}: error body without error.code: {}",
                    a.status,
                    text()
                ));
            }
        }
    }
    Ok(())
}

/// Status, with the error code when the body has one (for the summary).
fn summary_key(a: &Answer) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(&a.body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("code"))
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        });
    match (a.status.is_success(), code) {
        (true, _) => a.status.as_u16().to_string(),
        (false, Some(c)) => format!("{} {c}", a.status.as_u16()),
        (false, None) => format!("{} (not JSON: {})", a.status.as_u16(), a.content_type),
    }
}

fn request(
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Option<Request<Body>> {
    // Paths that are not URI syntax cannot reach a handler: hyper refuses them first.
    let uri: Uri = uri.parse().ok()?;
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(Body::from(body)).ok()
}

async fn healthz(app: &Router) -> Result<(), String> {
    let req = request(Method::GET, "/healthz", None, Vec::new()).ok_or("the healthz request")?;
    let a = send(app, req).await;
    if a.status != StatusCode::OK {
        return Err(format!(
            "GET /healthz answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    Ok(())
}

fn http_app(f: &Fixture) -> Router {
    veritrace_queries::http::router(f.engine.clone(), prometheus::Registry::new()).expect("router")
}

async fn http_one(app: &Router, case: &HttpCase, tally: &Tally) -> Result<(), String> {
    let uri = case.target.render();
    let Some(req) = request(
        case.method.clone(),
        &uri,
        case.content_type,
        case.payload.render(),
    ) else {
        tally.count("(not a valid URI: refused before routing)".into());
        return Ok(());
    };
    let t = Instant::now();
    let a = send(app, req).await;
    tally.timed(t.elapsed(), || {
        format!("{case:?}").chars().take(120).collect()
    });
    tally.count(summary_key(&a));
    check_answer(&a, case.method == Method::HEAD)
        .map_err(|e| format!("{} {uri}: {e}", case.method))?;
    healthz(app).await
}

#[test]
fn generated_http_requests_are_answered_with_documented_statuses() {
    let f = fixture();
    let app = http_app(&f);
    let tally = Tally::default();
    let started = Instant::now();
    run("http", 1000, http_case(), |case| {
        RT.block_on(http_one(&app, &case, &tally))
            .map_err(TestCaseError::fail)
    });
    tally.print("http", started);
    RT.block_on(writes_took_no_effect(&f));
}

/// No generated write, `SET` or `COPY` changed the tables or wrote a file.
async fn writes_took_no_effect(f: &Fixture) {
    let tables = f
        .engine
        .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        .await
        .expect("tables");
    let names = arrow::util::pretty::pretty_format_batches(&tables)
        .expect("format")
        .to_string();
    for t in TABLES {
        assert!(names.contains(t), "table {t} is gone: {names}");
    }
    assert_eq!(
        tables.iter().map(|b| b.num_rows()).sum::<usize>(),
        TABLES.len(),
        "a generated statement created a table: {names}"
    );
    for p in [
        "/tmp/veritrace-fuzz-copy.csv",
        "/tmp/veritrace-fuzz-copy.parquet",
    ] {
        assert!(!std::path::Path::new(p).exists(), "COPY wrote {p}");
    }
}

// ------------------------------------------------------------------------------------------
// Flight SQL
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum FlightOp {
    /// GetFlightInfo(CommandStatementQuery), then DoGet of the ticket it returns.
    Statement(String),
    /// DoGet(TicketStatementQuery) with these handle bytes.
    StatementHandle(Vec<u8>),
    /// CreatePreparedStatement, GetFlightInfo, DoGet, ClosePreparedStatement.
    Prepared(String),
    /// GetFlightInfo and DoGet of a prepared statement with these handle bytes.
    PreparedHandle(Vec<u8>),
    /// GetSqlInfo for these ids.
    SqlInfo(Vec<u32>),
    /// DoGet with these ticket bytes.
    Ticket(Vec<u8>),
    /// DoGet with an `Any` of this type and these bytes.
    AnyTicket(String, Vec<u8>),
    /// GetFlightInfo with these command bytes.
    Descriptor(Vec<u8>),
    /// DoAction of this type and body.
    Action(String, Vec<u8>),
}

fn type_urls() -> Vec<String> {
    vec![
        TicketStatementQuery::type_url().to_owned(),
        CommandStatementQuery::type_url().to_owned(),
        CommandPreparedStatementQuery::type_url().to_owned(),
        CommandGetSqlInfo::type_url().to_owned(),
        arrow_flight::sql::CommandGetTables::type_url().to_owned(),
        arrow_flight::sql::CommandGetCatalogs::type_url().to_owned(),
        arrow_flight::sql::CommandStatementUpdate::type_url().to_owned(),
        String::new(),
        "type.googleapis.com/unknown".to_owned(),
    ]
}

fn bytes_or_sql() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => sql().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
    .boxed()
}

fn flight_op() -> BoxedStrategy<FlightOp> {
    let action_types = prop_oneof![
        Just("CreatePreparedStatement".to_owned()),
        Just("ClosePreparedStatement".to_owned()),
        Just("CreatePreparedSubstraitPlan".to_owned()),
        Just("BeginTransaction".to_owned()),
        Just("CancelQuery".to_owned()),
        any::<String>(),
    ];
    let action_body = prop_oneof![
        sql().prop_map(|q| ActionCreatePreparedStatementRequest {
            query: q,
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec()),
        bytes_or_sql().prop_map(|h| ActionClosePreparedStatementRequest {
            prepared_statement_handle: h.into(),
        }
        .as_any()
        .encode_to_vec()),
        prop::collection::vec(any::<u8>(), 0..200),
    ];
    prop_oneof![
        6 => sql().prop_map(FlightOp::Statement),
        2 => bytes_or_sql().prop_map(FlightOp::StatementHandle),
        4 => sql().prop_map(FlightOp::Prepared),
        2 => bytes_or_sql().prop_map(FlightOp::PreparedHandle),
        1 => prop::collection::vec(prop_oneof![0u32..20, 500u32..510, any::<u32>()], 0..5).prop_map(FlightOp::SqlInfo),
        2 => prop::collection::vec(any::<u8>(), 0..200).prop_map(FlightOp::Ticket),
        2 => (prop::sample::select(type_urls()), bytes_or_sql()).prop_map(|(t, b)| FlightOp::AnyTicket(t, b)),
        2 => prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            (prop::sample::select(type_urls()), bytes_or_sql()).prop_map(|(t, b)| Any { type_url: t, value: b.into() }.encode_to_vec()),
        ].prop_map(FlightOp::Descriptor),
        2 => (action_types, action_body).prop_map(|(t, b)| FlightOp::Action(t, b)),
    ]
    .boxed()
}

/// Status codes that mean the server failed, not the request.
fn server_fault(s: &tonic::Status) -> bool {
    // arrow-flight's own dispatch (the `FlightService` it implements for every
    // `FlightSqlService`) answers a command or ticket whose `Any` value does not decode with
    // `internal`: the library's choice, before Veritrace's code runs.
    let upstream_decode = s.code() == tonic::Code::Internal
        && s.message()
            .starts_with("ParseError(\"Unable to decode Any value");
    !upstream_decode
        && matches!(
            s.code(),
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss
        )
}

fn check_status(what: &str, s: &tonic::Status) -> Result<String, String> {
    if s.message().is_empty() {
        return Err(format!("{what}: {:?} with an empty message", s.code()));
    }
    if server_fault(s) {
        return Err(format!("{what}: {:?}: {}", s.code(), s.message()));
    }
    Ok(format!("{what} {:?}", s.code()))
}

type DoGet = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<arrow_flight::FlightData, tonic::Status>> + Send>,
>;

/// Drains and decodes a DoGet stream; the outcome for the summary.
async fn drain(
    what: &str,
    r: Result<tonic::Response<DoGet>, tonic::Status>,
) -> Result<String, String> {
    let stream = match r {
        Ok(s) => s.into_inner(),
        Err(s) => return check_status(what, &s),
    };
    let mut batches =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    let mut rows = 0usize;
    while let Some(item) = batches.next().await {
        match item {
            Ok(b) => rows += b.num_rows(),
            // An error after the schema (a failing cast, a deadline) keeps its status and
            // reason code, as before it.
            Err(FlightError::Tonic(s)) => return check_status(&format!("{what} stream"), &s),
            Err(e) => return Err(format!("{what}: the stream does not decode: {e}")),
        }
    }
    let _ = rows;
    Ok(format!("{what} ok"))
}

fn ticket_of(info: &FlightInfo) -> Result<Ticket, String> {
    info.endpoint
        .first()
        .and_then(|e| e.ticket.clone())
        .ok_or_else(|| "FlightInfo without a ticket".to_owned())
}

async fn flight_one(svc: &FlightSql, op: &FlightOp) -> Result<String, String> {
    let cmd = |m: &dyn Fn() -> Vec<u8>| FlightDescriptor::new_cmd(m());
    match op {
        FlightOp::Statement(q) => {
            let query = CommandStatementQuery {
                query: q.clone(),
                transaction_id: None,
            };
            let desc = cmd(&|| query.as_any().encode_to_vec());
            match svc
                .get_flight_info_statement(query.clone(), tonic::Request::new(desc))
                .await
            {
                Err(s) => check_status("statement info", &s),
                Ok(info) => {
                    let ticket = ticket_of(info.get_ref())?;
                    drain(
                        "statement",
                        FlightService::do_get(svc, tonic::Request::new(ticket)).await,
                    )
                    .await
                }
            }
        }
        FlightOp::StatementHandle(h) => {
            let t = TicketStatementQuery {
                statement_handle: h.clone().into(),
            };
            let ticket = Ticket::new(t.as_any().encode_to_vec());
            drain(
                "statement handle",
                svc.do_get_statement(t, tonic::Request::new(ticket)).await,
            )
            .await
        }
        FlightOp::Prepared(q) => {
            let req = ActionCreatePreparedStatementRequest {
                query: q.clone(),
                transaction_id: None,
            };
            let action = Action::new("CreatePreparedStatement", req.as_any().encode_to_vec());
            let created = match svc
                .do_action_create_prepared_statement(req, tonic::Request::new(action))
                .await
            {
                Err(s) => return check_status("prepare", &s),
                Ok(c) => c,
            };
            let cmd_q = CommandPreparedStatementQuery {
                prepared_statement_handle: created.prepared_statement_handle.clone(),
            };
            let desc = cmd(&|| cmd_q.as_any().encode_to_vec());
            let info = svc
                .get_flight_info_prepared_statement(cmd_q.clone(), tonic::Request::new(desc))
                .await;
            let out = match info {
                Err(s) => check_status("prepared info", &s)?,
                Ok(info) => {
                    let ticket = ticket_of(info.get_ref())?;
                    drain(
                        "prepared",
                        svc.do_get_prepared_statement(cmd_q, tonic::Request::new(ticket))
                            .await,
                    )
                    .await?
                }
            };
            let close = ActionClosePreparedStatementRequest {
                prepared_statement_handle: created.prepared_statement_handle,
            };
            let action = Action::new("ClosePreparedStatement", close.as_any().encode_to_vec());
            if let Err(s) = svc
                .do_action_close_prepared_statement(close, tonic::Request::new(action))
                .await
            {
                check_status("close", &s)?;
            }
            Ok(out)
        }
        FlightOp::PreparedHandle(h) => {
            let cmd_q = CommandPreparedStatementQuery {
                prepared_statement_handle: h.clone().into(),
            };
            let desc = cmd(&|| cmd_q.as_any().encode_to_vec());
            if let Err(s) = svc
                .get_flight_info_prepared_statement(cmd_q.clone(), tonic::Request::new(desc))
                .await
            {
                check_status("prepared handle info", &s)?;
            }
            let ticket = Ticket::new(cmd_q.as_any().encode_to_vec());
            drain(
                "prepared handle",
                svc.do_get_prepared_statement(cmd_q, tonic::Request::new(ticket))
                    .await,
            )
            .await
        }
        FlightOp::SqlInfo(ids) => {
            let q = CommandGetSqlInfo { info: ids.clone() };
            let desc = cmd(&|| q.as_any().encode_to_vec());
            match svc
                .get_flight_info_sql_info(q.clone(), tonic::Request::new(desc))
                .await
            {
                Err(s) => check_status("sql info", &s),
                Ok(info) => {
                    let ticket = ticket_of(info.get_ref())?;
                    drain(
                        "sql info",
                        svc.do_get_sql_info(q, tonic::Request::new(ticket)).await,
                    )
                    .await
                }
            }
        }
        FlightOp::Ticket(b) => {
            drain(
                "raw ticket",
                FlightService::do_get(svc, tonic::Request::new(Ticket::new(b.clone()))).await,
            )
            .await
        }
        FlightOp::AnyTicket(t, b) => {
            let any = Any {
                type_url: t.clone(),
                value: b.clone().into(),
            };
            drain(
                "any ticket",
                FlightService::do_get(svc, tonic::Request::new(Ticket::new(any.encode_to_vec())))
                    .await,
            )
            .await
        }
        FlightOp::Descriptor(b) => {
            match FlightService::get_flight_info(
                svc,
                tonic::Request::new(FlightDescriptor::new_cmd(b.clone())),
            )
            .await
            {
                Err(s) => check_status("descriptor", &s),
                Ok(info) => {
                    let ticket = ticket_of(info.get_ref())?;
                    drain(
                        "descriptor",
                        FlightService::do_get(svc, tonic::Request::new(ticket)).await,
                    )
                    .await
                }
            }
        }
        FlightOp::Action(t, b) => {
            let action = Action::new(t.clone(), b.clone());
            match FlightService::do_action(svc, tonic::Request::new(action)).await {
                Err(s) => check_status("action", &s),
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Some(item) = stream.next().await {
                        if let Err(s) = item {
                            return check_status("action stream", &s);
                        }
                    }
                    Ok("action ok".into())
                }
            }
        }
    }
}

#[test]
fn generated_flight_sql_calls_fail_cleanly_or_stream() {
    let f = fixture();
    let svc = FlightSql::new(f.engine.clone());
    let app = http_app(&f);
    let tally = Tally::default();
    let started = Instant::now();
    run("flight", 600, flight_op(), |op| {
        RT.block_on(async {
            let t = Instant::now();
            let outcome = flight_one(&svc, &op).await?;
            tally.timed(t.elapsed(), || {
                format!("{op:?}").chars().take(120).collect()
            });
            tally.count(outcome);
            healthz(&app).await
        })
        .map_err(TestCaseError::fail)
    });
    tally.print("flight", started);
    RT.block_on(writes_took_no_effect(&f));
}

// ------------------------------------------------------------------------------------------
// What the generators found
// ------------------------------------------------------------------------------------------

async fn flight_stream_error(f: &Fixture, sql: &str) -> tonic::Status {
    let svc = FlightSql::new(f.engine.clone());
    let t = TicketStatementQuery {
        statement_handle: sql.as_bytes().to_vec().into(),
    };
    let ticket = Ticket::new(t.as_any().encode_to_vec());
    let stream = match svc.do_get_statement(t, tonic::Request::new(ticket)).await {
        Ok(s) => s.into_inner(),
        Err(s) => return s,
    };
    let mut batches =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    while let Some(item) = batches.next().await {
        match item {
            Ok(_) => {}
            Err(FlightError::Tonic(s)) => return *s,
            Err(e) => panic!("the stream does not decode: {e}"),
        }
    }
    panic!("{sql}: the stream ended without an error")
}

async fn http_sql(f: &Fixture, sql: &str) -> Answer {
    let app = http_app(f);
    let body = serde_json::json!({ "sql": sql }).to_string().into_bytes();
    let req = request(Method::POST, "/v1/sql", Some("application/json"), body).expect("request");
    send(&app, req).await
}

/// Flight SQL: a statement that fails while it streams (here a cast of text that fails on
/// the first row) reaches the client as `internal`, without its reason code; over HTTP the
/// same statement is 400 `sql_error`. `FlightSql::stream` wraps every error item as
/// `FlightError::ExternalError`, which arrow-flight turns into `Status::internal`.
#[test]
fn flight_sql_error_while_streaming_is_invalid_argument_not_internal() {
    let f = fixture();
    let sql = "SELECT CAST(event_type AS INT) FROM events";
    let a = RT.block_on(http_sql(&f, sql));
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let s = RT.block_on(flight_stream_error(&f, sql));
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{}", s.message());
    assert!(s.message().starts_with("sql_error: "), "{}", s.message());
}

/// Flight SQL: a query that passes its deadline after the schema was sent reaches the
/// client as `internal` ("External error: the query did not finish within 2s"), where the
/// module promises `deadline_exceeded` with the `query_timeout` code leading the message;
/// over HTTP the same statement is 504 `query_timeout`.
#[test]
fn flight_query_timeout_while_streaming_is_deadline_exceeded_not_internal() {
    let f = fixture();
    let sql = "SELECT count(*) FROM range(100000000000)";
    let a = RT.block_on(http_sql(&f, sql));
    assert_eq!(
        a.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let s = RT.block_on(flight_stream_error(&f, sql));
    assert_eq!(s.code(), tonic::Code::DeadlineExceeded, "{}", s.message());
    assert!(
        s.message().starts_with("query_timeout: "),
        "{}",
        s.message()
    );
}

/// HTTP: `http.rs` says every error is JSON `{"error": {"code", "message"}}`, but the
/// errors axum's extractors and router produce before a handler runs are not: a bad
/// `/v1/trace` query string and a path segment that is not UTF-8 are 400 `text/plain`, a
/// wrong method is 405 with an empty body, a body over 2 MiB is 413 `text/plain`.
#[test]
fn http_errors_before_the_handler_are_json_too() {
    let f = fixture();
    let app = http_app(&f);
    let code = "%2801%2909506000134352%2810%29RAW000";
    let cases: Vec<(Method, String, Vec<u8>)> = vec![
        (
            Method::GET,
            format!("/v1/trace/{code}?direction=backward&depth=abc"),
            vec![],
        ),
        (Method::GET, format!("/v1/trace/{code}"), vec![]),
        (
            Method::GET,
            format!("/v1/trace/{code}?direction=forward&limit=1"),
            vec![],
        ),
        (Method::GET, "/v1/events/%ff".to_owned(), vec![]),
        (Method::DELETE, "/v1/sql".to_owned(), vec![]),
        (Method::POST, "/v1/sql".to_owned(), vec![b' '; 3 << 20]),
    ];
    let mut wrong = Vec::new();
    for (method, uri, body) in cases {
        let req = request(method.clone(), &uri, None, body).expect("request");
        let a = RT.block_on(send(&app, req));
        let code = serde_json::from_slice::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        if !a.content_type.starts_with("application/json") || code.is_none() {
            wrong.push(format!(
                "{method} {uri}: {} {:?} {:?}",
                a.status,
                a.content_type,
                String::from_utf8_lossy(&a.body)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "errors that are not JSON:\n{}",
        wrong.join("\n")
    );
}
