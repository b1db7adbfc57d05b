//! What the end-to-end tests of the binary share: running `veritrace` commands,
//! `veritrace serve` as a child process on free loopback ports, and a plain HTTP/1.1 client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritrace"))
}

/// Runs `veritrace args`.
pub(crate) fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().expect("run veritrace")
}

/// Runs `veritrace args`, which must succeed; its stdout.
pub(crate) fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "veritrace {args:?} failed ({}): {}\n{}",
        describe(&out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// `veritrace compact` of every batch file, deleting superseded files `grace_secs` after;
/// it must succeed. What it said on stderr (the trace index line).
pub(crate) fn compact(data: &str, grace_secs: &str) -> String {
    let args = [
        "compact",
        "--data",
        data,
        "--min-files",
        "1",
        "--grace-secs",
        grace_secs,
    ];
    let out = run(&args);
    assert!(
        out.status.success(),
        "veritrace {args:?} failed ({}): {}",
        describe(&out.status),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An exit status in words: the code, or the signal that ended the process (a process killed
/// by a signal writes nothing of its own, so this is the only trace it leaves).
pub(crate) fn describe(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!(
            "killed by signal {s}{}",
            if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            }
        ),
        (None, None) => status.to_string(),
    }
}

/// Runs `veritrace args`, which must fail; its stderr.
pub(crate) fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "veritrace {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `veritrace serve`; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    /// `host:port` of the HTTP API.
    pub(crate) http: String,
    /// `host:port` of Flight SQL.
    pub(crate) flight: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `veritrace serve` of `data` on free loopback ports (HTTP and Flight SQL).
pub(crate) fn serve_command(data: &Path) -> Command {
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--data",
        data.to_str().expect("path"),
        "--listen",
        "127.0.0.1:0",
        "--flight-listen",
        "127.0.0.1:0",
    ]);
    cmd
}

impl Server {
    /// Serves `data` with the given `VERITRACE__...` settings.
    pub(crate) fn start(data: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = serve_command(data);
        cmd.stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        let banner = loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines.next().expect("server exited").expect("line");
            if line.contains("http://") {
                break line;
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let after = |marker: &str| {
            banner
                .split(marker)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .expect("address in banner")
                .to_owned()
        };
        Server {
            http: after("http://"),
            flight: after("grpc://"),
            child,
        }
    }

    /// One request; `(status, JSON body)` (a non-JSON body as a JSON string).
    pub(crate) fn request(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        http(&self.http, method, path, body, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One request with `Authorization: Bearer {token}`.
    pub(crate) fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let auth = format!("Authorization: Bearer {token}\r\n");
        http_with(
            &self.http,
            method,
            path,
            body,
            &auth,
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `POST /v1/sql`.
    pub(crate) fn sql(&self, sql: &str) -> (u16, serde_json::Value) {
        self.request(
            "POST",
            "/v1/sql",
            &serde_json::json!({ "sql": sql }).to_string(),
        )
    }

    /// A metric on `/metrics` (0 when absent): `name` is the sum of its samples,
    /// `name{k="v",...}` the sample with exactly those labels.
    pub(crate) fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.request("GET", "/metrics", "");
        let text = text.as_str().unwrap_or_default().to_owned();
        match name.split_once('{') {
            Some((name, labels)) => {
                let labels: Vec<(&str, &str)> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        Some((k, v.trim_matches('"')))
                    })
                    .collect();
                veritrace_testkit::metrics::value(&text, name, &labels)
            }
            None => veritrace_testkit::metrics::sum(&text, name),
        }
        .unwrap_or(0.0)
    }
}

/// A plain HTTP/1.1 request with a read timeout.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, serde_json::Value)> {
    http_with(addr, method, path, body, "", timeout)
}

/// [`http`] with extra header lines (each ending in `\r\n`).
pub(crate) fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
    timeout: Duration,
) -> std::io::Result<(u16, serde_json::Value)> {
    http_full(addr, method, path, body, headers, timeout).map(|(st, _, b)| (st, b))
}

/// [`http_with`], with the answer's header lines too.
pub(crate) fn http_full(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String, serde_json::Value)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status: u16 = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {resp:?}")))?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    Ok((
        status,
        head.to_owned(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned())),
    ))
}

/// Polls `cond` until it holds or `timeout` passes (then panics with `what`).
pub(crate) fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A demo data directory of `events` events (local ledger, anchored).
pub(crate) fn demo(dir: &Path, events: u64) {
    let out = bin()
        .args([
            "demo",
            "--events",
            &events.to_string(),
            "--data",
            dir.to_str().expect("path"),
            "--no-serve",
            "--epoch-ms",
            "200",
            "--batch-size",
            "2000",
        ])
        .output()
        .expect("demo");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rows of `veritrace sql --format json`.
pub(crate) fn sql_json(data: &Path, sql: &str) -> serde_json::Value {
    let out = ok(&[
        "sql",
        "--data",
        data.to_str().expect("p"),
        "--format",
        "json",
        sql,
    ]);
    serde_json::from_str(&out).expect("json rows")
}

/// The `n` column of a one-row `veritrace sql` answer (`SELECT count(*) AS n ...`).
pub(crate) fn count(data: &Path, sql: &str) -> u64 {
    sql_json(data, sql)[0]["n"].as_u64().expect("n")
}

/// `n` production events tagged `tag` (ids `{tag}-0000`...), as JSON lines.
pub(crate) fn new_events(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("{tag}-{i:04}"),
                "event_type": "production",
                "event_time": "2026-10-01T00:00:01.000Z",
                "participant": {"id": "sup-test", "name": "Test Supplier", "role": "supplier"},
                "object": {"product_id": "06945501102041", "batch_number": format!("{tag}{i}")},
                "quantity": {"unit": "pcs", "value": 10},
                "site": "sup-test",
                "trace_code": format!("(01)06945501102041(10){tag}{i}"),
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// `veritrace ingest file` of `file` into `data` (stream `demo`, 4 partitions).
pub(crate) fn ingest(data: &Path, file: &Path) -> Output {
    run(&[
        "ingest",
        "file",
        file.to_str().expect("p"),
        "--data",
        data.to_str().expect("p"),
        "--stream",
        "demo",
        "--partitions",
        "4",
    ])
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                out.push(p);
            }
        }
    }
    out
}

/// `veritrace monitor --once` against `addr`: its exit status and standard error.
pub(crate) fn monitor_once(addr: &str, vkey: &str, state: &Path) -> (i32, String) {
    let out = bin()
        .args([
            "monitor",
            "--url",
            &format!("http://{addr}"),
            "--vkey",
            vkey,
            "--state",
            state.to_str().expect("p"),
            "--once",
            "--anchor-grace-secs",
            "0",
        ])
        .output()
        .expect("monitor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
