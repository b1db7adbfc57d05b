//! End to end through the real binary: demo, sql, proof, verify (valid and tampered), serve.

#[allow(dead_code)] // each test binary uses its own part
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes the proof of `id` to `out` and verifies it (both must succeed): what verify said.
fn proven(data: &str, id: &str, out: &Path) -> String {
    let path = out.to_str().expect("p");
    ok(&["proof", "--data", data, id, "--out", path]);
    verified(data, out)
}

/// `veritrace verify FILE` anchored in `data`'s ledger, which must pass (exit 0).
fn verified(data: &str, file: &Path) -> String {
    let ledger = format!("{data}/ledger/local.jsonl");
    ok(&["verify", file.to_str().expect("p"), "--ledger", &ledger])
}

struct Demo {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    stdout: String,
}

fn demo(events: u64) -> Demo {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let stdout = ok(&[
        "demo",
        "--events",
        &events.to_string(),
        "--data",
        data.to_str().expect("path"),
        "--no-serve",
        "--epoch-ms",
        "200",
        "--batch-size",
        "2000",
    ]);
    Demo {
        _tmp: tmp,
        data,
        stdout,
    }
}

use common::{bin, count, monitor_once, ok, run, sql_json};

#[test]
fn demo_proves_verifies_and_catches_tampering() {
    let d = demo(30_000);
    assert!(d.stdout.contains("accepted"), "{}", d.stdout);
    assert!(d.stdout.contains("tampered copy"), "{}", d.stdout);
    let data = &d.data;

    // Every record is accounted for: accepted + rejected = generated.
    let accepted = count(data, "SELECT count(*) AS n FROM events");
    let rejected = count(data, "SELECT count(*) AS n FROM rejected");
    assert_eq!(accepted + rejected, 30_000);
    assert!(
        rejected > 0 && accepted > 25_000,
        "accepted {accepted}, rejected {rejected}"
    );
    // No event id twice, duplicates were recorded as rejected.
    assert_eq!(
        count(data, "SELECT count(DISTINCT event_id) AS n FROM events"),
        accepted
    );
    assert!(
        count(
            data,
            "SELECT count(*) AS n FROM rejected WHERE reason = 'duplicate_event_id'"
        ) > 0
    );
    // Batches cover every accepted event; every epoch is anchored.
    assert_eq!(
        count(data, "SELECT CAST(sum(size) AS BIGINT) AS n FROM batches"),
        accepted
    );
    assert_eq!(
        count(
            data,
            "SELECT count(*) AS n FROM batches WHERE epoch_id IS NULL"
        ),
        0
    );
    assert_eq!(
        count(
            data,
            "SELECT count(*) AS n FROM epochs WHERE status <> 'anchored'"
        ),
        0
    );
    assert!(count(data, "SELECT count(*) AS n FROM epochs") >= 1);

    // Proofs of a sample of events verify against the ledger.
    let ids = sql_json(
        data,
        "SELECT event_id FROM events ORDER BY leaf_hash LIMIT 5",
    );
    let ledger = data.join("ledger/local.jsonl");
    for row in ids.as_array().expect("rows") {
        let id = row["event_id"].as_str().expect("id");
        let proof = data.join(format!("{}.proof.json", id.replace(['/', ':'], "_")));
        ok(&[
            "proof",
            "--data",
            data.to_str().expect("p"),
            id,
            "--out",
            proof.to_str().expect("p"),
        ]);
        let out = ok(&[
            "verify",
            proof.to_str().expect("p"),
            "--ledger",
            ledger.to_str().expect("p"),
        ]);
        assert!(out.starts_with("VALID"), "{out}");
        assert!(out.contains("anchored"), "{out}");
        // Without the operator's ledger or key the receipt's own key is all there is, and a
        // forger's file would pass the same checks: not a success (exit 3, UNANCHORED).
        let out = run(&["verify", proof.to_str().expect("p")]);
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("UNANCHORED"));
        // Pinned to another key, it fails.
        let other = "11".repeat(32);
        let out = run(&["verify", proof.to_str().expect("p"), "--key", &other]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Any altered byte in event, path, roots or receipt fails with a reason.
    let sample = std::fs::read_to_string(data.join("sample-proof.json")).expect("sample proof");
    let bundle: serde_json::Value = serde_json::from_str(&sample).expect("json");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "event field",
            Box::new(|b| b["event"]["event_time"] = "2026-01-01T00:00:00.000Z".into()),
        ),
        (
            "leaf index",
            Box::new(|b| {
                b["leaf"]["index"] = (b["leaf"]["index"].as_u64().unwrap_or(0) ^ 1).into()
            }),
        ),
        (
            "audit path",
            Box::new(|b| tamper_path(&mut b["leaf"]["audit_path"])),
        ),
        (
            "batch root",
            Box::new(|b| flip_hex(&mut b["batch"]["root"])),
        ),
        (
            "batch header",
            Box::new(|b| b["batch"]["sealed_at"] = "2020-01-01T00:00:00.000Z".into()),
        ),
        (
            "epoch root",
            Box::new(|b| flip_hex(&mut b["epoch"]["root"])),
        ),
        (
            "epoch path",
            Box::new(|b| tamper_path(&mut b["epoch"]["audit_path"])),
        ),
        (
            "receipt root",
            Box::new(|b| flip_hex(&mut b["anchor"]["ledger_entry"]["root"])),
        ),
        (
            "receipt signature",
            Box::new(|b| flip_hex(&mut b["anchor"]["ledger_entry"]["signature"])),
        ),
        (
            "receipt time",
            Box::new(|b| {
                b["anchor"]["ledger_entry"]["anchored_at"] = "2020-01-01T00:00:00.000Z".into()
            }),
        ),
        ("status", Box::new(|b| b["status"] = "sealed".into())),
        (
            "format",
            Box::new(|b| b["format"] = "veritrace.proof/999".into()),
        ),
    ];
    for (what, edit) in edits {
        let mut b = bundle.clone();
        edit(&mut b);
        let path = data.join("tampered.json");
        std::fs::write(&path, serde_json::to_vec(&b).expect("json")).expect("write");
        let out = run(&[
            "verify",
            path.to_str().expect("p"),
            "--ledger",
            ledger.to_str().expect("p"),
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "tampered {what} must fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("INVALID"),
            "{what}"
        );
    }
    // A single changed byte anywhere in the raw file: either it no longer parses, or it fails.
    let raw = sample.as_bytes();
    let path = data.join("bytes.json");
    let mut failures = 0;
    for pos in (0..raw.len()).step_by(raw.len() / 40 + 1) {
        let mut b = raw.to_vec();
        if !b[pos].is_ascii_hexdigit() {
            continue;
        }
        b[pos] = if b[pos] == b'0' { b'1' } else { b'0' };
        std::fs::write(&path, &b).expect("write");
        let out = run(&[
            "verify",
            path.to_str().expect("p"),
            "--ledger",
            ledger.to_str().expect("p"),
        ]);
        assert_ne!(out.status.code(), Some(0), "changed byte {pos} verified");
        failures += 1;
    }
    assert!(failures > 10);
}

/// Alters an audit path: flips a bit of its first hash, or (a one-leaf tree has an empty
/// path) appends a hash. Either way the proof must fail.
fn tamper_path(v: &mut serde_json::Value) {
    let path = v.as_array_mut().expect("audit path is an array");
    match path.first_mut() {
        Some(first) => flip_hex(first),
        None => path.push(serde_json::Value::String("00".repeat(32))),
    }
}

fn flip_hex(v: &mut serde_json::Value) {
    let s = v.as_str().expect("hex string").to_owned();
    let mut c: Vec<char> = s.chars().collect();
    c[0] = if c[0] == '0' { '1' } else { '0' };
    *v = serde_json::Value::String(c.into_iter().collect());
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status: u16 = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned())),
    )
}

#[test]
fn http_api_serves_sql_events_and_proofs() {
    let d = demo(5_000);
    let (server, addr) = serve(d.data.to_str().expect("p"));

    let (st, health) = http(&addr, "GET", "/healthz", "");
    assert_eq!(
        (st, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );

    let (st, r) = http(
        &addr,
        "POST",
        "/v1/sql",
        r#"{"sql":"SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY event_type"}"#,
    );
    assert_eq!(st, 200, "{r}");
    assert!(r["row_count"].as_u64().expect("rows") >= 5, "{r}");

    let (st, r) = http(
        &addr,
        "POST",
        "/v1/sql",
        r#"{"sql":"SELECT event_id FROM events ORDER BY event_id LIMIT 1"}"#,
    );
    assert_eq!(st, 200);
    let id = r["rows"][0]["event_id"].as_str().expect("id").to_owned();

    let (st, ev) = http(&addr, "GET", &format!("/v1/events/{id}"), "");
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["event"]["event_id"].as_str(), Some(id.as_str()));

    let (st, proof) = http(&addr, "GET", &format!("/v1/events/{id}/proof"), "");
    assert_eq!(st, 200, "{proof}");
    let report = veritrace_verify::verify::verify_bundle_json(
        proof.to_string().as_bytes(),
        &veritrace_verify::verify::Options::default(),
    )
    .expect("HTTP proof verifies");
    assert_eq!(report.status.as_str(), "anchored");

    // Errors are JSON with a code.
    let (st, e) = http(&addr, "GET", "/v1/events/no-such-event", "");
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    let (st, e) = http(&addr, "POST", "/v1/sql", r#"{"sql":"SELEC nonsense"}"#);
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("sql_error")),
        "{e}"
    );
    let (st, e) = http(&addr, "POST", "/v1/sql", r#"{"sql":"DROP TABLE events"}"#);
    assert_eq!(st, 400, "{e}");
    let (st, e) = http(&addr, "POST", "/v1/sql", "not json");
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{e}"
    );

    // Traces: the code is a path segment, percent-encoded ("/" and parentheses).
    let (st, r) = http(
        &addr,
        "POST",
        "/v1/sql",
        r#"{"sql":"SELECT trace_code FROM events WHERE event_type = 'assembly' ORDER BY event_time DESC, event_id LIMIT 1"}"#,
    );
    assert_eq!(st, 200, "{r}");
    let product = r["rows"][0]["trace_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let enc: String = product
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (st, t) = http(
        &addr,
        "GET",
        &format!("/v1/trace/{enc}?direction=backward"),
        "",
    );
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["root"].as_str(), Some(product.as_str()));
    assert!(t["nodes"].as_array().expect("nodes").len() > 1, "{t}");
    assert!(
        t["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["event_type"] == "assembly")
    );
    let (st, e) = http(
        &addr,
        "GET",
        &format!("/v1/trace/{enc}?direction=sideways"),
        "",
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{e}"
    );
    let (st, e) = http(&addr, "GET", "/v1/trace/nonsense?direction=forward", "");
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{e}"
    );

    let mut s = TcpStream::connect(&addr).expect("connect");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut m = String::new();
    s.read_to_string(&mut m).expect("read");
    assert!(m.contains("veritrace_queries_http_requests_total"), "{m}");
    drop(server);
}

