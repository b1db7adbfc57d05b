//! Signed statements end to end through the real binary: the identity registry written with
//! `veritrace participant register` and `veritrace device register|rotate|revoke`, sealed
//! into the log; signed events (JWS lines and a COSE_Sign1 sequence) ingested under the
//! `enforce` and `record` policies, every reason code, the signer in SQL, and proofs of
//! signed events and of registry records that verify.

mod harness;

#[allow(dead_code)] // each test binary uses its own part
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use veritrace_verify::bundle_sig::sign_bundle;
use veritrace_verify::signature::{Alg, Claims, Envelope, SigningKey, sign_cose, sign_jws};

const P1: &str = "P1";
const P2: &str = "P2";
const CODE: &str = "(01)09506000134352(21)A1";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritrace"))
}

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    data: PathBuf,
    now: i64,
}

impl Site {
    fn new(policy: &str) -> Site {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        let config = root.join("veritrace.toml");
        let root_key = key(Alg::EdDsa, 1);
        std::fs::write(
            &config,
            format!(
                "data-dir = {:?}\n[signatures]\nroot-key = {:?}\npolicy = {policy:?}\n",
                data.display().to_string(),
                root_key.public().to_text()
            ),
        )
        .expect("config");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let site = Site {
            _tmp: tmp,
            root,
            config,
            data,
            now,
        };
        site.key_file("root", &root_key);
        site
    }

