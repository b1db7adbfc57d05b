//! `veritrace gateway`: HTTP ingest for devices and connectors that do not speak Kafka.
//!
//! Without Kafka (`--embedded`), the records go to the data directory's own processor
//! instead, and a request is answered 202 once the batch holding them is sealed (durable),
//! with what became of each record (`events_accepted`, `rejected` with reason codes).
//!
//! `POST /v1/ingest` takes one request's records and answers `202 Accepted` only once Kafka
//! has acknowledged every one of them (`acks=all`, idempotent producer): a 202 means the
//! records are durable in the raw topic; anything else means the client still holds them
//! and retries (a retry that doubles a record is one row: the processors dedupe by event
//! id). A request is all or nothing for authentication: one record that fails the signature
//! check refuses the request before anything is published.
//!
//! | body (`Content-Type`) | records |
//! |---|---|
//! | `application/json` | one JSON event, or a JSON array of them |
//! | `application/x-ndjson`, `application/jsonl` | JSON lines (each may be a JWS) |
//! | `application/jose` | JWS compact serializations, one per line |
//! | `application/cose`, `application/cbor-seq` | COSE_Sign1 envelopes, a CBOR sequence |
//!
//! | answer | when |
//! |---|---|
//! | 202 `{"accepted": N, "topic": T}` | every record acknowledged by Kafka |
//! | 400 | empty body, unreadable content, over `max-records` |
//! | 401 | under an `enforce` policy, an unsigned record, or a signature that does not verify (unknown signer, bad signature, stale, malformed, unsupported algorithm) |
//! | 403 | a signer that may not speak for the event (revoked, another participant's device, subject mismatch); a client certificate naming no registered device, a revoked one, or records signed outside its participant |
//! | 413 | body over `max-body-bytes` |
//! | 415 | another content type |
//! | 429 + `Retry-After` | the signer's (else the client address's) rate limit, or Kafka back-pressure (the producer queue is full) |
//! | 503 + `Retry-After` | Kafka did not acknowledge within `delivery-timeout` |
//!
//! Over TLS with client certificates (`veritrace_net`), the certificate's subject common
//! name is a device id: the device must be registered and not revoked, the signed records
//! it sends must be signed by it or by a signer of its participant, and the rate limit is
//! its own.
//!
//! Every error is `{"error": {"code", "message"}}`; 401 and 403 name the record (index and
//! event id) and the reason code. `GET /healthz` and `GET /metrics` answer throughout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::{HistogramVec, IntCounterVec, Registry};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use veritrace_metrics::error_response;
use veritrace_net::{ClientCert, Peer};
use veritrace_processors::Reason;
use veritrace_processors::embedded::{Busy, Embedded};
use veritrace_processors::event::Limits;
use veritrace_processors::signed::{Policy, Signatures};

use crate::file::{cbor_sequence, json_array, json_lines};

/// What one gateway accepts and how fast.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most records in one request.
    pub max_records: usize,
    /// Records per second each signer (or, unsigned, each client address) may send; 0: no
    /// limit.
    pub rate: f64,
    /// How many records a signer may send at once above the rate.
    pub burst: f64,
    /// How long to wait for Kafka's acknowledgements before answering 503.
    pub delivery_timeout: Duration,
    /// The raw topic.
    pub topic: String,
    /// Record limits (the processors' own).
    pub limits: Limits,
    /// The EPCIS schema captured documents must satisfy (`None`: not checked).
    pub epcis_schema: Option<std::sync::Arc<crate::epcis::Schema>>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_body_bytes: 4 << 20,
            max_records: 10_000,
            rate: 0.0,
            burst: 1000.0,
            delivery_timeout: Duration::from_secs(30),
            topic: veritrace_processors::kafka::RAW_TOPIC.into(),
            limits: Limits::default(),
            epcis_schema: None,
        }
    }
}

/// A token bucket per signer.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Where the gateway puts the records it accepted.
pub enum Sink {
    /// The raw Kafka topic: a request is answered once Kafka acknowledged its records.
    Kafka(FutureProducer),
    /// No Kafka: the data directory's own processor (`veritrace gateway --embedded`); a
    /// request is answered once the batch holding its records is sealed.
    Embedded(Arc<Embedded>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Kafka(_) => "Sink::Kafka",
            Sink::Embedded(_) => "Sink::Embedded",
        })
    }
}