#[test]
fn sql_formats_and_bad_input() {
    let d = demo(2_000);
    let data = d.data.to_str().expect("p");
    let csv = ok(&[
        "sql",
        "--data",
        data,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM events",
    ]);
    assert!(csv.starts_with("n\n"), "{csv}");
    let out = bin()
        .args(["sql", "--data", data, "--format", "arrow", "SELECT 1 AS x"])
        .output()
        .expect("arrow");
    assert!(out.status.success() && !out.stdout.is_empty());
    let table = ok(&[
        "sql",
        "--data",
        data,
        "SELECT reason, count(*) AS n FROM rejected GROUP BY reason",
    ]);
    assert!(table.contains("reason"), "{table}");
    // Errors are clear and non-zero.
    let out = run(&["sql", "--data", data, "SELECT nope FROM events"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = run(&["sql", "--data", "/nonexistent/veritrace", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Veritrace data directory"));
    let out = run(&["proof", "--data", data, "no-such-event"]);
    assert_eq!(out.status.code(), Some(2));
    let garbage = d.data.join("garbage.json");
    std::fs::write(&garbage, b"{\"format\":").expect("write");
    let out = run(&["verify", garbage.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn ingest_file_accepts_rejects_and_dedupes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let file = tmp.path().join("events.jsonl");
    let (lines, valid) = golden_lines();
    let mut body = Vec::new();
    for l in &lines {
        body.extend_from_slice(l);
        body.push(b'\n');
    }
    std::fs::write(&file, &body).expect("write");
    let d = data.to_str().expect("p");
    ok(&["ingest", "file", file.to_str().expect("p"), "--data", d]);
    // Ingesting the same file again adds nothing: every event is a duplicate.
    ok(&["ingest", "file", file.to_str().expect("p"), "--data", d]);
    assert_eq!(count(&data, "SELECT count(*) AS n FROM events"), valid);
    assert_eq!(
        count(
            &data,
            "SELECT count(*) AS n FROM rejected WHERE reason = 'duplicate_event_id'"
        ),
        valid
    );
    assert_eq!(
        count(&data, "SELECT count(*) AS n FROM rejected"),
        lines.len() as u64 * 2 - valid
    );
}

/// The processors' golden input events that fit on one line (the stored ones left out),
/// and how many of them are valid.
fn golden_lines() -> (Vec<Vec<u8>>, u64) {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("processors/tests/golden/events/inputs");
    let mut lines = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&golden)
        .expect("golden")
        .map(|e| e.expect("e").path())
        .collect();
    names.sort();
    let mut valid = 0;
    for p in &names {
        let b = std::fs::read(p).expect("read");
        if b.contains(&b'\n') && b.iter().position(|&c| c == b'\n') != Some(b.len() - 1) {
            continue;
        }
        let line: Vec<u8> = b.into_iter().filter(|&c| c != b'\n').collect();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("stored_") {
            continue; // a stored event fed back in: the same id as its source input
        }
        if !p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("reject_"))
        {
            valid += 1;
        }
        lines.push(line);
    }
    (lines, valid)
}

/// A digest's hex with its first digit changed.
fn flipped(d: &veritrace_verify::Digest) -> String {
    let hex = d.to_hex();
    let first = if hex.starts_with('0') { "1" } else { "0" };
    format!("{first}{}", &hex[1..])
}

/// `veritrace serve` on free ports: the server (stopped when dropped) and its address.
fn serve(data: &str) -> (common::Server, String) {
    let server = common::Server::start(Path::new(data), &[]);
    let addr = server.http.clone();
    (server, addr)
}

/// Starts the binary with `args` and waits for the `http://ADDR` it prints.
fn spawn_http(args: &[&str]) -> (Server, String) {
    let mut child = bin()
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().expect("server exited").expect("line");
        if let Some(rest) = line.split("http://").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

/// Ingests the golden input events into `data`, their ids prefixed with `tag` (new events
/// for each tag): one more epoch.
fn ingest_golden(data: &str, tag: &str) {
    let (lines, _) = golden_lines();
    let mut body = Vec::new();
    // Bytes, not text: some rejected inputs are not UTF-8.
    let key = b"\"event_id\":\"";
    for l in lines {
        let mut rest = l.as_slice();
        while let Some(i) = rest.windows(key.len()).position(|w| w == key) {
            body.extend_from_slice(&rest[..i + key.len()]);
            body.extend_from_slice(format!("{tag}-").as_bytes());
            rest = &rest[i + key.len()..];
        }
        body.extend_from_slice(rest);
        body.push(b'\n');
    }
    let file = format!("{data}.{tag}.jsonl");
    std::fs::write(&file, body).expect("write");
    ok(&["ingest", "file", &file, "--data", data]);
}

#[test]
fn a_monitor_follows_the_log_and_catches_a_rollback_and_a_rewritten_history() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = tmp.path().join("a");
    let a_str = a.to_str().expect("p");
    ingest_golden(a_str, "one");
    let vkey = ok(&["checkpoint", "--data", a_str, "--vkey"])
        .trim()
        .to_owned();
    let state = tmp.path().join("monitor.json");

    // A node that only grows: every round checks out. (Servers are stopped before the
    // directory is copied or written to: `serve` seals its own audit log into it.)
    let (server, addr) = serve(a_str);
    let (code, err) = monitor_once(&addr, &vkey, &state);
    assert_eq!(code, 0, "{err}");
    drop(server);
    let verified_at = |err: &str| -> u64 {
        err.split("log verified at ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no size in {err}"))
    };
    let first = verified_at(&err);
    // Kept for later: the log as it was.
    let before = tmp.path().join("before");
    copy_dir(&a, &before);
    ingest_golden(a_str, "two");
    let (server, addr) = serve(a_str);
    let (code, err) = monitor_once(&addr, &vkey, &state);
    assert_eq!(code, 0, "{err}");
    let second = verified_at(&err);
    assert!(second > first, "{first} -> {second}");
    drop(server);

    // The operator restores an older copy: the log shrank.
    let (server, addr) = serve(before.to_str().expect("p"));
    let (code, err) = monitor_once(&addr, &vkey, &state);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ALARM rollback"), "{err}");
    // A monitor that keeps following says it on its metrics too, round after round.
    let (monitor, metrics) = spawn_http(&[
        "monitor",
        "--url",
        &format!("http://{addr}"),
        "--vkey",
        &vkey,
        "--state",
        state.to_str().expect("p"),
        "--interval-secs",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let port: u16 = metrics
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = veritrace_testkit::metrics::scrape(port).unwrap_or_default();
        let alarms = veritrace_testkit::metrics::value(
            &text,
            "veritrace_monitor_alarms_total",
            &[("kind", "rollback")],
        );
        if alarms.is_some_and(|n| n >= 2.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no rollback alarms on /metrics: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // It never adopted the shorter log: the size it verified is still the longer one.
    assert_eq!(
        veritrace_testkit::metrics::value(&text, "veritrace_monitor_verified_log_size", &[]),
        Some(second as f64),
        "{text}"
    );
    assert!(
        veritrace_testkit::metrics::value(
            &text,
            "veritrace_monitor_last_check_timestamp_seconds",
            &[]
        )
        .is_some_and(|t| t > 1.7e9),
        "{text}"
    );
    drop(monitor);
    drop(server);

    // The operator rewrites history with the same key: another log, as long or longer.
    // Longer than the log the monitor saw (its audit batches included).
    let b = rewritten_log(&a, &tmp.path().join("b"), second + 1);
    let b_str = b.to_str().expect("p");
    assert_eq!(ok(&["checkpoint", "--data", b_str, "--vkey"]).trim(), vkey);
    let (server, addr) = serve(b_str);
    let (code, err) = monitor_once(&addr, &vkey, &state);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ALARM inconsistent") || err.contains("ALARM split_view"),
        "{err}"
    );
    // The alarm is kept: the state still holds the good log, so the next round says it again.
    let (code, err2) = monitor_once(&addr, &vkey, &state);
    assert_eq!(code, 1, "{err2}");
    drop(server);

    // A monitor that never saw the good log checks the rewritten one from its first entry
    // and finds nothing wrong with it: a monitor catches what changes under it.
    let fresh = tmp.path().join("fresh.json");
    let (server, addr) = serve(b_str);
    let (code, err) = monitor_once(&addr, &vkey, &fresh);
    assert_eq!(code, 0, "{err}");
    // Another node's key under the same log name: the checkpoint's signature is refused.
    let c = tmp.path().join("c");
    std::fs::create_dir_all(c.join("batches")).expect("an empty data directory");
    let origin = vkey.split('+').next().expect("origin");
    let out = bin()
        .env("VERITRACE_LOG_ORIGIN", origin)
        .args(["checkpoint", "--data", c.to_str().expect("p"), "--vkey"])
        .output()
        .expect("checkpoint");
    let impostor = String::from_utf8(out.stdout).expect("utf-8");
    assert!(impostor.starts_with(&format!("{origin}+")), "{impostor}");
    assert_ne!(impostor.trim(), vkey);
    let (code, err) = monitor_once(&addr, impostor.trim(), &tmp.path().join("impostor.json"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ALARM bad_signature"), "{err}");
    drop(server);
}

#[test]
fn witnesses_cosign_only_a_log_that_grows_and_the_verifier_counts_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = tmp.path().join("a");
    let a_str = a.to_str().expect("p");
    ingest_golden(a_str, "one");
    let log_vkey = ok(&["checkpoint", "--data", a_str, "--vkey"])
        .trim()
        .to_owned();
    let mut witnesses = Vec::new();
    let mut vkeys = Vec::new();
    for i in 1..=3 {
        let name = format!("witness.example/w{i}");
        let key = tmp.path().join(format!("w{i}.key"));
        let key_s = key.to_str().expect("p").to_owned();
        vkeys.push(
            ok(&["witness", "vkey", "--name", &name, "--key", &key_s])
                .trim()
                .to_owned(),
        );
        if i < 3 {
            let state = tmp.path().join(format!("w{i}.json"));
            witnesses.push(spawn_http(&[
                "witness",
                "serve",
                "--name",
                &name,
                "--key",
                &key_s,
                "--state",
                state.to_str().expect("p"),
                "--listen",
                "127.0.0.1:0",
                "--log",
                &log_vkey,
            ]));
        }
    }
    let submit = |data: &str, w: usize| {
        bin()
            .args([
                "witness",
                "submit",
                "--data",
                data,
                "--url",
                &format!("http://{}", witnesses[w].1),
                "--vkey",
                &vkeys[w],
            ])
            .output()
            .expect("submit")
    };
    for w in 0..2 {
        let out = submit(a_str, w);
        assert!(out.status.success(), "{out:?}");
    }
    let size: u64 = ok(&["checkpoint", "--data", a_str])
        .lines()
        .nth(1)
        .expect("size")
        .parse()
        .expect("n");
    let id = sql_json(&a, "SELECT event_id FROM events LIMIT 1")[0]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let proof = tmp.path().join("p.json");
    let p = proof.to_str().expect("p");
    ok(&[
        "proof",
        "--data",
        a_str,
        &id,
        "--checkpoint",
        &size.to_string(),
        "--out",
        p,
    ]);
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", p, "--json"];
        args.extend_from_slice(extra);
        let out = bin().args(&args).output().expect("verify");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code().unwrap_or(-1), v)
    };
    // Two witnesses' cosignatures are a trust anchor of their own: no ledger needed.
    let (code, v) = verify(&["--witness", &vkeys[0], "--witness", &vkeys[1]]);
    assert_eq!(code, 0, "{v}");
    let (code, v) = verify(&[
        "--witness",
        &vkeys[0],
        "--witness",
        &vkeys[1],
        "--witness",
        &vkeys[2],
        "--witnesses",
        "2",
    ]);
    assert_eq!(code, 0, "{v}");
    let (code, v) = verify(&[
        "--witness",
        &vkeys[0],
        "--witness",
        &vkeys[1],
        "--witness",
        &vkeys[2],
    ]);
    assert_eq!(
        (code, v["code"].as_str()),
        (1, Some("not_witnessed")),
        "{v}"
    );
    // Without witnesses the bundle is valid but rests on nothing given; the ledger still works.
    assert_eq!(verify(&[]).0, 3);
    verified(a_str, &proof);
    // A cosignature edited in the file no longer counts.
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof).expect("read")).expect("json");
    let note = bundle["checkpoint"]
        .as_str()
        .expect("cosigned checkpoint")
        .to_owned();
    assert_eq!(note.matches('\u{2014}').count(), 3, "{note}");
    let mut lines: Vec<String> = note.lines().map(str::to_owned).collect();
    let last = lines.len() - 1;
    let sig = lines[last].rsplit_once(' ').expect("sig").1.to_owned();
    let flipped = if sig.starts_with('A') {
        sig.replacen('A', "B", 1)
    } else {
        format!("A{}", &sig[1..])
    };
    lines[last] = lines[last].replace(&sig, &flipped);
    bundle["checkpoint"] = serde_json::Value::String(lines.join("\n") + "\n");
    std::fs::write(&proof, serde_json::to_vec(&bundle).expect("json")).expect("write");
    let (code, v) = verify(&["--witness", &vkeys[0], "--witness", &vkeys[1]]);
    assert_eq!(
        (code, v["code"].as_str()),
        (1, Some("not_witnessed")),
        "{v}"
    );

    // The log grows: the witness checks the consistency proof and cosigns again; a node
    // that lost track of what the witness saw learns it from the 409 and catches up.
    let before = tmp.path().join("before");
    copy_dir(&a, &before);
    ingest_golden(a_str, "two");
    std::fs::remove_dir_all(a.join("log/witnesses")).expect("forget");
    let out = submit(a_str, 0);
    assert!(out.status.success(), "{out:?}");
    // A rewritten history under the same key: the witness refuses to cosign it.
    let b = rewritten_log(&a, &tmp.path().join("b"), 4);
    let b_str = b.to_str().expect("p");
    copy_dir(&a.join("log/witnesses"), &b.join("log/witnesses"));
    let out = submit(b_str, 0);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("422"),
        "{out:?}"
    );
    // And an older copy (a rollback) is refused too.
    copy_dir(&a.join("log/witnesses"), &before.join("log/witnesses"));
    let out = submit(before.to_str().expect("p"), 0);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("longer log"),
        "{out:?}"
    );
}

#[test]
fn an_events_cose_receipt_verifies_here_and_with_a_cose_library_nobody_here_wrote() {
    let d = demo(2_000);
    let data = d.data.to_str().expect("p");
    let id = sql_json(&d.data, "SELECT event_id FROM events LIMIT 1")[0]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (bundle_path, receipt) = (
        d.data.with_extension("p.json"),
        d.data.with_extension("r.cbor"),
    );
    ok(&[
        "proof",
        "--data",
        data,
        &id,
        "--out",
        bundle_path.to_str().expect("p"),
        "--receipt",
        receipt.to_str().expect("p"),
    ]);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_path).expect("read")).expect("json");
    let key = std::fs::read_to_string(d.data.join("keys/local-ledger.pub")).expect("pub");
    let key = key.trim();
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", receipt.to_str().expect("p"), "--json"];
        args.extend_from_slice(extra);
        let out = bin().args(&args).output().expect("verify");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code().unwrap_or(-1), v)
    };
    let (code, v) = verify(&["--key", key]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["event_id"].as_str(), Some(id.as_str()));
    assert_eq!(v["root"], bundle["epoch"]["root"], "{v}");
    let ledger = format!("{data}/ledger/local.jsonl");
    assert_eq!(verify(&["--ledger", &ledger]).0, 0);
    let (code, v) = verify(&[]);
    assert_eq!((code, v["code"].as_str()), (1, Some("wrong_key")), "{v}");
    // pycose checks the signature over the root it recomputes from the entry and the proof.
    let python =
        veritrace_testkit::python::require_python("pycose").unwrap_or_else(|e| panic!("{e}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python/cose_receipt.py");
    let theirs = |file: &Path| -> serde_json::Value {
        let out = Command::new(&python)
            .arg(&script)
            .arg(file)
            .arg(key)
            .output()
            .expect("python");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let t = theirs(&receipt);
    assert_eq!(t["valid"], true, "{t}");
    assert_eq!(t["root"], bundle["epoch"]["root"], "{t}");
    assert_eq!(t["tree_size"], bundle["epoch"]["batch_count"], "{t}");
    // One byte of the signature changed: both refuse it.
    let mut bytes = std::fs::read(&receipt).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = d.data.with_extension("bad.cbor");
    std::fs::write(&bad, &bytes).expect("write");
    let out = bin()
        .args(["verify", bad.to_str().expect("p"), "--key", key, "--json"])
        .output()
        .expect("verify");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (out.status.code(), v["code"].as_str()),
        (Some(1), Some("bad_signature")),
        "{v}"
    );
    assert_eq!(theirs(&bad)["valid"], false);
    // Served too, byte for byte (Ed25519 signatures are deterministic).
    let (_server, addr) = serve(data);
    let (st, head, body) = http_bytes(&addr, &format!("/v1/events/{id}/receipt"));
    assert_eq!(st, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("application/cose"),
        "{head}"
    );
    assert_eq!(body, std::fs::read(&receipt).expect("read"));
}

#[test]
fn the_verify_page_checks_files_in_the_browser_offline_and_catches_each_tampering() {
    let d = demo(3_000);
    let data = d.data.to_str().expect("p");
    let dir = d.data.parent().expect("tmp").to_owned();
    let id = sql_json(&d.data, "SELECT event_id FROM events LIMIT 1")[0]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bundle = dir.join("bundle.json");
    let receipt = dir.join("receipt.cbor");
    ok(&[
        "proof",
        "--data",
        data,
        &id,
        "--out",
        bundle.to_str().expect("p"),
        "--receipt",
        receipt.to_str().expect("p"),
    ]);
    let rows = dir.join("rows.json");
    ok(&[
        "sql",
        "--data",
        data,
        "--certificate",
        rows.to_str().expect("p"),
        "SELECT event_id, trace_code FROM events ORDER BY event_id LIMIT 5",
    ]);
    let consistency = dir.join("consistency.json");
    std::fs::write(
        &consistency,
        ok(&["consistency", "--data", data, "--from", "1"]),
    )
    .expect("write");
    // Tampered copies: a leaf hash, a batch root, an event field.
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).expect("read")).expect("json");
    let mut tampered = Vec::new();
    for (name, change) in [
        ("leaf-hash.json", "/leaf/hash"),
        ("batch-root.json", "/batch/root"),
        ("event-field.json", "/event/event_type"),
    ] {
        let mut b = original.clone();
        let slot = b.pointer_mut(change).expect("member");
        *slot = match slot {
            serde_json::Value::String(s) if s.len() == 64 => serde_json::Value::String(flipped(
                &veritrace_verify::Digest::from_hex(s).expect("hex"),
            )),
            _ => serde_json::Value::String("quality_check".into()),
        };
        let f = dir.join(name);
        std::fs::write(&f, b.to_string()).expect("write");
        tampered.push(f);
    }
    let (_server, addr) = serve(data);
    let key = std::fs::read_to_string(d.data.join("keys/local-ledger.pub")).expect("pub");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify-page-shots");
    std::fs::create_dir_all(&shots).expect("shots");
    let mut files = vec![
        bundle.clone(),
        rows.clone(),
        receipt.clone(),
        consistency.clone(),
    ];
    files.extend(tampered.iter().cloned());
    let opts = serde_json::json!({
        "key": key.trim(),
        "ledger": d.data.join("ledger/local.jsonl"),
    });
    let results = veritrace_testkit::browser::verify_page(
        &format!("http://{addr}/verify"),
        &shots,
        &opts,
        &files,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("screenshots in {}", shots.display());
    let verdicts: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["verdict"].as_str().unwrap_or("?"),
                r["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("valid", ""),
            ("valid", ""),
            ("valid", ""),
            ("unanchored", ""),
            ("invalid", "root_mismatch"),
            ("invalid", "root_mismatch"),
            ("invalid", "root_mismatch"),
        ],
        "{results:#?}"
    );
    // Each check as the CLI lists it.
    let cli = ok(&[
        "verify",
        bundle.to_str().expect("p"),
        "--ledger",
        &format!("{data}/ledger/local.jsonl"),
        "--key",
        key.trim(),
    ]);
    let cli_checks = cli
        .lines()
        .filter(|l| l.trim_start().starts_with("ok "))
        .count();
    let page_checks = results[0]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c.as_str().is_some_and(|c| c.starts_with("ok ")))
        .count();
    assert_eq!(page_checks, cli_checks, "{cli}\n{:#?}", results[0]);
    assert!(shots.join("verify-0-bundle.json.png").is_file());
}