    fn run(&self, args: &[&str]) -> Output {
        bin()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run veritrace")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "veritrace {args:?} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// Writes a key file as `veritrace keys generate` does, for a key made from a seed.
    fn key_file(&self, name: &str, key: &SigningKey) -> String {
        let secret: [u8; 32] = match key {
            SigningKey::P256(k) => k.to_bytes().into(),
            SigningKey::Ed25519(k) => k.to_bytes(),
        };
        let path = self.root.join(format!("{name}.key"));
        std::fs::write(
            &path,
            serde_json::json!({
                "format": "veritrace.key/1",
                "alg": key.public().alg().name(),
                "secret": hex::encode(secret),
            })
            .to_string(),
        )
        .expect("key file");
        path.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    fn sql(&self, sql: &str) -> serde_json::Value {
        let out = self.ok(&["sql", "--format", "json", sql]);
        serde_json::from_str(&out).expect("json rows")
    }
}

fn key(alg: Alg, seed: u8) -> SigningKey {
    SigningKey::from_bytes(alg, &[seed; 32]).expect("key")
}

fn event(id: &str, participant: &str) -> Vec<u8> {
    serde_json::json!({
        "event_id": id,
        "event_type": "production",
        "event_time": "2026-11-01T08:00:00Z",
        "participant": {"id": participant, "role": "manufacturer"},
        "trace_code": CODE,
    })
    .to_string()
    .into_bytes()
}

fn claims(iss: &str, iat: i64) -> Claims {
    Claims {
        iss: Some(iss.into()),
        sub: Some(CODE.into()),
        iat: Some(iat),
    }
}

fn jws(k: &SigningKey, iss: &str, iat: i64, payload: &[u8]) -> String {
    sign_jws(k, &k.public().key_id(), &claims(iss, iat), payload)
}

/// The registry: P1 (admin ES256) with devices d1 (ES256, later rotated to EdDSA) and d2
/// (EdDSA, later revoked); P2 (admin EdDSA) with device d3.
fn register(site: &Site) -> [SigningKey; 6] {
    let [admin1, admin2] = [key(Alg::Es256, 11), key(Alg::EdDsa, 12)];
    let [d1, d2, d3, d1_new] = [
        key(Alg::Es256, 21),
        key(Alg::EdDsa, 22),
        key(Alg::EdDsa, 23),
        key(Alg::EdDsa, 24),
    ];
    let admin1_file = site.key_file("admin1", &admin1);
    let admin2_file = site.key_file("admin2", &admin2);
    let root = site.path("root.key");
    let at = |d: i64| (site.now - d).to_string();
    for (id, admin) in [(P1, &admin1), (P2, &admin2)] {
        let out = site.ok(&[
            "participant",
            "register",
            "--root-key",
            &root,
            "--id",
            id,
            "--name",
            id,
            "--role",
            "manufacturer",
            "--admin-key",
            &admin.public().to_text(),
            "--at",
            &at(1000),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["record"]["record"], "participant.registered", "{out}");
    }
    // Only the root key registers participants.
    let refused = site.run(&[
        "participant",
        "register",
        "--root-key",
        &admin1_file,
        "--id",
        "P9",
        "--name",
        "x",
        "--role",
        "supplier",
        "--admin-key",
        &admin1.public().to_text(),
        "--at",
        &at(1000),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("record_not_authorized"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    for (id, owner, admin, dev) in [
        ("d1", P1, &admin1_file, &d1),
        ("d2", P1, &admin1_file, &d2),
        ("d3", P2, &admin2_file, &d3),
    ] {
        site.ok(&[
            "device",
            "register",
            "--admin-key",
            admin,
            "--participant",
            owner,
            "--id",
            id,
            "--key",
            &dev.public().to_text(),
            "--at",
            &at(900),
        ]);
    }
    // P2's admin cannot register a device for P1.
    let refused = site.run(&[
        "device",
        "register",
        "--admin-key",
        &admin2_file,
        "--participant",
        P1,
        "--id",
        "d9",
        "--key",
        &d3.public().to_text(),
        "--at",
        &at(900),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("record_not_authorized"));
    site.ok(&[
        "device",
        "rotate",
        "--admin-key",
        &admin1_file,
        "--id",
        "d1",
        "--key",
        &d1_new.public().to_text(),
        "--at",
        &at(500),
    ]);
    site.ok(&[
        "device",
        "revoke",
        "--admin-key",
        &admin1_file,
        "--id",
        "d2",
        "--reason",
        "stolen",
        "--at",
        &at(300),
    ]);
    [admin1, admin2, d1, d2, d3, d1_new]
}

fn ingest(site: &Site, name: &str, bytes: &[u8]) {
    let path = site.root.join(name);
    std::fs::write(&path, bytes).expect("write input");
    site.ok(&["ingest", "file", path.to_str().expect("path")]);
}

fn rejected(site: &Site) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = site
        .sql("SELECT event_id, reason FROM rejected")
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap_or("").to_owned(),
                r["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn signed_events_are_checked_against_the_registry_in_the_log_and_proofs_show_the_signer() {
    let site = Site::new("enforce");
    let [_, _, d1, d2, d3, d1_new] = register(&site);
    let t = |d: i64| site.now - d;

    // `device list` derives the state from the log: d1 rotated, d2 revoked.
    let list: serde_json::Value =
        serde_json::from_str(&site.ok(&["device", "list", "--json"])).expect("json");
    let devices = list["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 3);
    assert_eq!(devices[0]["keys"].as_array().expect("keys").len(), 2);
    assert_eq!(devices[1]["revoked"], t(300));

    let ok_jws = jws(&d1, "d1", t(600), &event("ok-jws", P1));
    let forged = {
        // d1's header and signature over another event's payload.
        let other = jws(&d1, "d1", t(600), &event("forged", P1));
        let parts: Vec<&str> = ok_jws.split('.').collect();
        let o: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", parts[0], o[1], parts[2])
    };
    let unsupported = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            b64.encode(br#"{"alg":"HS256","iss":"d1","iat":1}"#),
            b64.encode(event("hs256", P1)),
            b64.encode([0u8; 32])
        )
    };
    let mismatch = sign_jws(
        &d1_new,
        "k",
        &Claims {
            iss: Some("d1".into()),
            sub: Some("(01)09506000134352(21)OTHER".into()),
            iat: Some(t(100)),
        },
        &event("mismatch", P1),
    );
    let lines = [
        ok_jws.clone(),
        String::from_utf8(event("unsigned", P1)).expect("utf8"),
        forged,
        jws(&d2, "d1", t(600), &event("wrong-key", P1)),
        jws(&d1, "ghost", t(600), &event("unknown", P1)),
        jws(&d3, "d3", t(600), &event("other-participant", P1)),
        jws(&d1, "d1", t(30 * 86_400), &event("stale", P1)),
        ok_jws.clone(),
        // d1 was rotated at t(500): its old key no longer speaks for it, the new one does.
        jws(&d1, "d1", t(100), &event("old-key-after-rotation", P1)),
        jws(&d1_new, "d1", t(100), &event("new-key", P1)),
        // d2 was revoked at t(300): what it signed before still counts.
        jws(&d2, "d2", t(100), &event("after-revocation", P1)),
        mismatch,
        unsupported,
        // P2's device signing an event in which P2 takes part as the counterparty.
        {
            let mut e: serde_json::Value =
                serde_json::from_slice(&event("counterparty", P1)).expect("json");
            e["counterparty"] = serde_json::json!({"id": P2, "role": "carrier"});
            jws(&d3, "d3", t(600), e.to_string().as_bytes())
        },
    ];
    // Bundles: one signature over many events (RFC 6962 root of the events as sent).
    let bundle = |k: &SigningKey, iss: &str, iat: i64, events: &[Vec<u8>], env: Envelope| {
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        String::from_utf8(sign_bundle(k, &k.public().key_id(), iss, iat, &refs, env)).expect("utf8")
    };
    let b_events = [event("b-1", P1), event("b-2", P1), event("b-3", P1)];
    let mut tampered = bundle(
        &d1_new,
        "d1",
        t(100),
        &[event("bt-1", P1), event("bt-2", P1)],
        Envelope::Jws,
    );
    tampered = tampered.replace("bt-2", "bt-X");
    let mut lines = lines.to_vec();
    lines.extend([
        bundle(&d1_new, "d1", t(100), &b_events, Envelope::Jws),
        bundle(
            &d2,
            "d2",
            t(400),
            &[event("cb-1", P1), event("cb-2", P1)],
            Envelope::Cose,
        ),
        tampered,
        bundle(
            &d1_new,
            "d1",
            t(100),
            &[event("bo-1", P1), event("bo-2", P2)],
            Envelope::Jws,
        ),
    ]);
    ingest(&site, "signed.jsonl", (lines.join("\n") + "\n").as_bytes());
    let cose = [
        sign_cose(
            &d2,
            &d2.public().key_id(),
            &claims("d2", t(400)),
            &event("ok-cose", P1),
        ),
        sign_cose(&d2, "k", &claims("d2", t(100)), &event("cose-revoked", P1)),
        vec![0x84, 0x01],
    ]
    .concat();
    ingest(&site, "signed.cose", &cose);

    let accepted = site.sql(
        "SELECT event_id, signer, signer_participant, key_id, sig_alg, envelope IS NOT NULL AS kept \
         FROM events WHERE event_type <> 'registry' ORDER BY event_id",
    );
    let got: Vec<(String, String, String, String, String, bool)> = accepted
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            (
                s("event_id"),
                s("signer"),
                s("signer_participant"),
                s("key_id"),
                s("sig_alg"),
                r["kept"] == true,
            )
        })
        .collect();
    let row = |id: &str, signer: &str, p: &str, k: &SigningKey, alg: &str| {
        (
            id.to_owned(),
            signer.to_owned(),
            p.to_owned(),
            k.public().key_id(),
            alg.to_owned(),
            true,
        )
    };
    assert_eq!(
        got,
        vec![
            row("b-1", "d1", P1, &d1_new, "EdDSA"),
            row("b-2", "d1", P1, &d1_new, "EdDSA"),
            row("b-3", "d1", P1, &d1_new, "EdDSA"),
            row("bo-1", "d1", P1, &d1_new, "EdDSA"),
            row("cb-1", "d2", P1, &d2, "EdDSA"),
            row("cb-2", "d2", P1, &d2, "EdDSA"),
            row("counterparty", "d3", P2, &d3, "EdDSA"),
            row("new-key", "d1", P1, &d1_new, "EdDSA"),
            row("ok-cose", "d2", P1, &d2, "EdDSA"),
            row("ok-jws", "d1", P1, &d1, "ES256"),
        ]
    );
    let want: Vec<(String, String)> = [
        ("", "claims_mismatch"),
        ("", "malformed_envelope"),
        ("bo-2", "signer_not_authorized"),
        ("after-revocation", "signer_revoked"),
        ("cose-revoked", "signer_revoked"),
        ("forged", "bad_signature"),
        ("hs256", "unsupported_alg"),
        ("mismatch", "claims_mismatch"),
        ("ok-jws", "duplicate_event_id"),
        ("old-key-after-rotation", "bad_signature"),
        ("other-participant", "signer_not_authorized"),
        ("stale", "stale_signature"),
        ("unknown", "unknown_signer"),
        ("unsigned", "unsigned"),
        ("wrong-key", "bad_signature"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut want = want;
    want.sort();
    let mut got = rejected(&site);
    got.retain(|(id, _)| !id.starts_with("registry:"));
    assert_eq!(got, want);
    // The refused registry records are kept too, with their reasons.
    let refused = site.sql(
        "SELECT reason, count(*) AS n FROM rejected WHERE event_id LIKE 'registry:%' GROUP BY reason",
    );
    assert_eq!(refused.as_array().expect("rows").len(), 1, "{refused}");
    assert_eq!(refused[0]["reason"], "record_not_authorized");
    assert_eq!(refused[0]["n"], 2);

    // The registry is in the log: six records, each an event of type registry with a proof.
    let reg = site.sql(
        "SELECT event_id, signer FROM events WHERE event_type = 'registry' ORDER BY event_time, event_id",
    );
    assert_eq!(reg.as_array().expect("rows").len(), 7, "{reg}");

    // Proofs: the leaf commits to the signature, and the bundle verifies.
    for id in [
        "ok-jws",
        "ok-cose",
        "b-2",
        "cb-1",
        reg[3]["event_id"].as_str().expect("id"),
    ] {
        let bundle = site
            .root
            .join(format!("{}.proof.json", id.replace(':', "_")));
        site.ok(&["proof", id, "--out", bundle.to_str().expect("path")]);
        let b: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&bundle).expect("bundle")).expect("json");
        let text = b.to_string();
        assert!(text.contains("envelope_sha256"), "{id}: {text}");
        assert_eq!(b["format"], "veritrace.proof/2", "{id}");
        let ledger = site.data.join("ledger/local.jsonl");
        let verify = |path: &Path| {
            let out = bin()
                .args(["verify", path.to_str().expect("path")])
                .arg("--ledger")
                .arg(&ledger)
                .output()
                .expect("verify");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (code, stdout) = verify(&bundle);
        assert_eq!(code, Some(0), "{id}: {stdout}");
        assert!(stdout.contains("signature by"), "{id}: {stdout}");
        // The key's registration travels with the proof and verifies too.
        assert!(stdout.contains("was registered for"), "{id}: {stdout}");
        let mut moved = b.clone();
        let reg_event = &mut moved["signed"]["registration"]["event"];
        assert!(reg_event.is_object(), "{id}: no registration in {b}");
        reg_event["attributes"]["at"] = serde_json::json!(1);
        std::fs::write(&bundle, moved.to_string()).expect("write");
        let (code, stdout) = verify(&bundle);
        assert_eq!(
            code,
            Some(1),
            "{id}: an altered registration must fail: {stdout}"
        );
        // Another envelope than the one the leaf commits to is refused.
        let mut forged = b.clone();
        let env = forged["signed"]["envelope"]
            .as_str()
            .expect("envelope")
            .to_owned();
        let flipped = if env.starts_with('A') { 'B' } else { 'A' };
        forged["signed"]["envelope"] = format!("{flipped}{}", &env[1..]).into();
        std::fs::write(&bundle, forged.to_string()).expect("write");
        let (code, stdout) = verify(&bundle);
        assert_eq!(code, Some(1), "{id}: {stdout}");
        assert!(
            stdout.contains("bad_envelope") || stdout.contains("SHA-256"),
            "{id}: {stdout}"
        );
    }
}

#[test]
fn signed_events_disclose_private_fields_beside_the_signature_and_erasure_keeps_them_verifying() {
    let site = Site::new("enforce");
    let mut config = std::fs::read_to_string(&site.config).expect("config");
    config.push_str("[privacy.fields]\nsale = [\"attributes.price\", \"counterparty.name\"]\n");
    std::fs::write(&site.config, config).expect("config");
    let [_, _, _, _, d3, _] = register(&site);
    let d3_file = site.key_file("d3", &d3);
    let sale = |id: &str, name: &str| {
        serde_json::json!({
            "event_id": id,
            "event_type": "sale",
            "event_time": "2026-11-01T08:00:00Z",
            "participant": {"id": P2, "role": "retailer"},
            "counterparty": {"id": "cust-9", "name": name, "role": "customer"},
            "attributes": {"price": 1299.5, "channel": "store"},
            "trace_code": CODE,
        })
        .to_string()
    };
    let input = site.root.join("sales.jsonl");
    std::fs::write(&input, format!("{}\n", sale("sd-jws", "Erika Mustermann"))).expect("w");
    let signed_jws = site.ok(&[
        "sign",
        "--key",
        &d3_file,
        "--issuer",
        "d3",
        "--private",
        "attributes.price",
        "--private",
        "counterparty.name",
        input.to_str().expect("p"),
    ]);
    assert!(
        !signed_jws.contains("Erika"),
        "the payload holds commitments: {signed_jws}"
    );
    let jws_line = signed_jws.trim().to_owned();
    assert_eq!(jws_line.matches('~').count(), 3, "JWS~D1~D2~: {jws_line}");
    std::fs::write(&input, format!("{}\n", sale("sd-cose", "Max Mustermann"))).expect("w");
    let cose = site.root.join("sales.cbor");
    site.ok(&[
        "sign",
        "--key",
        &d3_file,
        "--issuer",
        "d3",
        "--format",
        "cose",
        "--private",
        "attributes.price",
        "--private",
        "counterparty.name",
        "--out",
        cose.to_str().expect("p"),
        input.to_str().expect("p"),
    ]);
    // Refused: a value in clear where the type makes it private, a disclosure that lies,
    // and a disclosure for a field the signer did not commit.
    let clear = jws(
        &d3,
        "d3",
        site.now - 60,
        sale("sd-clear", "Clear Person").as_bytes(),
    );
    let lie = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        std::fs::write(&input, format!("{}\n", sale("sd-lie", "Lying Person"))).expect("w");
        let line = site.ok(&[
            "sign",
            "--key",
            &d3_file,
            "--issuer",
            "d3",
            "--private",
            "attributes.price",
            "--private",
            "counterparty.name",
            input.to_str().expect("p"),
        ]);
        let mut parts: Vec<String> = line.trim().split('~').map(str::to_owned).collect();
        let d: serde_json::Value =
            serde_json::from_slice(&b64.decode(&parts[1]).expect("b64")).expect("json");
        let changed = serde_json::json!([d[0], d[1], 9.99]);
        parts[1] = b64.encode(changed.to_string());
        parts.join("~")
    };
    let uncommitted = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let plain = jws(&d3, "d3", site.now - 60, event("sd-extra", P2).as_slice());
        let d = serde_json::json!(["00112233445566778899aabbccddeeff", "operator", "Otto"]);
        format!("{plain}~{}~", b64.encode(d.to_string()))
    };
    ingest(
        &site,
        "sd.jws",
        format!("{jws_line}\n{clear}\n{lie}\n{uncommitted}\n").as_bytes(),
    );
    ingest(&site, "sd.cbor", &std::fs::read(&cose).expect("cose"));
    let mut refused = rejected(&site);
    refused.retain(|(id, _)| !id.starts_with("registry:"));
    assert_eq!(
        refused,
        vec![
            ("sd-clear".to_owned(), "private_field_in_clear".to_owned()),
            ("sd-extra".to_owned(), "bad_disclosure".to_owned()),
            ("sd-lie".to_owned(), "bad_disclosure".to_owned()),
        ]
    );
    let rows = site.sql(
        "SELECT event_id, counterparty_name, attributes, signer FROM events WHERE event_type = 'sale' ORDER BY event_id",
    );
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        assert_eq!(r["signer"], "d3", "{r}");
        assert!(
            r["counterparty_name"]
                .as_str()
                .expect("name")
                .starts_with("vtc1:"),
            "{r}"
        );
        assert!(
            r["attributes"]
                .as_str()
                .expect("a")
                .contains("\"price\":\"vtc1:"),
            "{r}"
        );
    }
    // The log holds no value: only the private store does (the rejected records keep
    // theirs, as sent).
    for name in ["Erika Mustermann", "Max Mustermann"] {
        let holders = common::files_containing(&site.data, name);
        assert_eq!(holders.len(), 1, "{name}: {holders:?}");
        assert!(
            holders[0].starts_with(site.data.join("private")),
            "{holders:?}"
        );
    }

    let ledger = site.data.join("ledger/local.jsonl");
    let verify = |path: &Path| {
        let out = bin()
            .args(["verify", path.to_str().expect("p")])
            .arg("--ledger")
            .arg(&ledger)
            .output()
            .expect("verify");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for id in ["sd-jws", "sd-cose"] {
        let open = site.root.join(format!("{id}.open.json"));
        site.ok(&[
            "proof",
            id,
            "--disclose",
            "all",
            "--out",
            open.to_str().expect("p"),
        ]);
        let (code, out) = verify(&open);
        assert_eq!(code, Some(0), "{id}: {out}");
        assert!(out.contains("signature by"), "{id}: {out}");
        assert!(
            out.contains("private field attributes.price disclosed"),
            "{id}: {out}"
        );
        assert!(
            out.contains("private field counterparty.name disclosed"),
            "{id}: {out}"
        );
    }
    site.ok(&["erase", "--event", "sd-jws", "--reason", "end of contract"]);
    assert!(common::files_containing(&site.data, "Erika Mustermann").is_empty());
    let after = site.root.join("after.json");
    site.ok(&[
        "proof",
        "sd-jws",
        "--disclose",
        "all",
        "--out",
        after.to_str().expect("p"),
    ]);
    let (code, out) = verify(&after);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("signature by"), "{out}");
    assert!(out.contains("committed, not disclosed"), "{out}");
}

#[test]
fn under_record_unsigned_events_pass_and_signatures_that_fail_do_not() {
    let site = Site::new("record");
    let [_, _, d1, ..] = register(&site);
    let t = site.now - 600;
    let lines = [
        String::from_utf8(event("unsigned", P1)).expect("utf8"),
        jws(&d1, "d1", t, &event("signed", P1)),
        jws(&d1, "ghost", t, &event("unknown", P1)),
    ];
    ingest(&site, "mixed.jsonl", (lines.join("\n") + "\n").as_bytes());
    let rows = site.sql(
        "SELECT event_id, signer FROM events WHERE event_type <> 'registry' ORDER BY event_id",
    );
    assert_eq!(rows[0]["event_id"], "signed");
    assert_eq!(rows[0]["signer"], "d1");
    assert_eq!(rows[1]["event_id"], "unsigned");
    assert!(rows[1]["signer"].is_null());
    assert_eq!(rows.as_array().expect("rows").len(), 2);
    let mut got = rejected(&site);
    got.retain(|(id, _)| !id.starts_with("registry:"));
    assert_eq!(
        got,
        vec![("unknown".to_owned(), "unknown_signer".to_owned())]
    );

    // `veritrace sign --bundle 2`: three events in two bundles, one signature each.
    let key = site.key_file("d1", &d1);
    let input = site.root.join("plain.jsonl");
    let plain: Vec<String> = (1..=3)
        .map(|i| String::from_utf8(event(&format!("cli-b{i}"), P1)).expect("utf8"))
        .collect();
    std::fs::write(&input, plain.join("\n") + "\n").expect("write");
    let iat = t.to_string();
    let bundles = site.ok(&[
        "sign",
        "--key",
        &key,
        "--issuer",
        "d1",
        "--iat",
        &iat,
        "--bundle",
        "2",
        input.to_str().expect("path"),
    ]);
    assert_eq!(bundles.lines().count(), 2, "{bundles}");
    ingest(&site, "bundles.jsonl", bundles.as_bytes());
    let rows =
        site.sql("SELECT count(*) AS n FROM events WHERE event_id LIKE 'cli-b%' AND signer = 'd1'");
    assert_eq!(rows[0]["n"], 3, "{rows}");

    // A registry file altered on disk is found when read, named, and never trusted.
    let reg_file = std::fs::read_dir(site.data.join("events"))
        .expect("events dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("registry"))
        })
        .expect("a registry events file");
    let mut bytes = std::fs::read(&reg_file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&reg_file, bytes).expect("write");
    let out = site.run(&["device", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("altered") && err.contains("registry"), "{err}");
}

/// One HTTP/1.1 request; the status, the `Retry-After` header and the body as JSON.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    ct: &str,
    body: &[u8],
) -> (u16, Option<String>, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send");
    // A server may answer (413) before reading the whole body.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status: u16 = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"));
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let retry = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("retry-after: ")
                .or_else(|| l.strip_prefix("Retry-After: "))
        })
        .map(str::to_owned);
    (
        status,
        retry,
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned())),
    )
}

