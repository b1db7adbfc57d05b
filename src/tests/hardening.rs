//! Regression tests for the server as a hostile user tries it (issue: "one request must not
//! kill the server"): `veritrace serve` on a demo directory, each case once observed to
//! abort, starve or exhaust the process.

#[allow(dead_code)] // each test binary uses its own part
mod common;

use std::time::Duration;

use common::{Server, demo, http, wait_for};

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn healthy(s: &Server) {
    let (st, h) = s.request("GET", "/healthz", "");
    assert_eq!(st, 200, "{h}");
}

#[test]
fn a_2000_term_sum_or_a_3000_term_or_chain_is_refused_not_fatal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 2_000);
    let s = Server::start(&data, &[]);

    // Once: "has overflowed its stack ... aborting" for the whole server.
    let sum = vec!["1"; 2_000].join("+");
    let (st, r) = s.sql(&format!("SELECT {sum}"));
    assert_eq!((st, code(&r)), (400, "statement_too_complex"), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nests deeper"),
        "{r}"
    );
    healthy(&s);

    // 3,000 terms in under 64 KiB: refused for its depth, not its size.
    let ors: Vec<String> = (0..3_000).map(|i| format!("event_id='{i}'")).collect();
    let (st, r) = s.sql(&format!(
        "SELECT count(*) FROM events WHERE {}",
        ors.join(" OR ")
    ));
    assert_eq!((st, code(&r)), (400, "statement_too_complex"), "{r}");
    assert!(r.to_string().contains("nests deeper"), "{r}");
    healthy(&s);

    // The largest statement accepted, all of it one chain: still a clean refusal.
    let long = vec!["1"; 30_000].join("+");
    let (st, r) = s.sql(&format!("SELECT {long}"));
    assert_eq!(st, 400, "{r}");
    assert_eq!(code(&r), "statement_too_complex", "{r}");

    // What users write still runs: a 100-term sum, and 3,000 alternatives as an IN list.
    let (st, r) = s.sql(&format!("SELECT {} AS n", vec!["1"; 100].join("+")));
    assert_eq!((st, r["rows"][0]["n"].as_i64()), (200, Some(100)), "{r}");
    let ids: Vec<String> = (0..3_000).map(|i| format!("'e-{i:05}'")).collect();
    let (st, r) = s.sql(&format!(
        "SELECT count(*) AS n FROM events WHERE event_id IN ({})",
        ids.join(",")
    ));
    assert_eq!(st, 200, "{r}");
    healthy(&s);
}

const CROSS3: &str = "SELECT max(a.leaf_index + b.leaf_index + c.leaf_index) AS m \
                      FROM events a, events b, events c";

#[test]
fn a_triple_cross_join_times_out_and_health_stays_answered() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 5_000);
    let s = Server::start(
        &data,
        &[
            ("VERITRACE__QUERY__TIMEOUT", "3s"),
            ("VERITRACE__QUERY__MAX_CONCURRENT", "4"),
        ],
    );
    // Four clients that give up after a second (once: health and lookups unanswered 75 s
    // later, the queries still running).
    let body = serde_json::json!({ "sql": CROSS3 }).to_string();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = s.http.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                http(&addr, "POST", "/v1/sql", &body, Duration::from_secs(1)).is_err()
            })
        })
        .collect();
    wait_for(
        "the heavy queries to start",
        Duration::from_secs(60),
        || s.metric("veritrace_queries_running") >= 1.0,
    );
    // Health, metrics and a lookup answer while they run.
    healthy(&s);
    let (st, r) = s.request("GET", "/v1/events/no-such-event", "");
    assert_eq!((st, code(&r)), (404, "not_found"), "{r}");
    for c in clients {
        assert!(
            c.join().expect("client"),
            "a client got an answer within 1 s"
        );
    }
    // The clients went away: their queries are cancelled, not left running.
    wait_for(
        "the abandoned queries to stop",
        Duration::from_secs(60),
        || s.metric("veritrace_queries_running") == 0.0,
    );

    // A client that waits gets the deadline's answer.
    let (st, r) = s.sql(CROSS3);
    assert_eq!((st, code(&r)), (504, "query_timeout"), "{r}");
    assert!(s.metric("veritrace_queries_refused_total{reason=\"query_timeout\"}") >= 1.0);
    healthy(&s);
}

#[test]
fn a_query_over_the_memory_limit_fails_instead_of_growing_the_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 5_000);
    let s = Server::start(
        &data,
        &[
            ("VERITRACE__QUERY__MEMORY_LIMIT_MIB", "16"),
            ("VERITRACE__QUERY__TIMEOUT", "120s"),
        ],
    );
    // Once: 225 MB to 3 GB in 25 s. An aggregate that cannot spill hits the pool's limit.
    let (st, r) = s.sql("SELECT array_agg(concat(a.event_id, b.event_id)) FROM events a, events b");
    assert_eq!((st, code(&r)), (422, "query_memory_exceeded"), "{r}");
    healthy(&s);
    let (st, _) = s.sql("SELECT count(*) FROM events");
    assert_eq!(st, 200);
}

#[test]
fn queries_beyond_the_concurrency_cap_are_refused_as_busy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 5_000);
    let s = Server::start(
        &data,
        &[
            ("VERITRACE__QUERY__MAX_CONCURRENT", "1"),
            ("VERITRACE__QUERY__QUEUE_TIMEOUT", "100ms"),
            ("VERITRACE__QUERY__TIMEOUT", "5s"),
        ],
    );
    let addr = s.http.clone();
    let body = serde_json::json!({ "sql": CROSS3 }).to_string();
    let first = std::thread::spawn(move || {
        http(&addr, "POST", "/v1/sql", &body, Duration::from_secs(120)).expect("first")
    });
    wait_for("the first query to run", Duration::from_secs(60), || {
        s.metric("veritrace_queries_running") >= 1.0
    });
    let (st, r) = s.sql("SELECT 1");
    assert_eq!((st, code(&r)), (503, "server_busy"), "{r}");
    healthy(&s);
    let (st, r) = first.join().expect("first");
    assert_eq!((st, code(&r)), (504, "query_timeout"), "{r}");
    let (st, r) = s.sql("SELECT 1 AS one");
    assert_eq!(st, 200, "{r}");
}

