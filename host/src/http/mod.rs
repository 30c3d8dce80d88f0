//! The HTTP door: routes, auth, request ids. Handlers only translate.

mod admin;
mod chat;
pub mod error;
mod health;
mod models;
pub mod openai;
mod routes;
mod sessions;
mod stream;

use std::sync::Arc;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use admin::DIGEST_HEADER;
pub use chat::{AGENT_HEADER, SESSION_HEADER};
use error::ApiError;
pub use sessions::transcript_json;

use crate::gateway::Gateway;

/// All routes of the gateway port, from the one table in `routes`.
pub fn router(gw: Arc<Gateway>) -> Router {
    routes::router(&gw)
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

/// `GET /`: every request on the root path is decided here. Today that is
/// OpenClaw's WebSocket protocol (which authenticates inside its `connect`
/// frame); an `Origin` policy and the control page belong here too.
async fn root(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    crate::ws::upgrade(gw, peer, request).await
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