/// Most bytes the /verify page's WebAssembly verifier may take.
const VERIFY_WASM_BUDGET: usize = 1024 * 1024;

#[test]
fn the_verifier_page_carries_the_current_wasm_build() {
    // Rebuilt as scripts/build-verify-wasm builds it (paths remapped), then compared.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/build-verify-wasm"))
        .arg("--print")
        .output()
        .expect("scripts/build-verify-wasm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = std::fs::read(String::from_utf8_lossy(&out.stdout).trim()).expect("built wasm");
    let committed =
        std::fs::read(root.join("queries/assets/veritrace_verify.wasm")).expect("asset");
    assert!(
        built == committed,
        "queries/assets/veritrace_verify.wasm is not the current verifier ({} bytes built, {} committed): run scripts/build-verify-wasm",
        built.len(),
        committed.len()
    );
    // The page carries the module inline, so every auditor's browser downloads it: a
    // dependency that drags in a large crate (a second JSON or crypto stack, formatting
    // machinery) shows here before it ships. It was 944,580 bytes when the budget was set.
    assert!(
        built.len() <= VERIFY_WASM_BUDGET,
        "the verifier module is {} bytes, over its budget of {VERIFY_WASM_BUDGET}: find what grew before raising it",
        built.len()
    );
    // The module needs nothing from its host: the page instantiates it with no imports.
    assert!(
        !built.windows(6).any(|w| w == b"wbindg"),
        "the module expects wasm-bindgen glue"
    );
}

/// Another history of `a`'s log under the same key and name, as an operator who rewrites
/// it would make: a new data directory at `b` with `a`'s keys and origin and `ingests`
/// batches of other events.
fn rewritten_log(a: &Path, b: &Path, ingests: u64) -> PathBuf {
    std::fs::create_dir_all(b.join("log")).expect("mkdir");
    copy_dir(&a.join("keys"), &b.join("keys"));
    std::fs::copy(a.join("log/origin"), b.join("log/origin")).expect("origin");
    for n in 0..ingests {
        ingest_golden(b.to_str().expect("p"), &format!("other{n}"));
    }
    b.to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// A raw HTTP exchange: status, the response head, and the body bytes.
fn http_bytes(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head, resp[split + 4..].to_vec())
}

#[test]
fn the_log_grows_with_signed_checkpoints_consistency_proofs_and_tiles() {
    use veritrace_verify::checkpoint::{NoteKey, open_checkpoint};
    use veritrace_verify::{Digest, merkle};
    let d = demo(5_000);
    let data = d.data.to_str().expect("p");
    // One more epoch: a file ingested into the same directory.
    let file = d.data.with_extension("jsonl");
    let (lines, _) = golden_lines();
    let mut body = lines.join(&b'\n');
    body.push(b'\n');
    std::fs::write(&file, body).expect("write");
    ok(&["ingest", "file", file.to_str().expect("p"), "--data", data]);

    let epochs = sql_json(
        &d.data,
        "SELECT epoch_id, root, batch_count, log_size FROM epochs ORDER BY epoch_id",
    );
    let epochs = epochs.as_array().expect("rows").clone();
    assert!(epochs.len() >= 2, "{epochs:?}");
    let mut total = 0;
    let heads: Vec<(u64, Digest)> = epochs
        .iter()
        .map(|e| {
            total += e["batch_count"].as_u64().expect("count");
            let size = e["log_size"].as_u64().expect("every epoch is in the log");
            assert_eq!(size, total, "{e}");
            (
                size,
                Digest::from_hex(e["root"].as_str().expect("root")).expect("hex"),
            )
        })
        .collect();
    let &(last, last_root) = heads.last().expect("last");

    // The checkpoint is the last epoch's, signed by the node key the vkey names.
    let vkey = ok(&["checkpoint", "--data", data, "--vkey"]);
    let key = NoteKey::parse_vkey(vkey.trim()).expect("vkey");
    let note = ok(&["checkpoint", "--data", data]);
    let c = open_checkpoint(note.as_bytes(), &key).expect("signed");
    assert_eq!((c.size, c.root), (last, last_root));

    // Every earlier epoch's tree is a prefix of the last: the CLI's proofs verify.
    for &(size, root) in &heads {
        let out = ok(&["consistency", "--data", data, "--from", &size.to_string()]);
        let p: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(p["format"], "veritrace.consistency/1");
        assert_eq!(
            (p["from"]["size"].as_u64(), p["to"]["size"].as_u64()),
            (Some(size), Some(last))
        );
        let proof: Vec<Digest> = p["proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(|h| Digest::from_hex(h.as_str().expect("hex")).expect("digest"))
            .collect();
        merkle::verify_consistency(size, last, &root, &last_root, &proof).expect("consistent");
        // The verifier reads the document too: valid, but resting on the node's roots.
        let file = d.data.with_extension(format!("consistency-{size}.json"));
        std::fs::write(&file, &out).expect("write");
        let v = bin()
            .args(["verify", file.to_str().expect("p"), "--json"])
            .output()
            .expect("verify");
        assert_eq!(v.status.code(), Some(3), "{v:?}");
        if !proof.is_empty() {
            let mut bad: serde_json::Value = serde_json::from_str(&out).expect("json");
            bad["proof"][0] = serde_json::Value::String(flipped(&proof[0]));
            std::fs::write(&file, bad.to_string()).expect("write");
            let v = bin()
                .args(["verify", file.to_str().expect("p"), "--json"])
                .output()
                .expect("verify");
            let r: serde_json::Value = serde_json::from_slice(&v.stdout).expect("json");
            assert_eq!(
                (v.status.code(), r["code"].as_str()),
                (Some(1), Some("root_mismatch")),
                "{r}"
            );
        }
    }

    // A proof of an event of the first epoch proves into the log at that epoch's checkpoint
    // and verifies against the ledger.
    let first_id = sql_json(
        &d.data,
        "SELECT e.event_id FROM events e JOIN batches b ON e.batch_id = b.batch_id WHERE b.epoch_id = 0 LIMIT 1",
    )[0]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let out = d.data.with_extension("proof.json");
    proven(data, &first_id, &out);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
    assert_eq!(bundle["epoch"]["batch_count"].as_u64(), Some(heads[0].0));
    // The same event proven against the last checkpoint: its header's place in the log of
    // `last` leaves, with the last epoch's anchor.
    let later = d.data.with_extension("later.json");
    ok(&[
        "proof",
        "--data",
        data,
        &first_id,
        "--checkpoint",
        &last.to_string(),
        "--out",
        later.to_str().expect("p"),
    ]);
    verified(data, &later);
    let b2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&later).expect("read")).expect("json");
    assert_eq!(b2["epoch"]["batch_count"].as_u64(), Some(last));
    assert_eq!(b2["epoch"]["batch_index"], bundle["epoch"]["batch_index"]);
    assert_eq!(
        b2["epoch"]["root"].as_str(),
        Some(last_root.to_hex().as_str())
    );
    assert_eq!(
        b2["anchor"]["ledger_entry"]["epoch_id"].as_u64(),
        Some(epochs.len() as u64 - 1)
    );
    // Not a checkpoint's size: refused with the reason.
    let out = bin()
        .args([
            "proof",
            "--data",
            data,
            &first_id,
            "--checkpoint",
            &(last + 1).to_string(),
        ])
        .output()
        .expect("proof");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{:?}",
        out
    );

    // Served: checkpoint, consistency and tiles; bad requests are 400 with a reason.
    let (_server, addr) = serve(data);
    let (st, head, body) = http_bytes(&addr, "/v1/log/checkpoint");
    assert_eq!(st, 200, "{head}");
    assert_eq!(String::from_utf8(body).expect("text"), note);
    let (st, r) = http(
        &addr,
        "GET",
        &format!("/v1/log/consistency?from={}&to={last}", heads[0].0),
        "",
    );
    assert_eq!(st, 200, "{r}");
    let cli = ok(&[
        "consistency",
        "--data",
        data,
        "--from",
        &heads[0].0.to_string(),
    ]);
    assert_eq!(
        r,
        serde_json::from_str::<serde_json::Value>(&cli).expect("json")
    );
    // The level-0 tile of the last checkpoint holds every header's leaf hash.
    let tile = if last >= 256 {
        "0/000".to_owned()
    } else {
        format!("0/000.p/{last}")
    };
    let (st, head, body) = http_bytes(&addr, &format!("/v1/log/tile/{tile}"));
    assert_eq!(st, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("immutable"), "{head}");
    assert_eq!(body.len() as u64, last.min(256) * 32);
    let entries = format!("/v1/log/tile/entries/{}", tile.trim_start_matches("0/"));
    let (st, _, bundle) = http_bytes(&addr, &entries);
    assert_eq!(st, 200);
    let list = veritrace_verify::logtree::read_entry_bundle(&bundle).expect("entries");
    for (e, h) in list.iter().zip(body.chunks(32)) {
        assert_eq!(merkle::leaf_hash(e).0.as_slice(), h);
    }
    for (path, code) in [
        (format!("/v1/log/consistency?from={last}&to=1"), 400),
        // (The server's audit log may have grown the log since: far beyond it.)
        (
            format!("/v1/log/consistency?from=1&to={}", last + 1_000_000),
            400,
        ),
        ("/v1/log/consistency?from=x&to=1".to_owned(), 400),
        ("/v1/log/tile/0/0001".to_owned(), 400),
        ("/v1/log/tile/9/000".to_owned(), 404),
    ] {
        let (st, r) = http(&addr, "GET", &path, "");
        assert_eq!(st, code, "{path}: {r}");
        assert!(r["error"]["code"].is_string(), "{path}: {r}");
    }
}

#[test]
fn unanchored_epoch_gives_a_sealed_proof_that_still_verifies() {
    let d = demo(3_000);
    let data = d.data.to_str().expect("p");
    // Drop the ledger entries from the last epoch holding events on: those epochs are sealed
    // but not (yet) anchored.
    let last_epoch = count(
        &d.data,
        "SELECT max(epoch_id) AS n FROM batches WHERE size > 0",
    ) as usize;
    let ledger = d.data.join("ledger/local.jsonl");
    let text = std::fs::read_to_string(&ledger).expect("ledger");
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(
        &ledger,
        kept[..last_epoch]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .expect("write");
    // As if those epochs had never been anchored: the ledger's head says so too (a ledger
    // shorter than its head is a truncation, which src/tests/damage.rs covers).
    std::fs::remove_file(d.data.join("ledger/head.json")).expect("head");
    let status = sql_json(
        &d.data,
        &format!("SELECT status FROM epochs WHERE epoch_id = {last_epoch}"),
    );
    assert_eq!(status[0]["status"].as_str(), Some("sealed"));
    let ids = sql_json(
        &d.data,
        &format!(
            "SELECT e.event_id FROM events e JOIN batches b ON e.batch_id = b.batch_id WHERE b.epoch_id = {last_epoch} LIMIT 1"
        ),
    );
    let id = ids[0]["event_id"].as_str().expect("event in last epoch");
    let proof = d.data.join("sealed.json");
    ok(&[
        "proof",
        "--data",
        data,
        id,
        "--out",
        proof.to_str().expect("p"),
    ]);
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).expect("read")).expect("json");
    assert_eq!(bundle["status"].as_str(), Some("sealed"));
    assert!(bundle.get("anchor").is_none());
    // Sealed, in no anchored epoch yet: consistent, but nothing anchors it (exit 3).
    let out = run(&[
        "verify",
        proof.to_str().expect("p"),
        "--ledger",
        ledger.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.starts_with("UNANCHORED")
            && out.contains("(sealed)")
            && out.contains("not anchored yet"),
        "{out}"
    );
    // Claiming anchored without a receipt fails.
    let mut forged = bundle.clone();
    forged["status"] = "anchored".into();
    std::fs::write(&proof, serde_json::to_vec(&forged).expect("json")).expect("write");
    assert_eq!(
        run(&["verify", proof.to_str().expect("p")]).status.code(),
        Some(1)
    );
}

