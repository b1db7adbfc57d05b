//! What the libFuzzer targets share: one small data directory, the engine over it, the
//! HTTP router and the Flight SQL service, and the checks every answer must pass.
//!
//! The checks are those of `queries/tests/fuzz_requests.rs`, which runs generated requests
//! under `cargo test`; a check that fails panics, and libFuzzer records the input as a crash.
//! The two bugs the first runs found (Flight SQL errors while streaming were `internal`;
//! axum's own rejections were not JSON) are fixed and no longer tolerated: every error
//! answer must be JSON with a code, every Flight error a meaningful status.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri, header};
use futures::{Stream, StreamExt, TryStreamExt};
// `tower_service::Service`, re-exported by tonic.
use tonic::codegen::Service;
use veritrace_anchor::DataDir;
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_queries::flight::FlightSql;
use veritrace_queries::{QueryEngine, QueryLimits, QueryOptions};

/// Everything a target needs, built once per process.
pub struct Harness {
    /// Current-thread runtime the requests run on (queries run on the engine's own).
    pub rt: tokio::runtime::Runtime,
    /// The engine over the data directory.
    pub engine: Arc<QueryEngine>,
    /// The HTTP API.
    pub app: Router,
    /// The Flight SQL service.
    pub flight: FlightSql,
}

/// The harness of this process.
pub static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = dataset();
    let options = QueryOptions {
        limits: QueryLimits {
            // Heavy generated queries (cross joins, huge series) end quickly.
            timeout: Duration::from_secs(2),
            threads: 2,
            ..QueryLimits::default()
        },
        ..QueryOptions::default()
    };
    let engine = Arc::new(
        rt.block_on(QueryEngine::open_with(&dir, options))
            .expect("open"),
    );
    let app = veritrace_queries::http::router(engine.clone(), prometheus::Registry::new())
        .expect("router");
    let flight = FlightSql::new(engine.clone());
    Harness {
        rt,
        engine,
        app,
        flight,
    }
});

const GTIN: &str = "09506000134352";

/// The data directory, built on first use and kept for later runs
/// (`$VERITRACE_FUZZ_DATA`, default `$TMPDIR/veritrace-fuzz-data-1`).
fn dataset() -> PathBuf {
    let dir = std::env::var_os("VERITRACE_FUZZ_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("veritrace-fuzz-data-1"));
    if dir.join("ready").exists() {
        return dir;
    }
    // Built beside its place, then renamed: a run that stops half way leaves no half dataset.
    let building = dir.with_extension(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    build(&building);
    std::fs::write(building.join("ready"), b"").expect("ready");
    if std::fs::rename(&building, &dir).is_err() {
        // Another process finished first.
        let _ = std::fs::remove_dir_all(&building);
    }
    dir
}

fn build(dir: &Path) {
    let data = DataDir::create(dir).expect("data dir");
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
    runtime::run(&data, &cfg, records(), Arc::default()).expect("ingest");
}

/// Raw lots -> part lots -> bikes, a cycle, telemetry and rejected records (the dataset of
/// `queries/tests/fuzz_requests.rs`, smaller).
fn records() -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use serde_json::json;
    let lot = |n: &str| format!("(01){GTIN}(10){n}");
    let mut t = 0i64;
    let mut time = || {
        t += 1;
        veritrace_processors::rfc3339_ms(1_740_000_000_000 + t * 1_000)
    };
    let mut out: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::new();
    let mut push = |key: &str, v: serde_json::Value| {
        out.push((Some(key.as_bytes().to_vec()), v.to_string().into_bytes()));
    };
    let plant = json!({"id": "plant-1", "role": "manufacturer"});
    for i in 0..20 {
        let code = lot(&format!("RAW{i:03}"));
        push(
            &code,
            json!({"event_id": format!("fz:prod:{i}"), "event_type": "production",
                   "event_time": time(), "trace_code": code, "participant": plant,
                   "quantity": {"value": 1.5, "unit": "kg"}, "attributes": {"n": i}}),
        );
    }
    for k in 0..10 {
        let inputs = [
            lot(&format!("RAW{:03}", 2 * k)),
            lot(&format!("RAW{:03}", 2 * k + 1)),
        ];
        push(
            &inputs[0],
            json!({"event_id": format!("fz:tf:{k}"), "event_type": "transformation",
                   "event_time": time(), "participant": plant, "inputs": inputs,
                   "outputs": [lot(&format!("PART{k:03}"))]}),
        );
    }
    for b in 0..5 {
        let code = format!("(01){GTIN}(21)BIKE{b:03}");
        push(
            &code,
            json!({"event_id": format!("fz:asm:{b}"), "event_type": "assembly",
                   "event_time": time(), "participant": plant, "trace_code": code,
                   "inputs": [lot(&format!("PART{:03}", 2 * b)), lot(&format!("PART{:03}", 2 * b + 1))]}),
        );
    }
    for (i, (a, b)) in [("CYC-A", "CYC-B"), ("CYC-B", "CYC-A")].iter().enumerate() {
        push(
            &lot(a),
            json!({"event_id": format!("fz:cyc:{i}"), "event_type": "transformation",
                   "event_time": time(), "participant": plant,
                   "inputs": [lot(a)], "outputs": [lot(b)]}),
        );
    }
    for d in 0..20 {
        push(
            "dev-1",
            json!({"event_id": format!("fz:tel:{d}"), "event_type": "telemetry",
                   "event_time": time(), "participant": plant, "device_id": "dev-1",
                   "readings": {"temp_c": d}}),
        );
    }
    for bad in [&b"{"[..], b"[]", b"\xff\xfe", br#"{"event_id":"fz:bad"}"#] {
        out.push((Some(b"bad".to_vec()), bad.to_vec()));
    }
    out
}

/// Statuses the API documents; a 500 (`internal_error`, or `data_damaged` over this intact
/// directory) is a bug.
pub const DOCUMENTED: &[u16] = &[200, 400, 404, 405, 413, 415, 422, 503, 504];

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// `Content-Type`, empty when absent.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

/// Sends one request through the router.
pub async fn send(app: &Router, req: Request<Body>) -> Answer {
    let mut app = app.clone();
    let ready = std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx));
    let resp = match ready.await {
        Ok(()) => match app.call(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        },
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

/// Panics unless `a` is a documented answer (`head`: the request was HEAD, no body).
pub fn check_answer(what: &str, a: &Answer, head: bool) {
    let text = || String::from_utf8_lossy(&a.body[..a.body.len().min(2_000)]).into_owned();
    assert!(
        DOCUMENTED.contains(&a.status.as_u16()),
        "{what}: undocumented status {} ({}): {}",
        a.status,
        a.content_type,
        text()
    );
    if !a.status.is_success() && !head && !a.body.is_empty() {
        assert!(
            a.content_type.starts_with("application/json"),
            "{what}: {} answered as {:?}, not JSON: {}",
            a.status,
            a.content_type,
            text()
        );
    }
    if a.content_type.starts_with("application/json") && !head {
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_else(|e| {
            panic!("{what}: JSON content type, body not JSON ({e}): {}", text())
        });
        if !a.status.is_success() {
            let code = v["error"]["code"].as_str().unwrap_or("");
            assert!(
                !code.is_empty(),
                "{what}: {} without error.code: {}",
                a.status,
                text()
            );
        }
    }
}

/// Panics unless `GET /healthz` answers 200.
pub async fn check_healthz(app: &Router) {
    let req = Request::builder()
        .uri("/healthz")
        .body(Body::empty())
        .expect("request");
    let a = send(app, req).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "GET /healthz: {}",
        String::from_utf8_lossy(&a.body)
    );
}

