//! CORS for browser apps calling the HTTP API, off unless
//! `gateway.http.cors.allowedOrigins` lists origins.
//!
//! Hand-written rather than `tower_http::cors`: that layer answers every
//! `OPTIONS` request itself, whatever its origin, and this one must answer a
//! preflight (without auth) only for a listed origin; for any other the
//! request goes on as usual (and meets auth), and no response carries CORS
//! headers. The WebSocket's `Origin` check (`origin.rs`,
//! `controlUi.allowedOrigins`) is separate: CORS lets a page *read* API
//! responses; it never opens the WebSocket.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::gateway::Gateway;

/// Methods the API serves, for preflights.
const METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
/// Response headers a page may read besides the CORS-safelisted ones.
const EXPOSED: &str = "x-openclaw-session-key, x-request-id, retry-after, x-should-retry";
/// How long a browser may cache a preflight, in seconds.
const MAX_AGE: &str = "600";

/// The request's `Origin` when the config lists it (or lists `*`).
fn listed_origin(config: &Config, headers: &HeaderMap) -> Option<HeaderValue> {
    let list = &config.gateway.http.cors.allowed_origins;
    if list.is_empty() {
        return None;
    }
    let value = headers.get(header::ORIGIN)?;
    let origin = value.to_str().ok()?.trim_end_matches('/');
    list.iter().any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin)).then(|| value.clone())
}

/// The middleware: preflights from listed origins are answered here, before
/// auth; other requests from listed origins get `Access-Control-Allow-Origin`.
pub async fn apply(State(gw): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let Some(origin) = listed_origin(&gw.config, request.headers()) else {
        return next.run(request).await;
    };
    if request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return preflight(origin, request.headers());
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// 204 with what the browser asked for: the requested headers are allowed as
/// asked (SDKs add their own `x-stainless-*` headers), auth still applies to
/// the request that follows.
fn preflight(origin: HeaderValue, request: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(METHODS));
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers"),
    );
    response
}
