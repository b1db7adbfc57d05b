//! The same scenarios on both data-directory backends: a local directory and an
//! S3-compatible object store (`moto_server` on a free loopback port, installed by
//! `scripts/test` into the tools virtualenv). Writers, readers, proofs and restarts must not
//! be able to tell them apart.

#[allow(dead_code)] // each test binary uses its own part
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
    moto: Option<Moto>,
    dir: tempfile::TempDir,
}

impl Backend {
    fn local() -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        Backend {
            name: "local",
            data: dir.path().join("data").display().to_string(),
            env: Vec::new(),
            moto: None,
            dir,
        }
    }

    fn s3() -> Backend {
        let moto = Moto::start();
        moto.create_bucket("veritrace-test");
        let env = moto.client_env();
        Backend {
            name: "s3",
            data: "s3://veritrace-test/plant-a".to_owned(),
            env,
            moto: Some(moto),
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

    /// `veritrace serve` on this data directory, with its environment.
    fn serve(&self) -> common::Server {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        common::Server::start(Path::new(&self.data), &env)
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
        self.ingest_cmd(file, extra_env).output().expect("ingest")
    }

    /// `veritrace ingest file FILE` into stream demo, 4 partitions.
    fn ingest_cmd(&self, file: &str, extra_env: &[(&str, &str)]) -> Command {
        let mut c = self.cmd(&[
            "ingest",
            "file",
            file,
            "--data",
            &self.data,
            "--stream",
            "demo",
            "--partitions",
            "4",
        ]);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    /// The files under `rel` in the data directory (relative names, sorted), read behind
    /// the program's back.
    fn list(&self, rel: &str) -> Vec<String> {
        match &self.moto {
            Some(m) => {
                let mut keys: Vec<String> = m
                    .list("veritrace-test", &format!("plant-a/{rel}/"))
                    .into_iter()
                    .filter_map(|k| k.strip_prefix("plant-a/").map(str::to_owned))
                    .collect();
                keys.sort();
                keys
            }
            None => {
                let mut names: Vec<String> = std::fs::read_dir(Path::new(&self.data).join(rel))
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| format!("{rel}/{}", e.file_name().to_string_lossy()))
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                names
            }
        }
    }

    fn read_raw(&self, rel: &str) -> Vec<u8> {
        match &self.moto {
            Some(m) => m
                .get_object("veritrace-test", &format!("plant-a/{rel}"))
                .unwrap_or_else(|| panic!("no object {rel}")),
            None => std::fs::read(Path::new(&self.data).join(rel)).expect("read"),
        }
    }

    fn write_raw(&self, rel: &str, bytes: &[u8]) {
        match &self.moto {
            Some(m) => m.put_object("veritrace-test", &format!("plant-a/{rel}"), bytes),
            None => std::fs::write(Path::new(&self.data).join(rel), bytes).expect("write"),
        }
    }

    fn delete_raw(&self, rel: &str) {
        match &self.moto {
            Some(m) => m.delete_object("veritrace-test", &format!("plant-a/{rel}")),
            None => std::fs::remove_file(Path::new(&self.data).join(rel)).expect("remove"),
        }
    }

    fn rows(&self, sql: &str) -> serde_json::Value {
        let out = self.ok(&["sql", "--data", &self.data, "--format", "json", sql]);
        serde_json::from_str(&out).expect("json rows")
    }

    /// `n` events stored, each once.
    fn assert_each_event_once(&self, n: u64) {
        for sql in [
            "SELECT count(*) AS n FROM events",
            "SELECT count(DISTINCT event_id) AS n FROM events",
        ] {
            assert_eq!(self.n(sql), n, "[{}] {sql}", self.name);
        }
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

/// The `duplicate_event_id` count of an import report.
fn duplicates(report: &str) -> u64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with("duplicate_event_id"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or(0)
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
        assert_eq!(duplicates(&report), 300, "[{}] {report}", b.name);

        assert_eq!(b.n("SELECT count(*) AS n FROM events"), 400, "[{}]", b.name);
        assert_eq!(
            b.n("SELECT count(DISTINCT event_id) AS n FROM events"),
            400,
            "[{}]",
            b.name
        );
        assert_eq!(
            b.n("SELECT count(*) AS n FROM rejected"),
            300,
            "[{}]",
            b.name
        );
        // A file a writer put in rejected/ and never committed (killed before its
        // manifest entry, before recovery quarantined it) is not read: its rows would
        // count twice once the records are processed again.
        let committed = b.list("rejected");
        let orphan = committed[0].replace(".parquet", "-orphan.parquet");
        b.write_raw(&orphan, &b.read_raw(&committed[0]));
        assert_eq!(
            b.n("SELECT count(*) AS n FROM rejected"),
            300,
            "[{}] an uncommitted rejected file was read",
            b.name
        );
        b.delete_raw(&orphan);
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

        // The log is published on the backend too: its checkpoint is the last epoch's, its
        // tiles are there, and a consistency proof from the first epoch verifies.
        let note = b.ok(&["checkpoint", "--data", &b.data]);
        let size: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .expect("size");
        let last = b.n("SELECT max(log_size) AS n FROM epochs");
        assert_eq!(size, last, "[{}] {note}", b.name);
        assert!(!b.list("log/tile/0").is_empty(), "[{}] no tiles", b.name);
        let first = b.n("SELECT min(log_size) AS n FROM epochs");
        let proof = b.ok(&[
            "consistency",
            "--data",
            &b.data,
            "--from",
            &first.to_string(),
        ]);
        let proof_path = b.file("consistency.json", &proof);
        let out = b.run(&["verify", &proof_path]);
        assert_eq!(out.status.code(), Some(3), "[{}] {}", b.name, stdout(&out));

        // A proof, verified against the ledger read from the same backend.
        let bundle = b.ok(&["proof", "nu-0042", "--data", &b.data]);
        let bundle_path = b.file("proof.json", &bundle);
        let ledger = if b.name == "local" {
            Path::new(&b.data)
                .join("ledger/local.jsonl")
                .display()
                .to_string()
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
        assert!(
            trace.contains("production at sup-test"),
            "[{}] {trace}",
            b.name
        );
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
            let mut child = b
                .ingest_cmd(&input, &small)
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
        b.assert_each_event_once(N as u64);
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

/// Event ids beyond the dedupe memory bound go to sorted runs on local disk (`dedupe/` of a
/// local data directory; `pipeline.dedupe-dir` for a bucket). A second import of the same
/// file, by a new process that opens those runs, is duplicates only: nothing stored twice.
#[test]
fn a_second_import_is_all_duplicates_with_old_ids_in_dedupe_runs_on_both_backends() {
    const N: usize = 3_000;
    for b in Backend::both() {
        let input = b.file("again.jsonl", &common::new_events("d", N));
        let runs = match &b.moto {
            Some(_) => b.dir.path().join("dedupe-runs"),
            None => Path::new(&b.data).join("dedupe"),
        };
        let runs_text = runs.display().to_string();
        let mut env = vec![
            ("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "100"),
            ("VERITRACE__PIPELINE__DEDUPE_MEMORY_IDS", "250"),
        ];
        if b.moto.is_some() {
            env.push(("VERITRACE__PIPELINE__DEDUPE_DIR", &runs_text));
        }
        for round in 0..2 {
            let out = b.ingest(&input, &env);
            assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
            let want = if round == 0 { 0 } else { N as u64 };
            assert_eq!(
                duplicates(&stdout(&out)),
                want,
                "[{}] round {round}",
                b.name
            );
        }
        let run_files: Vec<_> = std::fs::read_dir(&runs)
            .unwrap_or_else(|e| panic!("[{}] {}: {e}", b.name, runs.display()))
            .flatten()
            .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
            .filter(|f| f.path().extension().is_some_and(|x| x == "ids"))
            .collect();
        assert!(run_files.len() >= 4, "[{}] {run_files:?}", b.name);
        b.assert_each_event_once(N as u64);
    }
}

#[test]
fn serve_answers_sql_and_proofs_from_both_backends() {
    for b in Backend::both() {
        // Ten records twice: the rejected/ directory holds a file before the server's
        // first query lists it.
        let mut first = common::new_events("sv", 200);
        first.push_str(&common::new_events("sv", 10));
        let input = b.file("a.jsonl", &first);
        let out = b.ingest(&input, &[]);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        let server = b.serve();
        let (status, body) = server.sql("SELECT count(*) AS n FROM events");
        assert_eq!(status, 200, "[{}] {body}", b.name);
        assert_eq!(
            body["rows"][0]["n"].as_u64(),
            Some(200),
            "[{}] {body}",
            b.name
        );
        let (status, body) = server.request("GET", "/v1/events/sv-0007/proof", "");
        assert_eq!(status, 200, "[{}] {body}", b.name);
        assert_eq!(body["event"]["event_id"], "sv-0007", "[{}] {body}", b.name);
        assert_eq!(
            server.sql("SELECT count(*) AS n FROM rejected").1["rows"][0]["n"].as_u64(),
            Some(10),
            "[{}]",
            b.name
        );
        // New data is seen without a restart, in every table (the directory tables too:
        // DataFusion would cache their listing and never see a new file).
        let mut again = common::new_events("sv", 200);
        again.push_str(&common::new_events("sw", 50));
        let more = b.file("b.jsonl", &again);
        let out = b.ingest(&more, &[]);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        common::wait_for(
            "the new events and rejections",
            Duration::from_secs(30),
            || {
                server.sql("SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM rejected) AS r").1["rows"][0]
                == serde_json::json!({"e": 250, "r": 210})
            },
        );
    }
}

/// A server whose bucket went away still stops when told to: after the grace for running
/// requests, the audit log's last seal gets a deadline (the store client would retry for
/// minutes, far past an orchestrator's kill), and what it could not seal stays in the
/// journal, named on the way out.
#[test]
fn serve_stops_within_its_deadline_when_the_bucket_is_gone() {
    let b = Backend::s3();
    let input = b.file("a.jsonl", &common::new_events("gone", 50));
    let out = b.ingest(&input, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut server = b.serve();
    // Requests, so the audit log holds entries to seal.
    for _ in 0..3 {
        assert_eq!(server.sql("SELECT count(*) AS n FROM events").0, 200);
    }
    let moto = b.moto.as_ref().expect("moto");
    let st = Command::new("kill")
        .args(["-KILL", &moto.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let st = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    // The grace (10 s) plus the seal's deadline (15 s), with room for a slow machine; the
    // store client alone retries each request for about a minute.
    let until = std::time::Instant::now() + Duration::from_secs(50);
    let status = loop {
        if let Some(st) = server.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < until,
            "serve did not stop with its bucket gone"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !status.success(),
        "an unsealed audit log is not a clean stop"
    );
}

#[test]
fn an_s3_data_directory_that_does_not_exist_or_cannot_be_reached_is_named() {
    let b = Backend::s3();
    let out = b.run(&[
        "sql",
        "--data",
        "s3://veritrace-test/nothing-here",
        "SELECT 1",
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("is not a Veritrace data directory"), "{e}");
    // A bucket that does not exist.
    let out = b.run(&["sql", "--data", "s3://no-such-bucket/x", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("s3://no-such-bucket/x"),
        "{}",
        stderr(&out)
    );
    // A store that does not answer: the store's error, with the key, not a hang.
    let mut c = common::bin();
    c.args(["sql", "--data", "s3://veritrace-test/x", "SELECT 1"]);
    for (k, v) in &b.env {
        c.env(k, v);
    }
    c.env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", veritrace_testkit::free_port()),
    );
    let out = c.output().expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("object store"), "{}", stderr(&out));
    // Other schemes are refused with what is supported.
    let out = b.run(&["sql", "--data", "gs://bucket/x", "SELECT 1"]);
    assert!(
        stderr(&out).contains("s3://bucket/prefix"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn compaction_and_merges_are_invisible_to_readers_and_proofs_on_both_backends() {
    for b in Backend::both() {
        // Many small batches (of 50), each its own file.
        let small = [("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "50")];
        for tag in ["ca", "cb", "cc"] {
            let input = b.file(&format!("{tag}.jsonl"), &common::new_events(tag, 400));
            let out = b.ingest(&input, &small);
            assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        }
        let bundle_before = b.ok(&["proof", "cb-0123", "--data", &b.data]);
        let count = "SELECT count(*) AS n FROM events";
        assert_eq!(b.n(count), 1_200, "[{}]", b.name);
        // Compact into files of 300 rows and merge them, keeping the small files for the
        // grace period: readers see each event once all along.
        let report = b.ok(&[
            "compact",
            "--data",
            &b.data,
            "--target-rows",
            "300",
            "--min-files",
            "2",
            "--grace-secs",
            "3600",
            "--full-merge",
        ]);
        let r: serde_json::Value = serde_json::from_str(&report).expect("report");
        assert!(r["files_written"].as_u64() >= Some(3), "[{}] {r}", b.name);
        assert_eq!(b.n(count), 1_200, "[{}] during the grace period", b.name);
        assert_eq!(
            b.n("SELECT count(DISTINCT event_id) AS n FROM events"),
            1_200,
            "[{}]",
            b.name
        );
        // Then without the grace period: the superseded files go.
        let report = b.ok(&["compact", "--data", &b.data, "--grace-secs", "0"]);
        let r: serde_json::Value = serde_json::from_str(&report).expect("report");
        assert!(
            r["small_files_deleted"].as_u64() >= Some(20),
            "[{}] {r}",
            b.name
        );
        assert_eq!(b.n(count), 1_200, "[{}] after the deletions", b.name);
        // The proof of an event whose batch file is gone is the same proof: its leaves come
        // from the sidecar compaction wrote.
        let bundle_after = b.ok(&["proof", "cb-0123", "--data", &b.data]);
        assert_eq!(bundle_before, bundle_after, "[{}]", b.name);
        let trace = b.ok(&[
            "trace",
            "--backward",
            "(01)06945501102041(10)cc17",
            "--data",
            &b.data,
        ]);
        assert_eq!(
            trace.matches("production at sup-test").count(),
            1,
            "[{}] {trace}",
            b.name
        );
        // New imports after compaction dedupe against the compacted files.
        let again = b.file("again.jsonl", &common::new_events("ca", 10));
        let out = b.ingest(&again, &[]);
        assert_eq!(
            duplicates(&stdout(&out)),
            10,
            "[{}] {}",
            b.name,
            stdout(&out)
        );
    }
}

#[test]
fn api_tokens_on_s3_are_created_concurrently_and_revocations_reach_the_server() {
    let b = Backend::s3();
    let input = b.file("a.jsonl", &common::new_events("tk", 20));
    let out = b.ingest(&input, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Eight creations at once: no lock exists on an object store, so each is a read, a
    // change and a compare-and-swap write; none may overwrite another.
    let children: Vec<_> = (0..8)
        .map(|i| {
            b.cmd(&[
                "tokens",
                "create",
                "--data",
                &b.data,
                "--role",
                "analyst",
                "--name",
                &format!("t{i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tokens create")
        })
        .collect();
    let mut tokens = Vec::new();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
        tokens.push(stdout(&out).trim().to_owned());
    }
    let list = b.ok(&["tokens", "list", "--data", &b.data, "--json"]);
    let list: Vec<serde_json::Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let mut names: Vec<&str> = list.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"],
        "{list:?}"
    );

    let server = b.serve();
    let sql = serde_json::json!({ "sql": "SELECT count(*) AS n FROM events" }).to_string();
    let (status, _) = server.request("POST", "/v1/sql", &sql);
    assert_eq!(status, 401, "tokens exist: no anonymous access");
    let (status, body) = server.request_as(&tokens[3], "POST", "/v1/sql", &sql);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["n"].as_u64(), Some(20), "{body}");

    // A revocation reaches a running server within its re-read interval.
    let id = list
        .iter()
        .find(|t| t["name"] == "t3")
        .and_then(|t| t["id"].as_str())
        .expect("t3's id")
        .to_owned();
    b.ok(&["tokens", "revoke", &id, "--data", &b.data]);
    common::wait_for("the revocation", Duration::from_secs(20), || {
        server.request_as(&tokens[3], "POST", "/v1/sql", &sql).0 == 401
    });
    let (status, body) = server.request_as(&tokens[4], "POST", "/v1/sql", &sql);
    assert_eq!(status, 200, "another token still works: {body}");
}

#[test]
fn check_finds_altered_and_missing_files_on_both_backends() {
    for b in Backend::both() {
        let small = [("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "100")];
        let input = b.file("a.jsonl", &common::new_events("ck", 600));
        let out = b.ingest(&input, &small);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        let out = b.run(&["check", "--data", &b.data, "--deep"]);
        assert!(
            out.status.success(),
            "[{}] {}{}",
            b.name,
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("INTACT"),
            "[{}] {}",
            b.name,
            stdout(&out)
        );

        let files: Vec<String> = b
            .list("events")
            .into_iter()
            .filter(|f| f.ends_with(".parquet"))
            .collect();
        assert!(files.len() >= 6, "[{}] {files:?}", b.name);
        // One byte changed in the middle of one file, another file gone.
        let mut bytes = b.read_raw(&files[1]);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        b.write_raw(&files[1], &bytes);
        b.delete_raw(&files[4]);
        let out = b.run(&["check", "--data", &b.data]);
        assert_eq!(out.status.code(), Some(1), "[{}] {}", b.name, stdout(&out));
        let report = stdout(&out);
        assert!(report.contains("DAMAGED: "), "[{}] {report}", b.name);
        // Only those two files are named (the altered one may fail its root check too).
        let name = |f: &str| f.rsplit('/').next().unwrap_or(f).to_owned();
        for l in report.lines().filter(|l| l.starts_with("  ")) {
            assert!(
                l.contains(&name(&files[1])) || l.contains(&name(&files[4])),
                "[{}] {l}",
                b.name
            );
        }
        let line = |f: &str| {
            let name = name(f);
            report
                .lines()
                .find(|l| l.contains(&name))
                .unwrap_or_else(|| panic!("[{}] {name} not named in {report}", b.name))
                .to_owned()
        };
        assert!(line(&files[1]).contains("altered"), "[{}] {report}", b.name);
        assert!(line(&files[4]).contains("missing"), "[{}] {report}", b.name);
    }
}

#[test]
fn delta_tables_are_published_on_both_backends_and_read_by_delta_rs() {
    let python = veritrace_testkit::python::require_python("the deltalake package")
        .unwrap_or_else(|e| panic!("{e}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python/delta_tables.py");
    for b in Backend::both() {
        let small = [("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "100")];
        // Valid events and a few that are rejected, so every table has rows.
        let mut text = common::new_events("dt", 300);
        text.push_str("{\"not\": \"an event\"}\n");
        let input = b.file("a.jsonl", &text);
        let out = b.ingest(&input, &small);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        let published = b.ok(&["publish", "--data", &b.data]);
        assert_eq!(published.lines().count(), 3, "[{}] {published}", b.name);
        let read = |when: &str| -> serde_json::Value {
            let mut c = Command::new(&python);
            c.arg(&script).arg(&b.data);
            for (k, v) in &b.env {
                c.env(k, v);
            }
            let out = c.output().expect("python");
            assert!(
                out.status.success(),
                "[{}] {when}: {}",
                b.name,
                stderr(&out)
            );
            serde_json::from_slice(&out.stdout).expect("json")
        };
        let seen = read("published");
        assert_eq!(seen["events"]["rows"], 300, "[{}] {seen}", b.name);
        assert_eq!(seen["events"]["distinct"], 300, "[{}] {seen}", b.name);
        assert_eq!(seen["rejected"]["rows"], 1, "[{}] {seen}", b.name);
        // New batches are published by the epoch that seals them; compaction publishes
        // before it deletes what it replaced.
        let more = b.file("b.jsonl", &common::new_events("du", 50));
        let out = b.ingest(&more, &small);
        assert!(out.status.success(), "[{}] {}", b.name, stderr(&out));
        b.ok(&[
            "compact",
            "--data",
            &b.data,
            "--min-files",
            "1",
            "--grace-secs",
            "0",
        ]);
        let seen = read("after an ingest and a compaction");
        assert_eq!(seen["events"]["rows"], 350, "[{}] {seen}", b.name);
        assert_eq!(seen["events"]["distinct"], 350, "[{}] {seen}", b.name);
        assert!(
            seen["events"]["version"].as_u64() >= Some(2),
            "[{}] {seen}",
            b.name
        );
    }
}
