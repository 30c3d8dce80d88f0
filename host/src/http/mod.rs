//! The HTTP door: routes, auth, request ids. Handlers only translate.

mod admin;
mod chat;
mod completions;
mod conversations;
mod cors;
pub mod error;
mod health;
mod listener;
mod models;
pub mod openai;
mod origin;
mod replay;
mod request_count;
mod request_id;
mod responses;
mod rollout;
mod routes;
mod runs;
mod sessions;
mod stream;
mod ui;
mod usage;

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use admin::DIGEST_HEADER;
pub use chat::{AGENT_HEADER, MODEL_HEADER, SESSION_HEADER};
use error::ApiError;
pub use listener::{ConnectionLimits, fd_limit, raise_fd_limit, serve};
pub use sessions::transcript_json;

use crate::auth::Principal;
use crate::gateway::Gateway;

/// What hyper calls for every request of the gateway port.
pub type GatewayService = tower::util::BoxCloneSyncService<Request, Response, std::convert::Infallible>;

/// All routes of the gateway port, from the one table in `routes`, behind the
/// request-wide layers. Those wrap the router once, as one typed stack:
/// `Router::layer` would wrap every route in a boxed service per layer, and
/// each level clones the boxed levels below it on every request (a fifth of
/// the echo agent's CPU per request; BENCHMARKS.md, "Round 7: a run's fixed cost").
pub fn router(gw: Arc<Gateway>) -> GatewayService {
    // Background responses of this gateway, for the handlers that start, show and cancel them.
    let background = Arc::new(responses::BackgroundRuns::default());
    let routes = routes::router(&gw)
        .fallback(|| async { ApiError::not_found() })
        // Outside the auth check (a route layer), so preflights need no credentials.
        .layer(middleware::from_fn_with_state(gw.clone(), cors::apply))
        // Inside the router: it counts by the matched route.
        .layer(request_count::CountLayer(gw.agents.metrics().clone()))
        .with_state(gw);
    let service = tower::ServiceBuilder::new()
        // The trace layer's body, boxed once as every response body is.
        .map_response(IntoResponse::into_response)
        // An unsafe id is gone before the layer below makes a fresh one.
        .map_request(request_id::drop_unsafe)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    tracing::info_span!(
                        "request", method = %request.method(), uri = %request.uri().path(), request_id = %id,
                        token = tracing::field::Empty
                    )
                })
                // A 5xx is already logged, with its cause, by the run that failed.
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        // Inside SetRequestIdLayer, so every request has an id by then.
        .layer(request_id::InScopeLayer)
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::REFERRER_POLICY,
            axum::http::HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        .layer(axum::Extension(background))
        .service(routes);
    GatewayService::new(service)
}

/// `GET /`: every request on the root path is decided here: a browser
/// navigating to it gets the control page (when enabled); everything else is
/// OpenClaw's WebSocket protocol (which authenticates inside its `connect`
/// frame) behind the `Origin` policy.
async fn root(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if gw.config.gateway.control_ui.enabled && ui::wants_page(request.method(), request.headers()) {
        return ui::page(request.headers());
    }
    if !origin::origin_allowed(&gw.config, request.headers()) {
        let headers = request.headers();
        let origin = headers.get(axum::http::header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or_default();
        tracing::warn!(origin, "websocket refused: origin not allowed (gateway.controlUi.allowedOrigins)");
        return ApiError::forbidden_origin().into_response();
    }
    crate::ws::upgrade(gw, peer, request).await
}

/// `GET /metrics`: Prometheus text; a credential limited to some agents gets
/// their lines and its own name only (a loopback scraper has no principal: all).
async fn metrics(State(gw): State<Arc<Gateway>>, principal: Option<axum::Extension<Principal>>) -> Response {
    let (metrics, gauges) = (gw.agents.metrics(), gw.agents.gauges());
    let body = match principal {
        Some(axum::Extension(p)) if !p.may_use_every_agent() => {
            let may_use = |agent: &str| p.may_use_named(agent);
            let mut body = metrics.render_for(&gauges, &crate::metrics::View::restricted(&may_use, p.name()));
            gw.agents.rollouts().render(&mut body, &may_use);
            body
        }
        _ => {
            let mut body = metrics.render(&gauges);
            gw.agents.rollouts().render(&mut body, &|_| true);
            body
        }
    };
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Read a whole request body within `limit` bytes and `timeout_ms`: 408 when it
/// is late (a trickling client must not hold its connection for ever), 413 when
/// it is too large, 400 when it breaks off (a client that went away did not
/// send too much).
pub(crate) async fn read_body(body: axum::body::Body, limit: usize, timeout_ms: u64) -> Result<bytes::Bytes, ApiError> {
    let read = tokio::time::timeout(std::time::Duration::from_millis(timeout_ms), axum::body::to_bytes(body, limit));
    read.await.map_err(|_| ApiError::read_timeout(timeout_ms))?.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid_request(format!("Could not read the request body: {e}"), None)
        }
    })
}

/// Refuse a body that says it is not JSON; no `Content-Type` counts as JSON
/// (some clients omit it).
pub(crate) fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if let Some(kind) = headers.get(axum::http::header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default();
        let essence = kind.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::unsupported_media_type(kind));
        }
    }
    Ok(())
}