#[test]
fn config_file_environment_and_typos() {
    let d = demo(1_000);
    let dir = d.data.parent().expect("tmp");
    let cfg = dir.join("veritrace.toml");
    std::fs::write(
        &cfg,
        format!(
            "data-dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n",
            d.data.to_str().expect("p")
        ),
    )
    .expect("write");
    // data-dir from the file: no --data needed.
    let out = ok(&[
        "sql",
        "--config",
        cfg.to_str().expect("p"),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM epochs",
    ]);
    assert!(out.starts_with("n\n"), "{out}");
    // The environment overrides the file.
    let out = bin()
        .args(["sql", "--config", cfg.to_str().expect("p"), "SELECT 1"])
        .env("VERITRACE__DATA_DIR", "/nonexistent/veritrace")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/veritrace"));
    // A typo names the key.
    std::fs::write(&cfg, "[pipeline]\nbatch-max-recods = 5\n").expect("write");
    let out = run(&["sql", "--config", cfg.to_str().expect("p"), "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("batch-max-recods"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn anchor_deploy_without_a_key_says_where_to_put_it() {
    let out = bin()
        .args(["anchor", "deploy", "--rpc", "http://127.0.0.1:1"])
        .env_remove("VERITRACE_EVM_KEY")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VERITRACE_EVM_KEY") && err.contains("--key-file"),
        "{err}"
    );
}

#[test]
fn trace_backward_and_forward_from_the_cli() {
    let d = demo(20_000);
    let data = d.data.to_str().expect("p");
    let q = |sql: &str| -> serde_json::Value { sql_json(&d.data, sql) };
    let product = q(
        "SELECT trace_code FROM events WHERE event_type = 'assembly' ORDER BY event_time DESC, event_id LIMIT 1",
    )[0]["trace_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let tree = ok(&["trace", &product, "--backward", "--data", data]);
    assert!(tree.starts_with(&product), "{tree}");
    assert!(tree.contains("── ") && tree.contains("assembly"), "{tree}");
    // JSON rows: the same events as the SQL table function, each once.
    let rows: serde_json::Value = serde_json::from_str(&ok(&[
        "trace",
        &product,
        "--backward",
        "--format",
        "json",
        "--data",
        data,
    ]))
    .expect("json");
    let rows = rows.as_array().expect("rows");
    let sql_count = count(
        &d.data,
        &format!("SELECT count(DISTINCT event_id) AS n FROM trace_backward('{product}')"),
    );
    assert_eq!(rows.len() as u64, sql_count);
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rows.len());
    // Forward from one of its raw inputs reaches the product again.
    let deepest = rows
        .iter()
        .max_by_key(|r| r["trace_depth"].as_u64().unwrap_or(0))
        .expect("row");
    let raw = deepest["trace_node"].as_str().expect("node");
    let fwd = ok(&["trace", raw, "--forward", "--format", "csv", "--data", data]);
    assert!(
        fwd.contains(&product),
        "forward from {raw} misses {product}"
    );
    let shallow = ok(&[
        "trace",
        &product,
        "--backward",
        "--depth",
        "1",
        "--format",
        "json",
        "--data",
        data,
    ]);
    let shallow: serde_json::Value = serde_json::from_str(&shallow).expect("json");
    assert!(
        shallow
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r["trace_depth"].as_u64() <= Some(1))
    );
    // A malformed code is a clear error.
    let out = run(&["trace", "not-a-code", "--forward", "--data", data]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed_trace_code"));
    let out = run(&["trace", &product, "--data", data]);
    assert_eq!(out.status.code(), Some(2), "a direction is required");
}

/// Traces of every root below, as JSON rows.
fn traces(data: &str, roots: &[(String, &str)]) -> Vec<String> {
    roots
        .iter()
        .map(|(code, dir)| ok(&["trace", code, dir, "--format", "json", "--data", data]))
        .collect()
}

#[test]
fn traces_read_the_trace_index_after_compaction_and_survive_its_damage() {
    let d = demo(20_000);
    let data = d.data.to_str().expect("p");
    let q = |sql: &str| -> Vec<String> {
        sql_json(&d.data, sql)
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["c"].as_str().expect("code").to_owned())
            .collect()
    };
    let mut roots: Vec<(String, &str)> = Vec::new();
    for c in q("SELECT DISTINCT child AS c FROM edges ORDER BY c LIMIT 4") {
        roots.push((c, "--backward"));
    }
    for c in q("SELECT DISTINCT parent AS c FROM edges WHERE parent <> '' ORDER BY c LIMIT 4") {
        roots.push((c, "--forward"));
    }
    let before = traces(data, &roots);
    assert!(before.iter().all(|t| t.len() > 10), "{before:?}");

    let said = common::compact(data, "0");
    assert!(said.contains("trace index: "), "{said}");
    let index = d.data.join("index/trace-graph.vtg");
    assert!(index.exists());
    assert_eq!(traces(data, &roots), before, "through the index");
    // The index alone answers: with the edges files moved away, the same traces.
    let away = d.data.join("edges-away");
    std::fs::rename(d.data.join("edges"), &away).expect("move");
    std::fs::create_dir(d.data.join("edges")).expect("mkdir");
    assert_eq!(traces(data, &roots), before, "from the index alone");
    std::fs::remove_dir(d.data.join("edges")).expect("rmdir");
    std::fs::rename(&away, d.data.join("edges")).expect("move back");
    // Up to date: the next compaction leaves it.
    assert!(!common::compact(data, "0").contains("trace index: "));

    // Damage: traces fall back to the edges files, `check` names the block.
    let mut bytes = std::fs::read(&index).expect("read");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(&index, &bytes).expect("write");
    assert_eq!(traces(data, &roots), before, "after damage");
    let out = run(&["check", "--data", data]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("trace-graph.vtg") && said.contains("does not match its checksum"),
        "{said}"
    );
    // The next compaction rewrites it.
    assert!(common::compact(data, "0").contains("trace index: "));
    let out = run(&["check", "--data", data]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(traces(data, &roots), before, "rewritten");
}

#[test]
fn trace_certificates_verify_offline_and_tampering_is_reported_per_event() {
    let d = demo(20_000);
    let data = d.data.to_str().expect("p");
    let product = sql_json(
        &d.data,
        "SELECT trace_code FROM events WHERE event_type = 'assembly' ORDER BY event_time DESC, event_id LIMIT 1",
    )[0]["trace_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let dir = tempfile::tempdir().expect("tmp");
    let cert_path = dir.path().join("cert.json");
    ok(&[
        "trace",
        &product,
        "--backward",
        "--format",
        "json",
        "--certificate",
        cert_path.to_str().expect("p"),
        "--data",
        data,
    ]);
    let ledger = d.data.join("ledger/local.jsonl");
    let verify = |p: &Path| -> (i32, serde_json::Value) {
        let out = run(&[
            "verify",
            p.to_str().expect("p"),
            "--json",
            "--ledger",
            ledger.to_str().expect("p"),
        ]);
        (
            out.status.code().unwrap_or(-1),
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        )
    };
    let (code, v) = verify(&cert_path);
    assert_eq!(code, 0, "{v}");
    let cert: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cert_path).expect("read")).expect("json");
    let n = cert["events"].as_array().expect("events").len();
    let want = count(
        &d.data,
        &format!("SELECT count(*) AS n FROM trace_backward('{product}')"),
    );
    assert_eq!(n as u64, want);
    assert_eq!(v["events"].as_array().expect("per event").len(), n);
    assert!(
        v["events"]
            .as_array()
            .expect("e")
            .iter()
            .all(|e| e["valid"] == true)
    );
    // Batches are shared: fewer batch entries than events.
    assert!(cert["batches"].as_object().expect("batches").len() < n);

    let write = |name: &str, c: &serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_vec(c).expect("json")).expect("write");
        p
    };
    // One event altered: that event fails, by id, with its reason; the others pass.
    let mut c = cert.clone();
    c["events"][1]["event"]["operator"] = "someone-else".into();
    let (code, v) = verify(&write("altered.json", &c));
    assert_eq!(code, 1, "{v}");
    let bad: Vec<&serde_json::Value> = v["events"]
        .as_array()
        .expect("e")
        .iter()
        .filter(|e| e["valid"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{v}");
    assert_eq!(bad[0]["code"], "root_mismatch");
    // A link event removed: the trace no longer holds together.
    let mut c = cert.clone();
    let via = c["trace"]["nodes"][1]["via_event"]
        .as_str()
        .expect("via")
        .to_owned();
    c["events"]
        .as_array_mut()
        .expect("e")
        .retain(|e| e["event"]["event_id"] != via.as_str());
    let (code, v) = verify(&write("unlinked.json", &c));
    assert_eq!(code, 1, "{v}");
    assert!(v["problems"].to_string().contains(&via), "{v}");
    // A node claimed to come from elsewhere.
    let mut c = cert.clone();
    c["trace"]["nodes"][1]["from"] = c["trace"]["nodes"][2]["code"].clone();
    let (code, _) = verify(&write("relinked.json", &c));
    assert_eq!(code, 1);
    // An event moved under another object's node (its proof is intact): another product's
    // history must not pass for this one's.
    let mut c = cert.clone();
    let events = c["events"].as_array_mut().expect("e");
    let (moved, other) = {
        let i = events
            .iter()
            .position(|e| e["event"]["trace_code"] == e["node"])
            .expect("an event of its own node");
        let other = cert["trace"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|n| n["code"].as_str())
            .find(|code| {
                let ev = &events[i]["event"];
                ev["trace_code"].as_str() != Some(*code)
                    && !ev["inputs"].to_string().contains(code)
                    && !ev["outputs"].to_string().contains(code)
            })
            .expect("another node")
            .to_owned();
        (i, other)
    };
    events[moved]["node"] = other.clone().into();
    let moved_id = events[moved]["event"]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (code, v) = verify(&write("moved.json", &c));
    assert_eq!(code, 1, "{v}");
    assert!(
        v["problems"].to_string().contains(&moved_id) && v["problems"].to_string().contains(&other),
        "{v}"
    );
    // An event listed twice.
    let mut c = cert.clone();
    let first = c["events"][0].clone();
    c["events"].as_array_mut().expect("e").push(first);
    let (code, v) = verify(&write("twice.json", &c));
    assert_eq!(code, 1);
    assert!(v["problems"].to_string().contains("twice"), "{v}");
    // A shared batch header changed: every event of that batch fails.
    let mut c = cert.clone();
    let batch = c["events"][0]["batch_id"].as_str().expect("b").to_owned();
    c["batches"][&batch]["header"]["sealed_at"] = "2020-01-01T00:00:00.000Z".into();
    let (code, v) = verify(&write("header.json", &c));
    assert_eq!(code, 1);
    let in_batch = cert["events"]
        .as_array()
        .expect("e")
        .iter()
        .filter(|e| e["batch_id"] == batch.as_str())
        .count();
    let failed = v["events"]
        .as_array()
        .expect("e")
        .iter()
        .filter(|e| e["valid"] == false)
        .count();
    assert_eq!(failed, in_batch, "{v}");
    // Unknown fields are refused.
    let mut c = cert.clone();
    c["extra"] = 1.into();
    let (code, v) = verify(&write("extra.json", &c));
    assert_eq!((code, v["code"].as_str()), (1, Some("malformed")), "{v}");
}

#[test]
fn keys_generated_here_sign_events_that_the_verifier_accepts() {
    use veritrace_verify::signature::{PublicKey, parse_cose, parse_jws};
    let dir = tempfile::tempdir().expect("dir");
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        concat!(
            r#"{"event_id":"e1","event_type":"production","trace_code":"(01)06945501102041(10)L1"}"#,
            "\n\n",
            r#"{"event_id":"e2","event_type":"quality_check"}"#,
            "\n"
        ),
    )
    .expect("write events");
    for alg in ["ES256", "EdDSA"] {
        let key = dir.path().join(format!("{alg}.key"));
        let out = ok(&[
            "keys",
            "generate",
            "--alg",
            alg,
            "--out",
            key.to_str().expect("p"),
        ]);
        let info: serde_json::Value = serde_json::from_str(&out).expect("json");
        let public = PublicKey::parse(info["public"].as_str().expect("public")).expect("key");
        assert_eq!(info["key_id"], public.key_id());
        // Never overwritten.
        let again = run(&[
            "keys",
            "generate",
            "--alg",
            alg,
            "--out",
            key.to_str().expect("p"),
        ]);
        assert_eq!(again.status.code(), Some(2));

        let jws = ok(&[
            "sign",
            "--key",
            key.to_str().expect("p"),
            "--issuer",
            "dev-press-07",
            "--iat",
            "1790000000",
            events.to_str().expect("p"),
        ]);
        let lines: Vec<&str> = jws.lines().collect();
        assert_eq!(lines.len(), 2, "{jws}");
        let first = parse_jws(lines[0]).expect("jws");
        first.verify(&public).expect("verifies");
        assert_eq!(first.claims.iss.as_deref(), Some("dev-press-07"));
        assert_eq!(
            first.claims.sub.as_deref(),
            Some("(01)06945501102041(10)L1")
        );
        assert_eq!(first.claims.iat, Some(1_790_000_000));
        assert_eq!(first.kid.as_deref(), Some(public.key_id().as_str()));
        assert_eq!(parse_jws(lines[1]).expect("jws").claims.sub, None);

        let cose_out = dir.path().join(format!("{alg}.cbor"));
        ok(&[
            "sign",
            "--key",
            key.to_str().expect("p"),
            "--issuer",
            "dev-press-07",
            "--format",
            "cose",
            "--out",
            cose_out.to_str().expect("p"),
            events.to_str().expect("p"),
        ]);
        // A CBOR sequence: parse the first envelope back out of it.
        let bytes = std::fs::read(&cose_out).expect("read");
        let first_len = {
            let mut cursor = std::io::Cursor::new(&bytes);
            let _: ciborium::value::Value =
                ciborium::de::from_reader(&mut cursor).expect("first envelope");
            cursor.position() as usize
        };
        let env = parse_cose(&bytes[..first_len]).expect("cose");
        env.verify(&public).expect("verifies");
        assert!(first_len < bytes.len(), "two envelopes");
    }
    // Bad input: not JSON, a missing key file, COSE to the terminal.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{not json\n").expect("write");
    let key = dir.path().join("ES256.key");
    let out = run(&[
        "sign",
        "--key",
        key.to_str().expect("p"),
        "--issuer",
        "d",
        bad.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1 is not a JSON event"));
    let out = run(&[
        "sign",
        "--key",
        "/nonexistent.key",
        "--issuer",
        "d",
        events.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "sign",
        "--key",
        key.to_str().expect("p"),
        "--issuer",
        "d",
        "--format",
        "cose",
        events.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// Writes the proof of event `s1` with every private field still held disclosed.
fn disclosing_proof(data: &str, out: &Path) {
    ok(&[
        "proof",
        "--data",
        data,
        "s1",
        "--disclose",
        "all",
        "--out",
        out.to_str().expect("p"),
    ]);
}

#[test]
fn private_fields_are_committed_disclosed_on_request_and_erased_with_proofs_intact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let config = tmp.path().join("veritrace.toml");
    std::fs::write(
        &config,
        "[privacy.fields]\nsale = [\"attributes.price\", \"counterparty.name\"]\n",
    )
    .expect("config");
    let c = config.to_str().expect("p");
    let file = tmp.path().join("events.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"event_id":"s1","event_type":"sale","event_time":"2026-11-30T10:00:00Z","trace_code":"(01)09506000134352(21)B1","participant":{"id":"shop-1","role":"retailer"},"counterparty":{"id":"cust-9","name":"Erika Mustermann","role":"customer"},"attributes":{"price":1299.5,"channel":"store"}}"#,
            "\n",
            r#"{"event_id":"p1","event_type":"production","event_time":"2026-11-30T09:00:00Z","trace_code":"(01)09506000134352(21)B1","participant":{"id":"plant-1","role":"manufacturer"},"attributes":{"price":10}}"#,
            "\n"
        ),
    )
    .expect("events");
    ok(&[
        "--config",
        c,
        "ingest",
        "file",
        file.to_str().expect("p"),
        "--data",
        d,
    ]);

    // In the log: commitments, never the values (the production event's price is not
    // private: only sales are configured).
    let rows = sql_json(
        &data,
        "SELECT event_id, counterparty_name, attributes FROM events ORDER BY event_id",
    );
    let name = rows[1]["counterparty_name"].as_str().expect("name");
    assert!(name.starts_with("vtc1:"), "{rows}");
    assert!(
        rows[1]["attributes"]
            .as_str()
            .expect("attrs")
            .contains("\"price\":\"vtc1:"),
        "{rows}"
    );
    assert!(
        rows[0]["attributes"]
            .as_str()
            .expect("attrs")
            .contains("\"price\":10"),
        "{rows}"
    );
    let holders = common::files_containing(&data, "Erika Mustermann");
    assert_eq!(
        holders.len(),
        1,
        "only the private store holds the value: {holders:?}"
    );
    assert!(holders[0].starts_with(data.join("private")), "{holders:?}");

    // A proof keeps them committed unless asked; disclosed fields are checked.
    let plain = tmp.path().join("plain.json");
    let open = tmp.path().join("open.json");
    ok(&[
        "proof",
        "--data",
        d,
        "s1",
        "--out",
        plain.to_str().expect("p"),
    ]);
    disclosing_proof(d, &open);
    let plain_text = std::fs::read_to_string(&plain).expect("read");
    assert!(!plain_text.contains("Erika"), "{plain_text}");
    let out = verified(d, &plain);
    assert!(out.contains("committed, not disclosed"), "{out}");
    let out = verified(d, &open);
    assert!(
        out.contains("private field counterparty.name disclosed"),
        "{out}"
    );
    assert!(
        out.contains("private field attributes.price disclosed"),
        "{out}"
    );
    // A lie about a disclosed value is caught.
    let mut lie: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&open).expect("read")).expect("json");
    for d in lie["disclosures"].as_array_mut().expect("disclosures") {
        if d["path"] == "attributes.price" {
            d["value"] = serde_json::json!(99.0);
        }
    }
    let liar = tmp.path().join("lie.json");
    std::fs::write(&liar, lie.to_string()).expect("write");
    let out = run(&["verify", liar.to_str().expect("p")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad_disclosure"));

    // Erased: the values and salts are gone everywhere, every proof still verifies, and
    // the erasure is an audited, proven record.
    let out = run(&["--config", c, "erase", "--data", d, "--event", "s1"]);
    assert!(!out.status.success(), "a reason is required");
    let out = ok(&[
        "--config",
        c,
        "erase",
        "--data",
        d,
        "--event",
        "s1",
        "--reason",
        "GDPR art. 17 request 2026-51",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["erased"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(common::files_containing(&data, "Erika Mustermann").is_empty());
    let out = run(&[
        "--config", c, "erase", "--data", d, "--event", "s1", "--reason", "again",
    ]);
    assert!(!out.status.success(), "nothing left to erase");
    let out = verified(d, &plain);
    assert!(out.contains("committed, not disclosed"), "{out}");
    let again = tmp.path().join("again.json");
    disclosing_proof(d, &again);
    assert!(
        !std::fs::read_to_string(&again)
            .expect("read")
            .contains("Erika")
    );
    verified(d, &again);
    let audit = sql_json(&data, "SELECT entry_id, route, entry FROM audit");
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!(audit[0]["route"], "erase");
    assert!(
        audit[0]["entry"]
            .as_str()
            .expect("entry")
            .contains("GDPR art. 17"),
        "{audit}"
    );
    let entry_id = audit[0]["entry_id"].as_str().expect("id");
    proven(d, entry_id, &tmp.path().join("erasure.json"));
    // The events table is unchanged by the erasure.
    assert_eq!(count(&data, "SELECT count(*) AS n FROM events"), 2);
}

#[test]
fn config_check_validates_the_file_and_variables_before_a_rollout() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("site.toml");
    std::fs::write(&file, "[pipeline]\nbatch-max-records = 500\n").expect("write");
    let clean = |c: &mut Command| {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("VERITRACE_") {
                c.env_remove(k);
            }
        }
    };
    // The file from VERITRACE_CONFIG, a variable above it.
    let mut c = bin();
    clean(&mut c);
    let o = c
        .args(["config", "check"])
        .env("VERITRACE_CONFIG", &file)
        .env("VERITRACE__HTTP__LISTEN", "0.0.0.0:8080")
        .current_dir(dir.path())
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("configuration ok") && out.contains("site.toml"),
        "{out}"
    );
    assert!(
        out.contains("overridden by VERITRACE__HTTP__LISTEN"),
        "{out}"
    );

    // A misspelt variable and a bad value in the file: exit 2, naming the key.
    let mut c = bin();
    clean(&mut c);
    let o = c
        .args(["config", "check", "--config"])
        .arg(&file)
        .env("VERITRACE__KAFKA__BROKER", "k:9092")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broker"));
    std::fs::write(&file, "[pipeline]\nbatch-max-records = \"many\"\n").expect("write");
    let mut c = bin();
    clean(&mut c);
    let o = c
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("batch-max-records"));
}

/// `veritrace anchor run` next to a server that anchors the directory itself (a scheduled
/// job beside a deployment): nothing to do, the anchoring process named, exit 0.
#[test]
fn anchor_run_beside_a_process_that_anchors_says_who_and_succeeds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    common::demo(&data, 300);
    let _server = common::Server::start(&data, &[]);
    let d = data.to_str().expect("p");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let out = run(&["anchor", "run", "--data", d, "--timeout-secs", "5"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{:?}: {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // The server may not lead yet: then this run anchored, and the next one asks again.
        if text.contains("another process anchors") {
            assert!(
                text.contains("veritrace serve") || text.contains("pid"),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < until, "the server never anchored: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The CBV hash reference's `epcisDocWithVariousEventTypes` document (13 events of every
/// type) and its expected hash IDs, one per event in order.
fn various_event_types() -> (PathBuf, Vec<String>) {
    let vectors =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("processors/tests/data/epcis-hash");
    let hashes = std::fs::read_to_string(vectors.join("epcisDocWithVariousEventTypes.hashes"))
        .expect("hashes")
        .lines()
        .map(str::to_owned)
        .collect();
    (vectors.join("epcisDocWithVariousEventTypes.jsonld"), hashes)
}

/// With `[epcis] schema` set, a document that fails the schema is refused whole, saying
/// where, and nothing of it is taken; one that satisfies it imports as before.
#[test]
fn an_epcis_document_that_fails_the_configured_schema_is_refused_whole() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let schema = root.join("ingest/tests/data/epcis-shape.schema.json");
    let doc_path =
        root.join("processors/tests/data/epcis-hash/epcisDocWithVariousEventTypes.jsonld");
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&doc_path).expect("doc")).expect("json");
    doc["epcisBody"]["eventList"][5]["eventTimeZoneOffset"] = serde_json::json!("CET");
    let bad = tmp.path().join("bad.jsonld");
    std::fs::write(&bad, doc.to_string()).expect("write");
    let ingest = |file: &Path| {
        bin()
            .args(["ingest", "file"])
            .arg(file)
            .args(["--data", d, "--recorder", "plant-1:manufacturer"])
            .env("VERITRACE__EPCIS__SCHEMA", &schema)
            .output()
            .expect("ingest")
    };
    let out = ingest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("at /epcisBody/eventList/5/eventTimeZoneOffset"),
        "{err}"
    );
    assert!(!data.join("events").exists(), "nothing taken");
    let out = ingest(&doc_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&data, "SELECT count(*) AS n FROM events"), 10);
    // A schema file that is not there is a configuration error, not a silent pass.
    let out = bin()
        .args(["ingest", "file"])
        .arg(&doc_path)
        .args(["--data", d, "--recorder", "plant-1:manufacturer"])
        .env("VERITRACE__EPCIS__SCHEMA", tmp.path().join("missing.json"))
        .output()
        .expect("ingest");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[epcis] schema"));
}

/// The EPCIS 2.0 REST query binding (`GET /epcis/events`) on `serve`, against what the
/// imported document itself says: each parameter selects the events it names (URN, Digital
/// Link and pattern forms alike), pages follow the `Link` header without a gap or a repeat,
/// and a bad parameter is a 400 with a reason.
#[test]
fn the_epcis_query_binding_answers_the_common_queries_page_by_page() {
    let (doc_path, hashes) = various_event_types();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&doc_path).expect("doc")).expect("json");
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    ok(&[
        "ingest",
        "file",
        doc_path.to_str().expect("p"),
        "--data",
        d,
        "--recorder",
        "plant-1:manufacturer",
    ]);
    // The document's events that were imported, by our id (from their CBV hash).
    let ids: std::collections::BTreeSet<String> = sql_json(&data, "SELECT event_id FROM events")
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
        .collect();
    let imported: Vec<(String, &serde_json::Value)> = doc["epcisBody"]["eventList"]
        .as_array()
        .expect("events")
        .iter()
        .zip(&hashes)
        .filter_map(|(e, h)| {
            let hex = h
                .strip_prefix("ni:///sha-256;")?
                .strip_suffix("?ver=CBV2.0")?;
            let id = format!("epcis:sha-256:{hex}");
            ids.contains(&id).then_some((id, e))
        })
        .collect();
    assert!(imported.len() >= 4, "{imported:?}");
    let expect = |keep: &dyn Fn(&serde_json::Value) -> bool| -> std::collections::BTreeSet<String> {
        imported
            .iter()
            .filter(|(_, e)| keep(e))
            .map(|(id, _)| id.clone())
            .collect()
    };

    let server = common::Server::start(&data, &[]);
    let get = |query: &str| {
        common::http_full(
            &server.http,
            "GET",
            &format!("/epcis/events{query}"),
            "",
            "",
            Duration::from_secs(60),
        )
        .expect("request")
    };
    let ids_of = |doc: &serde_json::Value| -> Vec<String> {
        assert_eq!(doc["type"], "EPCISQueryDocument", "{doc}");
        doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
            .as_array()
            .expect("eventList")
            .iter()
            .map(|e| {
                e["vt:proof"]["vt:eventId"]
                    .as_str()
                    .expect("proof reference")
                    .to_owned()
            })
            .collect()
    };
    let all = |query: &str| -> std::collections::BTreeSet<String> {
        let (st, head, body) = get(query);
        assert_eq!(st, 200, "{query}: {body}");
        assert!(
            !head.to_ascii_lowercase().contains("link:"),
            "{query}: one page: {head}"
        );
        let got = ids_of(&body);
        let set: std::collections::BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(set.len(), got.len(), "{query}: an event twice");
        set
    };
    assert_eq!(all(""), expect(&|_| true));
    assert_eq!(
        all("?EQ_bizStep=packing"),
        expect(&|e| e["bizStep"] == "packing")
    );
    assert!(!expect(&|e| e["bizStep"] == "packing").is_empty());
    // One SSCC, as a URN and as a Digital Link; its company's pattern takes in more.
    let sscc = |e: &serde_json::Value| {
        ["epcList", "childEPCs"].iter().any(|k| {
            e[*k]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "urn:epc:id:sscc:5200001.0111111146"))
        })
    };
    let want = expect(&sscc);
    assert_eq!(want.len(), 2, "departing and receiving of one SSCC");
    assert_eq!(all("?MATCH_epc=urn:epc:id:sscc:5200001.0111111146"), want);
    assert_eq!(
        all("?MATCH_anyEPC=https%3A%2F%2Fid.gs1.org%2F00%2F052000011111111461"),
        want
    );
    assert_eq!(
        all("?MATCH_epc=urn:epc:id:sscc:5200001.0111111146&EQ_bizStep=receiving"),
        expect(&|e| sscc(e) && e["bizStep"] == "receiving")
    );
    assert_eq!(
        all("?MATCH_parentID=urn:epc:id:sscc:4047023.0111111122"),
        expect(&|e| e["parentID"] == "urn:epc:id:sscc:4047023.0111111122")
    );
    assert_eq!(
        all("?EQ_readPoint=urn:epc:id:sgln:4012345.00012.0"),
        expect(&|e| e["readPoint"]["id"] == "urn:epc:id:sgln:4012345.00012.0")
    );
    // Times: 2019-10-21T11:00:30+01:00 is 10:00:30Z; the window holds the first hour.
    let in_window = |e: &serde_json::Value| {
        let t = chrono::DateTime::parse_from_rfc3339(e["eventTime"].as_str().expect("time"))
            .expect("rfc3339");
        let (from, to) = (
            chrono::DateTime::parse_from_rfc3339("2019-10-21T10:00:30Z").expect("t"),
            chrono::DateTime::parse_from_rfc3339("2019-10-21T11:00:30Z").expect("t"),
        );
        t >= from && t < to
    };
    let window = all("?GE_eventTime=2019-10-21T10:00:30Z&LT_eventTime=2019-10-21T11:00:30Z");
    assert_eq!(window, expect(&in_window));
    assert!(!window.is_empty());

    // Page by page, one event each, following the Link header: the same events, in time
    // order, none twice, and the last page has no link.
    let mut pages = Vec::new();
    let mut next = Some("/epcis/events?perPage=1".to_owned());
    while let Some(path) = next.take() {
        let (st, head, body) =
            common::http_full(&server.http, "GET", &path, "", "", Duration::from_secs(60))
                .expect("request");
        assert_eq!(st, 200, "{path}: {body}");
        pages.extend(ids_of(&body));
        next = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("link:"))
            .and_then(|l| Some(l.split_once('<')?.1.split_once('>')?.0.to_owned()));
        assert!(
            pages.len() <= imported.len() + 1,
            "pages never end: {pages:?}"
        );
    }
    let mut by_time: Vec<(chrono::DateTime<chrono::FixedOffset>, &String)> = imported
        .iter()
        .map(|(id, e)| {
            (
                chrono::DateTime::parse_from_rfc3339(e["eventTime"].as_str().expect("t"))
                    .expect("t"),
                id,
            )
        })
        .collect();
    by_time.sort();
    let times: Vec<_> = pages
        .iter()
        .map(|id| by_time.iter().find(|(_, i)| *i == id).expect("known").0)
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "time order: {pages:?}"
    );
    assert_eq!(
        pages
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expect(&|_| true)
    );
    assert_eq!(pages.len(), imported.len(), "{pages:?}");

    // Refusals, with the reason.
    for (query, why) in [
        ("?EQ_colour=red", "not a query parameter"),
        ("?MATCH_epc=banana", "no EPC URN"),
        ("?GE_eventTime=yesterday", "RFC 3339"),
        ("?perPage=0", "perPage"),
        ("?nextPageToken=forged", "not a token"),
    ] {
        let (st, _, body) = get(query);
        assert_eq!(st, 400, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{query}: {body}"
        );
    }
}

