//! The same scenarios on both data-directory backends: a local directory and an
//! S3-compatible object store (`moto_server` on a free loopback port, installed by
//! `scripts/test` into the tools virtualenv). Writers, readers, proofs and restarts must not
//! be able to tell them apart.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use veritrace_testkit::moto::Moto;

/// A data directory on one backend, and how to run `veritrace` against it.
struct Backend {
    name: &'static str,
    /// `--data`: a path, or `s3://bucket/prefix`.
    data: String,
    env: Vec<(String, String)>,
    _moto: Option<Moto>,
    dir: tempfile::TempDir,
}

impl Backend {
    fn local() -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        Backend {
            name: "local",
            data: dir.path().join("data").display().to_string(),
            env: Vec::new(),
            _moto: None,
            dir,
        }
    }

    fn s3() -> Backend {
        let moto = Moto::start();
        moto.create_bucket("veritrace-test");
        let env = vec![
            ("AWS_ENDPOINT_URL".to_owned(), moto.endpoint()),
            ("AWS_ALLOW_HTTP".to_owned(), "true".to_owned()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ];
        Backend {
            name: "s3",
            data: "s3://veritrace-test/plant-a".to_owned(),
            env,
            _moto: Some(moto),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn both() -> [Backend; 2] {
        [Backend::local(), Backend::s3()]
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::bin();
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run veritrace")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "[{}] veritrace {args:?} failed: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write input");
        p.display().to_string()
    }

    fn ingest(&self, file: &str, extra_env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(&[
            "ingest", "file", file, "--data", &self.data, "--stream", "demo", "--partitions", "4",
        ]);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c.output().expect("ingest")
    }

    fn rows(&self, sql: &str) -> serde_json::Value {
        let out = self.ok(&["sql", "--data", &self.data, "--format", "json", sql]);
        serde_json::from_str(&out).expect("json rows")
    }

    fn n(&self, sql: &str) -> u64 {
        self.rows(sql)[0]["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("[{}] no n in {sql}", self.name))
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn import_query_prove_verify_and_trace_on_both_backends() {
    for b in Backend::both() {
        let first = b.file("a.jsonl", &common::new_events("st", 300));
        let out = b.ingest(&first, &[]);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        // The same records again plus 100 new: the old ones are duplicates, caught from the
        // sealed batches the new run read back from the backend.
        let mut again = common::new_events("st", 300);
        again.push_str(&common::new_events("nu", 100));
        let second = b.file("b.jsonl", &again);
        let out = b.ingest(&second, &[]);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        let report = stdout(&out);
        assert!(report.contains("duplicate_event_id          300"), "[{}] {report}", b.name);

        assert_eq!(b.n("SELECT count(*) AS n FROM events"), 400, "[{}]", b.name);
        assert_eq!(
            b.n("SELECT count(DISTINCT event_id) AS n FROM events"),
            400,
            "[{}]",
            b.name
        );
        assert_eq!(b.n("SELECT count(*) AS n FROM rejected"), 300, "[{}]", b.name);
        // Every batch is chained to the one before it, and every one is in an epoch.
        let chains = b.rows(
            "SELECT partition, count(*) AS batches, max(seq) AS last FROM batches GROUP BY partition ORDER BY partition",
        );
        for c in chains.as_array().expect("rows") {
            assert_eq!(
                c["batches"].as_u64(),
                c["last"].as_u64().map(|l| l + 1),
                "[{}] {c}",
                b.name
            );
        }
        assert_eq!(
            b.n("SELECT count(*) AS n FROM batches WHERE epoch_id IS NULL"),
            0,
            "[{}]",
            b.name
        );

        // A proof, verified against the ledger read from the same backend.
        let bundle = b.ok(&["proof", "nu-0042", "--data", &b.data]);
        let bundle_path = b.file("proof.json", &bundle);
        let ledger = if b.name == "local" {
            Path::new(&b.data).join("ledger/local.jsonl").display().to_string()
        } else {
            b.data.clone()
        };
        let v = b.ok(&["verify", &bundle_path, "--ledger", &ledger]);
        assert!(v.starts_with("VALID"), "[{}] {v}", b.name);
        // The same bundle with the event altered does not verify.
        let tampered = bundle.replace("\"nu-0042\"", "\"nu-9042\"");
        let tampered_path = b.file("tampered.json", &tampered);
        let out = b.run(&["verify", &tampered_path, "--ledger", &ledger]);
        assert_eq!(out.status.code(), Some(1), "[{}] {}", b.name, stdout(&out));

        let trace = b.ok(&[
            "trace",
            "--backward",
            "(01)06945501102041(10)nu7",
            "--data",
            &b.data,
        ]);
        assert!(trace.contains("production at sup-test"), "[{}] {trace}", b.name);
    }
}

#[test]
fn an_import_killed_anywhere_resumes_with_nothing_lost_or_doubled() {
    const N: usize = 6_000;
    for b in Backend::both() {
        let input = b.file("big.jsonl", &common::new_events("k", N));
        let small = [
            ("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "100"),
            ("VERITRACE__PIPELINE__EPOCH_INTERVAL", "200ms"),
        ];
        // Killed twice at different points, then run to the end.
        for wait_ms in [700u64, 1_600] {
            let mut c = b.cmd(&[
                "ingest", "file", &input, "--data", &b.data, "--stream", "demo", "--partitions",
                "4",
            ]);
            for (k, v) in small {
                c.env(k, v);
            }
            let mut child = c
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn ingest");
            std::thread::sleep(Duration::from_millis(wait_ms));
            // SIGKILL: no chance to clean up, release a lease or finish a write.
            let _ = child.kill();
            let _ = child.wait();
        }
        let start = Instant::now();
        let out = b.ingest(&input, &small);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        // On an object store a killed holder's lease is waited out (its TTL), never broken.
        assert!(start.elapsed() < Duration::from_secs(120), "[{}]", b.name);
        assert_eq!(b.n("SELECT count(*) AS n FROM events"), N as u64, "[{}]", b.name);
        assert_eq!(
            b.n("SELECT count(DISTINCT event_id) AS n FROM events"),
            N as u64,
            "[{}]",
            b.name
        );
        // A file is an input, not a replayable log: each run sends it whole, and what an
        // earlier run had sealed comes back as duplicates, kept in `rejected` with that
        // reason and nothing else.
        assert_eq!(
            b.n("SELECT count(*) AS n FROM rejected WHERE reason <> 'duplicate_event_id'"),
            0,
            "[{}]",
            b.name
        );
        let sealed = b.n("SELECT sum(size) AS n FROM batches");
        assert_eq!(sealed, N as u64, "[{}]", b.name);
        assert_eq!(
            b.n("SELECT count(*) AS n FROM batches WHERE epoch_id IS NULL"),
            0,
            "[{}]",
            b.name
        );
    }
}

#[test]
fn serve_answers_sql_and_proofs_from_both_backends() {
    for b in Backend::both() {
        let input = b.file("a.jsonl", &common::new_events("sv", 200));
        let out = b.ingest(&input, &[]);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        let env: Vec<(&str, &str)> = b
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let server = common::Server::start(Path::new(&b.data), &env);
        let (status, body) = server.sql("SELECT count(*) AS n FROM events");
        assert_eq!(status, 200, "[{}] {body}", b.name);
        assert_eq!(body["rows"][0]["n"].as_u64(), Some(200), "[{}] {body}", b.name);
        let (status, body) = server.request("GET", "/v1/events/sv-0007/proof", "");
        assert_eq!(status, 200, "[{}] {body}", b.name);
        assert_eq!(body["event"]["event_id"], "sv-0007", "[{}] {body}", b.name);
        // New data is seen without a restart.
        let more = b.file("b.jsonl", &common::new_events("sw", 50));
        let out = b.ingest(&more, &[]);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        common::wait_for("the new events", Duration::from_secs(30), || {
            server.sql("SELECT count(*) AS n FROM events").1["rows"][0]["n"].as_u64() == Some(250)
        });
    }
}

#[test]
fn an_s3_data_directory_that_does_not_exist_or_cannot_be_reached_is_named() {
    let b = Backend::s3();
    let out = b.run(&["sql", "--data", "s3://veritrace-test/nothing-here", "SELECT 1"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("is not a Veritrace data directory"), "{e}");
    // A bucket that does not exist.
    let out = b.run(&["sql", "--data", "s3://no-such-bucket/x", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("s3://no-such-bucket/x"), "{}", stderr(&out));
    // A store that does not answer: the store's error, with the key, not a hang.
    let mut c = common::bin();
    c.args(["sql", "--data", "s3://veritrace-test/x", "SELECT 1"]);
    for (k, v) in &b.env {
        c.env(k, v);
    }
    c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", veritrace_testkit::free_port()));
    let out = c.output().expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("object store"), "{}", stderr(&out));
    // Other schemes are refused with what is supported.
    let out = b.run(&["sql", "--data", "gs://bucket/x", "SELECT 1"]);
    assert!(stderr(&out).contains("s3://bucket/prefix"), "{}", stderr(&out));
}