/// The gateway's state.
pub struct Gateway {
    cfg: GatewayConfig,
    sink: Sink,
    signatures: Signatures,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// EPCIS capture jobs, newest last, at most [`MAX_CAPTURE_JOBS`].
    captures: Mutex<std::collections::VecDeque<(String, serde_json::Value)>>,
    requests: IntCounterVec,
    records: IntCounterVec,
    latency: HistogramVec,
}

/// Capture jobs the gateway remembers for `GET /epcis/capture/{id}` (in memory: a restart
/// forgets them; what they captured is in the log).
const MAX_CAPTURE_JOBS: usize = 10_000;

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Largest number of rate-limit buckets kept; past it, the full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

impl Gateway {
    /// A gateway putting records into `sink` and checking signatures with `signatures` (its
    /// policy decides whether unsigned records are refused); metrics go to `registry`.
    pub fn new(
        cfg: GatewayConfig,
        sink: Sink,
        signatures: Signatures,
        registry: &Registry,
    ) -> prometheus::Result<Arc<Self>> {
        use veritrace_metrics as m;
        Ok(Arc::new(Gateway {
            requests: m::counter_vec(registry, &m::GATEWAY_REQUESTS)?,
            records: m::counter_vec(registry, &m::GATEWAY_RECORDS)?,
            latency: m::histogram_vec(registry, &m::GATEWAY_REQUEST_SECONDS, None)?,
            cfg,
            sink,
            signatures,
            buckets: Mutex::new(HashMap::new()),
            captures: Mutex::new(std::collections::VecDeque::new()),
        }))
    }

    /// Takes `n` tokens from `who`'s bucket, or says how long until there are enough.
    fn take(&self, who: &str, n: usize) -> Result<(), Duration> {
        if self.cfg.rate <= 0.0 {
            return Ok(());
        }
        let n = n as f64;
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_BUCKETS {
            let rate = self.cfg.rate;
            let burst = self.cfg.burst;
            b.retain(|_, v| v.tokens + now.duration_since(v.at).as_secs_f64() * rate < burst);
        }
        let bucket = b.entry(who.to_owned()).or_insert(Bucket {
            tokens: self.cfg.burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens
            + now.duration_since(bucket.at).as_secs_f64() * self.cfg.rate)
            .min(self.cfg.burst.max(n));
        bucket.at = now;
        if bucket.tokens >= n {
            bucket.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - bucket.tokens) / self.cfg.rate))
        }
    }
}

/// The gateway's producer (`acks=all`, idempotent unless turned off).
pub fn producer(
    settings: &veritrace_processors::kafka::ClientSettings,
) -> Result<FutureProducer, veritrace_processors::Error> {
    settings
        .producer_config("veritrace-gateway")?
        .create()
        .map_err(|e| veritrace_processors::Error::Kafka(format!("creating the producer: {e}")))
}

/// Waits up to `timeout` for records handed to the producer to be acknowledged.
pub fn flush(producer: &FutureProducer, timeout: Duration) {
    let _ = producer.flush(timeout);
}

/// The router: `POST /v1/ingest`, `GET /livez`, `GET /readyz` (= `/healthz`), `GET /metrics`.
pub fn router(gw: Arc<Gateway>, registry: Registry) -> Router {
    let limit = gw.cfg.max_body_bytes;
    let health = gw.clone();
    // Readiness: the sink takes records. Liveness (`/livez`): the runtime answers.
    let ready = move || {
        let gw = health.clone();
        async move {
            match &gw.sink {
                Sink::Kafka(p) => axum::Json(serde_json::json!({
                    "status": "ok",
                    "topic": gw.cfg.topic,
                    "in_flight": p.in_flight_count(),
                }))
                .into_response(),
                Sink::Embedded(e) if e.is_running() => axum::Json(serde_json::json!({
                    "status": "ok",
                    "embedded": gw.cfg.topic,
                }))
                .into_response(),
                Sink::Embedded(_) => error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "embedded_stopped",
                    "the embedded processor has stopped (a write failed; see the log)",
                ),
            }
        }
    };
    Router::new()
        .route("/v1/ingest", post(ingest))
        .route("/epcis/capture", post(capture))
        .route("/epcis/capture/{id}", get(capture_job))
        .route(
            "/livez",
            get(|| async { axum::Json(serde_json::json!({"status": "alive"})).into_response() }),
        )
        .route("/readyz", get(ready.clone()))
        .route("/healthz", get(ready))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { veritrace_metrics::render(&registry) }
            }),
        )
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see POST /v1/ingest, POST /epcis/capture, GET /epcis/capture/{id}, GET /livez, GET /readyz (= /healthz), GET /metrics",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gw)
}

