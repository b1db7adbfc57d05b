//! The HTTP API (axum). Every error is JSON: `{"error": {"code": "...", "message": "..."}}`.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/sql` | body `{"sql": "...", "max_rows": 10000}`: rows as JSON objects |
//! | `GET /v1/events/{id}` | the canonical event and where it is stored |
//! | `GET /v1/events/{id}/proof?disclose=all\|FIELD,...` | the proof bundle (`veritrace verify` checks it), disclosing private fields if asked |
//! | `GET /v1/trace/{code}?direction=backward\|forward&depth=N` | the trace: nodes, edge events, cycles, and every event (code percent-encoded) |
//! | `GET /epcis/events?EQ_bizStep=...&MATCH_anyEPC=...&perPage=N&nextPageToken=T` | the EPCIS 2.0 REST query binding's common queries ([`crate::epcis`]): an `EPCISQueryDocument`, the next page in a `Link` header |
//! | `GET /01/{gtin}/21/{serial}?8030=SIG` | the GS1 Digital Link resolver ([`crate::resolver`]): authenticity, lifecycle, a public-safe history and proof status; HTML, or JSON for `Accept: application/json`; open to everyone |
//! | `GET /livez` | liveness: the runtime answers (no credentials needed) |
//! | `GET /readyz`, `GET /healthz` | readiness and data directory summary; 503 while files are damaged (no credentials needed) |
//! | `GET /metrics` | Prometheus exposition |
//!
//! With an [`Authenticator`] ([`router_with_auth`]) every route but the probes needs
//! `Authorization: Bearer <token>` (401 with a reason code otherwise) and a role that may
//! use it (403 `forbidden`); what the rows show is the identity's scope
//! ([`crate::visibility`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};
use serde::Deserialize;
use serde_json::json;
use veritrace_metrics::error_response;

use crate::access::{Authenticator, Capability, Identity, Role};
use crate::audit::{AuditLog, Facts};
use crate::{Error, Format, QueryEngine, output};

/// Metric: HTTP requests by route and status class ([`veritrace_metrics::HTTP_REQUESTS`]).
pub const HTTP_REQUESTS_TOTAL: &str = veritrace_metrics::HTTP_REQUESTS.name;
/// Metric: HTTP request latency by route ([`veritrace_metrics::HTTP_REQUEST_SECONDS`]).
pub const HTTP_REQUEST_SECONDS: &str = veritrace_metrics::HTTP_REQUEST_SECONDS.name;

/// Default and largest row count returned by `POST /v1/sql`.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

#[derive(Clone)]
struct AppState {
    engine: Arc<QueryEngine>,
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    auth: Option<Arc<Authenticator>>,
    audit: Option<Arc<AuditLog>>,
    damaged: IntGauge,
}

/// Builds the router without authentication: every caller is an anonymous admin (for
/// embedding and loopback development). `registry` is exposed on `/metrics`; the router
/// adds its own metrics to it.
pub fn router(engine: Arc<QueryEngine>, registry: Registry) -> Result<Router, prometheus::Error> {
    build(engine, registry, None, None)
}

/// Builds the router with `auth` deciding who each request is, and every request but
/// `/healthz` written to `audit` when given ([`crate::audit`]).
pub fn router_with_auth(
    engine: Arc<QueryEngine>,
    registry: Registry,
    auth: Arc<Authenticator>,
    audit: Option<Arc<AuditLog>>,
) -> Result<Router, prometheus::Error> {
    build(engine, registry, Some(auth), audit)
}

