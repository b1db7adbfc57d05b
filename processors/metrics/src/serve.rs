//! `GET /metrics` and `GET /healthz`: what every runtime answers its operators.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Registry, TextEncoder};

/// The JSON error shape of every Veritrace HTTP answer:
/// `{"error": {"code": CODE, "message": MESSAGE}}`.
pub fn error_response(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message.to_string()}})),
    )
        .into_response()
}

/// `registry` in the Prometheus text format, as `GET /metrics` answers.
pub fn render(registry: &Registry) -> Response {
    match TextEncoder::new().encode_to_string(&registry.gather()) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "metrics_error", e),
    }
}

/// A health check for [`ops_router`]: `Ok(detail)` is healthy, `Err(reason)` is not.
pub type HealthCheck = Arc<dyn Fn() -> Result<serde_json::Value, String> + Send + Sync>;

/// What an orchestrator asks a process, as two different questions:
/// - `live`: is the process itself working (its loops turn)? No means restart it.
/// - `ready`: should it take work or traffic now (connected, data readable)? No means wait
///   for it, or route around it; restarting would not help.
#[derive(Clone)]
pub struct Health {
    /// `GET /livez`.
    pub live: HealthCheck,
    /// `GET /readyz` (and `GET /healthz`), asked only when `live` holds.
    pub ready: HealthCheck,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Health {
    /// Live while the HTTP runtime answers; ready by `ready`.
    pub fn ready_when(ready: HealthCheck) -> Self {
        Health {
            live: Arc::new(|| Ok(serde_json::json!({}))),
            ready,
        }
    }

    fn answer(check: &HealthCheck, ok: &str) -> Response {
        match check() {
            Ok(detail) => Json(serde_json::json!({"status": ok, "detail": detail})).into_response(),
            Err(reason) => error_response(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", reason),
        }
    }

    /// The answer to `GET /livez`.
    pub fn live_response(&self) -> Response {
        Self::answer(&self.live, "alive")
    }

    /// The answer to `GET /readyz` and `GET /healthz`.
    pub fn ready_response(&self) -> Response {
        if let Err(reason) = (self.live)() {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", reason);
        }
        Self::answer(&self.ready, "ok")
    }
}

/// The router of a process that serves only operations endpoints (`veritrace process`, the
/// MQTT bridge): `GET /metrics` (Prometheus), `GET /livez`, and `GET /readyz` = `GET
/// /healthz` (200 when healthy, 503 with the reason).
pub fn ops_router(registry: Registry, health: Health) -> Router {
    let (live, ready) = (health.clone(), health);
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { render(&registry) }
            }),
        )
        .route(
            "/livez",
            get(move || {
                let h = live.clone();
                async move { h.live_response() }
            }),
        )
        .route("/readyz", get(ready_get(ready.clone())))
        .route("/healthz", get(ready_get(ready)))
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see GET /livez, GET /readyz (= /healthz), GET /metrics",
            )
        })
}

fn ready_get(
    h: Health,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move || std::future::ready(h.ready_response())
}

/// Serves `app` on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