fn refuse(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    error_response(status, code, message)
}

fn retry_after(mut r: Response, wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Which records the body holds, by content type.
/// `Err`: the content type is not one of the gateway's (the message says which are).
fn split(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let records = match essence.as_str() {
        "application/json" => {
            if body.trim_ascii_start().first() == Some(&b'[') {
                json_array(body)
            } else {
                vec![body.trim_ascii().to_vec()]
            }
        }
        "application/x-ndjson" | "application/jsonl" | "application/jose" | "text/plain" => {
            json_lines(body)
        }
        "application/cose" | "application/cbor-seq" | "application/cbor" => cbor_sequence(body),
        other => {
            return Err(format!(
                "content type {other:?}: send application/json, application/x-ndjson, application/jose or application/cose"
            ));
        }
    };
    Ok(records)
}

/// 401 for who-are-you failures, 403 for you-may-not.
fn auth_status(reason: Reason) -> Option<StatusCode> {
    match reason {
        Reason::Unsigned
        | Reason::MalformedEnvelope
        | Reason::UnsupportedAlg
        | Reason::UnknownSigner
        | Reason::BadSignature
        | Reason::StaleSignature => Some(StatusCode::UNAUTHORIZED),
        Reason::SignerRevoked | Reason::SignerNotAuthorized | Reason::ClaimsMismatch => {
            Some(StatusCode::FORBIDDEN)
        }
        _ => None,
    }
}

async fn ingest(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    let cert = peer.and_then(|Extension(p)| p.client);
    let resp = ingest_inner(&gw, addr, cert.as_deref(), &headers, &body).await;
    observed(&gw, "/v1/ingest", start, resp)
}

/// Counts the answer of `route` and its latency since `start`.
fn observed(gw: &Gateway, route: &str, start: Instant, resp: Response) -> Response {
    gw.requests
        .with_label_values(&[route, resp.status().as_str()])
        .inc();
    gw.latency
        .with_label_values(&[route])
        .observe(start.elapsed().as_secs_f64());
    resp
}

#[derive(Debug, serde::Deserialize)]
struct CaptureQuery {
    /// `ID:ROLE` of the participant that records the document's events.
    recorder: Option<String>,
}

/// `POST /epcis/capture` (the EPCIS 2.0 capture binding): an EPCIS document, its events
/// mapped to Veritrace events ([`crate::epcis`]) and then taken as `POST /v1/ingest` takes
/// records. The recorder is `?recorder=ID:ROLE`; a client certificate's device may only
/// record for its own participant. Answers 202 with `Location: /epcis/capture/{id}`, the
/// capture job (finished: the records were acknowledged, or sealed when embedded), or the
/// error that refused the whole document.
async fn capture(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    peer: Option<Extension<Peer>>,
    axum::extract::Query(q): axum::extract::Query<CaptureQuery>,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    let cert = peer.and_then(|Extension(p)| p.client);
    let resp = capture_inner(&gw, addr, cert.as_deref(), q, &body).await;
    observed(&gw, "/epcis/capture", start, resp)
}

async fn capture_inner(
    gw: &Gateway,
    peer: SocketAddr,
    cert: Option<&ClientCert>,
    q: CaptureQuery,
    body: &[u8],
) -> Response {
    use veritrace_processors::epcis::{Recorder, document_events};
    let device = match cert.map(|c| cert_device(gw, c)).transpose() {
        Ok(d) => d,
        Err(refused) => return *refused,
    };
    let recorder: Recorder = match q.recorder.as_deref().map(str::parse) {
        Some(Ok(r)) => r,
        Some(Err(e)) => return refuse(StatusCode::BAD_REQUEST, "bad_recorder", e),
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "missing_recorder",
                "EPCIS events do not name the party that records them: add ?recorder=ID:ROLE",
            );
        }
    };
    if let Some(d) = &device
        && d.participant != recorder.id
    {
        return refuse(
            StatusCode::FORBIDDEN,
            Reason::SignerNotAuthorized.as_str(),
            format!(
                "this connection's certificate is device {} of participant {}; it cannot record for {}",
                d.id, d.participant, recorder.id
            ),
        );
    }
    let doc: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let Some(events) = doc.as_ref().and_then(document_events).map(Vec::len) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "not_an_epcis_document",
            "the body is not an EPCIS 2.0 document (JSON-LD with epcisBody.eventList); nothing was captured",
        );
    };
    if let (Some(schema), Some(d)) = (&gw.cfg.epcis_schema, &doc)
        && let Err(why) = schema.check(d)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "epcis_schema",
            format!("{why}; nothing was captured"),
        );
    }
    let records = doc.as_ref().map_or_else(Vec::new, |d| {
        crate::epcis::document_records(d, &recorder).unwrap_or_default()
    });
    let resp = ingest_records(gw, peer, device, records).await;
    if resp.status() != StatusCode::ACCEPTED {
        return resp;
    }
    let (mut parts, b) = resp.into_parts();
    let outcome: serde_json::Value = match axum::body::to_bytes(b, 16 << 20).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let mut id_bytes = [0u8; 16];
    let _ = getrandom::fill(&mut id_bytes);
    let id = hex::encode(id_bytes);
    let job = serde_json::json!({
        "captureID": id,
        "running": false,
        "success": true,
        "captureErrorBehaviour": "proceed",
        "events": events,
        "outcome": outcome,
    });
    {
        let mut jobs = gw.captures.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= MAX_CAPTURE_JOBS {
            jobs.pop_front();
        }
        jobs.push_back((id.clone(), job.clone()));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("/epcis/capture/{id}")) {
        parts.headers.insert(header::LOCATION, v);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(job.to_string()))
}