/// Packing and unpacking over time, imported from EPCIS: cases packed on a pallet, the pallet
/// loaded on a truck and unloaded, the pallet emptied (an AggregationEvent DELETE without
/// children), one case repacked on another pallet and inspected, another case packed on the
/// reused pallet, which rides the truck again. Each trace equals the known truth: which
/// objects, in which windows of time, and which of their events; the certificate carries the
/// windows and verifies, and an event moved outside its node's window is caught.
#[test]
fn pack_and_unpack_traces_follow_containment_over_time() {
    const C1: &str = "(01)04012345111118(21)1";
    const C3: &str = "(01)04012345111118(21)3";
    const P1: &str = "(00)040123450000000016";
    const P2: &str = "(00)040123450000000023";
    const K: &str = "(00)040123450000000092";
    let sgtin = |n: u32| format!("urn:epc:id:sgtin:4012345.011111.{n}");
    let sscc = |n: u32| format!("urn:epc:id:sscc:4012345.000000000{n}");
    let at = |h: &str| format!("2026-01-01T{h}:00.000Z");
    let object = |h: &str, step: &str, epcs: Vec<String>| {
        let mut e = serde_json::json!({
            "type": "ObjectEvent", "eventTime": at(h), "eventTimeZoneOffset": "+00:00",
            "action": if step == "commissioning" { "ADD" } else { "OBSERVE" },
            "bizStep": step, "epcList": epcs,
        });
        if step == "inspecting" {
            e["disposition"] = serde_json::json!("conformant");
        }
        e
    };
    let agg = |h: &str, action: &str, step: &str, parent: String, children: Vec<String>| {
        let mut e = serde_json::json!({
            "type": "AggregationEvent", "eventTime": at(h), "eventTimeZoneOffset": "+00:00",
            "action": action, "bizStep": step, "parentID": parent,
        });
        if !children.is_empty() {
            e["childEPCs"] = serde_json::json!(children);
        }
        e
    };
    let events = vec![
        object("08:00", "commissioning", vec![sgtin(1), sgtin(2), sgtin(3)]),
        agg("09:00", "ADD", "packing", sscc(1), vec![sgtin(1), sgtin(2)]),
        object("10:00", "shipping", vec![sscc(1)]),
        agg("10:05", "ADD", "loading", sscc(9), vec![sscc(1)]),
        object("10:30", "transporting", vec![sscc(9)]),
        agg("11:00", "DELETE", "unloading", sscc(9), vec![sscc(1)]),
        object("12:00", "receiving", vec![sscc(1)]),
        agg("13:00", "DELETE", "unpacking", sscc(1), vec![]),
        agg("14:00", "ADD", "packing", sscc(2), vec![sgtin(2)]),
        object("14:30", "inspecting", vec![sgtin(2)]),
        agg("15:00", "ADD", "packing", sscc(1), vec![sgtin(3)]),
        object("16:00", "shipping", vec![sscc(1)]),
        agg("16:30", "ADD", "loading", sscc(9), vec![sscc(1)]),
        object("17:00", "departing", vec![sscc(9)]),
    ];
    let doc = serde_json::json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument", "schemaVersion": "2.0",
        "creationDate": "2026-01-02T00:00:00Z",
        "epcisBody": {"eventList": events},
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let path = tmp.path().join("pallets.jsonld");
    std::fs::write(&path, doc.to_string()).expect("write");
    ok(&[
        "ingest",
        "file",
        path.to_str().expect("p"),
        "--data",
        d,
        "--recorder",
        "dc-1:warehouse",
    ]);
    assert_eq!(count(&data, "SELECT count(*) AS n FROM rejected"), 0);
    assert_eq!(
        count(
            &data,
            "SELECT count(*) AS n FROM events WHERE event_type = 'disassembly'"
        ),
        2
    );

    // (node, event type, hour) of each event of a trace, and (node, windows) of its nodes.
    type Rows = Vec<(String, String, String)>;
    type Nodes = Vec<(String, Vec<(Option<String>, Option<String>)>)>;
    let traced = |code: &str, way: &str| -> (Rows, Nodes) {
        let cert = tmp.path().join("cert.json");
        let rows: serde_json::Value = serde_json::from_str(&ok(&[
            "trace",
            code,
            way,
            "--format",
            "json",
            "--data",
            d,
            "--certificate",
            cert.to_str().expect("p"),
        ]))
        .expect("json");
        let mut rows: Rows = rows
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                let t = r["event_time"].as_str().expect("time");
                (
                    r["trace_node"].as_str().expect("node").to_owned(),
                    r["event_type"].as_str().expect("type").to_owned(),
                    t[11..16].to_owned(),
                )
            })
            .collect();
        rows.sort();
        assert!(verified(d, &cert).starts_with("VALID"), "{code} {way}");
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cert).expect("cert")).expect("json");
        let hour = |v: &serde_json::Value| v.as_str().map(|t| t[11..16].to_owned());
        let nodes = c["trace"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                let ws = n["windows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| (hour(&w["from"]), hour(&w["to"])))
                    .collect();
                (n["code"].as_str().expect("code").to_owned(), ws)
            })
            .collect();
        (rows, nodes)
    };
    let rows = |v: &[(&str, &str, &str)]| -> Rows {
        let mut r: Rows = v
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        r.sort();
        r
    };
    let h = |s: &str| Some(s.to_owned());

    // Forward from the first case: the pallet from packing to unpacking, the truck while the
    // pallet was on it; neither the pallet's second trip nor the truck's.
    let (got, nodes) = traced(C1, "--forward");
    assert_eq!(
        nodes,
        vec![
            (C1.to_owned(), vec![]),
            (P1.to_owned(), vec![(h("09:00"), h("13:00"))]),
            (K.to_owned(), vec![(h("10:05"), h("11:00"))]),
        ]
    );
    assert_eq!(
        got,
        rows(&[
            (C1, "production", "08:00"),
            (P1, "assembly", "09:00"),
            (P1, "warehouse_out", "10:00"),
            (P1, "warehouse_in", "12:00"),
            (P1, "disassembly", "13:00"),
            (K, "assembly", "10:05"),
            (K, "transport", "10:30"),
            (K, "disassembly", "11:00"),
        ])
    );

    // Forward from the case packed on the reused pallet: only the second stint and trip.
    let (got, nodes) = traced(C3, "--forward");
    assert_eq!(
        nodes,
        vec![
            (C3.to_owned(), vec![]),
            (P1.to_owned(), vec![(h("15:00"), None)]),
            (K.to_owned(), vec![(h("16:30"), None)]),
        ]
    );
    assert_eq!(
        got,
        rows(&[
            (C3, "production", "08:00"),
            (P1, "assembly", "15:00"),
            (P1, "warehouse_out", "16:00"),
            (K, "assembly", "16:30"),
            (K, "transport", "17:00"),
        ])
    );

    // Backward from the pallet: all it ever held, each case up to when it came out (the
    // repacked case's inspection on the other pallet is not this pallet's history).
    let c2 = "(01)04012345111118(21)2";
    let (got, nodes) = traced(P1, "--backward");
    assert_eq!(
        nodes,
        vec![
            (P1.to_owned(), vec![]),
            (C1.to_owned(), vec![(None, h("13:00"))]),
            (c2.to_owned(), vec![(None, h("13:00"))]),
            (C3.to_owned(), vec![]),
        ]
    );
    assert_eq!(
        got,
        rows(&[
            (P1, "assembly", "09:00"),
            (P1, "warehouse_out", "10:00"),
            (P1, "warehouse_in", "12:00"),
            (P1, "disassembly", "13:00"),
            (P1, "assembly", "15:00"),
            (P1, "warehouse_out", "16:00"),
            (C1, "production", "08:00"),
            (c2, "production", "08:00"),
            (C3, "production", "08:00"),
        ])
    );
    // Backward from the second pallet, never emptied: the case's whole history.
    let (got, _) = traced(P2, "--backward");
    assert_eq!(
        got,
        rows(&[
            (P2, "assembly", "14:00"),
            (c2, "production", "08:00"),
            (c2, "quality_check", "14:30"),
        ])
    );

    // An event listed under a node outside the node's windows is caught by the verifier.
    let cert = tmp.path().join("moved.json");
    ok(&[
        "trace",
        C1,
        "--forward",
        "--data",
        d,
        "--certificate",
        cert.to_str().expect("p"),
    ]);
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cert).expect("cert")).expect("json");
    c["trace"]["nodes"][2]["windows"][0]["to"] = serde_json::json!("2026-01-01T10:15:00.000Z");
    std::fs::write(&cert, c.to_string()).expect("write");
    let out = run(&[
        "verify",
        cert.to_str().expect("p"),
        "--ledger",
        &format!("{d}/ledger/local.jsonl"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("lies outside the times"), "{text}");
}

/// Error declarations: an assembly recorded with the wrong lot is declared in error and
/// corrected, natively and from EPCIS (`errorDeclaration` on the re-sent event). `events` and
/// traces read the corrected view; `events_as_recorded` and proofs still show the original;
/// a participant cannot retract another's event, and a declaration cannot be retracted.
#[test]
fn error_declarations_correct_the_view_and_keep_the_original_proven() {
    const P: &str = "(01)09506000134352(21)P1";
    const L1: &str = "(01)09506000134352(10)L1";
    const L2: &str = "(01)09506000134352(10)L2";
    let ev = |id: &str, ty: &str, t: &str, who: &str, extra: serde_json::Value| {
        let mut e = serde_json::json!({
            "event_id": id, "event_type": ty, "event_time": format!("2026-01-01T{t}:00Z"),
            "participant": {"id": who, "role": "manufacturer"},
        });
        for (k, v) in extra.as_object().expect("object") {
            e[k] = v.clone();
        }
        e.to_string()
    };
    let lines = [
        ev(
            "p1",
            "production",
            "08:00",
            "plant-1",
            serde_json::json!({"trace_code": P}),
        ),
        ev(
            "l1",
            "production",
            "07:00",
            "mill-1",
            serde_json::json!({"trace_code": L1}),
        ),
        ev(
            "l2",
            "production",
            "07:00",
            "mill-1",
            serde_json::json!({"trace_code": L2}),
        ),
        ev(
            "a1",
            "assembly",
            "09:00",
            "plant-1",
            serde_json::json!({"trace_code": P, "inputs": [L1]}),
        ),
        // The wrong lot was scanned: declared in error, and the right assembly recorded.
        ev(
            "a1-err",
            "error_declaration",
            "10:00",
            "plant-1",
            serde_json::json!({"trace_code": P, "retracts": ["a1"],
                "attributes": {"reason": "incorrect_data", "corrective_event_ids": ["a2"]}}),
        ),
        ev(
            "a2",
            "assembly",
            "09:00",
            "plant-1",
            serde_json::json!({"trace_code": P, "inputs": [L2]}),
        ),
        // Not theirs to retract; and a declaration is final.
        ev(
            "x-err",
            "error_declaration",
            "11:00",
            "mill-1",
            serde_json::json!({"retracts": ["p1"]}),
        ),
        ev(
            "y-err",
            "error_declaration",
            "11:00",
            "plant-1",
            serde_json::json!({"retracts": ["a1-err"]}),
        ),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let file = tmp.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    ok(&["ingest", "file", file.to_str().expect("p"), "--data", d]);
    assert_eq!(count(&data, "SELECT count(*) AS n FROM rejected"), 0);

    let ids = |sql: &str| -> Vec<String> {
        sql_json(&data, sql)
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        ids("SELECT event_id FROM events ORDER BY event_id"),
        vec!["a1-err", "a2", "l1", "l2", "p1", "x-err", "y-err"],
        "the corrected view leaves out a1 only"
    );
    assert_eq!(
        ids("SELECT event_id FROM events_as_recorded WHERE event_id = 'a1'"),
        vec!["a1"],
        "the original is still there as recorded"
    );
    // The trace follows the corrected assembly, not the retracted one.
    let trace: serde_json::Value = serde_json::from_str(&ok(&[
        "trace",
        P,
        "--backward",
        "--format",
        "json",
        "--data",
        d,
    ]))
    .expect("json");
    let mut got: Vec<(String, String)> = trace
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["trace_node"].as_str().expect("node").to_owned(),
                r["event_id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = [(P, "a1-err"), (P, "a2"), (P, "p1"), (L2, "l2")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Both are proven: the original and its declaration.
    proven(d, "a1", &tmp.path().join("a1.json"));
    proven(d, "a1-err", &tmp.path().join("a1-err.json"));

    // From EPCIS: a packing, then the same event re-sent with an errorDeclaration.
    let pack = serde_json::json!({
        "type": "AggregationEvent", "eventID": "urn:uuid:6c7f1c5e-0001",
        "eventTime": "2026-01-02T09:00:00.000Z", "eventTimeZoneOffset": "+00:00",
        "action": "ADD", "bizStep": "packing",
        "parentID": "urn:epc:id:sscc:4012345.0000000001",
        "childEPCs": ["urn:epc:id:sgtin:4012345.011111.1"],
    });
    let mut declared = pack.clone();
    declared["errorDeclaration"] = serde_json::json!({
        "declarationTime": "2026-01-02T12:00:00.000Z",
        "reason": "urn:epcglobal:cbv:er:incorrect_data",
        "correctiveEventIDs": ["urn:uuid:6c7f1c5e-0002"],
    });
    let doc = |events: Vec<serde_json::Value>| {
        serde_json::json!({
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": "2026-01-03T00:00:00Z", "epcisBody": {"eventList": events},
        })
        .to_string()
    };
    let pallet = "(00)040123450000000016";
    let made = serde_json::json!({
        "type": "ObjectEvent", "eventTime": "2026-01-02T08:00:00.000Z",
        "eventTimeZoneOffset": "+00:00", "action": "ADD", "bizStep": "commissioning",
        "epcList": ["urn:epc:id:sgtin:4012345.011111.1"],
    });
    for (name, events) in [("pack", vec![made, pack]), ("declared", vec![declared])] {
        let path = tmp.path().join(format!("{name}.jsonld"));
        std::fs::write(&path, doc(events)).expect("write");
        ok(&[
            "ingest",
            "file",
            path.to_str().expect("p"),
            "--data",
            d,
            "--recorder",
            "plant-1:manufacturer",
        ]);
        let nodes: serde_json::Value = serde_json::from_str(&ok(&[
            "trace",
            pallet,
            "--backward",
            "--format",
            "json",
            "--data",
            d,
        ]))
        .expect("json");
        let reached = nodes
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["trace_node"] == "(01)04012345111118(21)1");
        assert_eq!(reached, name == "pack", "after {name}: {nodes}");
    }
    let decl = sql_json(
        &data,
        "SELECT event_type, trace_code, attributes FROM events WHERE event_id = 'urn:uuid:6c7f1c5e-0001/err'",
    );
    assert_eq!(decl[0]["event_type"], "error_declaration", "{decl}");
    assert_eq!(decl[0]["trace_code"], pallet);
    let attrs: serde_json::Value =
        serde_json::from_str(decl[0]["attributes"].as_str().expect("attributes")).expect("json");
    assert_eq!(attrs["epcis_error_reason"], "incorrect_data");
    assert!(
        attrs["epcis"]["errorDeclaration"].is_object(),
        "kept as sent"
    );
    assert_eq!(
        count(
            &data,
            "SELECT count(*) AS n FROM events WHERE event_id = 'urn:uuid:6c7f1c5e-0001'"
        ),
        0
    );
}

/// Business types from the config (the shipped e-bike example): each record is checked
/// against the version in force at its event_time (the required fields, trace code kinds
/// and attributes schema of that version), a type `like` assembly links the trace graph,
/// the versions are recorded in the log, and `types check` finds a version changed after it
/// was recorded.
#[test]
fn business_types_check_each_record_against_the_version_in_force_at_its_time() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tmp");
    let types = tmp.path().join("types");
    std::fs::create_dir(&types).expect("dir");
    for f in std::fs::read_dir(root.join("examples/ebike-types")).expect("example") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, types.join(f.file_name().expect("name"))).expect("copy");
    }
    let cfg = types.join("veritrace.toml");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let vt = |args: &[&str]| {
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // The versions go into the log first.
    let (code, records, err) = vt(&["types", "records", "--recorder", "plant-sh-01:manufacturer"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(records.lines().count(), 4, "{records}");
    let file = tmp.path().join("types.jsonl");
    std::fs::write(&file, &records).expect("write");
    let (code, _, err) = vt(&["ingest", "file", file.to_str().expect("p"), "--data", d]);
    assert_eq!(code, Some(0), "{err}");

    const PACK: &str = "(01)09506000134376(21)BAT-1";
    const FRAME: &str = "(01)09506000134383(21)FR-1";
    const TUBES: &str = "(01)09506000134390(10)TUBE-7";
    let ev = |id: &str, ty: &str, day: &str, extra: serde_json::Value| {
        let mut e = serde_json::json!({
            "event_id": id, "event_type": ty, "event_time": format!("{day}T10:00:00Z"),
            "participant": {"id": "plant-sh-01", "role": "manufacturer"},
            "device_id": "eol-bat-01", "trace_code": PACK, "result": "pass",
        });
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                e.as_object_mut().expect("object").remove(k);
            } else {
                e[k] = v.clone();
            }
        }
        e.to_string()
    };
    let v1 = serde_json::json!({"inspection": "end-of-line", "voltage_v": 36.5,
        "insulation_mohm": 600, "capacity_ah": 14.0});
    let mut v2 = v1.clone();
    v2["cell_lot"] = serde_json::json!("CELL-2026-31");
    let lines = [
        // Version 1 in force: no cell lot needed.
        ev(
            "b1",
            "battery_eol_test",
            "2026-03-01",
            serde_json::json!({"attributes": v1}),
        ),
        // Version 2 in force: the same test without the cell lot fails its schema.
        ev(
            "b2",
            "battery_eol_test",
            "2026-07-01",
            serde_json::json!({"attributes": v1}),
        ),
        ev(
            "b3",
            "battery_eol_test",
            "2026-07-01",
            serde_json::json!({"attributes": v2}),
        ),
        // Before the first version: the type did not exist.
        ev(
            "b4",
            "battery_eol_test",
            "2024-06-01",
            serde_json::json!({"attributes": v1}),
        ),
        // A required field missing; a kind of trace code the type does not take.
        ev(
            "b5",
            "battery_eol_test",
            "2026-03-01",
            serde_json::json!({"attributes": v1, "device_id": null}),
        ),
        ev(
            "b6",
            "battery_eol_test",
            "2026-03-01",
            serde_json::json!({"attributes": v1, "trace_code": TUBES}),
        ),
        // Like quality_check: a result is required.
        ev(
            "b7",
            "battery_eol_test",
            "2026-03-01",
            serde_json::json!({"attributes": v1, "result": null}),
        ),
        ev(
            "m1",
            "motor_eol_test",
            "2026-03-01",
            serde_json::json!({
            "attributes": {"inspection": "end-of-line", "torque_nm": "strong", "noise_db": 50}}),
        ),
        // Like assembly: the frame is made of the tube lot.
        ev(
            "f1",
            "frame_welding",
            "2026-03-01",
            serde_json::json!({
            "trace_code": FRAME, "inputs": [TUBES], "site": "line-2", "operator": "op-7",
            "device_id": "weld-02", "result": null,
            "attributes": {"process": "welding and powder coating", "powder_kg": 0.42}}),
        ),
    ];
    let events = tmp.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n")).expect("write");
    let (code, _, err) = vt(&["ingest", "file", events.to_str().expect("p"), "--data", d]);
    assert_eq!(code, Some(0), "{err}");
    let rejected = sql_json(
        &data,
        "SELECT event_id, reason, detail FROM rejected ORDER BY event_id",
    );
    let got: Vec<(String, String)> = rejected
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap_or("").to_owned(),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("b2", "schema_violation"),
        ("b4", "unknown_event_type"),
        ("b5", "missing_field"),
        ("b6", "bad_value"),
        ("b7", "missing_field"),
        ("m1", "schema_violation"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "{rejected}");
    let detail = |id: &str| {
        rejected
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["event_id"] == id)
            .and_then(|r| r["detail"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        detail("b2").contains("version 2") && detail("b2").contains("cell_lot"),
        "{}",
        detail("b2")
    );
    assert!(detail("m1").contains("/torque_nm"), "{}", detail("m1"));
    assert!(detail("b6").contains("lgtin"), "{}", detail("b6"));
    assert_eq!(
        count(
            &data,
            "SELECT count(*) AS n FROM events WHERE event_type IN ('battery_eol_test', 'frame_welding')"
        ),
        3
    );
    // The business type links the trace graph as the type it is like.
    let trace: serde_json::Value = serde_json::from_str(&ok(&[
        "trace",
        FRAME,
        "--backward",
        "--format",
        "json",
        "--data",
        d,
    ]))
    .expect("json");
    assert!(
        trace
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["event_id"] == "f1"),
        "{trace}"
    );
    let edge = sql_json(
        &data,
        "SELECT parent, event_type FROM edges WHERE event_id = 'f1'",
    );
    assert_eq!(edge[0]["parent"], TUBES, "{edge}");

    // The log holds every configured version; a recorded version changed afterwards is found.
    let (code, out, err) = vt(&["types", "check", "--data", d]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.matches(": recorded").count(), 4, "{out}");
    let schema = types.join("motor_eol_test.v1.schema.json");
    let changed = std::fs::read_to_string(&schema)
        .expect("schema")
        .replace("\"maximum\": 200", "\"maximum\": 250");
    std::fs::write(&schema, changed).expect("write");
    let (code, out, _) = vt(&["types", "check", "--data", d]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("motor_eol_test v1") && out.contains("DIFFERS"),
        "{out}"
    );
}

