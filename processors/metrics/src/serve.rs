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

/// The router of a process that serves only operations endpoints (`veritrace process`):
/// `GET /metrics` (Prometheus) and `GET /healthz` (200 when healthy, 503 with the reason).
pub fn ops_router(registry: Registry, health: HealthCheck) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { render(&registry) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let health = health.clone();
                async move {
                    match health() {
                        Ok(detail) => Json(serde_json::json!({"status": "ok", "detail": detail}))
                            .into_response(),
                        Err(reason) => {
                            error_response(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", reason)
                        }
                    }
                }
            }),
        )
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see GET /healthz, GET /metrics",
            )
        })
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
