//! Arrow Flight SQL through a client nobody here wrote: Python's ADBC Flight SQL driver
//! (tools/python, installed by scripts/test) against `veritrace serve` on free loopback
//! ports. Its rows must equal what `veritrace sql` returns for the same statements, a trace
//! table function included; writing is refused. A missing Python environment fails the
//! test, never skips it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritrace"))
}

fn python() -> PathBuf {
    veritrace_testkit::python::require_python("the ADBC Flight SQL driver")
        .unwrap_or_else(|e| panic!("{e}"))
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sql_json(data: &std::path::Path, sql: &str) -> serde_json::Value {
    let out = bin()
        .args([
            "sql",
            "--data",
            data.to_str().expect("p"),
            "--format",
            "json",
            sql,
        ])
        .output()
        .expect("sql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// A data directory filled by `veritrace demo` with `events` events.
fn demo_data(events: u32) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let out = bin()
        .args(["demo", "--events", &events.to_string(), "--data"])
        .arg(&data)
        .arg("--no-serve")
        .output()
        .expect("demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (tmp, data)
}

#[test]
fn an_adbc_flight_sql_client_queries_and_traces() {
    let py = python();
    let (_tmp, data) = demo_data(20_000);
    let mut child = bin()
        .args([
            "serve",
            "--data",
            data.to_str().expect("p"),
            "--listen",
            "127.0.0.1:0",
            "--flight-listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let _server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let grpc = loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().expect("server exited").expect("line");
        if let Some(rest) = line.split("grpc://").nth(1) {
            break format!("grpc://{}", rest.trim());
        }
    };
    let product = sql_json(
        &data,
        "SELECT trace_code FROM events WHERE event_type = 'assembly' ORDER BY event_time DESC, event_id LIMIT 1",
    )[0]["trace_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let statements = [
        "SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY event_type"
            .to_owned(),
        format!(
            "SELECT trace_depth, trace_node, event_id, event_type FROM trace_backward('{product}') ORDER BY trace_depth, trace_node, event_id"
        ),
        "SELECT reason, count(*) AS n FROM rejected GROUP BY reason ORDER BY reason".to_owned(),
        "DROP TABLE events".to_owned(),
        // Once aborted the whole server: "has overflowed its stack".
        format!("SELECT {}", vec!["1"; 2_000].join("+")),
        format!(
            "SELECT count(*) FROM events WHERE {}",
            (0..3_000)
                .map(|i| format!("event_id='{i}'"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
        // ... and the server still answers.
        "SELECT count(*) AS n FROM events".to_owned(),
    ];
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/python/flight_sql_query.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&grpc)
        .args(&statements)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "ADBC client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("client json");
    let results = got["results"].as_array().expect("results");
    assert_eq!(results.len(), statements.len());
    for (i, sql) in statements[..3].iter().enumerate() {
        let want = sql_json(&data, sql);
        assert_eq!(results[i]["rows"], want, "{sql}");
        assert!(
            want.as_array().is_some_and(|r| !r.is_empty()),
            "{sql} returned nothing"
        );
    }
    let refused = results[3]["error"].as_str().expect("DROP must fail");
    assert!(
        refused.contains("not supported") || refused.contains("DDL"),
        "{refused}"
    );
    for deep in &results[4..6] {
        let e = deep["error"].as_str().expect("a deep statement must fail");
        assert!(e.contains("statement_too_complex"), "{e}");
    }
    assert_eq!(results[6]["rows"], sql_json(&data, &statements[6]));

    // A query certificate as a Flight action, with pyarrow's plain Flight client: every row
    // with its event's proof, which `veritrace verify` checks against the node's ledger.
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/python/flight_certificate.py");
    let sql = "SELECT event_id, event_type, trace_code FROM events WHERE event_type = 'assembly' ORDER BY event_id LIMIT 3";
    let out = Command::new(&py)
        .arg(&script)
        .arg(&grpc)
        .arg(sql)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "Flight client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("client json");
    assert!(
        got["actions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t == "veritrace.certificate")),
        "{}",
        got["actions"]
    );
    let cert = got["certificate"].clone();
    assert_eq!(cert["format"], "veritrace.rows/1");
    let rows: Vec<&serde_json::Value> = cert["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["values"])
        .collect();
    let want = sql_json(&data, sql);
    assert_eq!(
        serde_json::Value::from(rows.into_iter().cloned().collect::<Vec<_>>()),
        want
    );
    let file = data.parent().expect("tmp").join("rows.json");
    std::fs::write(&file, cert.to_string()).expect("write");
    let out = bin()
        .arg("verify")
        .arg(&file)
        .arg("--ledger")
        .arg(data.join("ledger/local.jsonl"))
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("VALID  query certificate: 3 rows from 3 events"),
        "{text}"
    );
}

#[test]
fn serve_over_tls_answers_https_and_grpc_tls_and_refuses_plain_off_loopback() {
    use veritrace_testkit::tls::{Pki, https, status};
    let py = python();
    let (tmp, data) = demo_data(2_000);

    // Plain on a non-loopback address is refused before anything listens.
    let out = bin()
        .args([
            "serve",
            "--data",
            data.to_str().expect("p"),
            "--listen",
            "0.0.0.0:0",
        ])
        .args(["--flight-listen", "127.0.0.1:0"])
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without TLS") && err.contains("allow-plaintext"),
        "{err}"
    );

    let pki = Pki::new(tmp.path(), "serve").expect("pki");
    let cert = pki.server("serve").expect("cert");
    // With tokens, every route but /healthz needs one.
    let token = |args: &[&str]| -> String {
        let out = bin()
            .args(["tokens", "create", "--data", data.to_str().expect("p")])
            .args(args)
            .output()
            .expect("tokens");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned()
    };
    let analyst = token(&["--role", "analyst"]);
    let who = sql_json(
        &data,
        "SELECT participant_id FROM events GROUP BY participant_id ORDER BY count(*) DESC LIMIT 1",
    );
    let participant = who[0]["participant_id"]
        .as_str()
        .expect("a participant")
        .to_owned();
    let theirs = token(&["--role", "participant", "--participant", &participant]);
    let mut child = bin()
        .args(["serve", "--data", data.to_str().expect("p")])
        .args(["--listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0"])
        .env("VERITRACE__HTTP__TLS__CERT", &cert.cert)
        .env("VERITRACE__HTTP__TLS__KEY", &cert.key)
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let _server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().expect("server exited").expect("line");
        if line.contains("grpc+tls://") {
            break line;
        }
    };
    let port = |scheme: &str| -> u16 {
        line.split(scheme)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no {scheme} in {line}"))
    };
    let (http_port, grpc_port) = (port("https://"), port("grpc+tls://"));
    let resp = https(
        http_port,
        &pki.ca_file,
        None,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("https");
    assert_eq!(
        status(&resp),
        Some(200),
        "{}",
        String::from_utf8_lossy(&resp)
    );

    let get = |path: &str, token: Option<&str>| {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        https(http_port, &pki.ca_file, None, req.as_bytes()).expect("https")
    };
    assert_eq!(status(&get("/metrics", None)), Some(401));
    assert_eq!(
        status(&get("/metrics", Some("vtk_000000000000_x"))),
        Some(401)
    );
    assert_eq!(
        status(&get("/metrics", Some(&analyst))),
        Some(403),
        "analysts read rows, not metrics"
    );

    let sql = "SELECT count(*) AS n FROM events";
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/python/flight_sql_query.py");
    let adbc = |envs: &[(&str, &str)]| {
        let out = Command::new(&py)
            .arg(&script)
            .arg(format!("grpc+tls://127.0.0.1:{grpc_port}"))
            .arg(sql)
            .env("VERITRACE_TLS_ROOT_CERTS", &pki.ca_file)
            .envs(envs.iter().copied())
            .output()
            .expect("python");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (
            out.status.success(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default(),
            text,
        )
    };
    let (ok, got, text) = adbc(&[("VERITRACE_FLIGHT_TOKEN", &analyst)]);
    assert!(ok, "ADBC over TLS with a bearer token failed: {text}");
    assert_eq!(got["results"][0]["rows"], sql_json(&data, sql), "{got}");
    // A handshake with basic credentials (the token as the password) works too.
    let basic = format!("veritrace:{analyst}");
    let (ok, got, text) = adbc(&[("VERITRACE_FLIGHT_BASIC", &basic)]);
    assert!(ok, "ADBC handshake failed: {text}");
    assert_eq!(got["results"][0]["rows"], sql_json(&data, sql), "{got}");
    // A participant counts only its own events.
    let (ok, got, text) = adbc(&[("VERITRACE_FLIGHT_TOKEN", &theirs)]);
    assert!(ok, "{text}");
    let own = sql_json(
        &data,
        &format!(
            "SELECT count(*) AS n FROM events WHERE participant_id = '{participant}' OR counterparty_id = '{participant}'"
        ),
    );
    assert_eq!(got["results"][0]["rows"], own, "{got}");
    assert_ne!(
        own,
        sql_json(&data, sql),
        "the participant's view is narrower"
    );
    // No token: refused.
    let (ok, _, text) = adbc(&[]);
    assert!(
        !ok || text.contains("Unauthenticated") || text.contains("missing_credentials"),
        "{text}"
    );
    assert!(
        text.contains("missing_credentials") || text.to_lowercase().contains("unauthenticated"),
        "{text}"
    );
    // Without the CA the client refuses the server: it is TLS with our certificate.
    let out = Command::new(&py)
        .arg(&script)
        .arg(format!("grpc+tls://127.0.0.1:{grpc_port}"))
        .arg(sql)
        .env("VERITRACE_FLIGHT_TOKEN", &analyst)
        .output()
        .expect("python");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() || text.contains("error"), "{text}");
}