/// Percent-encodes what a URI cannot hold; URI syntax (`/ ? & = %` and unreserved
/// characters) passes as written, so inputs can build paths, query strings and escapes.
pub fn to_uri(raw: &[u8]) -> Option<Uri> {
    let mut s = String::with_capacity(raw.len() + 1);
    if raw.first() != Some(&b'/') {
        s.push('/');
    }
    for &b in raw {
        if b.is_ascii_alphanumeric() || b"-._~/?&=%:@!$'()*+,;".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.parse().ok()
}

/// Methods an input picks from (the last slot: a custom method token).
pub const METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::HEAD,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
    Method::TRACE,
    Method::CONNECT,
];

/// Flight SQL status codes that mean the server failed. Tolerated: arrow-flight's own
/// dispatch answers an `Any` that does not decode with `internal` (the library's choice,
/// before our code runs). Errors while a result streams are held to the same rule as the
/// others (`streaming` only names where the error came from).
pub fn check_status(what: &str, s: &tonic::Status, streaming: bool) {
    assert!(
        !s.message().is_empty(),
        "{what}: {:?} with an empty message",
        s.code()
    );
    let upstream_decode = s.code() == tonic::Code::Internal
        && s.message()
            .starts_with("ParseError(\"Unable to decode Any value");
    let place = if streaming { "while streaming" } else { "" };
    assert!(
        upstream_decode
            || !matches!(
                s.code(),
                tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss
            ),
        "{what}: {:?} {place}: {}",
        s.code(),
        s.message()
    );
}

/// Drains and decodes a DoGet answer, checking every error.
pub async fn drain<S>(what: &str, r: Result<tonic::Response<S>, tonic::Status>)
where
    S: Stream<Item = Result<FlightData, tonic::Status>> + Send + Unpin + 'static,
{
    let stream = match r {
        Ok(s) => s.into_inner(),
        Err(s) => return check_status(what, &s, false),
    };
    let mut batches =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    while let Some(item) = batches.next().await {
        match item {
            Ok(_) => {}
            Err(FlightError::Tonic(s)) => return check_status(what, &s, true),
            Err(e) => panic!("{what}: the stream does not decode: {e}"),
        }
    }
}
