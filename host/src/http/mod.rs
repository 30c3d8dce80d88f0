//! The HTTP door: routes, auth, request ids. Handlers only translate.

mod admin;
mod chat;
pub mod error;
mod health;
mod models;
pub mod openai;
mod sessions;
mod stream;

use std::sync::Arc;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use admin::DIGEST_HEADER;
pub use chat::{AGENT_HEADER, SESSION_HEADER};
use error::ApiError;
pub use sessions::transcript_json;

use crate::config::MetricsAccess;
use crate::gateway::Gateway;

/// All routes of the gateway port. The WebSocket upgrade will live on `/`.
pub fn router(gw: Arc<Gateway>) -> Router {
    let allow = |methods: &'static str| move || async move { ApiError::method_not_allowed(methods) };
    let admin_api = Router::new()
        .route("/admin/agents", get(admin::list).fallback(allow("GET")))
        .route(
            "/admin/agents/{id}",
            get(admin::show)
                .put(admin::install)
                .delete(admin::remove)
                .fallback(allow("GET, PUT, DELETE"))
                // The component limit applies here, not the chat body limit.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/admin/agents/{id}/rollback", post(admin::rollback).fallback(allow("POST")))
        .route_layer(middleware::from_fn_with_state(gw.clone(), require_auth));
    let session_api = Router::new()
        .route("/sessions", get(sessions::list).fallback(|| async { ApiError::method_not_allowed("GET") }))
        .route(
            "/sessions/{key}",
            axum::routing::delete(sessions::reset).fallback(|| async { ApiError::method_not_allowed("DELETE") }),
        )
        .route(
            "/sessions/{key}/history",
            get(sessions::history).fallback(|| async { ApiError::method_not_allowed("GET") }),
        )
        .route_layer(middleware::from_fn_with_state(gw.clone(), require_auth));
    let mut routes = Router::new().merge(session_api).merge(admin_api);
    if gw.config.gateway.metrics.enabled {
        let metrics = Router::new().route("/metrics", get(metrics).fallback(allow("GET")));
        routes = routes.merge(match gw.config.gateway.metrics.access {
            MetricsAccess::Auth => metrics.route_layer(middleware::from_fn_with_state(gw.clone(), require_auth)),
            MetricsAccess::Loopback => metrics.route_layer(middleware::from_fn(loopback_only)),
        });
    }
    if gw.config.gateway.http.endpoints.chat_completions.enabled {
        let protected = Router::new()
            .route(
                "/v1/chat/completions",
                post(chat::completions).fallback(|| async { ApiError::method_not_allowed("POST") }),
            )
            .route("/v1/models", get(models::list).fallback(|| async { ApiError::method_not_allowed("GET") }))
            // Only on a router with routes: axum panics on an empty one.
            .route_layer(middleware::from_fn_with_state(gw.clone(), require_auth));
        routes = routes.merge(protected);
    }
    routes
        // The WebSocket protocol lives on the root path, as in OpenClaw.
        .route("/", get(crate::ws::upgrade))
        .route("/health", get(health::live))
        .route("/healthz", get(health::live))
        .route("/ready", get(health::ready))
        .route("/readyz", get(health::ready))
        .fallback(|| async { ApiError::not_found() })
        .layer(middleware::from_fn_with_state(gw.clone(), count_requests))
        .with_state(gw)
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::REFERRER_POLICY,
            axum::http::HeaderValue::from_static("no-referrer"),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), uri = %request.uri().path(), request_id = %id)
        })
        // A 5xx is already logged, with its cause, by the run that failed.
        .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Bearer auth before anything else on protected routes.
async fn require_auth(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    gw.lockout.check(ip).map_err(ApiError::locked_out)?;
    if let Err(failure) = gw.auth.verify_bearer(request.headers()) {
        gw.agents.metrics().auth_failure();
        if let Some(lockout) = gw.lockout.fail(ip) {
            tracing::warn!(%ip, lockout_secs = lockout.as_secs(), "client locked out after repeated auth failures");
        }
        return Err(failure.into());
    }
    gw.lockout.succeed(ip);
    Ok(next.run(request).await)
}

/// Count every response by matched route (not raw path: bounded label set).
async fn count_requests(State(gw): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    gw.agents.metrics().request(&route, response.status().as_u16());
    response
}

/// `GET /metrics`: Prometheus text.
async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let body = gw.agents.metrics().render(&gw.agents.gauges());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn loopback_only(ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next) -> Response {
    if !peer.ip().is_loopback() {
        return ApiError {
            code: Some("forbidden"),
            message: "Metrics are served to loopback clients only".into(),
            ..ApiError::not_found()
        }
        .into_response_with(axum::http::StatusCode::FORBIDDEN);
    }
    next.run(request).await
}

/// Serve until `shutdown` resolves, then let open requests finish.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(gw.clone());
    // SSE writes many small chunks: without TCP_NODELAY, Nagle holds each
    // one back until the previous is acknowledged (~40 ms with delayed ACKs).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server =
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown({
            let gw = gw.clone();
            async move {
                shutdown.await;
                gw.begin_drain();
                let _ = drain_tx.send(());
            }
        });
    // Graceful, but bounded: once the grace is over (plus time for streams
    // to write their closing error), stop waiting for stragglers.
    let hard_stop = async move {
        if drain_rx.await.is_ok() {
            tokio::time::sleep(gw.shutdown_grace() + std::time::Duration::from_secs(2)).await;
            tracing::warn!("connections still open after the shutdown grace; stopping anyway");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        _ = hard_stop => Ok(()),
    }
}
