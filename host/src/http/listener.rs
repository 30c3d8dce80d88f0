//! The gateway port's accept loop. Every connection is served by hyper's
//! HTTP/1 server with a header-read timeout, closed when it idles, and counted
//! against a total and a per-client cap, so that nobody without a token can
//! hold the process's sockets: a surplus connection is closed at once, and the
//! ones already open (health checks included) keep being served.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::auth::client_key;
use crate::config::HttpConfig;
use crate::gateway::Gateway;
use crate::metrics::{Closed, Metrics, Refused};

/// `maxConnections` never defaults above this: past it, the memory of idle
/// connections rather than file descriptors is what runs out first.
const DEFAULT_MAX_CONNECTIONS_CEILING: usize = 65_536;
/// `maxConnections` when the open-file limit cannot be read.
const DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT: usize = 1024;
/// One warning per refusal reason per this long; the rest are only counted.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Pause after a failed `accept` (e.g. EMFILE), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The connection limits `serve` enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max: usize,
    /// Open connections per client address (IPv6: per /64) at most.
    pub per_client: usize,
    /// Time to send a request head, from connecting or from the previous response.
    pub header_read_timeout: Duration,
    /// Time a connection may sit with no request in progress and no byte arriving.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The configured limits; absent caps are sized from `fd_limit` (the open-file soft limit).
    pub fn from_config(http: &HttpConfig, fd_limit: Option<u64>) -> Self {
        let max = http.max_connections.unwrap_or_else(|| default_max_connections(fd_limit));
        // Most of the slots, not all: one address (a reverse proxy, a test
        // suite on loopback) can use three quarters of them, but a single
        // address alone can never take the last quarter from everyone else.
        let per_client = http.max_connections_per_client.unwrap_or(max - max / 4).min(max).max(1);
        Self {
            max,
            per_client,
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms()),
        }
    }
}

/// Leave a quarter of the descriptors (at least 64, at most 4096) for what
/// else the process opens: outbound model connections, the session database,
/// the component cache, file watchers.
fn default_max_connections(fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else { return DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT };
    let reserve = (limit / 4).clamp(64, 4096);
    usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX).clamp(1, DEFAULT_MAX_CONNECTIONS_CEILING)
}

/// The process's open-file soft limit, if the platform says.
pub fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit_nofile().ok().map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
fn rlimit_nofile() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raise the open-file soft limit to the hard limit (every connection is a
/// descriptor, and the usual soft default of 1024 is a few hundred sockets).
/// Returns the soft limit now in force.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let (soft, hard) = rlimit_nofile()?;
    // Some systems report an unlimited hard limit but refuse to go past a
    // smaller ceiling (Linux: fs.nr_open, macOS: OPEN_MAX); try those next.
    let mut error = None;
    for target in [hard, 1 << 20, 10_240] {
        if target <= soft || target > hard {
            continue;
        }
        let limit = libc::rlimit { rlim_cur: target as libc::rlim_t, rlim_max: hard as libc::rlim_t };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
            return Ok(target);
        }
        error = Some(std::io::Error::last_os_error());
    }
    error.map_or(Ok(soft), Err)
}

/// Not on this platform: the limit stays as it is.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> std::io::Result<u64> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no RLIMIT_NOFILE here"))
}

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
    router: Router,
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
    router: Router,
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

/// Open connections, in total and per client.
struct Slots {
    max: usize,
    per_client: usize,
    metrics: Arc<Metrics>,
    open: Mutex<Open>,
    /// Woken when the last slot is given back.
    none_open: tokio::sync::Notify,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl Slots {
    fn new(max: usize, per_client: usize, metrics: Arc<Metrics>) -> Self {
        Self { max, per_client, metrics, open: Mutex::default(), none_open: tokio::sync::Notify::new() }
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        loop {
            // Created before the check, so a release in between still wakes it.
            let released = self.none_open.notified();
            if self.open.lock().unwrap().total == 0 {
                return;
            }
            released.await;
        }
    }

    /// A slot for a connection from `ip`, or why there is none.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let client = client_key(ip);
        let mut open = self.open.lock().unwrap();
        if open.total >= self.max {
            return Err(Refused::MaxConnections);
        }
        let mine = open.by_client.entry(client).or_default();
        if *mine >= self.per_client {
            return Err(Refused::MaxConnectionsPerClient);
        }
        *mine += 1;
        open.total += 1;
        self.metrics.connections_open(open.total);
        Ok(Slot { slots: self.clone(), client })
    }
}