/// `GET /epcis/capture/{id}`: a capture job this gateway ran (since its start).
async fn capture_job(
    State(gw): State<Arc<Gateway>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let jobs = gw.captures.lock().unwrap_or_else(|p| p.into_inner());
    match jobs.iter().rev().find(|(j, _)| *j == id) {
        Some((_, job)) => axum::Json(job.clone()).into_response(),
        None => refuse(
            StatusCode::NOT_FOUND,
            "unknown_capture",
            format!(
                "no capture job {id} on this gateway (jobs are kept in memory, the last {MAX_CAPTURE_JOBS})"
            ),
        ),
    }
}

/// The registered device a client certificate names: its id and participant.
struct CertDevice {
    id: String,
    participant: String,
}

/// Maps a verified client certificate to the registered device its common name names.
fn cert_device(gw: &Gateway, cert: &ClientCert) -> Result<CertDevice, Box<Response>> {
    let Some(cn) = cert.common_name.as_deref() else {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "certificate_without_device",
            format!(
                "the client certificate (sha256 {}) has no subject common name naming a device",
                cert.sha256
            ),
        )));
    };
    crate::devices::lookup(&gw.signatures, cn, "the client certificate")
        .map(|d| CertDevice {
            id: d.id,
            participant: d.participant,
        })
        .map_err(|(reason, detail)| {
            Box::new(refuse(StatusCode::FORBIDDEN, reason.as_str(), detail))
        })
}

async fn ingest_inner(
    gw: &Gateway,
    peer: SocketAddr,
    cert: Option<&ClientCert>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let device = match cert.map(|c| cert_device(gw, c)).transpose() {
        Ok(d) => d,
        Err(refused) => return *refused,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the request has no records",
        );
    }
    let records = match split(headers, body) {
        Ok(r) => r,
        Err(msg) => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                msg,
            );
        }
    };
    ingest_records(gw, peer, device, records).await
}

