//! Who sees what: each role against a ground truth computed here from the records
//! themselves (not from the engine's filter), through the HTTP API and Flight SQL in
//! process, with API tokens; sharing grants as signed registry records; refused tokens.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use serde_json::{Value, json};
use tonic::codegen::Service;
use veritrace_anchor::DataDir;
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_processors::signed::{Policy, SignaturePolicy, append_registry};
use veritrace_queries::access::tokens::{self, NewToken};
use veritrace_queries::access::{AuthConfig, Authenticator, Role};
use veritrace_queries::flight::FlightSql;
use veritrace_queries::{QueryEngine, QueryOptions};
use veritrace_verify::registry::Record;
use veritrace_verify::signature::{Alg, Claims, SigningKey, sign_cose};

const GTIN: &str = "09506000134352";

fn lot(n: &str) -> String {
    format!("(01){GTIN}(10){n}")
}

fn serial(n: &str) -> String {
    format!("(01){GTIN}(21){n}")
}

/// One event as the test sees it: who takes part and which codes it is about.
#[derive(Debug, Clone)]
struct Ev {
    id: String,
    party: String,
    counterparty: Option<String>,
    codes: Vec<String>,
    json: Value,
}

fn events() -> Vec<Ev> {
    let mut out = Vec::new();
    let mut t = 0i64;
    let mut ev = |id: &str,
                  ty: &str,
                  party: &str,
                  counterparty: Option<&str>,
                  code: Option<String>,
                  inputs: Vec<String>,
                  outputs: Vec<String>| {
        t += 1;
        let mut j = json!({
            "event_id": id, "event_type": ty,
            "event_time": veritrace_processors::rfc3339_ms(1_750_000_000_000 + t * 1000),
            "participant": {"id": party, "role": "manufacturer"},
        });
        match ty {
            "quality_check" => j["result"] = json!("pass"),
            "telemetry" => {
                j["device_id"] = json!("dev-1");
                j["readings"] = json!({"temp_c": 21.5});
            }
            _ => {}
        }
        if let Some(c) = counterparty {
            j["counterparty"] = json!({"id": c, "role": "customer"});
        }
        if let Some(c) = &code {
            j["trace_code"] = json!(c);
        }
        if !inputs.is_empty() {
            j["inputs"] = json!(inputs);
        }
        if !outputs.is_empty() {
            j["outputs"] = json!(outputs);
        }
        let codes = code.into_iter().chain(inputs).chain(outputs).collect();
        out.push(Ev {
            id: id.into(),
            party: party.into(),
            counterparty: counterparty.map(str::to_owned),
            codes,
            json: j,
        });
    };
    for i in 0..4 {
        let l = lot(&format!("L{i}"));
        ev(
            &format!("prod:{i}"),
            "production",
            "sup-1",
            None,
            Some(l.clone()),
            vec![],
            vec![],
        );
        ev(
            &format!("qc:{i}"),
            "quality_check",
            "plant-1",
            None,
            Some(l),
            vec![],
            vec![],
        );
    }
    ev(
        "ship:0",
        "transport",
        "log-1",
        Some("plant-1"),
        Some(lot("L0")),
        vec![],
        vec![],
    );
    ev(
        "tf:0",
        "transformation",
        "plant-1",
        None,
        None,
        vec![lot("L0"), lot("L1")],
        vec![lot("P0")],
    );
    ev(
        "tf:1",
        "transformation",
        "plant-1",
        None,
        None,
        vec![lot("L2"), lot("L3")],
        vec![lot("P1")],
    );
    ev(
        "asm:0",
        "assembly",
        "plant-1",
        None,
        Some(serial("B0")),
        vec![lot("P0"), lot("P1")],
        vec![],
    );
    ev(
        "sale:0",
        "sale",
        "shop-1",
        Some("cust-0"),
        Some(serial("B0")),
        vec![],
        vec![],
    );
    for d in 0..5 {
        ev(
            &format!("tel:{d}"),
            "telemetry",
            "plant-1",
            None,
            None,
            vec![],
            vec![],
        );
    }
    out
}