fn build(
    engine: Arc<QueryEngine>,
    registry: Registry,
    auth: Option<Arc<Authenticator>>,
    audit: Option<Arc<AuditLog>>,
) -> Result<Router, prometheus::Error> {
    let requests = veritrace_metrics::counter_vec(&registry, &veritrace_metrics::HTTP_REQUESTS)?;
    let latency = veritrace_metrics::histogram_vec(
        &registry,
        &veritrace_metrics::HTTP_REQUEST_SECONDS,
        None,
    )?;
    engine.register_metrics(&registry)?;
    let damaged = veritrace_metrics::gauge(&registry, &veritrace_metrics::DAMAGED_FILES)?;
    let state = AppState {
        engine,
        registry,
        requests,
        latency,
        auth,
        audit,
        damaged,
    };
    Ok(Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/events/{id}", get(event))
        .route("/v1/events/{id}/proof", get(proof))
        .route("/v1/events/{id}/receipt", get(receipt))
        .route("/v1/trace/{code}", get(trace))
        .route("/v1/log/checkpoint", get(log_checkpoint))
        .route("/v1/log/consistency", get(log_consistency))
        .route("/v1/log/anchor", get(log_anchor))
        .route("/v1/log/tile/{*path}", get(log_tile))
        .route("/epcis/events", get(epcis_events))
        .route("/01/{gtin}/21/{serial}", get(resolve))
        .route("/verify", get(verify_page))
        .route("/livez", get(livez))
        .route("/readyz", get(healthz))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state))
}

/// Errors produced before a handler runs (axum's extractors and router: a bad query string,
/// a path that is not UTF-8, a wrong method, a body over the limit) become the same JSON
/// error shape as the handlers' own.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // A handler's own JSON error, or a page for people (the resolver's "not genuine"),
    // stays as it is.
    let own = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || own {
        return resp;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_client_error() => "bad_request",
        _ => "internal_error",
    };
    let retry = resp.headers().get(header::RETRY_AFTER).cloned();
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned(),
    };
    let mut out = error_response(status, code, text);
    if let Some(r) = retry {
        out.headers_mut().insert(header::RETRY_AFTER, r);
    }
    out
}

/// Largest response body the audit log digests (larger answers are refused, never sent
/// undigested; the SQL route's row cap keeps answers far below it).
const MAX_AUDITED_BODY: usize = 256 << 20;

/// Puts the caller's [`Identity`] into the request (every route but `/healthz`) and writes
/// the request to the audit log.
async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    // Probes, and the resolver: consumers scan codes without credentials (it answers only
    // what is public-safe).
    // The verifier page too: it holds no data, and verifies in the browser.
    if OPEN_ROUTES.contains(&req.uri().path())
        || req.uri().path().starts_with("/01/")
        || req.uri().path() == "/verify"
    {
        return next.run(req).await;
    }
    let started = (veritrace_processors::now_ms(), Instant::now());
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let route = format!(
        "{} {}",
        req.method(),
        template.as_deref().unwrap_or("(no route)")
    );
    let target = match &template {
        Some(t) if !t.contains('{') => None,
        _ => Some(req.uri().path().chars().take(1024).collect::<String>()),
    };
    let identity = match &s.auth {
        None => Ok(Identity::anonymous(Role::Admin)),
        Some(a) => {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or("\u{fffd}"));
            a.authenticate(header).await
        }
    };
    let (identity, resp) = match identity {
        Ok(i) => {
            req.extensions_mut().insert(i.clone());
            (Ok(i), next.run(req).await)
        }
        Err(e) => (Err(()), e.into_response()),
    };
    let Some(audit) = &s.audit else {
        return resp;
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_AUDITED_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return Error::Internal(format!(
                "the answer could not be read for the audit log: {e}"
            ))
            .into_response();
        }
    };
    let status = parts.status;
    let outcome = if status.is_success() {
        "ok".to_owned()
    } else {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_else(|| status.as_str().to_owned())
    };
    let mut facts = parts
        .extensions
        .remove::<crate::audit::Facts>()
        .unwrap_or_default();
    facts.target = facts.target.or(target);
    let recorded = audit
        .record(
            identity.as_ref().map_err(|_| ()),
            "http",
            route,
            facts,
            u32::from(status.as_u16()),
            outcome,
            status.is_success().then_some(&bytes[..]),
            started,
        )
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "a request was refused: its audit entry could not be written");
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!(
                "the request was not answered because its audit entry could not be written: {e}"
            ),
        );
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The request's identity, checked for `what`, and an engine of its scope.
async fn engine_for(s: &AppState, id: &Identity, what: Capability) -> Result<QueryEngine, Error> {
    id.require(what)?;
    let quota = s.auth.as_ref().and_then(|a| a.quota(id));
    Ok(s.engine.scoped(&id.scope()).await?.with_quota(quota))
}