/// Codes that prove themselves: `codes issue` signs random serials in AI 8030 and records
/// their issue; `codes verify` tells a genuine code from a guessed one offline; the resolver
/// (`GET /01/{gtin}/21/{serial}`, open without credentials) answers authenticity, the
/// lifecycle state from the events (sold, recalled) and the proof status, in JSON and HTML.
#[test]
fn issued_codes_prove_themselves_and_the_resolver_tells_genuine_forged_and_recalled() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let key = tmp.path().join("brand.key");
    let printed = ok(&[
        "keys",
        "generate",
        "--alg",
        "ES256",
        "--out",
        key.to_str().expect("p"),
    ]);
    let printed: serde_json::Value = serde_json::from_str(&printed).expect("json");
    let public = printed["public"]
        .as_str()
        .expect("the public key is printed")
        .to_owned();
    let issued = tmp.path().join("issued.jsonl");
    let out = ok(&[
        "codes",
        "issue",
        "--gtin",
        "09506000134352",
        "--count",
        "3",
        "--key",
        key.to_str().expect("p"),
        "--events",
        issued.to_str().expect("p"),
        "--recorder",
        "brand-1:manufacturer",
    ]);
    let codes: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (dl, es) = l.split_once('\t').expect("two forms");
            (dl.to_owned(), es.to_owned())
        })
        .collect();
    assert_eq!(codes.len(), 3);
    let serial = |dl: &str| -> String {
        dl.split("/21/")
            .nth(1)
            .expect("serial")
            .split('?')
            .next()
            .expect("s")
            .to_owned()
    };
    let serials: std::collections::BTreeSet<String> = codes.iter().map(|c| serial(&c.0)).collect();
    assert_eq!(serials.len(), 3, "random serials differ");

    // Offline: both forms of a genuine code verify; a guessed neighbour does not.
    for form in [&codes[0].0, &codes[0].1] {
        let out = run(&["codes", "verify", form, "--key", &public]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let s0 = serial(&codes[0].0);
    let last = s0.chars().last().expect("char");
    let guessed_serial = format!(
        "{}{}",
        &s0[..s0.len() - 1],
        if last == '2' { '3' } else { '2' }
    );
    let forged = codes[0]
        .0
        .replace(&format!("/21/{s0}"), &format!("/21/{guessed_serial}"));
    let out = run(&["codes", "verify", &forged, "--key", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NOT GENUINE"));

    // The issue, then a life: the first is made and sold, the third made and recalled.
    let code_of = |i: usize| format!("(01)09506000134352(21){}", serial(&codes[i].0));
    // After the issue (stamped now), in minutes.
    let ev = |id: &str, ty: &str, minutes: i64, code: String| {
        let t = chrono::Utc::now() + chrono::Duration::minutes(minutes);
        serde_json::json!({"event_id": id, "event_type": ty,
            "event_time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "trace_code": code, "participant": {"id": "brand-1", "role": "manufacturer"}})
        .to_string()
    };
    let life = [
        ev("m0", "production", 1, code_of(0)),
        ev("s0", "sale", 2, code_of(0)),
        ev("m2", "production", 1, code_of(2)),
        ev("r2", "recall", 3, code_of(2)),
    ];
    let mut all = std::fs::read_to_string(&issued).expect("issued");
    all.push_str(&life.join("\n"));
    let file = tmp.path().join("life.jsonl");
    std::fs::write(&file, all).expect("write");
    ok(&["ingest", "file", file.to_str().expect("p"), "--data", d]);
    assert_eq!(
        count(
            &data,
            "SELECT count(*) AS n FROM events WHERE event_type = 'code_issued'"
        ),
        3
    );

    let env_key = [("VERITRACE__CODES__BRAND_KEYS__9506000", public.as_str())];
    let server = common::Server::start(&data, &env_key);
    let get = |path: &str, accept: &str| {
        common::http_full(
            &server.http,
            "GET",
            path,
            "",
            &format!("Accept: {accept}\r\n"),
            Duration::from_secs(60),
        )
        .expect("request")
    };
    let path = |dl: &str| format!("/01/{}", dl.split("/01/").nth(1).expect("path"));
    let (st, _, j) = get(&path(&codes[0].0), "application/json");
    assert_eq!(st, 200, "{j}");
    assert_eq!(j["verdict"], "genuine", "{j}");
    assert_eq!(j["issued_in_log"], true);
    assert_eq!(j["state"], "sold", "{j}");
    assert_eq!(j["events"], 3, "{j}");
    let history: Vec<&str> = j["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["what"].as_str())
        .collect();
    assert_eq!(history, vec!["code issued", "production", "sale"]);
    assert!(
        !j.to_string().contains("brand-1"),
        "no participant ids: {j}"
    );
    // A guessed serial with a copied signature: not genuine, and unknown to the log.
    let (st, _, j) = get(&path(&forged), "application/json");
    assert_eq!(
        (st, j["verdict"].as_str()),
        (404, Some("not_genuine")),
        "{j}"
    );
    assert_eq!(j["signature"], "invalid");
    // Without its signature: the page says so.
    let bare = path(&codes[1].0);
    let bare = bare.split('?').next().expect("path");
    let (st, _, j) = get(bare, "application/json");
    assert_eq!((st, j["signature"].as_str()), (200, Some("absent")), "{j}");
    // The recalled one, as a person's browser sees it.
    let (st, head, page) = get(&path(&codes[2].0), "text/html");
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    let page = page.as_str().expect("html").to_owned();
    assert!(
        page.contains("data-verdict=\"genuine\"") && page.contains("Recalled"),
        "{page}"
    );
    assert!(page.contains("id=\"state\">recalled"), "{page}");

    // The pages as a person sees them, in headless Chromium: genuine and sold, forged,
    // recalled.
    let base = format!("http://{}", server.http);
    let pages = veritrace_testkit::browser::resolver_pages(
        &base,
        &[path(&codes[0].0), path(&forged), path(&codes[2].0)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pages.len(), 3, "{pages:?}");
    let (genuine, fake, recalled) = (&pages[0], &pages[1], &pages[2]);
    assert_eq!(
        (
            genuine["status"].as_u64(),
            genuine["verdict"].as_str(),
            genuine["banner"].as_str()
        ),
        (Some(200), Some("genuine"), Some("Genuine")),
        "{genuine}"
    );
    assert!(
        genuine["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("sold since 20")),
        "{genuine}"
    );
    assert_eq!(
        genuine["history"].as_array().map(Vec::len),
        Some(3),
        "{genuine}"
    );
    assert_eq!(
        (fake["status"].as_u64(), fake["verdict"].as_str()),
        (Some(404), Some("not_genuine")),
        "{fake}"
    );
    assert!(
        fake["banner"]
            .as_str()
            .is_some_and(|b| b.starts_with("Not genuine")),
        "{fake}"
    );
    assert_eq!(
        recalled["state"]
            .as_str()
            .map(|s| s.starts_with("recalled")),
        Some(true),
        "{recalled}"
    );
    assert!(
        recalled["banner"]
            .as_str()
            .is_some_and(|b| b.starts_with("Recalled")),
        "{recalled}"
    );
    // The warning is shown as one (not the genuine colour).
    assert_ne!(recalled["colour"], genuine["colour"], "{recalled}");
}

/// Clone detection: a serial seen in Shanghai and, an hour later, in Rotterdam is two
/// objects; the same serial a month apart, or seen twice at one site, is not.
#[test]
fn a_serial_seen_in_two_places_in_an_impossible_time_is_a_clone_suspect() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let ev = |id: &str, code: &str, time: &str, site: &str, lat: f64, lon: f64| {
        serde_json::json!({"event_id": id, "event_type": "warehouse_in", "event_time": time,
            "participant": {"id": "dc-1", "role": "warehouse"}, "trace_code": code,
            "site": site, "location": {"lat": lat, "lon": lon}})
        .to_string()
    };
    let (a, b) = (
        "(01)09506000134352(21)CLONE1",
        "(01)09506000134352(21)TRAVEL1",
    );
    let lines = [
        ev("a1", a, "2026-03-01T08:00:00Z", "sha", 31.23, 121.47),
        ev("a2", a, "2026-03-01T09:00:00Z", "sha", 31.24, 121.48),
        ev("a3", a, "2026-03-01T10:00:00Z", "rtm", 51.92, 4.48),
        ev("b1", b, "2026-03-01T08:00:00Z", "sha", 31.23, 121.47),
        ev("b2", b, "2026-04-01T08:00:00Z", "rtm", 51.92, 4.48),
    ];
    let file = tmp.path().join("sightings.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    let out = ok(&[
        "ingest",
        "file",
        file.to_str().expect("p"),
        "--data",
        data.to_str().expect("p"),
    ]);
    // The live counter (veritrace_clone_sightings_total) saw the same one as it arrived.
    let clones = out
        .lines()
        .find(|l| l.trim_start().starts_with("clones?"))
        .unwrap_or_else(|| panic!("no clone sightings line in\n{out}"));
    assert_eq!(clones.split_whitespace().nth(1), Some("1"), "{clones}");
    let rows = sql_json(&data, "SELECT * FROM clone_suspects");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (
            r["trace_code"].as_str(),
            r["first_event"].as_str(),
            r["second_event"].as_str()
        ),
        (Some(a), Some("a2"), Some("a3")),
        "{r}"
    );
    let km = r["km"].as_f64().expect("km");
    assert!(
        (8_800.0..9_100.0).contains(&km),
        "Shanghai to Rotterdam: {km} km"
    );
    assert!(r["kmh"].as_f64().expect("kmh") > 8_000.0, "{r}");
}

/// The `code_lifecycle` table: one row per trace code with the state its own events leave
/// it in, since when and by which event; the resolver says the same.
#[test]
fn code_lifecycle_is_a_table_of_each_codes_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let code = |s: &str| format!("(01)09506000134352(21){s}");
    let mut lines = Vec::new();
    let mut ev = |code: &str, what: &str, day: u32, extra: Option<serde_json::Value>| {
        let id = format!("{}-{what}-{day}", &code[code.len() - 2..]);
        let mut e = serde_json::json!({"event_id": id, "event_type": what,
            "event_time": format!("2026-03-{day:02}T08:00:00Z"),
            "participant": {"id": "maker-1", "role": "manufacturer"}, "trace_code": code});
        for (k, v) in extra.iter().flat_map(|x| x.as_object()).flatten() {
            e[k] = v.clone();
        }
        lines.push(e.to_string());
    };
    // Issued only; issued and made; in use; sold (a transport after the sale changes
    // nothing); recalled after the sale; decommissioned (a recall after it changes
    // nothing); destroyed; and an issue recorded after production (a late import).
    ev(&code("I1"), "code_issued", 1, None);
    ev(&code("C1"), "code_issued", 1, None);
    ev(&code("C1"), "production", 2, None);
    ev(&code("U1"), "production", 2, None);
    ev(&code("U1"), "warehouse_in", 3, None);
    ev(&code("U1"), "transport", 4, None);
    ev(&code("S1"), "production", 2, None);
    ev(&code("S1"), "sale", 5, None);
    ev(&code("S1"), "transport", 9, None);
    ev(&code("R1"), "production", 2, None);
    ev(&code("R1"), "sale", 5, None);
    ev(&code("R1"), "recall", 7, None);
    ev(&code("D1"), "production", 2, None);
    ev(&code("D1"), "decommissioning", 6, None);
    ev(&code("D1"), "recall", 7, None);
    ev(
        &code("X1"),
        "decommissioning",
        6,
        Some(serde_json::json!({"attributes": {"epcis_biz_step": "destroying"}})),
    );
    // Made by assembly, then packed into a pallet that is packed again: in use.
    let parts = Some(serde_json::json!({"inputs": ["(01)09506000134352(10)LOT1"]}));
    ev(&code("A1"), "assembly", 2, parts.clone());
    ev(&code("P1"), "assembly", 3, parts.clone());
    ev(&code("P1"), "assembly", 4, parts);
    ev(&code("L1"), "production", 2, None);
    ev(&code("L1"), "code_issued", 3, None);
    let file = tmp.path().join("lifecycle.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    ok(&[
        "ingest",
        "file",
        file.to_str().expect("p"),
        "--data",
        data.to_str().expect("p"),
    ]);
    let rows = sql_json(
        &data,
        "SELECT trace_code, state, since_event, events, CAST(since AS VARCHAR) AS since \
         FROM code_lifecycle ORDER BY trace_code",
    );
    let got: Vec<(String, String, String, u64)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["trace_code"].as_str().unwrap_or("?").to_owned(),
                r["state"].as_str().unwrap_or("?").to_owned(),
                r["since_event"].as_str().unwrap_or("-").to_owned(),
                r["events"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want = [
        ("A1", "commissioned", "A1-assembly-2", 1),
        ("C1", "commissioned", "C1-production-2", 2),
        ("D1", "decommissioned", "D1-decommissioning-6", 3),
        ("I1", "issued", "I1-code_issued-1", 1),
        ("L1", "commissioned", "L1-production-2", 2),
        ("P1", "in use", "P1-assembly-4", 2),
        ("R1", "recalled", "R1-recall-7", 3),
        ("S1", "sold", "S1-sale-5", 3),
        ("U1", "in use", "U1-warehouse_in-3", 3),
        ("X1", "destroyed", "X1-decommissioning-6", 1),
    ]
    .map(|(c, s, e, n)| (code(c), s.to_owned(), e.to_owned(), n));
    assert_eq!(got, want);
    assert!(
        rows[0]["since"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-03-02T08:00:00")),
        "{}",
        rows[0]
    );
    // A filter on the code is a lookup, and the other questions are plain SQL.
    let recalled = sql_json(
        &data,
        &format!(
            "SELECT state FROM code_lifecycle WHERE trace_code = '{}'",
            code("R1")
        ),
    );
    assert_eq!(recalled, serde_json::json!([{"state": "recalled"}]));
    let counts = sql_json(
        &data,
        "SELECT state, count(*) AS n FROM code_lifecycle GROUP BY state \
         HAVING count(*) > 1 ORDER BY state",
    );
    assert_eq!(
        counts,
        serde_json::json!([{"state": "commissioned", "n": 3}, {"state": "in use", "n": 2}])
    );
}

/// Query certificates: `veritrace sql --certificate` proves each row of a result with its
/// event's proof; the verifier compares the columns that are the events' own fields, so a
/// changed value, a row pointed at another event or a changed event fails; a result
/// without event ids is refused with the reason.
#[test]
fn a_query_certificate_proves_each_row_and_catches_what_was_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let lines: Vec<String> = (1..=4)
        .map(|i| {
            serde_json::json!({"event_id": format!("q{i}"),
                "event_type": if i % 2 == 0 { "sale" } else { "production" },
                "event_time": format!("2026-03-0{i}T08:00:00Z"),
                "participant": {"id": "maker-1", "role": "manufacturer"},
                "trace_code": format!("(01)09506000134352(21)Q{i}")})
            .to_string()
        })
        .collect();
    let file = tmp.path().join("q.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    ok(&["ingest", "file", file.to_str().expect("p"), "--data", d]);
    let cert = tmp.path().join("rows.json");
    let c = cert.to_str().expect("p");
    // One event twice (a self-join): one proof, two rows.
    let sql = "SELECT a.event_id, a.event_type, a.trace_code, upper(a.event_type) AS shout \
               FROM events a JOIN events b ON a.trace_code = b.trace_code OR a.event_id = 'q1' \
               WHERE b.event_id IN ('q1', 'q2') ORDER BY a.event_id";
    let table = ok(&["sql", "--data", d, "--certificate", c, sql]);
    assert!(table.contains("PRODUCTION"), "{table}");
    let text = verified(d, &cert);
    assert!(
        text.starts_with("VALID  query certificate: 3 rows from 2 events"),
        "{text}"
    );
    assert!(
        text.contains("9 values equal their event's field (event_id, event_type, trace_code)"),
        "{text}"
    );
    assert!(
        text.contains("not compared with the events") && text.contains("shout"),
        "{text}"
    );
    assert!(
        text.contains("cannot prove that no other row matches"),
        "{text}"
    );
    // A reader that goes away (`verify ... | head -1`) leaves the verdict in the exit
    // status; it once made verify panic (exit 101) on the broken pipe.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_veritrace"))
        .args(["verify", c, "--ledger", &format!("{d}/ledger/local.jsonl")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("verify");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cert).expect("read")).expect("json");
    assert_eq!(original["rows"].as_array().map(Vec::len), Some(3));
    assert_eq!(original["events"].as_array().map(Vec::len), Some(2));

    let ledger = format!("{d}/ledger/local.jsonl");
    let refused = |change: &dyn Fn(&mut serde_json::Value), says: &str| {
        let mut v = original.clone();
        change(&mut v);
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, v.to_string()).expect("write");
        let out = run(&["verify", bad.to_str().expect("p"), "--ledger", &ledger]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{says}: {text}");
        assert!(text.starts_with("INVALID"), "{says}: {text}");
        assert!(text.contains(says), "{says}: {text}");
    };
    refused(
        &|v| v["rows"][0]["values"]["event_type"] = "sale".into(),
        "row 0: event_type is \"sale\", but its event says \"production\"",
    );
    refused(
        &|v| v["rows"][2]["event"] = 0.into(),
        "row 2: event_id is \"q2\", but its event says \"q1\"",
    );
    refused(
        &|v| v["events"][1]["event"]["trace_code"] = "(01)09506000134352(21)XX".into(),
        "leaf hash mismatch",
    );
    refused(
        &|v| v["query"]["columns"][0]["checked"] = false.into(),
        "no checked event_id column",
    );
    // Rows that are not events cannot be proven, and say so.
    let out = run(&[
        "sql",
        "--data",
        d,
        "--certificate",
        c,
        "SELECT event_type, count(*) AS n FROM events GROUP BY event_type",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs an event_id column"), "{err}");
}

/// A GS1 EPCIS 2.0 document (the CBV hash reference's `epcisDocWithVariousEventTypes`:
/// 13 events of every type) imported with `veritrace ingest file`: the events Veritrace can
/// represent are accepted with ids from their CBV 2.0 hash IDs (equal to the reference's),
/// the others are kept in `rejected` with `epcis_unsupported` and why; a second import is
/// all duplicates (dedupe by content); an imported event's proof verifies and commits to the
/// original EPCIS event; the aggregation's parent traces back to its children.
#[test]
fn an_epcis_document_imports_event_by_event_with_cbv_hash_ids_and_proofs() {
    let (doc, hashes) = various_event_types();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("p");
    let doc_s = doc.to_str().expect("p");

    // EPCIS does not say who records its events: asked for, not guessed.
    let out = run(&["ingest", "file", doc_s, "--data", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--recorder"));

    ok(&[
        "ingest",
        "file",
        doc_s,
        "--data",
        d,
        "--recorder",
        "plant-1:manufacturer",
    ]);
    let accepted = sql_json(
        &data,
        "SELECT event_id, event_type, attributes FROM events ORDER BY event_id",
    );
    let accepted = accepted.as_array().expect("rows");
    let rejected = sql_json(&data, "SELECT reason, detail, payload FROM rejected");
    let rejected = rejected.as_array().expect("rows");
    assert_eq!(
        accepted.len() + rejected.len(),
        hashes.len(),
        "every event accounted for"
    );
    assert_eq!(accepted.len(), 10, "{accepted:?}");
    for row in accepted {
        let id = row["event_id"].as_str().expect("id");
        let hex = id
            .strip_prefix("epcis:sha-256:")
            .expect("an id from the CBV hash");
        let hash = format!("ni:///sha-256;{hex}?ver=CBV2.0");
        assert!(hashes.contains(&hash), "{id} is not a reference hash");
        let attrs: serde_json::Value =
            serde_json::from_str(row["attributes"].as_str().expect("attributes")).expect("json");
        assert_eq!(attrs["epcis_event_hash"], hash);
        assert!(
            attrs["epcis"]["type"].is_string(),
            "the original event is kept: {attrs}"
        );
    }
    let types: std::collections::BTreeSet<&str> = accepted
        .iter()
        .filter_map(|r| r["event_type"].as_str())
        .collect();
    for t in [
        "transport",
        "warehouse_in",
        "production",
        "assembly",
        "disassembly",
        "transformation",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
    for row in rejected {
        assert_eq!(row["reason"], "epcis_unsupported", "{row}");
        // The payload (binary, hex in JSON output) is the event with its `@context`.
        let payload = row["payload"].as_str().expect("payload");
        let context: String = "\"@context\"".bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            payload.contains(&context),
            "kept as sent, standing alone: {payload}"
        );
    }
    let details: Vec<&str> = rejected
        .iter()
        .filter_map(|r| r["detail"].as_str())
        .collect();
    for why in ["TransactionEvent", "conformant"] {
        assert!(
            details.iter().any(|d| d.contains(why)),
            "{why} in {details:?}"
        );
    }

    // The same document again: every event is a duplicate of itself.
    ok(&[
        "ingest",
        "file",
        doc_s,
        "--data",
        d,
        "--recorder",
        "plant-1:manufacturer",
    ]);
    assert_eq!(count(&data, "SELECT count(*) AS n FROM events"), 10);
    assert_eq!(
        count(
            &data,
            "SELECT count(*) AS n FROM rejected WHERE reason = 'duplicate_event_id'"
        ),
        10
    );

    // A proof of an imported event verifies, and what it proves holds the EPCIS event.
    let id = accepted[0]["event_id"].as_str().expect("id");
    let proof = tmp.path().join("proof.json");
    proven(d, id, &proof);
    assert!(
        std::fs::read_to_string(&proof)
            .expect("read")
            .contains("epcis_event_hash")
    );

    // Export, then import again: the trace's events come back as the same events (their
    // CBV hash IDs, so their ids, are unchanged), each with its proof reference.
    let exported = tmp.path().join("trace.jsonld");
    let out = bin()
        .args([
            "trace",
            "(01)04012345111224(21)25",
            "--forward",
            "--format",
            "epcis",
        ])
        .args(["--data", d])
        .output()
        .expect("trace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&exported, &out.stdout).expect("write");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("an EPCIS document");
    assert_eq!(doc["type"], "EPCISQueryDocument");
    let list = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        .as_array()
        .expect("events");
    assert_eq!(list.len(), 3, "the three transformations of serial 25");
    for ev in list {
        let id = ev["vt:proof"]["vt:eventId"]
            .as_str()
            .expect("proof reference");
        proven(d, id, &tmp.path().join("exported-proof.json"));
    }
    let again = tmp.path().join("again");
    let a = again.to_str().expect("p");
    ok(&[
        "ingest",
        "file",
        exported.to_str().expect("p"),
        "--data",
        a,
        "--recorder",
        "p2:warehouse",
    ]);
    let ids = |data: &Path, filter: &str| -> Vec<String> {
        sql_json(
            data,
            &format!("SELECT event_id FROM events {filter} ORDER BY event_id"),
        )
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
        .collect()
    };
    assert_eq!(
        ids(&again, ""),
        ids(&data, "WHERE event_type = 'transformation'")
    );

    // Packing: an item packed on the pallet traces forward to the pallet's packing event.
    let reached = count(
        &data,
        "SELECT count(*) AS n FROM trace_forward('(01)04047023775511(21)98') \
         WHERE trace_node = '(00)040470231111111229' AND event_type = 'assembly'",
    );
    assert_eq!(reached, 1);
}

/// A recall from the lot that went into the most objects: every object made from it is
/// reported once with its last known event (one of its own), a reverse recall from one of
/// those objects finds the lot again, the certificate verifies, and the EPCIS form is an
/// EPCIS query document.
#[test]
fn a_recall_reaches_every_object_made_from_a_lot_and_the_reverse_finds_the_lot() {
    let d = demo(20_000);
    let data = d.data.to_str().expect("p");
    let lot = sql_json(
        &d.data,
        "SELECT parent FROM edges GROUP BY parent ORDER BY count(*) DESC, parent LIMIT 1",
    )[0]["parent"]
        .as_str()
        .expect("a lot")
        .to_owned();
    let children: std::collections::BTreeSet<String> = sql_json(
        &d.data,
        &format!("SELECT DISTINCT child FROM edges WHERE parent = '{lot}'"),
    )
    .as_array()
    .expect("rows")
    .iter()
    .filter_map(|r| r["child"].as_str().map(str::to_owned))
    .collect();
    assert!(children.len() > 1, "{children:?}");
    let cert = d.data.join("recall-cert.json");
    let rows: serde_json::Value = serde_json::from_str(&ok(&[
        "recall",
        &lot,
        "--data",
        data,
        "--format",
        "json",
        "--certificate",
        cert.to_str().expect("p"),
    ]))
    .expect("json");
    let rows = rows.as_array().expect("rows");
    let codes: Vec<&str> = rows.iter().filter_map(|r| r["code"].as_str()).collect();
    let unique: std::collections::BTreeSet<&str> = codes.iter().copied().collect();
    assert_eq!(unique.len(), codes.len(), "each object once");
    for c in &children {
        assert!(
            unique.contains(c.as_str()),
            "{c} made from {lot} is missing"
        );
    }
    // Each object's last event is one of its own (one query for all of them).
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r["last_event_id"].as_str().map(|id| format!("'{id}'")))
        .collect();
    assert!(!ids.is_empty(), "no object has a last event: {rows:?}");
    let owners: std::collections::BTreeMap<String, serde_json::Value> = sql_json(
        &d.data,
        &format!(
            "SELECT event_id, trace_code FROM events WHERE event_id IN ({})",
            ids.join(", ")
        ),
    )
    .as_array()
    .expect("rows")
    .iter()
    .map(|o| {
        (
            o["event_id"].as_str().expect("id").to_owned(),
            o["trace_code"].clone(),
        )
    })
    .collect();
    for r in rows {
        if let Some(id) = r["last_event_id"].as_str() {
            assert_eq!(owners.get(id), Some(&r["code"]), "{r}");
            assert_ne!(r["state"], "no events", "{r}");
        }
    }
    assert!(verified(data, &cert).starts_with("VALID"));

    let child = children.iter().next().expect("a child");
    let back: serde_json::Value = serde_json::from_str(&ok(&[
        "recall",
        child,
        "--reverse",
        "--data",
        data,
        "--format",
        "json",
    ]))
    .expect("json");
    assert!(
        back.as_array()
            .expect("rows")
            .iter()
            .any(|r| r["code"].as_str() == Some(lot.as_str())),
        "{back}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&ok(&["recall", &lot, "--data", data, "--format", "epcis"]))
            .expect("epcis");
    assert_eq!(doc["type"], "EPCISQueryDocument");
}