/// What `p` may see, from the records: the events it takes part in, and those about the
/// codes a grantor shared with it in which the grantor takes part.
fn truth(evs: &[Ev], p: &str, grants: &[(&str, &str, Vec<String>)]) -> BTreeSet<String> {
    let takes_part = |e: &Ev, who: &str| e.party == who || e.counterparty.as_deref() == Some(who);
    evs.iter()
        .filter(|e| {
            takes_part(e, p)
                || grants.iter().any(|(from, to, codes)| {
                    *to == p && takes_part(e, from) && e.codes.iter().any(|c| codes.contains(c))
                })
        })
        .map(|e| e.id.clone())
        .collect()
}

struct World {
    _tmp: tempfile::TempDir,
    dir: DataDir,
    root: SigningKey,
    admins: BTreeMap<&'static str, SigningKey>,
    engine: Arc<QueryEngine>,
    tokens_file: std::path::PathBuf,
}

fn registry(w_dir: &DataDir, root: &SigningKey, signer: &SigningKey, r: &Record) {
    let claims = Claims {
        iss: None,
        sub: None,
        iat: Some(r.at()),
    };
    let env = sign_cose(
        signer,
        &signer.public().key_id(),
        &claims,
        &serde_json::to_vec(r).expect("json"),
    );
    let policy = SignaturePolicy {
        default: Policy::Enforce,
        ..SignaturePolicy::default()
    };
    let (out, _) = append_registry(
        w_dir,
        &root.public(),
        &policy,
        BatchPolicy::default(),
        &[env],
    )
    .expect("registry");
    assert!(
        matches!(out.first(), Some(veritrace_processors::Outcome::Accepted)),
        "{r:?}: {out:?}"
    );
}

