//! The gateway port's accept loop. Every connection is served by hyper's
//! HTTP/1 server with a header-read timeout, closed when it idles, and counted
//! against a total and a per-client cap, so that nobody without a token can
//! hold the process's sockets: a surplus connection is closed at once, and the
//! ones already open (health checks included) keep being served.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::gateway::Gateway;
use crate::metrics::{Closed, Metrics};

mod caps;

pub use caps::{ConnectionLimits, fd_limit, raise_fd_limit};
use caps::{Slot, Slots, Warnings};

/// Pause after a failed `accept` (e.g. EMFILE), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serve the gateway's routes on `listener` until `shutdown` resolves, then let
/// open requests finish: up to the shutdown grace, plus 2 s for streams to
/// write their closing error.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ConnectionLimits::from_config(&gw.config.gateway.http, fd_limit());
    let metrics = gw.agents.metrics().clone();
    metrics.connection_limits(limits.max, limits.per_client);
    if let Some(fds) = fd_limit().filter(|fds| limits.max as u64 >= *fds) {
        tracing::warn!(
            max_connections = limits.max,
            fd_limit = fds,
            "gateway.http.maxConnections is not below the open-file limit; accept will fail before the cap applies"
        );
    }
    tracing::info!(
        max_connections = limits.max,
        max_connections_per_client = limits.per_client,
        header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        idle_timeout_ms = limits.idle_timeout.as_millis() as u64,
        fd_limit = fd_limit(),
        "connection limits"
    );
    let router = super::router(gw.clone());
    let slots = Arc::new(Slots::new(limits.max, limits.per_client, metrics.clone()));
    let mut warnings = Warnings::default();
    // Tells each connection task to wind down.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // The peer gave up between SYN and accept: nothing to do.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        metrics.accept_error();
                        warnings.accept_failed(&e);
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                metrics.connection_refused(refused);
                warnings.refused(refused, peer.ip(), &limits);
                drop(tcp);
                continue;
            }
        };
        // SSE writes many small chunks: without TCP_NODELAY, Nagle holds each
        // one back until the previous is acknowledged (~40 ms with delayed ACKs).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            router: router.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            drain: drain_rx.clone(),
        };
        tokio::spawn(connection.serve(tcp, peer, slot));
    }
    drop(listener);
    gw.begin_drain();
    let _ = drain_tx.send(true);
    // Wait for every socket, upgraded WebSockets included (they close on the
    // drain signal with a `shutdown` event), not just for hyper's connections.
    // Graceful, but bounded: once the grace is over (plus time for streams
    // to write their closing error), stop waiting for stragglers.
    let hard_stop = gw.shutdown_grace() + Duration::from_secs(2);
    if tokio::time::timeout(hard_stop, slots.all_closed()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace; stopping anyway");
    }
    Ok(())
}

/// What one connection's task needs.
struct Connection {
    router: super::GatewayService,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    drain: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    /// Serve requests on `tcp` until either side closes it, a timeout ends it,
    /// it is upgraded (the WebSocket then owns the socket, and none of these
    /// timeouts apply to it), or the drain has let its last request finish.
    async fn serve(mut self, tcp: TcpStream, peer: SocketAddr, slot: Slot) {
        let activity = Arc::new(Activity::new());
        // The slot travels with the socket, into an upgraded WebSocket too, so
        // it is given back exactly when the descriptor is closed.
        let io = TokioIo::new(ClientStream { tcp, activity: activity.clone(), _slot: slot });
        let service = ConnectionService { router: self.router.clone(), peer, activity: activity.clone() };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.limits.header_read_timeout);
        let connection = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(connection);
        let idle = tokio::time::sleep(self.limits.idle_timeout);
        tokio::pin!(idle);
        let mut closing = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    match result {
                        Err(e) if e.is_timeout() => self.metrics.connection_closed(Closed::HeaderTimeout),
                        Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                        Ok(()) => {}
                    }
                    break;
                }
                () = &mut idle, if !closing => match activity.idle_until(self.limits.idle_timeout) {
                    Some(deadline) if deadline <= Instant::now() => {
                        closing = true;
                        self.metrics.connection_closed(Closed::IdleTimeout);
                        // Closes at once: no request is in progress.
                        connection.as_mut().graceful_shutdown();
                    }
                    Some(deadline) => idle.as_mut().reset(deadline),
                    // A request is in progress; its end restarts the clock.
                    None => idle.as_mut().reset(Instant::now() + self.limits.idle_timeout),
                },
                _ = self.drain.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When a connection was last busy: the end of its last response or the last
/// byte read, and how many requests are in progress.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0), in_flight: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the connection counts as idle for `timeout`, or `None` while a request is in progress.
    fn idle_until(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.start + Duration::from_millis(self.last.load(Ordering::Relaxed)) + timeout)
    }
}

/// One request in progress on a connection, from its head to the end of its response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's socket: notes each read for the idle clock and holds the connection's slot.
struct ClientStream {
    tcp: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for ClientStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The router as hyper sees it on one connection: it adds `ConnectInfo` and
/// marks the connection busy until the response body has been sent.
#[derive(Clone)]
struct ConnectionService {
    router: super::GatewayService,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let busy = Busy::new(self.activity.clone());
        let router = self.router.clone();
        // None while tracing is off; else it lasts until the body is sent (a stream's end).
        let span = crate::telemetry::server_span(&request, self.peer);
        Box::pin(async move {
            let routed = router.oneshot(request.map(axum::body::Body::new));
            let Ok(response) = tracing::Instrument::instrument(routed, span.clone()).await;
            crate::telemetry::responded(&span, response.status().as_u16());
            Ok(response.map(|body| TrackedBody { body, _busy: busy, _span: span }))
        })
    }
}

/// A response body that keeps its connection busy until hyper has sent it all (and dropped it).
struct TrackedBody {
    body: axum::body::Body,
    _busy: Busy,
    /// The request's server span, ended when the body is.
    _span: tracing::Span,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