/// The records of one request, authenticated, rate-limited and handed to the sink.
async fn ingest_records(
    gw: &Gateway,
    peer: SocketAddr,
    device: Option<CertDevice>,
    records: Vec<Vec<u8>>,
) -> Response {
    if records.len() > gw.cfg.max_records {
        return refuse(
            StatusCode::BAD_REQUEST,
            "too_many_records",
            format!(
                "{} records in one request; at most {}",
                records.len(),
                gw.cfg.max_records
            ),
        );
    }
    // Authenticate every record before publishing any: the signature stage is the
    // processors' own, so what passes here passes there.
    let now_ms = veritrace_processors::now_ms();
    let checking = gw.signatures.policy.strictest() != Policy::Off;
    let mut signer: Option<String> = None;
    if checking {
        for (i, r) in records.iter().enumerate() {
            // A bundle record: one signature for its events, each then with its own
            // outcome; a single statement or an unsigned event otherwise.
            let outcomes = match gw.signatures.open_bundle(r, now_ms, &gw.cfg.limits) {
                Some(Ok(events)) => events
                    .into_iter()
                    .map(|e| e.map_err(|b| b.rejection))
                    .collect(),
                Some(Err(rej)) => vec![Err(rej)],
                None => vec![gw.signatures.open(r, now_ms, &gw.cfg.limits)],
            };
            for outcome in outcomes {
                match outcome {
                    Ok(o) => {
                        let Some(sig) = o.accepted.event.signature else {
                            continue;
                        };
                        // A device that authenticated by certificate forwards what its own
                        // participant's signers signed, nothing else.
                        if let Some(d) = &device
                            && sig.signer != d.id
                            && sig.signer_participant != d.participant
                        {
                            gw.records
                                .with_label_values(&["refused"])
                                .inc_by(records.len() as u64);
                            return refuse(
                                StatusCode::FORBIDDEN,
                                Reason::SignerNotAuthorized.as_str(),
                                format!(
                                    "record {i} ({}) is signed by {} of participant {}; this \
                                     connection's certificate is device {} of participant {}; \
                                     nothing of this request was accepted",
                                    o.accepted.event.event_id,
                                    sig.signer,
                                    sig.signer_participant,
                                    d.id,
                                    d.participant
                                ),
                            );
                        }
                        if signer.is_none() {
                            signer = Some(sig.signer);
                        }
                    }
                    Err(rej) => {
                        if let Some(status) = auth_status(rej.reason) {
                            gw.records
                                .with_label_values(&["refused"])
                                .inc_by(records.len() as u64);
                            return refuse(
                                status,
                                rej.reason.as_str(),
                                format!(
                                    "record {i}{}: {}; nothing of this request was accepted",
                                    rej.event_id
                                        .map(|id| format!(" ({id})"))
                                        .unwrap_or_default(),
                                    rej.detail
                                ),
                            );
                        }
                        // Other faults are data: the processors reject and keep them.
                    }
                }
            }
        }
    }
    let who = device
        .map(|d| d.id)
        .or(signer)
        .unwrap_or_else(|| format!("addr:{}", peer.ip()));
    if let Err(wait) = gw.take(&who, records.len()) {
        gw.records
            .with_label_values(&["rate_limited"])
            .inc_by(records.len() as u64);
        return retry_after(
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{who} is limited to {} records/s (burst {})",
                    gw.cfg.rate, gw.cfg.burst
                ),
            ),
            wait,
        );
    }
    let producer = match &gw.sink {
        Sink::Kafka(p) => p,
        Sink::Embedded(e) => return embedded(gw, e, records).await,
    };
    let mut deliveries = Vec::with_capacity(records.len());
    for r in &records {
        let key = crate::key_of(r);
        let mut rec = FutureRecord::to(&gw.cfg.topic).payload(r.as_slice());
        if let Some(k) = key.as_deref() {
            rec = rec.key(k);
        }
        match producer.send_result(rec) {
            Ok(d) => deliveries.push(d),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // What was handed over already may still be delivered: the client's retry
                // of the whole request is deduplicated by event id.
                gw.records
                    .with_label_values(&["backpressure"])
                    .inc_by(records.len() as u64);
                return retry_after(
                    refuse(
                        StatusCode::TOO_MANY_REQUESTS,
                        "backpressure",
                        "the Kafka producer queue is full; retry the request",
                    ),
                    Duration::from_secs(1),
                );
            }
            Err((e, _)) => {
                return retry_after(
                    refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "kafka_error",
                        format!("{e}; retry the request"),
                    ),
                    Duration::from_secs(1),
                );
            }
        }
    }
    let n = deliveries.len();
    let all = futures::future::join_all(deliveries);
    match tokio::time::timeout(gw.cfg.delivery_timeout, all).await {
        Err(_) => retry_after(
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_acknowledged",
                format!(
                    "Kafka did not acknowledge the records within {:?}; retry the request",
                    gw.cfg.delivery_timeout
                ),
            ),
            Duration::from_secs(1),
        ),
        Ok(results) => {
            let failed: Vec<String> = results
                .into_iter()
                .filter_map(|r| match r {
                    Ok(Ok(_)) => None,
                    Ok(Err((e, _))) => Some(e.to_string()),
                    Err(_) => Some("the delivery was cancelled".into()),
                })
                .collect();
            if let Some(first) = failed.first() {
                gw.records
                    .with_label_values(&["failed"])
                    .inc_by(failed.len() as u64);
                return retry_after(
                    refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_acknowledged",
                        format!(
                            "{} of {n} records were not acknowledged ({first}); retry the request",
                            failed.len()
                        ),
                    ),
                    Duration::from_secs(1),
                );
            }
            gw.records
                .with_label_values(&["published"])
                .inc_by(n as u64);
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"accepted": n, "topic": gw.cfg.topic})),
            )
                .into_response()
        }
    }
}

