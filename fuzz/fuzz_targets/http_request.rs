//! Bytes -> one HTTP request (method, path, body) through the router, then `GET /healthz`.
//!
//! Input layout: `[method, route, path_len, repeat, path.., body..]`. `route` picks a route
//! prefix (its high bit wraps the body as `{"sql": "<body>"}`), `path` (`path_len` bytes,
//! written `1 + repeat % 64` times) follows it, percent-encoded where a URI needs it.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, header};
use libfuzzer_sys::fuzz_target;
use veritrace_fuzz::{HARNESS, METHODS, check_answer, check_healthz, send, to_uri};

const ROUTES: &[&str] = &[
    "/v1/sql",
    "/v1/events/",
    "/v1/trace/",
    "/v1/events/fz:prod:3/",
    "",
    "/healthz",
    "/metrics",
    "/v1/",
];

fuzz_target!(|data: &[u8]| {
    let [m, route, len, repeat, rest @ ..] = data else {
        return;
    };
    let method = METHODS
        .get(usize::from(*m) % (METHODS.len() + 1))
        .cloned()
        .unwrap_or_else(|| Method::from_bytes(b"PROPFIND").expect("method"));
    let (path, body) = rest.split_at(usize::from(*len).min(rest.len()));
    let mut raw = ROUTES[usize::from(*route & 0x7f) % ROUTES.len()]
        .as_bytes()
        .to_vec();
    for _ in 0..=(*repeat % 64) {
        raw.extend_from_slice(path);
    }
    let body = if *route & 0x80 != 0 {
        let sql = String::from_utf8_lossy(body);
        serde_json::json!({ "sql": sql }).to_string().into_bytes()
    } else {
        body.to_vec()
    };
    // A target that is not URI syntax never reaches the router (hyper refuses it).
    let Some(uri) = to_uri(&raw) else {
        return;
    };
    let what = format!("{method} {uri}");
    let head = method == Method::HEAD;
    let Ok(req) = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
    else {
        return;
    };
    let h = &*HARNESS;
    h.rt.block_on(async {
        let a = send(&h.app, req).await;
        check_answer(&what, &a, head);
        check_healthz(&h.app).await;
    });
});