async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    // Label by route template, never by the raw path (unbounded event ids).
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    s.latency
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    s.requests
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    resp
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match self.code() {
            "query_memory_exceeded" => StatusCode::UNPROCESSABLE_ENTITY,
            "query_timeout" => StatusCode::GATEWAY_TIMEOUT,
            "server_busy" => StatusCode::SERVICE_UNAVAILABLE,
            "too_many_queries" => StatusCode::TOO_MANY_REQUESTS,
            "data_damaged" => StatusCode::INTERNAL_SERVER_ERROR,
            "unavailable" => StatusCode::NOT_IMPLEMENTED,
            _ => match &self {
                Error::Sql(_) | Error::BadRequest(_) | Error::TooComplex(_) => {
                    StatusCode::BAD_REQUEST
                }
                Error::NotFound { .. } => StatusCode::NOT_FOUND,
                Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
                Error::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = match self.evidence() {
            // Damage and inconsistencies carry what was found where, digests included.
            Some(evidence) => (
                status,
                Json(json!({"error": {
                    "code": self.code(),
                    "message": self.message(),
                    "evidence": evidence,
                }})),
            )
                .into_response(),
            None => error_response(status, self.code(), self.message()),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"veritrace\""),
            );
        }
        resp
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceQuery {
    direction: String,
    #[serde(default)]
    depth: Option<u32>,
}

async fn trace(
    State(s): State<AppState>,
    Extension(id): Extension<Identity>,
    Path(code): Path<String>,
    axum::extract::Query(q): axum::extract::Query<TraceQuery>,
) -> Result<Response, Error> {
    let direction: crate::trace::Direction = q.direction.parse()?;
    let engine = engine_for(&s, &id, Capability::Rows).await?;
    let (walk, batches) = engine.trace(&code, direction, q.depth).await?;
    let rows = crate::trace::project(&batches, &crate::trace::SUMMARY_COLUMNS)?;
    let events: serde_json::Value = serde_json::from_slice(&output::encode(&rows, Format::Json)?)
        .map_err(|e| Error::Output(e.to_string()))?;
    Ok(Json(json!({
        "root": walk.root,
        "direction": walk.direction,
        "nodes": walk.nodes,
        "edge_events": walk.edge_events,
        "cycles": walk.cycles,
        "depth_limited": walk.depth_limited,
        "hidden": walk.hidden,
        "events": events,
    }))
    .into_response())
    .map(|mut r| {
        r.extensions_mut().insert(Facts {
            rows: Some(rows.iter().map(|b| b.num_rows() as u64).sum()),
            ..Facts::default()
        });
        r
    })
}

/// `GET /01/{gtin}/21/{serial}`: the resolver's answer about one code.
async fn resolve(
    State(s): State<AppState>,
    Path((gtin, serial)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Error> {
    let code = veritrace_verify::digsig::Code::new(&gtin, &serial, q.get("8030").cloned())
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let keys = s.engine.brand_keys.clone();
    let status = s.engine.code_status(&code, &keys).await?;
    let found = status.events > 0 || status.signature == "valid";
    let http = if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    Ok(if json {
        (http, Json(status)).into_response()
    } else {
        (
            http,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::resolver::html(&status),
        )
            .into_response()
    })
}

/// `GET /epcis/events`: one page of EPCIS events matching the query parameters.
async fn epcis_events(
    State(s): State<AppState>,
    Extension(id): Extension<Identity>,
    axum::extract::Query(pairs): axum::extract::Query<Vec<(String, String)>>,
) -> Result<Response, Error> {
    let q = crate::epcis::EventsQuery::parse(&pairs)?;
    let engine = engine_for(&s, &id, Capability::Rows).await?;
    let page = crate::epcis::query_events(&engine, &q).await?;
    let created = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let n = page.events.len() as u64;
    let doc = veritrace_processors::epcis::export::query_document(
        page.events,
        "SimpleEventQuery",
        &created,
    );
    let mut resp = match &page.next_page_token {
        Some(t) => {
            // The same query, from where this page ended (EPCIS 2.0 REST pagination).
            let pct = |s: &str| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            let next: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| k != "nextPageToken")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("nextPageToken", t.as_str())])
                .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
                .collect();
            let link = format!("</epcis/events?{}>; rel=\"next\"", next.join("&"));
            let mut r = Json(doc).into_response();
            if let Ok(v) = header::HeaderValue::from_str(&link) {
                r.headers_mut().insert(header::LINK, v);
            }
            r
        }
        None => Json(doc).into_response(),
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/ld+json"),
    );
    resp.extensions_mut().insert(Facts {
        rows: Some(n),
        ..Facts::default()
    });
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    max_rows: Option<usize>,
    /// Also answer a query certificate: every row with its event's proof.
    #[serde(default)]
    certificate: bool,
}