/// The embedded sink: the records go to the data directory's processor; the answer waits
/// for the batch that holds them to be sealed and says what became of each.
async fn embedded(gw: &Gateway, e: &Embedded, records: Vec<Vec<u8>>) -> Response {
    let n = records.len();
    let keyed = records
        .into_iter()
        .map(|r| (crate::key_of(&r), r))
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let done: veritrace_processors::embedded::Done = Box::new(move |r| {
        let _ = tx.send(r);
    });
    match e.submit(keyed, done) {
        Err(Busy::Full) => {
            gw.records
                .with_label_values(&["backpressure"])
                .inc_by(n as u64);
            return retry_after(
                refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "backpressure",
                    "the embedded processor's queue is full; retry the request",
                ),
                Duration::from_secs(1),
            );
        }
        Err(Busy::Stopped) => {
            return retry_after(
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "embedded_stopped",
                    "the embedded processor has stopped; retry the request",
                ),
                Duration::from_secs(1),
            );
        }
        Ok(()) => {}
    }
    match tokio::time::timeout(gw.cfg.delivery_timeout, rx).await {
        Ok(Ok(Ok(sealed))) => {
            gw.records
                .with_label_values(&["published"])
                .inc_by(n as u64);
            let rejected: Vec<serde_json::Value> = sealed
                .rejected
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "record": r.index,
                        "event_id": r.event_id,
                        "reason": r.reason,
                        "detail": r.detail,
                    })
                })
                .collect();
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({
                    "accepted": n,
                    "stream": gw.cfg.topic,
                    "batch_id": sealed.batch_id,
                    "events_accepted": sealed.accepted,
                    "rejected": rejected,
                })),
            )
                .into_response()
        }
        Ok(Ok(Err(msg))) => retry_after(
            refuse(StatusCode::SERVICE_UNAVAILABLE, "not_sealed", msg),
            Duration::from_secs(1),
        ),
        Ok(Err(_)) => retry_after(
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_sealed",
                "the embedded processor stopped before sealing the records; retry the request",
            ),
            Duration::from_secs(1),
        ),
        Err(_) => retry_after(
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_sealed",
                format!(
                    "the records were not sealed within {:?}; retry the request (a record \
                     sealed twice is one row)",
                    gw.cfg.delivery_timeout
                ),
            ),
            Duration::from_secs(1),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_by_content_type() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).expect("ct"));
            m
        };
        let one = split(&h("application/json"), b" {\"a\":1}\n").expect("one");
        assert_eq!(one, vec![b"{\"a\":1}".to_vec()]);
        let arr = split(
            &h("application/json; charset=utf-8"),
            b"[{\"a\":1},{\"b\":2}]",
        )
        .expect("arr");
        assert_eq!(arr.len(), 2);
        let lines = split(&h("application/x-ndjson"), b"{}\n\n{}\r\n").expect("lines");
        assert_eq!(lines.len(), 2);
        let refused = split(&h("text/csv"), b"a,b").expect_err("csv");
        assert!(refused.contains("text/csv"), "{refused}");
    }

    #[test]
    fn reasons_map_to_401_and_403() {
        assert_eq!(
            auth_status(Reason::Unsigned),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            auth_status(Reason::BadSignature),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            auth_status(Reason::SignerRevoked),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            auth_status(Reason::SignerNotAuthorized),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(auth_status(Reason::MalformedJson), None);
    }
}