async fn world() -> World {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let root = SigningKey::from_bytes(Alg::EdDsa, &[1; 32]).expect("root");
    let mut admins = BTreeMap::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for (n, p) in ["sup-1", "plant-1", "shop-1", "log-1"]
        .into_iter()
        .enumerate()
    {
        let admin = SigningKey::from_bytes(Alg::EdDsa, &[10 + n as u8; 32]).expect("admin");
        registry(
            &dir,
            &root,
            &root,
            &Record::ParticipantRegistered {
                participant_id: p.into(),
                name: p.into(),
                role: "manufacturer".into(),
                admin_key: admin.public().to_text(),
                at: now - 60,
            },
        );
        admins.insert(p, admin);
    }
    let records: Vec<(Option<Vec<u8>>, Vec<u8>)> = events()
        .into_iter()
        .map(|e| {
            let key = e.codes.first().cloned().unwrap_or_else(|| e.id.clone());
            (Some(key.into_bytes()), e.json.to_string().into_bytes())
        })
        .chain([(None, b"{not json".to_vec())])
        .collect();
    let cfg = RuntimeConfig {
        stream: "erp".into(),
        partitions: 2,
        policy: BatchPolicy {
            max_records: 8,
            max_age: Duration::from_secs(3600),
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_secs(3600),
        ..RuntimeConfig::default()
    };
    runtime::run(&dir, &cfg, records, Arc::default()).expect("ingest");
    let engine = QueryEngine::open_with(
        tmp.path(),
        QueryOptions {
            registry_root: Some(root.public()),
            limits: veritrace_queries::QueryLimits {
                queue_timeout: Duration::from_secs(1),
                ..veritrace_queries::QueryLimits::default()
            },
            ..QueryOptions::default()
        },
    )
    .await
    .expect("engine");
    let tokens_file = tokens::default_path(tmp.path());
    World {
        dir,
        root,
        admins,
        engine: Arc::new(engine),
        tokens_file,
        _tmp: tmp,
    }
}

impl World {
    fn token(&self, role: Role, participant: Option<&str>) -> String {
        tokens::create(
            &self.tokens_file,
            &NewToken {
                role,
                participant: participant.map(str::to_owned),
                expires_in: None,
                name: "test".into(),
                limits: Default::default(),
            },
        )
        .expect("token")
        .0
    }

    async fn auth(&self) -> Arc<Authenticator> {
        Arc::new(
            Authenticator::new(AuthConfig {
                tokens_file: self.tokens_file.clone(),
                oidc: None,
                anonymous: None,
                role_limits: Default::default(),
            })
            .await
            .expect("auth"),
        )
    }

    async fn app(&self) -> Router {
        veritrace_queries::http::router_with_auth(
            self.engine.clone(),
            prometheus::Registry::new(),
            self.auth().await,
            None,
        )
        .expect("router")
    }

    fn grant(&self, id: &str, from: &'static str, to: &str, codes: &[String]) {
        self.grant_until(id, from, to, codes, None);
    }

    fn grant_until(
        &self,
        id: &str,
        from: &'static str,
        to: &str,
        codes: &[String],
        until: Option<i64>,
    ) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        registry(
            &self.dir,
            &self.root,
            &self.admins[from],
            &Record::VisibilityGranted {
                grant_id: id.into(),
                grantor: from.into(),
                grantee: to.into(),
                trace_codes: codes.to_vec(),
                reason: "recall".into(),
                at: now,
                until,
            },
        );
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request");
    let mut app = app.clone();
    let resp = match app.call(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

async fn post_sql(app: &Router, token: Option<&str>, sql: impl AsRef<str>) -> (StatusCode, Value) {
    call(
        app,
        "POST",
        "/v1/sql",
        token,
        Some(json!({"sql": sql.as_ref()})),
    )
    .await
}

async fn sql_ids(app: &Router, token: &str, sql: &str) -> (StatusCode, BTreeSet<String>, Value) {
    let (s, v) = call(
        app,
        "POST",
        "/v1/sql",
        Some(token),
        Some(json!({"sql": sql})),
    )
    .await;
    let ids = v["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (s, ids, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

const USER_EVENTS: &str = "SELECT event_id FROM events WHERE event_type <> 'registry'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_sees_exactly_its_ground_truth() {
    let w = world().await;
    let evs = events();
    let all: BTreeSet<String> = evs.iter().map(|e| e.id.clone()).collect();
    let app = w.app().await;

    for role in [Role::Admin, Role::Analyst, Role::Auditor] {
        let t = w.token(role, None);
        let (s, ids, v) = sql_ids(&app, &t, USER_EVENTS).await;
        assert_eq!(s, StatusCode::OK, "{role}: {v}");
        assert_eq!(ids, all, "{role} sees every event");
        let (s, v) = post_sql(&app, Some(&t), "SELECT count(*) AS n FROM rejected").await;
        assert_eq!(
            (s, v["rows"][0]["n"].as_i64()),
            (StatusCode::OK, Some(1)),
            "{role}: {v}"
        );
    }
    for role in [Role::Operator, Role::Public] {
        let t = w.token(role, None);
        let (s, v) = post_sql(&app, Some(&t), USER_EVENTS).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{role}: {v}"
        );
        let (s, _) = call(&app, "GET", "/v1/events/prod:0/proof", Some(&t), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{role}");
        let (s, _) = call(&app, "GET", "/epcis/events", Some(&t), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{role}");
        let (s, _) = call(&app, "GET", "/healthz", Some(&t), None).await;
        assert_eq!(s, StatusCode::OK, "{role}");
    }
    let t = w.token(Role::Operator, None);
    assert_eq!(
        call(&app, "GET", "/metrics", Some(&t), None).await.0,
        StatusCode::OK
    );
    let t = w.token(Role::Public, None);
    assert_eq!(
        call(&app, "GET", "/metrics", Some(&t), None).await.0,
        StatusCode::FORBIDDEN
    );

    for p in ["sup-1", "plant-1", "shop-1", "log-1", "cust-0", "nobody"] {
        let t = w.token(Role::Participant, Some(p));
        let expected = truth(&evs, p, &[]);
        let (s, ids, v) = sql_ids(&app, &t, USER_EVENTS).await;
        assert_eq!(s, StatusCode::OK, "{p}: {v}");
        assert_eq!(ids, expected, "{p} sees exactly its events");
        // Counts by type (answered from Parquet dictionaries when nothing filters) obey too.
        let (_, v) = call(
            &app,
            "POST",
            "/v1/sql",
            Some(&t),
            Some(
                json!({"sql": "SELECT event_type, count(*) AS n FROM events GROUP BY event_type"}),
            ),
        )
        .await;
        let counted: i64 = v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["event_type"] != "registry")
            .map(|r| r["n"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(counted as usize, expected.len(), "{p}: {v}");
        // Edges only of visible events; no rejected rows.
        let (_, v) = post_sql(&app, Some(&t), "SELECT DISTINCT event_id FROM edges").await;
        for r in v["rows"].as_array().expect("rows") {
            let id = r["event_id"].as_str().unwrap_or("");
            assert!(expected.contains(id), "{p} sees edge of {id}");
        }
        let (_, v) = post_sql(&app, Some(&t), "SELECT count(*) AS n FROM rejected").await;
        assert_eq!(v["rows"][0]["n"].as_i64(), Some(0), "{p}: {v}");
        // The EPCIS query binding answers from the same scope: only its events, in their
        // EPCIS form (telemetry without a trace code has none).
        let (s, v) = call(&app, "GET", "/epcis/events?perPage=1000", Some(&t), None).await;
        assert_eq!(s, StatusCode::OK, "{p}: {v}");
        let epcis: BTreeSet<String> = v["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
            .as_array()
            .expect("eventList")
            .iter()
            .filter_map(|e| e["vt:proof"]["vt:eventId"].as_str().map(str::to_owned))
            .collect();
        assert!(epcis.is_subset(&expected), "{p}: {epcis:?}");
        assert_eq!(epcis.is_empty(), expected.is_empty(), "{p}: {epcis:?}");
        // Lookups and proofs: visible ones answer, the others are not found.
        for e in &evs {
            let (s, v) = call(
                &app,
                "GET",
                &format!("/v1/events/{}/proof", e.id),
                Some(&t),
                None,
            )
            .await;
            let want = if expected.contains(&e.id) {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(s, want, "{p}: proof of {}: {v}", e.id);
        }
        // A query certificate in the same scope: exactly the visible events, each proven.
        let (s, v) = call(
            &app,
            "POST",
            "/v1/sql",
            Some(&t),
            Some(json!({"sql": "SELECT event_id, event_type FROM events WHERE event_type <> 'registry' ORDER BY event_id", "certificate": true})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{p}: {v}");
        let cert = veritrace_verify::rows::RowsCertificate::from_json(
            v["certificate"].to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(cert.query.scope, format!("participant:{p}"));
        let proven: BTreeSet<String> = cert
            .events
            .iter()
            .filter_map(|e| e.event["event_id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(proven, expected, "{p}: certificate");
        assert_eq!(v["rows"].as_array().map(Vec::len), Some(expected.len()));
        let report = veritrace_verify::rows::verify_rows(&cert, &Default::default())
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(report.valid(), "{p}: {:?}", report.problems);
        // A join cannot reach around the filter.
        let (_, ids, _) = sql_ids(
            &app,
            &t,
            "SELECT e.event_id FROM edges d JOIN events e ON d.event_id = e.event_id",
        )
        .await;
        assert!(ids.is_subset(&expected), "{p}: join");
        // Nor can information_schema name another table.
        let (_, v) = post_sql(&app, Some(&t), "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name").await;
        let names: Vec<&str> = v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["table_name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "batches",
                "clone_suspects",
                "code_lifecycle",
                "edges",
                "epochs",
                "events",
                "events_as_recorded",
                "rejected"
            ],
            "{p}: {v}"
        );
        // The log as recorded (with events declared in error) is scoped the same way.
        let (_, ids, _) = sql_ids(
            &app,
            &t,
            "SELECT event_id FROM events_as_recorded WHERE event_type <> 'registry'",
        )
        .await;
        assert_eq!(ids, expected, "{p}: as recorded");
    }

    // Sharing: the plant shares the bike and one part lot with the shop (a recall).
    let shared = vec![serial("B0"), lot("P0")];
    w.grant("recall-1", "plant-1", "shop-1", &shared);
    w.engine.refresh().await.expect("refresh");
    let grants = [("plant-1", "shop-1", shared.clone())];
    let shop = w.token(Role::Participant, Some("shop-1"));
    let expected = truth(&evs, "shop-1", &grants);
    assert!(expected.contains("asm:0") && expected.contains("tf:0") && !expected.contains("tf:1"));
    let (_, ids, _) = sql_ids(&app, &shop, USER_EVENTS).await;
    assert_eq!(ids, expected, "the grant widens the shop's view exactly");

    // The shop's backward trace of the bike: what the grant reaches is shown, the rest is
    // counted per depth, never named.
    let uri = format!("/v1/trace/{}?direction=backward", urlencode(&serial("B0")));
    let (s, v) = call(&app, "GET", &uri, Some(&shop), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let nodes: BTreeSet<&str> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["code"].as_str())
        .collect();
    let want: BTreeSet<String> = [serial("B0"), lot("P0"), lot("P1"), lot("L0"), lot("L1")].into();
    assert_eq!(nodes, want.iter().map(String::as_str).collect(), "{v}");
    assert_eq!(v["hidden"], json!([{"depth": 2, "count": 2}]), "{v}");
    let text = v.to_string();
    assert!(
        !text.contains(&lot("L2")) && !text.contains("tf:1"),
        "hidden nodes leak: {text}"
    );
    let trace_ids: BTreeSet<String> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    assert!(trace_ids.is_subset(&expected), "{trace_ids:?}");
    assert!(
        trace_ids.contains("asm:0") && trace_ids.contains("sale:0"),
        "{trace_ids:?}"
    );
    // The analyst's trace of the same bike hides nothing.
    let analyst = w.token(Role::Analyst, None);
    let (_, v) = call(&app, "GET", &uri, Some(&analyst), None).await;
    assert!(
        v.get("hidden")
            .is_none_or(|h| h.as_array().is_some_and(Vec::is_empty)),
        "{v}"
    );
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(7));
    // The SQL trace function obeys the same filter.
    let (_, ids, _) = sql_ids(
        &app,
        &shop,
        &format!("SELECT event_id FROM trace_backward('{}')", serial("B0")),
    )
    .await;
    assert!(ids.is_subset(&expected) && ids.contains("asm:0"), "{ids:?}");

    // Flight SQL: the same rule, with the token in the authorization header.
    let svc = FlightSql::with_auth(w.engine.clone(), w.auth().await);
    let ids = flight_ids(&svc, Some(&shop), USER_EVENTS)
        .await
        .expect("flight");
    assert_eq!(ids, expected);
    let e = flight_ids(&svc, None, USER_EVENTS)
        .await
        .expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let op = w.token(Role::Operator, None);
    let e = flight_ids(&svc, Some(&op), USER_EVENTS)
        .await
        .expect_err("operator");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    // The grant ends: the view narrows again.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    registry(
        &w.dir,
        &w.root,
        &w.admins["plant-1"],
        &Record::VisibilityRevoked {
            grant_id: "recall-1".into(),
            at: now,
        },
    );
    w.engine.refresh().await.expect("refresh");
    let (_, ids, _) = sql_ids(&app, &shop, USER_EVENTS).await;
    assert_eq!(ids, truth(&evs, "shop-1", &[]));

    // A grant with an end (an audit window): in force until then, then over by itself,
    // with no record written at its end.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    w.grant_until("audit-1", "plant-1", "shop-1", &shared, Some(now + 3));
    w.engine.refresh().await.expect("refresh");
    let (_, ids, _) = sql_ids(&app, &shop, USER_EVENTS).await;
    assert_eq!(ids, expected, "in force before its end");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (_, ids, _) = sql_ids(&app, &shop, USER_EVENTS).await;
    assert_eq!(ids, truth(&evs, "shop-1", &[]), "over after its end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_get_401_with_their_reason_and_healthz_needs_none() {
    let w = world().await;
    let app = w.app().await;
    let good = w.token(Role::Analyst, None);
    let (s, v) = post_sql(&app, None, "SELECT 1").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "missing_credentials"),
        "{v}"
    );
    let (s, v) = post_sql(&app, Some("vtk_123456789012_nope"), "SELECT 1").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_token"),
        "{v}"
    );
    let (s, v) = call(
        &app,
        "GET",
        "/v1/events/prod:0",
        Some("eyJhbGciOiJub25lIn0.e30."),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_token"),
        "no identity provider: {v}"
    );
    let expired = tokens::create(
        &w.tokens_file,
        &NewToken {
            role: Role::Admin,
            participant: None,
            expires_in: Some(Duration::ZERO),
            name: String::new(),
            limits: Default::default(),
        },
    )
    .expect("token")
    .0;
    let (s, v) = call(&app, "GET", "/v1/events/prod:0", Some(&expired), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "token_expired"),
        "{v}"
    );
    let (s, v) = call(&app, "GET", "/v1/events/prod:0", Some(&good), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = good.split('_').nth(1).expect("id");
    tokens::revoke(&w.tokens_file, id).expect("revoke");
    let (s, v) = call(&app, "GET", "/v1/events/prod:0", Some(&good), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "token_revoked"),
        "{v}"
    );
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn flight_ids(
    svc: &FlightSql,
    token: Option<&str>,
    sql: &str,
) -> Result<BTreeSet<String>, tonic::Status> {
    let t = TicketStatementQuery {
        statement_handle: sql.as_bytes().to_vec().into(),
    };
    let mut req = tonic::Request::new(Ticket::new(t.as_any().encode_to_vec()));
    if let Some(tok) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {tok}").parse().expect("header"),
        );
    }
    let stream = svc.do_get_statement(t, req).await?.into_inner();
    let mut batches =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    let mut ids = BTreeSet::new();
    while let Some(b) = batches.next().await {
        let b = b.map_err(|e| tonic::Status::internal(e.to_string()))?;
        let col = b.column_by_name("event_id").expect("event_id");
        let a = col.as_string::<i32>();
        for i in 0..a.len() {
            ids.insert(a.value(i).to_owned());
        }
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identitys_queries_wait_in_their_own_line_with_their_own_deadline() {
    use veritrace_queries::access::Limits;
    let w = world().await;
    let limited = |p: &str, limits: Limits| {
        tokens::create(
            &w.tokens_file,
            &NewToken {
                role: Role::Participant,
                participant: Some(p.into()),
                expires_in: None,
                name: String::new(),
                limits,
            },
        )
        .expect("token")
        .0
    };
    let one = limited(
        "plant-1",
        Limits {
            max_concurrent: Some(1),
            ..Limits::default()
        },
    );
    let other = w.token(Role::Participant, Some("shop-1"));
    // HTTP and Flight SQL share one authenticator, so one line per identity, as in serve.
    let auth = w.auth().await;
    let svc = FlightSql::with_auth(w.engine.clone(), auth.clone());
    // A stream nobody reads holds its query's slot.
    let t = TicketStatementQuery {
        statement_handle: b"SELECT value FROM generate_series(1, 100000000)"
            .to_vec()
            .into(),
    };
    let mut req = tonic::Request::new(Ticket::new(t.as_any().encode_to_vec()));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {one}").parse().expect("header"),
    );
    let held = svc.do_get_statement(t, req).await.expect("held stream");

    let app = veritrace_queries::http::router_with_auth(
        w.engine.clone(),
        prometheus::Registry::new(),
        auth,
        None,
    )
    .expect("router");
    let started = std::time::Instant::now();
    let (s, v) = post_sql(&app, Some(&one), "SELECT 1 AS x").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_queries"),
        "{v}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited in line first"
    );
    // Another participant, and the health check, are not held up by it.
    let (s, v) = post_sql(&app, Some(&other), "SELECT 1 AS x").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        call(&app, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    drop(held);
    // Once the stream is gone its slot is free again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _) = post_sql(&app, Some(&one), "SELECT 1 AS x").await;
        if s == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back: {s}"
        );
    }

    // A token's own deadline, shorter than the server's minute.
    let quick = limited(
        "plant-1",
        Limits {
            timeout: Some(Duration::from_secs(1)),
            ..Limits::default()
        },
    );
    let started = std::time::Instant::now();
    let (s, v) = post_sql(
        &app,
        Some(&quick),
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::GATEWAY_TIMEOUT, "query_timeout"),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // A token's own memory pool: a join whose build side cannot spill fails within it,
    // while the same join runs for a token without one.
    let small = limited(
        "plant-1",
        Limits {
            memory_limit: Some(1 << 20),
            ..Limits::default()
        },
    );
    let join = "SELECT count(*) AS n FROM generate_series(1, 400000) a JOIN generate_series(1, 400000) b ON a.value = b.value";
    let (s, v) = post_sql(&app, Some(&small), join).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "query_memory_exceeded"),
        "{v}"
    );
    let (s, v) = post_sql(&app, Some(&other), join).await;
    assert_eq!(
        (s, v["rows"][0]["n"].as_i64()),
        (StatusCode::OK, Some(400000)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_an_audit_entry_sealed_anchored_and_proven_like_any_event() {
    use veritrace_queries::audit::AuditLog;
    let w = world().await;
    let registry = prometheus::Registry::new();
    let audit = Arc::new(
        AuditLog::start(
            &w.dir,
            veritrace_processors::embedded::EmbeddedConfig {
                stream: String::new(),
                policy: BatchPolicy {
                    max_records: 1000,
                    max_age: Duration::from_millis(200),
                    ..BatchPolicy::default()
                },
                epoch_interval: Duration::from_millis(500),
                backend: veritrace_anchor::Backend::Local,
                signatures: Default::default(),
                queue: 64,
                holder: "test".into(),
                kind: Default::default(),
            },
            "node-a:8080".into(),
            &registry,
        )
        .expect("audit log"),
    );
    let app = veritrace_queries::http::router_with_auth(
        w.engine.clone(),
        registry,
        w.auth().await,
        Some(audit.clone()),
    )
    .expect("router");
    let shop = w.token(Role::Participant, Some("shop-1"));
    let admin = w.token(Role::Admin, None);
    let auditor = w.token(Role::Auditor, None);
    let analyst = w.token(Role::Analyst, None);
    let sql = "SELECT event_id FROM events WHERE event_type = 'sale'";
    // What the client received, to compare with the entry's digest.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/sql")
        .header(header::AUTHORIZATION, format!("Bearer {shop}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"sql": sql}).to_string()))
        .expect("request");
    let mut svc = app.clone();
    let resp = match svc.call(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let (s, _) = call(&app, "GET", "/v1/events/prod:0/proof", Some(&shop), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = post_sql(&app, Some("vtk_000000000000_bad"), "SELECT 1").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    drop((app, svc));
    Arc::try_unwrap(audit)
        .expect("the only owner")
        .stop()
        .expect("sealed");
    w.engine.refresh().await.expect("refresh");

    let app = w.app().await;
    let (s, v) = post_sql(
        &app,
        Some(&auditor),
        "SELECT entry_id, who, route, outcome, node, entry FROM audit ORDER BY at",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows = v["rows"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 3, "three requests, /healthz not audited: {v}");
    let entry = |i: usize| -> Value {
        serde_json::from_str(rows[i]["entry"].as_str().expect("entry")).expect("json")
    };
    let first = entry(0);
    assert_eq!(rows[0]["route"], "POST /v1/sql");
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["node"], "node-a:8080");
    assert_eq!(first["role"], "participant");
    assert_eq!(first["participant"], "shop-1");
    assert_eq!(first["sql"], sql);
    assert_eq!(first["rows"], 1);
    assert_eq!(
        first["result_sha256"],
        digest.as_str(),
        "the digest of what the client got"
    );
    assert_eq!(rows[1]["outcome"], "not_found");
    assert_eq!(entry(1)["target"], "/v1/events/prod:0/proof");
    assert_eq!(rows[2]["outcome"], "invalid_token");
    assert_eq!(rows[2]["who"], "-");

    // Proven like any event, anchored on the local ledger.
    let id = rows[0]["entry_id"].as_str().expect("id");
    let (s, bundle) = call(
        &app,
        "GET",
        &format!("/v1/events/{id}/proof"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{bundle}");
    let report = veritrace_verify::verify::verify_bundle_json(
        bundle.to_string().as_bytes(),
        &veritrace_verify::verify::Options::default(),
    )
    .expect("the audit entry's proof verifies");
    assert_eq!(report.status, veritrace_verify::bundle::Status::Anchored);

    // Analysts and participants read neither the audit table nor its entries.
    let (s, v) = post_sql(&app, Some(&analyst), "SELECT count(*) FROM audit").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = post_sql(
        &app,
        Some(&analyst),
        "SELECT count(*) AS n FROM events WHERE event_type = 'audit'",
    )
    .await;
    assert_eq!(v["rows"][0]["n"], 0, "{v}");
    let (s, _) = call(
        &app,
        "GET",
        &format!("/v1/events/{id}"),
        Some(&analyst),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, "GET", &format!("/v1/events/{id}"), Some(&shop), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