async fn sql(
    State(s): State<AppState>,
    Extension(id): Extension<Identity>,
    body: Bytes,
) -> Result<Response, Error> {
    let req: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "body must be JSON {{\"sql\": \"...\", \"max_rows\": N, \"certificate\": false}}: {e}"
        ))
    })?;
    let text = req.sql.clone();
    // The statement goes into the audit entry whatever the outcome.
    Ok(match sql_run(s, id, req).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.into_response();
            r.extensions_mut().insert(Facts {
                sql: Some(text),
                ..Facts::default()
            });
            r
        }
    })
}

async fn sql_run(s: AppState, id: Identity, req: SqlRequest) -> Result<Response, Error> {
    let max = req
        .max_rows
        .unwrap_or(DEFAULT_MAX_ROWS)
        .min(DEFAULT_MAX_ROWS);
    let engine = engine_for(&s, &id, Capability::Rows).await?;
    if req.certificate {
        return sql_certificate(&engine, &id, req, max).await;
    }
    let batches = engine.sql_limited(&req.sql, Some(max + 1)).await?;
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let truncated = total > max;
    let mut kept = Vec::new();
    let mut left = max;
    for b in batches {
        if left == 0 {
            break;
        }
        let n = b.num_rows().min(left);
        left -= n;
        kept.push(b.slice(0, n));
    }
    let columns = columns_of(&kept);
    let rows: serde_json::Value = if kept.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&output::encode(&kept, Format::Json)?)
            .map_err(|e| Error::Output(e.to_string()))?
    };
    let row_count = total.min(max);
    Ok(sql_answer(
        json!({"columns": columns, "rows": rows, "row_count": row_count, "truncated": truncated}),
        req.sql,
        row_count,
    ))
}

/// The result's columns as `POST /v1/sql` lists them.
fn columns_of(batches: &[arrow::array::RecordBatch]) -> Vec<serde_json::Value> {
    batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect()
        })
        .unwrap_or_default()
}

/// A `POST /v1/sql` answer with its audit facts (the statement and the rows returned).
fn sql_answer(body: serde_json::Value, sql: String, rows: usize) -> Response {
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(Facts {
        sql: Some(sql),
        rows: Some(rows as u64),
        target: None,
    });
    resp
}

/// `POST /v1/sql` with `"certificate": true`: the whole result (at most `max` rows, never
/// truncated: a certificate covers exactly the rows it lists) and its query certificate.
async fn sql_certificate(
    engine: &QueryEngine,
    id: &Identity,
    req: SqlRequest,
    max: usize,
) -> Result<Response, Error> {
    id.require(Capability::Proofs)?;
    let (batches, cert) = engine
        .rows_certificate(&req.sql, &id.scope().label(), max)
        .await?;
    let rows: Vec<&serde_json::Map<String, serde_json::Value>> =
        cert.rows.iter().map(|r| &r.values).collect();
    let row_count = rows.len();
    let body = json!({
        "columns": columns_of(&batches),
        "rows": rows,
        "row_count": row_count,
        "truncated": false,
        "certificate": cert,
    });
    Ok(sql_answer(body, req.sql, row_count))
}