#[test]
fn the_gateway_answers_202_after_kafka_acknowledged_and_401_403_413_429_otherwise() {
    use harness::{Broker, Processor, Topics};
    let broker = Broker::start();
    broker.create_topics(1);
    let site = Site::new("enforce");
    let [_, _, _, _, d3, d1_new] = register(&site);
    let t = site.now - 100;

    let (mut child, addr) = start_gateway(
        &site,
        &broker.addr(),
        &[
            ("VERITRACE__GATEWAY__RATE", "0.1"),
            ("VERITRACE__GATEWAY__BURST", "5"),
            ("VERITRACE__GATEWAY__MAX_BODY_BYTES", "8192"),
        ],
    );

    let two = [
        jws(&d1_new, "d1", t, &event("gw-1", P1)),
        jws(&d1_new, "d1", t, &event("gw-2", P1)),
    ]
    .join("\n");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/jose",
        two.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 2);

    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/json",
        &event("gw-unsigned", P1),
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unsigned");

    let other = jws(&d3, "d3", t, &event("gw-other", P1));
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/jose",
        other.as_bytes(),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "signer_not_authorized");

    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/json",
        &vec![b' '; 10_000],
    );
    assert_eq!(status, 413, "{body}");

    // d1 spent 2 of its burst of 5 at one record per 10 s: 4 more at once wait.
    let four = (3..7)
        .map(|i| jws(&d1_new, "d1", t, &event(&format!("gw-{i}"), P1)))
        .collect::<Vec<_>>()
        .join("\n");
    let (status, retry, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/jose",
        four.as_bytes(),
    );
    assert_eq!(status, 429, "{body}");
    assert!(
        retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After"
    );

    let (status, _, _) = http(&addr, "GET", "/healthz", "application/json", b"");
    assert_eq!(status, 200);
    let metrics = veritrace_testkit::metrics::scrape(
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port"),
    )
    .expect("metrics");
    assert_eq!(
        veritrace_testkit::metrics::value(
            &metrics,
            "veritrace_gateway_records_total",
            &[("outcome", "published")]
        ),
        Some(2.0),
        "{metrics}"
    );

    // What the gateway published is processed under the same policy: two signed rows.
    let root = key(Alg::EdDsa, 1).public().to_text();
    let proc = Processor::start_with_env(
        &broker.addr(),
        &site.data,
        "proc",
        &[],
        &[
            ("VERITRACE__SIGNATURES__ROOT_KEY", root.as_str()),
            ("VERITRACE__SIGNATURES__POLICY", "enforce"),
        ],
    );
    proc.wait_for(
        "2 events sealed",
        std::time::Duration::from_secs(120),
        |m| {
            veritrace_testkit::metrics::sum(m, "veritrace_accepted_events_total").unwrap_or(0.0)
                >= 2.0
        },
    );
    proc.stop();
    let rows = site
        .sql("SELECT event_id, signer FROM events WHERE event_id LIKE 'gw-%' ORDER BY event_id");
    assert_eq!(rows.as_array().expect("rows").len(), 2, "{rows}");
    assert_eq!(rows[0]["signer"], "d1");

    let mut child = child.0.take().expect("running");
    veritrace_testkit::signal(&child, "-TERM");
    let st = child.wait().expect("wait");
    assert!(st.success(), "gateway exited with {st}");
}

