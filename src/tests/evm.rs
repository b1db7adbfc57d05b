//! The EVM backend through the real binary against a real Anvil (tools/evm, free loopback
//! port, stopped by PID): `demo --chain evm`, proofs that `verify --rpc` checks against the
//! chain and tampered receipts that it refuses with a reason code, and an import killed
//! with -9 while its anchor transactions wait in the mempool, finished by `anchor run`
//! without a second transaction for any epoch. A missing Anvil fails, never skips.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod anvil;
#[allow(dead_code)] // each test binary uses its own part
mod common;

use anvil::{Anvil, DEV_KEY};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_veritrace"));
    c.env("VERITRACE_EVM_KEY", DEV_KEY);
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run veritrace")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "veritrace {args:?} failed: {so}\n{se}"
    );
    assert!(
        !so.contains(&DEV_KEY[2..]) && !se.contains(&DEV_KEY[2..]),
        "the key leaked into the output of {args:?}"
    );
    so.into_owned()
}

fn sql_json(data: &Path, sql: &str) -> Value {
    let out = ok(&[
        "sql",
        "--data",
        data.to_str().expect("p"),
        "--format",
        "json",
        sql,
    ]);
    serde_json::from_str(&out).expect("json")
}

fn verify(bundle: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify", bundle.to_str().expect("p"), "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn a_demo_on_a_real_chain_verifies_against_it_and_forged_receipts_fail() {
    let node = Anvil::start(&[]);
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let out = ok(&[
        "demo",
        "--chain",
        "evm",
        "--rpc",
        &node.url(),
        "--events",
        "20000",
        "--data",
        data.to_str().expect("p"),
        "--no-serve",
        "--epoch-ms",
        "200",
        "--batch-size",
        "2000",
    ]);
    assert!(out.contains("deployed VeritraceAnchor at"), "{out}");
    assert!(out.contains("on chain:"), "{out}");
    let epochs = sql_json(
        &data,
        "SELECT epoch_id, status, backend, contract, tx_hash, block_number FROM epochs ORDER BY epoch_id",
    );
    let epochs = epochs.as_array().expect("rows");
    assert!(epochs.len() >= 2, "{epochs:?}");
    let contract = epochs[0]["contract"].as_str().expect("contract").to_owned();
    for e in epochs {
        assert_eq!(e["status"], "anchored", "{e}");
        assert_eq!(e["backend"], "evm", "{e}");
        assert!(e["tx_hash"].as_str().is_some_and(|t| t.len() == 66), "{e}");
    }
    // One transaction per epoch, each root once.
    let logs = node.anchored_logs(&contract);
    assert_eq!(logs.len(), epochs.len());

    let ids = sql_json(
        &data,
        "SELECT event_id FROM events ORDER BY event_id LIMIT 5",
    );
    for row in ids.as_array().expect("rows") {
        let id = row["event_id"].as_str().expect("id");
        let p = tmp.path().join(format!("{id}.json"));
        ok(&[
            "proof",
            "--data",
            data.to_str().expect("p"),
            id,
            "--out",
            p.to_str().expect("p"),
        ]);
        let (code, v) = verify(&p, &["--rpc", &node.url(), "--contract", &contract]);
        assert_eq!(code, 0, "{v}");
        assert!(v["checks"].to_string().contains("anchoredAt"), "{v}");
        // Without the chain, the receipt is only consistent with itself: exit 3.
        let (code, v) = verify(&p, &[]);
        assert_eq!(code, 3, "{v}");
        assert_eq!(
            (&v["valid"], &v["anchored"]),
            (&Value::Bool(true), &Value::Bool(false))
        );
        assert!(
            v["notes"].to_string().contains("chain was not consulted"),
            "{v}"
        );
    }

    // Forged or stale receipts: each refused with its reason code.
    let row = &ids[0]["event_id"];
    let good: Value = serde_json::from_slice(
        &std::fs::read(
            tmp.path()
                .join(format!("{}.json", row.as_str().expect("id"))),
        )
        .expect("bundle"),
    )
    .expect("json");
    let other = serde_json::from_str::<Value>(&ok(&["anchor", "deploy", "--rpc", &node.url()]))
        .expect("deployment")["contract"]
        .as_str()
        .expect("address")
        .to_owned();
    type Edit = Box<dyn Fn(&mut Value)>;
    let pin = ["--contract", contract.as_str()];
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "block_hash_mismatch",
            Box::new(|b| {
                let h = b["anchor"]["receipt"]["block_hash"].as_str().expect("h");
                let flipped = format!("0x{}{}", if &h[2..3] == "0" { "1" } else { "0" }, &h[3..]);
                b["anchor"]["receipt"]["block_hash"] = flipped.into();
            }),
            &[],
        ),
        (
            "block_mismatch",
            Box::new(|b| {
                let n = b["anchor"]["receipt"]["block_number"].as_u64().expect("n");
                b["anchor"]["receipt"]["block_number"] = (n + 1).into();
            }),
            &[],
        ),
        (
            "chain_mismatch",
            Box::new(|b| b["anchor"]["receipt"]["chain_id"] = 1.into()),
            &[],
        ),
        (
            "log_missing",
            Box::new(|b| {
                let n = b["anchor"]["receipt"]["log_index"].as_u64().expect("n");
                b["anchor"]["receipt"]["log_index"] = (n + 7).into();
            }),
            &[],
        ),
        (
            "no_contract",
            Box::new(|b| {
                b["anchor"]["receipt"]["contract"] =
                    "0x4242424242424242424242424242424242424242".into()
            }),
            &[],
        ),
        (
            "root_not_on_chain",
            Box::new({
                let other = other.clone();
                move |b| b["anchor"]["receipt"]["contract"] = other.clone().into()
            }),
            &[],
        ),
        (
            "contract_mismatch",
            Box::new({
                let other = other.clone();
                move |b| b["anchor"]["receipt"]["contract"] = other.clone().into()
            }),
            &pin,
        ),
        (
            "root_mismatch",
            Box::new(|b| b["event"]["operator"] = "someone-else".into()),
            &[],
        ),
        (
            "malformed",
            Box::new(|b| b["anchor"]["receipt"]["tx_hash"] = "0x12".into()),
            &[],
        ),
    ];
    for (want, edit, extra) in &cases {
        let mut b = good.clone();
        edit(&mut b);
        let p = tmp.path().join(format!("tampered-{want}.json"));
        std::fs::write(&p, serde_json::to_vec_pretty(&b).expect("json")).expect("write");
        let mut args = vec!["--rpc".to_owned(), node.url()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, v) = verify(&p, &args);
        assert_eq!(code, 1, "{want}: {v}");
        assert_eq!(v["code"], *want, "{want}: {v}");
    }

    // The same in the browser: the /verify page asks the chain itself, with the same checks
    // and the same reason codes as the CLI. The server only shows the page: no audit log
    // (on this chain-anchored directory, a server on the default local ledger refuses to
    // anchor one).
    let server = common::Server::start(&data, &[("VERITRACE__AUTH__AUDIT", "false")]);
    let addr = server.http.clone();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify-page-chain");
    std::fs::create_dir_all(&shots).expect("shots");
    let good_file = tmp
        .path()
        .join(format!("{}.json", row.as_str().expect("id")));
    let mut files = vec![good_file.clone()];
    let mut want = vec![("valid".to_owned(), String::new())];
    for (code, _, extra) in &cases {
        if extra.is_empty() {
            files.push(tmp.path().join(format!("tampered-{code}.json")));
            want.push(("invalid".into(), (*code).to_owned()));
        }
    }
    let page = |opts: Value, files: &[std::path::PathBuf]| -> Vec<(String, String)> {
        veritrace_testkit::browser::verify_page(
            &format!("http://{addr}/verify"),
            &shots,
            &opts,
            files,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| {
            (
                r["verdict"].as_str().unwrap_or("?").to_owned(),
                r["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
    };
    assert_eq!(page(json!({"rpc": node.url()}), &files), want);
    let pinned = page(
        json!({"rpc": node.url(), "contract": contract}),
        &[
            good_file.clone(),
            tmp.path().join("tampered-contract_mismatch.json"),
        ],
    );
    assert_eq!(
        pinned,
        vec![
            ("valid".to_owned(), String::new()),
            ("invalid".to_owned(), "contract_mismatch".to_owned())
        ]
    );
    // Without the chain, the page says what the CLI says: consistent, but unanchored.
    assert_eq!(page(json!({}), &[good_file])[0].0, "unanchored");

    // A chain that cannot be reached proves nothing either way: exit 2, not "invalid".
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let p = tmp
        .path()
        .join(format!("{}.json", row.as_str().expect("id")));
    let out = run(&[
        "verify",
        p.to_str().expect("p"),
        "--rpc",
        &format!("http://127.0.0.1:{dead}"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot consult the chain"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_import_killed_with_anchors_in_flight_finishes_without_a_second_transaction() {
    // No mining: anchor transactions wait in the mempool while the import dies.
    let node = Anvil::start(&["--no-mining"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let contract = anvil::deploy(&node);

    // Events as JSON lines, from the simulator.
    let file = tmp.path().join("events.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("file"));
        for r in veritrace_simulator::Simulator::new(veritrace_simulator::SimConfig {
            events: 30_000,
            seed: 9,
            ..Default::default()
        }) {
            f.write_all(&r.payload).expect("write");
            f.write_all(b"\n").expect("write");
        }
    }
    let data = tmp.path().join("data");
    let env = [
        ("VERITRACE__ANCHOR__BACKEND", "evm".to_owned()),
        ("VERITRACE__ANCHOR__EVM__RPC", node.url()),
        ("VERITRACE__ANCHOR__EVM__CONTRACT", contract.clone()),
        ("VERITRACE__ANCHOR__EVM__CONFIRMATIONS", "1".to_owned()),
        ("VERITRACE__ANCHOR__EVM__POLL_INTERVAL", "50ms".to_owned()),
        ("VERITRACE__PIPELINE__EPOCH_INTERVAL", "150ms".to_owned()),
        ("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "2000".to_owned()),
    ];
    let mut import = bin()
        .args([
            "ingest",
            "file",
            file.to_str().expect("p"),
            "--data",
            data.to_str().expect("p"),
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("import");
    // Kill it once at least two anchor transactions wait in the mempool.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = node.rpc("txpool_status", json!([]))["pending"]
            .as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .or_else(|| node.rpc("txpool_status", json!([]))["pending"].as_u64())
            .unwrap_or(0);
        if pending >= 2 {
            break;
        }
        assert!(
            import.try_wait().expect("wait").is_none(),
            "the import ended before any anchor transaction was pending"
        );
        assert!(Instant::now() < until, "no anchor transaction appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-9", &import.id().to_string()])
        .status();
    let _ = import.wait();
    // A server left on the default anchoring (the local ledger) would anchor its audit
    // log's epochs, and the pending epochs of this chain-anchored directory, there: it
    // refuses to start, and says what to configure.
    let mut serve = common::serve_command(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let until = Instant::now() + Duration::from_secs(60);
    while serve.try_wait().expect("wait").is_none() {
        if Instant::now() > until {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("a server on the local ledger started on a chain-anchored directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = serve.wait_with_output().expect("serve");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("anchored on an EVM chain") && err.contains("[anchor.evm]"),
        "{err}"
    );
    // A monitor following the log sees checkpoints whose anchors do not come: an alarm
    // once the grace period has passed (the server writes no audit log of its own here).
    {
        let server = common::Server::start(&data, &[("VERITRACE__AUTH__AUDIT", "false")]);
        let addr = server.http.clone();
        let vkey = ok(&["checkpoint", "--data", data.to_str().expect("p"), "--vkey"]);
        let state = tmp.path().join("monitor.json");
        let (code, err) = common::monitor_once(&addr, vkey.trim(), &state);
        assert_eq!(code, 0, "{err}");
        std::thread::sleep(Duration::from_millis(1_100));
        let (code, err) = common::monitor_once(&addr, vkey.trim(), &state);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("ALARM missing_anchor"), "{err}");
    }
    // The chain goes on: the orphaned transactions are mined while nobody watches.
    node.rpc("evm_mine", json!([]));
    node.rpc("evm_setAutomine", json!([true]));

    let mut finish = bin();
    finish
        .args([
            "anchor",
            "run",
            "--data",
            data.to_str().expect("p"),
            "--timeout-secs",
            "60",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = finish.output().expect("anchor run");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every epoch anchored; one signed transaction per epoch, each root on chain once.
    let journal = std::fs::read_to_string(data.join("anchors/evm.jsonl")).expect("journal");
    let mut submitted: std::collections::BTreeMap<u64, usize> = Default::default();
    for line in journal.lines() {
        let v: Value = serde_json::from_str(line).expect("line");
        if v["kind"] == "submitted" {
            *submitted
                .entry(v["epoch_id"].as_u64().expect("id"))
                .or_default() += 1;
        }
    }
    let epochs = sql_json(
        &data,
        "SELECT epoch_id, status FROM epochs ORDER BY epoch_id",
    );
    let epochs = epochs.as_array().expect("rows");
    assert!(
        epochs.iter().all(|e| e["status"] == "anchored"),
        "{epochs:?}"
    );
    assert_eq!(submitted.len(), epochs.len(), "{submitted:?}");
    assert!(submitted.values().all(|n| *n == 1), "{submitted:?}");
    let logs = node.anchored_logs(&contract);
    assert_eq!(logs.len(), epochs.len(), "{logs:?}");
    let mut roots: Vec<&String> = logs.iter().map(|(r, _)| r).collect();
    roots.sort();
    roots.dedup();
    assert_eq!(roots.len(), logs.len(), "a root was anchored twice");

    // And the proofs check out against the chain.
    let id = sql_json(
        &data,
        "SELECT event_id FROM events ORDER BY event_id LIMIT 1",
    )[0]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let p = tmp.path().join("p.json");
    ok(&[
        "proof",
        "--data",
        data.to_str().expect("p"),
        &id,
        "--out",
        p.to_str().expect("p"),
    ]);
    let (code, v) = verify(&p, &["--rpc", &node.url(), "--contract", &contract]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn the_verify_pages_chain_check_names_the_contracts_own_selector_and_topic() {
    use veritrace_verify::chain::{ANCHORED_AT_SELECTOR, ANCHORED_TOPIC};
    assert_eq!(
        veritrace_queries::http::ANCHORED_AT_SELECTOR,
        format!("0x{}", hex::encode(ANCHORED_AT_SELECTOR))
    );
    assert_eq!(
        veritrace_queries::http::ANCHORED_TOPIC,
        format!("0x{}", hex::encode(ANCHORED_TOPIC))
    );
}