async fn event(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let engine = engine_for(&s, &who, Capability::Rows).await?;
    let loc = engine.event(&id).await?;
    let mut body = json!({
        "event": loc.event,
        "batch_id": loc.batch_id,
        "leaf_index": loc.leaf_index,
        "leaf_hash": loc.leaf_hash,
        "stream": loc.stream,
        "partition": loc.partition,
        "offset": loc.offset,
    });
    // Private values for those who may read them (auditors see commitments only).
    if who.role != Role::Auditor {
        let private: serde_json::Map<String, serde_json::Value> = engine
            .private_values(&loc.batch_id, &id)
            .await?
            .into_iter()
            .map(|v| (v.path, v.value))
            .collect();
        if !private.is_empty() {
            body["private"] = serde_json::Value::Object(private);
        }
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofQuery {
    #[serde(default)]
    disclose: Option<String>,
    /// Prove against the checkpoint of this log size (a later epoch's) instead of the
    /// epoch the event was sealed in.
    #[serde(default)]
    checkpoint: Option<u64>,
}

async fn proof(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ProofQuery>,
) -> Result<Response, Error> {
    let disclose = crate::Disclose::parse(q.disclose.as_deref().unwrap_or(""));
    if disclose != crate::Disclose::Nothing && who.role == Role::Auditor {
        return Err(Error::Forbidden(
            "auditors verify proofs with private fields committed; a participant or analyst discloses them".into(),
        ));
    }
    let engine = engine_for(&s, &who, Capability::Proofs).await?;
    let mut bundle = engine.proof_disclosing(&id, &disclose).await?;
    if let Some(size) = q.checkpoint {
        bundle = engine.prove_at(bundle, size).await?;
    }
    Ok(Json(bundle).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /v1/log/checkpoint`: the log's latest signed checkpoint (C2SP tlog-checkpoint in a
/// signed note), as text.
async fn log_checkpoint(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, Error> {
    who.require(Capability::Proofs)?;
    let note = s.engine.checkpoint().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

/// `GET /v1/log/consistency?from=&to=`: the RFC 9162 consistency proof between two sizes.
async fn log_consistency(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    axum::extract::Query(q): axum::extract::Query<ConsistencyQuery>,
) -> Result<Response, Error> {
    who.require(Capability::Proofs)?;
    Ok(Json(s.engine.consistency(q.from, q.to).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeQuery {
    size: u64,
}

/// `GET /v1/log/anchor?size=`: the epoch of the checkpoint of that size, and its anchor.
async fn log_anchor(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    axum::extract::Query(q): axum::extract::Query<SizeQuery>,
) -> Result<Response, Error> {
    who.require(Capability::Proofs)?;
    Ok(Json(s.engine.log_anchor(q.size).await?).into_response())
}

/// `GET /v1/log/tile/{path}`: a hash tile or an entry bundle (C2SP tlog-tiles). Tiles never
/// change once written, so they may be cached for good.
async fn log_tile(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(path): Path<String>,
) -> Result<Response, Error> {
    who.require(Capability::Proofs)?;
    let (_, bytes) = s.engine.log_tile(&path).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptQuery {
    /// Against the checkpoint of this log size instead of the event's own epoch.
    #[serde(default)]
    checkpoint: Option<u64>,
}

/// `GET /v1/events/{id}/receipt`: the event's COSE Receipt (RFC 9942), `application/cose`.
async fn receipt(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ReceiptQuery>,
) -> Result<Response, Error> {
    let engine = engine_for(&s, &who, Capability::Proofs).await?;
    let mut bundle = engine.proof(&id).await?;
    if let Some(size) = q.checkpoint {
        bundle = engine.prove_at(bundle, size).await?;
    }
    let bytes = engine.receipt(&bundle).await?;
    Ok(([(header::CONTENT_TYPE, "application/cose")], bytes).into_response())
}

/// The verifier compiled to WebAssembly (`anchor/verify/wasm`, rebuilt and compared by the
/// `the_verifier_page_carries_the_current_wasm_build` test).
const VERIFY_WASM: &[u8] = include_bytes!("../assets/veritrace_verify.wasm");
const VERIFY_HTML: &str = include_str!("../assets/verify.html");
/// The contract the page's chain check compares the code at a receipt's address with.
const ANCHOR_CONTRACT: &str = include_str!("../../anchor/contracts/VeritraceAnchor.json");
/// `anchoredAt(bytes32)`'s selector, for the page's chain check (the root crate's test
/// compares it with the contract binding's).
pub const ANCHORED_AT_SELECTOR: &str = "0x9591a610";
/// The topic of `Anchored(bytes32,uint64,uint64)`, likewise.
pub const ANCHORED_TOPIC: &str =
    "0x665a214d59c3b0d9e6c4975fba280be5e19b9b0862cff85b71d42433191945cf";

/// `GET /verify`: the auditor's page. One self-contained file (the module inlined), so a
/// saved copy works offline; its policy forbids it any network access.
async fn verify_page() -> Response {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let page = PAGE.get_or_init(|| {
        use base64::Engine as _;
        let code = serde_json::from_str::<serde_json::Value>(ANCHOR_CONTRACT)
            .ok()
            .and_then(|c| c["deployedBytecode"].as_str().map(str::to_owned))
            .unwrap_or_default();
        VERIFY_HTML
            .replace(
                "__WASM_BASE64__",
                &base64::engine::general_purpose::STANDARD.encode(VERIFY_WASM),
            )
            .replace("__ANCHOR_CODE__", &code)
            .replace("__ANCHORED_AT_SELECTOR__", ANCHORED_AT_SELECTOR)
            .replace("__ANCHORED_TOPIC__", ANCHORED_TOPIC)
    });
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline' 'wasm-unsafe-eval'; style-src 'unsafe-inline'; connect-src http: https:",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page.as_str(),
    )
        .into_response()
}

/// Routes that answer without credentials and are not audited: the probes.
const OPEN_ROUTES: [&str; 3] = ["/livez", "/readyz", "/healthz"];

/// `GET /livez`: the server's runtime answers (an orchestrator restarts it otherwise).
/// Damage or a slow data directory make it unready (`/readyz`), not dead: a restart would
/// not mend them.
async fn livez() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

async fn healthz(State(s): State<AppState>) -> Result<Response, Error> {
    // Damage makes the server unhealthy, with the reason: an orchestrator stops routing to
    // it and an operator sees which file (`veritrace check` gives the whole report).
    let damage = match s.engine.damage().await {
        Ok(d) => d,
        Err(e) => vec![(s.engine.data_dir().root().to_owned(), e.to_string())],
    };
    s.damaged.set(damage.len() as i64);
    if !damage.is_empty() {
        let list: Vec<serde_json::Value> = damage
            .iter()
            .map(|(p, m)| json!({"path": p.display().to_string(), "problem": m}))
            .collect();
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "damaged",
                "error": {
                    "code": "data_damaged",
                    "message": format!("{} damaged or missing file(s); run `veritrace check --data DIR`", damage.len()),
                },
                "damage": list,
            })),
        )
            .into_response());
    }
    let snap = s.engine.snapshot().await?;
    Ok(Json(json!({
        "status": "ok",
        "files_verified": s.engine.files_verified(),
        "data_dir": s.engine.data_dir().root().display().to_string(),
        "batches": snap.headers.len(),
        "epochs": snap.epochs.len(),
        // An epoch counts once, whichever witness (local ledger or chain) anchors it.
        "anchored_epochs": snap
            .epochs
            .iter()
            .filter(|e| {
                snap.evm.get(&e.epoch_id).is_some_and(|(r, _)| *r == e.root)
                    || snap
                        .ledger
                        .get(e.epoch_id as usize)
                        .is_some_and(|l| l.epoch_id == e.epoch_id && l.root == e.root)
            })
            .count(),
    }))
    .into_response())
}

async fn metrics(
    State(s): State<AppState>,
    Extension(id): Extension<Identity>,
) -> Result<Response, Error> {
    id.require(Capability::Metrics)?;
    if let Ok(d) = s.engine.damage().await {
        s.damaged.set(d.len() as i64);
    }
    Ok(veritrace_metrics::render(&s.registry))
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see GET /livez, GET /readyz (= /healthz), POST /v1/sql, GET /v1/events/{id}[/proof], GET /v1/trace/{code}, GET /epcis/events, GET /metrics",
    )
}

pub use veritrace_metrics::serve;