#[test]
fn sigterm_during_a_heavy_query_drains_and_exits() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 5_000);
    let mut s = Server::start(
        &data,
        &[
            ("VERITRACE__QUERY__TIMEOUT", "600s"),
            ("VERITRACE__QUERY__SHUTDOWN_GRACE", "1s"),
        ],
    );
    let addr = s.http.clone();
    let body = serde_json::json!({ "sql": CROSS3 }).to_string();
    let _client = std::thread::spawn(move || {
        let _ = http(&addr, "POST", "/v1/sql", &body, Duration::from_secs(600));
    });
    wait_for("the query to run", Duration::from_secs(60), || {
        s.metric("veritrace_queries_running") >= 1.0
    });
    // Once: SIGTERM ignored for at least 15 s while queries ran.
    let pid = s.child.id().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(st.success());
    let mut exit = None;
    wait_for(
        "the server to exit after SIGTERM",
        Duration::from_secs(60),
        || {
            exit = s.child.try_wait().expect("wait");
            exit.is_some()
        },
    );
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}");
}

#[test]
fn an_event_id_sent_with_two_trace_codes_stays_provable() {
    // Once: with more than one partition both copies were stored and neither could be
    // proved ("stored 2 times"): a proof failed because of input someone else sent.
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let event = |id: &str, lot: &str| {
        serde_json::json!({
            "event_id": id,
            "event_type": "production",
            "event_time": "2026-10-01T00:00:01.000Z",
            "participant": {"id": "sup-test", "name": "Test Supplier", "role": "supplier"},
            "object": {"product_id": "06945501102041", "batch_number": lot},
            "quantity": {"unit": "pcs", "value": 10},
            "site": "sup-test",
            "trace_code": format!("(01)06945501102041(10){lot}"),
        })
        .to_string()
    };
    // Eight ids, each sent with two lot codes: some pairs land in two partitions.
    let mut lines = Vec::new();
    for i in 0..8 {
        lines.push(event(&format!("dup-{i}"), &format!("A{i}")));
        lines.push(event(&format!("dup-{i}"), &format!("B{i}")));
    }
    let file = tmp.path().join("dups.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let d = data.to_str().expect("p");
    let out = common::bin()
        .args(["ingest", "file", file.to_str().expect("p"), "--data", d])
        .args(["--stream", "s", "--partitions", "4"])
        .output()
        .expect("ingest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::bin()
        .args(["sql", "--data", d, "--format", "json"])
        .arg("SELECT event_id, count(*) AS n FROM events GROUP BY event_id HAVING count(*) > 1")
        .output()
        .expect("sql");
    let twice: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let twice = twice.as_array().expect("rows");
    assert!(
        !twice.is_empty(),
        "no id landed in two partitions; pick other codes"
    );
    for row in twice {
        let id = row["event_id"].as_str().expect("id");
        let proof = tmp.path().join(format!("{id}.json"));
        let out = common::bin()
            .args(["proof", "--data", d, id, "--out"])
            .arg(&proof)
            .output()
            .expect("proof");
        assert!(
            out.status.success(),
            "proof of {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = common::bin()
            .arg("verify")
            .arg(&proof)
            .args(["--ledger", &format!("{d}/ledger/local.jsonl")])
            .output()
            .expect("verify");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The audit entries in `data`, as `veritrace sql` reads them (sealed ones only).
fn audit_rows(data: &std::path::Path) -> Vec<serde_json::Value> {
    let out = common::bin()
        .args([
            "sql",
            "--data",
            data.to_str().expect("p"),
            "--format",
            "json",
        ])
        .arg("SELECT route, outcome, entry FROM audit ORDER BY at")
        .output()
        .expect("sql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    rows.as_array().cloned().unwrap_or_default()
}

#[test]
fn an_answered_request_keeps_its_audit_entry_through_kill_9_before_its_batch_seals() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    demo(&data, 200);
    // Batches of the audit log seal only after an hour: the entry is in the journal alone.
    let mut s = Server::start(&data, &[("VERITRACE__PIPELINE__BATCH_MAX_AGE", "1h")]);
    let sql = "SELECT count(*) AS n FROM events WHERE event_type = 'production'";
    let (st, v) = s.sql(sql);
    assert_eq!(st, 200, "{v}");
    let journal = data.join("batches").join("veritrace.audit-p000.journal");
    let held = std::fs::read_to_string(&journal).expect("journal");
    assert!(held.contains("POST /v1/sql"), "{held}");
    s.child.kill().expect("kill -9");
    s.child.wait().expect("wait");
    drop(s);
    assert!(
        audit_rows(&data).is_empty(),
        "nothing was sealed before the kill"
    );

    // The next server on the directory seals it before it answers anything.
    let s = Server::start(&data, &[]);
    healthy(&s);
    drop(s);
    let rows = audit_rows(&data);
    let entry: serde_json::Value =
        serde_json::from_str(rows[0]["entry"].as_str().expect("entry")).expect("json");
    assert_eq!(
        (&rows[0]["route"], &rows[0]["outcome"], &entry["sql"]),
        (&"POST /v1/sql".into(), &"ok".into(), &sql.into()),
        "{rows:?}"
    );
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        0,
        "emptied once sealed"
    );
}