/// Starts `veritrace gateway` on a free port; its address once it listens.
fn start_gateway(site: &Site, brokers: &str, env: &[(&str, &str)]) -> (Stop, String) {
    start_gateway_with(site, &["--brokers", brokers], env)
}

fn start_gateway_with(site: &Site, args: &[&str], env: &[(&str, &str)]) -> (Stop, String) {
    use std::io::BufRead;
    let mut child = bin()
        .arg("--config")
        .arg(&site.config)
        .args(["gateway", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gateway");
    let stderr = child.stderr.take().expect("stderr");
    let child = Stop(Some(child));
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("gateway exited").expect("line");
        if let Some(rest) = line.split("://").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[test]
fn the_gateway_over_tls_maps_client_certificates_to_registered_devices() {
    use harness::{Broker, Topics};
    use veritrace_testkit::tls::{Pki, https, status};
    let broker = Broker::start();
    broker.create_topics(1);
    let site = Site::new("enforce");
    let [_, _, _, _, d3, d1_new] = register(&site);
    let t = site.now - 100;

    // Plain HTTP off loopback is refused before anything starts.
    let out = bin()
        .arg("--config")
        .arg(&site.config)
        .args([
            "gateway",
            "--brokers",
            &broker.addr(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without TLS") && err.contains("allow-plaintext"),
        "{err}"
    );

    let pki = Pki::new(&site.root, "devices").expect("pki");
    let server = pki.server("gateway").expect("server cert");
    let ca = pki.ca_file.to_str().expect("path").to_owned();
    let (cert, key) = (
        server.cert.to_str().expect("path").to_owned(),
        server.key.to_str().expect("path").to_owned(),
    );
    let (mut child, addr) = start_gateway(
        &site,
        &broker.addr(),
        &[
            ("VERITRACE__GATEWAY__TLS__CERT", cert.as_str()),
            ("VERITRACE__GATEWAY__TLS__KEY", key.as_str()),
            ("VERITRACE__GATEWAY__TLS__CLIENT_CA", ca.as_str()),
            ("VERITRACE__GATEWAY__TLS__CLIENT_CERTS", "optional"),
        ],
    );
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let post_as = |client: Option<&str>, ct: &str, body: &str| -> (u16, serde_json::Value) {
        let c = client.map(|cn| pki.client(cn).expect("client cert"));
        let req = format!(
            "POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let resp = https(port, &pki.ca_file, c.as_ref(), req.as_bytes()).expect("https");
        let text = String::from_utf8_lossy(&resp).into_owned();
        let json = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        (
            status(&resp).expect("status"),
            serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
        )
    };
    let post = |client: Option<&str>, body: &str| post_as(client, "application/jose", body);
    let signed_d1 = |id: &str| jws(&d1_new, "d1", t, &event(id, P1));

    // The device d1 over TLS with its certificate, sending what it signed: accepted.
    let (st, body) = post(Some("d1"), &signed_d1("tls-1"));
    assert_eq!(st, 202, "{body}");
    // No certificate (optional): the signature alone speaks.
    let (st, body) = post(None, &signed_d1("tls-2"));
    assert_eq!(st, 202, "{body}");
    // A bundle: one signature over three events, checked before anything is published.
    let events: Vec<Vec<u8>> = (0..3).map(|i| event(&format!("tls-b{i}"), P1)).collect();
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    let bundle = sign_bundle(
        &d1_new,
        &d1_new.public().key_id(),
        "d1",
        t,
        &refs,
        Envelope::Cose,
    );
    let bundle = String::from_utf8(bundle).expect("utf8");
    let (st, body) = post_as(Some("d1"), "application/json", &bundle);
    assert_eq!(st, 202, "{body}");
    let (st, body) = post_as(Some("d3"), "application/json", &bundle);
    assert_eq!(
        st, 403,
        "a bundle signed outside the certificate's participant: {body}"
    );
    // A certificate naming no registered device, a revoked one (d2), another participant's
    // device forwarding d1's records (d3 belongs to P2).
    for (cn, code) in [
        ("ghost", "unknown_signer"),
        ("d2", "signer_revoked"),
        ("d3", "signer_not_authorized"),
    ] {
        let (st, body) = post(Some(cn), &signed_d1("tls-x"));
        assert_eq!(st, 403, "{cn}: {body}");
        assert_eq!(body["error"]["code"], code, "{cn}: {body}");
    }
    // d3 sending what d3 signed is fine, whatever it names in the event is checked as ever.
    let (st, body) = post(Some("d3"), &jws(&d3, "d3", t, &event("tls-3", P2)));
    assert_eq!(st, 202, "{body}");
    // Plain HTTP to the TLS port gets no answer.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .expect("timeout");
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(
            !String::from_utf8_lossy(&resp).contains("200 OK"),
            "plain HTTP answered on the TLS port"
        );
    }

    let mut child = child.0.take().expect("running");
    veritrace_testkit::signal(&child, "-TERM");
    let st = child.wait().expect("wait");
    assert!(st.success(), "gateway exited with {st}");
}

#[test]
fn the_embedded_gateway_answers_once_sealed_with_each_outcome_and_survives_kill_9() {
    let site = Site::new("enforce");
    let [_, _, _, _, _, d1_new] = register(&site);
    let t = site.now - 100;
    let env = [
        ("VERITRACE__PIPELINE__BATCH_MAX_AGE", "200ms"),
        ("VERITRACE__PIPELINE__EPOCH_INTERVAL", "1s"),
    ];
    let (mut child, addr) = start_gateway_with(&site, &["--embedded"], &env);
    let two = [
        jws(&d1_new, "d1", t, &event("emb-1", P1)),
        jws(&d1_new, "d1", t, &event("emb-2", P1)),
    ]
    .join("\n");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/jose",
        two.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events_accepted"], 2, "{body}");
    assert_eq!(body["rejected"], serde_json::json!([]), "{body}");
    assert!(body["batch_id"].is_string(), "{body}");
    // Sealed means durable: killed with -9 right after the answer, the rows are there.
    let mut c = child.0.take().expect("running");
    veritrace_testkit::signal(&c, "-KILL");
    let _ = c.wait();
    let rows = site
        .sql("SELECT event_id, signer FROM events WHERE event_id LIKE 'emb-%' ORDER BY event_id");
    assert_eq!(rows.as_array().expect("rows").len(), 2, "{rows}");
    assert_eq!(rows[1]["signer"], "d1");

    // Restarted: a replay is one row (the answer says which record was a duplicate), a
    // new event is accepted, an unsigned record under enforce refuses the request.
    let (mut child, addr) = start_gateway_with(&site, &["--embedded"], &env);
    let replay = [
        jws(&d1_new, "d1", t, &event("emb-2", P1)),
        jws(&d1_new, "d1", t, &event("emb-3", P1)),
    ]
    .join("\n");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/jose",
        replay.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events_accepted"], 1, "{body}");
    assert_eq!(body["rejected"][0]["record"], 0, "{body}");
    assert_eq!(
        body["rejected"][0]["reason"], "duplicate_event_id",
        "{body}"
    );
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/ingest",
        "application/json",
        &event("emb-unsigned", P1),
    );
    assert_eq!(status, 401, "{body}");
    let mut c = child.0.take().expect("running");
    veritrace_testkit::signal(&c, "-TERM");
    let st = c.wait().expect("wait");
    assert!(st.success(), "gateway exited with {st}");

    // Stopped cleanly, the last epoch is sealed and anchored: the proof verifies offline.
    let rows = site.sql("SELECT count(*) AS n FROM events WHERE event_id LIKE 'emb-%'");
    assert_eq!(rows[0]["n"], 3, "{rows}");
    let proof = site.root.join("emb-3.proof.json");
    site.ok(&["proof", "emb-3", "--out", proof.to_str().expect("path")]);
    let out = bin()
        .args(["verify", proof.to_str().expect("path")])
        .arg("--ledger")
        .arg(site.data.join("ledger/local.jsonl"))
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Kills the child by its PID when a test fails before stopping it.
struct Stop(Option<std::process::Child>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The EPCIS 2.0 capture binding on the embedded gateway: `POST /epcis/capture` answers 202
/// with the capture job once the document's events are sealed, the job can be read back,
/// and a request without a recorder or without an EPCIS document captures nothing.
#[test]
fn the_epcis_capture_binding_answers_202_with_its_job_once_the_events_are_sealed() {
    let site = Site::new("off");
    // A schema documents must satisfy (our own small one of the shape; an operator points
    // this at GS1's EPCIS-JSON-Schema.json).
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ingest/tests/data/epcis-shape.schema.json");
    let env = [
        ("VERITRACE__PIPELINE__BATCH_MAX_AGE", "200ms"),
        ("VERITRACE__EPCIS__SCHEMA", schema.to_str().expect("path")),
    ];
    let (_gateway, addr) = start_gateway_with(&site, &["--embedded"], &env);
    let doc = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("processors/tests/data/epcis-hash/epcisDocWithVariousEventTypes.jsonld"),
    )
    .expect("document");
    let ld = "application/ld+json";
    let (status, _, body) = http(&addr, "POST", "/epcis/capture", ld, &doc);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("missing_recorder"))
    );
    let (status, _, body) = http(
        &addr,
        "POST",
        "/epcis/capture?recorder=p1:manufacturer",
        ld,
        b"{\"a\":1}",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("not_an_epcis_document"))
    );
    // One event with a time that is none: the whole document is refused, with where.
    let mut broken: serde_json::Value = serde_json::from_slice(&doc).expect("json");
    broken["epcisBody"]["eventList"][3]["eventTime"] = serde_json::json!("yesterday");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/epcis/capture?recorder=p1:manufacturer",
        ld,
        broken.to_string().as_bytes(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("epcis_schema")),
        "{body}"
    );
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("at /epcisBody/eventList/3/eventTime"), "{msg}");
    assert_eq!(
        site.sql("SELECT count(*) AS n FROM events")[0]["n"],
        0,
        "nothing captured"
    );

    let (status, _, job) = http(
        &addr,
        "POST",
        "/epcis/capture?recorder=p1:manufacturer",
        ld,
        &doc,
    );
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["events"], 13, "{job}");
    assert_eq!(job["success"], true);
    assert_eq!(job["outcome"]["events_accepted"], 10, "{job}");
    let refused = job["outcome"]["rejected"].as_array().expect("rejected");
    assert_eq!(refused.len(), 3, "{job}");
    assert!(
        refused.iter().all(|r| r["reason"] == "epcis_unsupported"),
        "{job}"
    );
    // Answered once sealed: the events are in the log already.
    assert_eq!(site.sql("SELECT count(*) AS n FROM events")[0]["n"], 10);
    let id = job["captureID"].as_str().expect("capture id");
    let (status, _, again) = http(&addr, "GET", &format!("/epcis/capture/{id}"), ld, b"");
    assert_eq!((status, &again), (200, &job));
    let (status, _, _) = http(&addr, "GET", "/epcis/capture/unknown", ld, b"");
    assert_eq!(status, 404);
}