/// One open connection's place in [`Slots`]; given back on drop.
struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap();
        open.total -= 1;
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
        self.slots.metrics.connections_open(open.total);
        if open.total == 0 {
            self.slots.none_open.notify_waiters();
        }
    }
}

/// Rate-limited warnings: a flood of refusals must not become a flood of log lines.
#[derive(Default)]
struct Warnings {
    /// Per kind (refusal reasons, then accept errors): when it was last logged, and how often since.
    last: [Option<Instant>; 3],
    quiet: [u64; 3],
}

impl Warnings {
    /// `true` if kind `i` may be logged now; otherwise counts it as suppressed.
    fn due(&mut self, i: usize) -> Option<u64> {
        let now = Instant::now();
        if self.last[i].is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            self.quiet[i] += 1;
            return None;
        }
        self.last[i] = Some(now);
        Some(std::mem::take(&mut self.quiet[i]))
    }

    fn refused(&mut self, refused: Refused, ip: IpAddr, limits: &ConnectionLimits) {
        let Some(suppressed) = self.due(refused as usize) else { return };
        let every = WARN_EVERY.as_secs();
        match refused {
            Refused::MaxConnections => tracing::warn!(
                client = %ip,
                limit = limits.max,
                suppressed,
                "connection refused: gateway.http.maxConnections reached; further refusals in the next {every} s \
                 are only counted (wasmclaw_connections_refused_total)"
            ),
            Refused::MaxConnectionsPerClient => tracing::warn!(
                client = %ip,
                limit = limits.per_client,
                suppressed,
                "connection refused: gateway.http.maxConnectionsPerClient reached for this client; further \
                 refusals in the next {every} s are only counted (wasmclaw_connections_refused_total)"
            ),
        }
    }

    fn accept_failed(&mut self, error: &std::io::Error) {
        let Some(suppressed) = self.due(2) else { return };
        tracing::warn!(%error, suppressed, "accept failed; retrying (wasmclaw_accept_errors_total counts them)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_leave_descriptors_for_the_rest_of_the_process() {
        let limits = |fds| ConnectionLimits::from_config(&HttpConfig::default(), fds);
        assert_eq!(limits(Some(1024)).max, 768);
        assert_eq!(limits(Some(1024)).per_client, 576);
        assert_eq!(limits(Some(20_000)).max, 20_000 - 4096);
        assert_eq!(limits(Some(1 << 20)).max, DEFAULT_MAX_CONNECTIONS_CEILING);
        assert_eq!(limits(Some(16)).max, 1);
        assert_eq!(limits(None).max, DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT);
        let http = HttpConfig { max_connections: Some(10), ..HttpConfig::default() };
        let explicit = ConnectionLimits::from_config(&http, Some(1 << 20));
        assert_eq!((explicit.max, explicit.per_client), (10, 8));
        assert_eq!(explicit.idle_timeout, Duration::from_secs(5));
        assert_eq!(explicit.header_read_timeout, Duration::from_secs(10));
    }

    #[test]
    fn slots_refuse_over_either_cap_and_come_back_on_drop() {
        let slots = Arc::new(Slots::new(3, 2, Arc::new(Metrics::default())));
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert_eq!(slots.take(a).err(), Some(Refused::MaxConnectionsPerClient));
        let _third = slots.take(b).unwrap();
        assert_eq!(slots.take(b).err(), Some(Refused::MaxConnections));
        drop(first);
        assert!(slots.take(a).is_ok());
        assert_eq!(slots.open.lock().unwrap().by_client.len(), 2);
    }

    #[test]
    fn warnings_are_rate_limited_per_kind() {
        let mut w = Warnings::default();
        assert_eq!(w.due(0), Some(0));
        assert_eq!(w.due(0), None);
        assert_eq!(w.due(0), None);
        assert_eq!(w.due(1), Some(0));
        assert_eq!(w.quiet[0], 2);
    }
}
