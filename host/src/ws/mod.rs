//! The WebSocket door: OpenClaw's gateway protocol on the root path of the
//! gateway port. Handshake, then requests and events; runs go through the
//! same path as HTTP.

mod agents;
mod device;
mod events;
mod frames;
mod methods;
mod openclaw;
mod runs;
mod socket;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts as _;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse as _, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::auth::{ClientPlace, NoPlace, Principal, Scope};
use crate::gateway::Gateway;
use frames::{Outbox, Outgoing, PROTOCOL, Queued, err, now_ms, ok};
pub use frames::{Request, WsError, decode};
use socket::{Conn, Socket};

/// Frames before a successful `connect` may be at most this big.
const PRE_CONNECT_MAX: usize = 64 << 10;
/// Frames a connection may have queued; producers wait beyond this.
const OUTBOX_FRAMES: usize = 1024;
/// Requests of one connection being answered at once; past this the
/// connection stops reading until one is done.
const REQUESTS_IN_FLIGHT: usize = 256;
/// Time a client has to send `connect` after the challenge.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a closing connection gets to write its last frames.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Close codes used (RFC 6455).
mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot serve the connection now; a reconnect is checked afresh.
    pub const TRY_AGAIN: u16 = 1013;
    /// OpenClaw's close for a connection whose device was revoked or removed.
    pub const DEVICE_REMOVED: u16 = 4001;
}

/// An upgrade request on `/` (dispatched by the HTTP door): take a handshake
/// place, answer `101` and run the protocol on the upgraded connection.
///
/// axum's `WebSocketUpgrade` checks the request and words its refusals, but
/// it fixes the library's limits at upgrade time; the connection needs a
/// small limit until `connect` and the client's own after it, so the upgrade
/// itself is done here with hyper.
pub async fn upgrade(gw: Arc<Gateway>, peer: std::net::SocketAddr, request: axum::extract::Request) -> Response {
    use axum::http::{HeaderValue, StatusCode, header};
    let (mut parts, _) = request.into_parts();
    // The extractor takes the upgrade future out of the request; keep a handle (it is shared).
    let on_upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned();
    let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    if let Err(rejection) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        return rejection.into_response();
    }
    let (Some(on_upgrade), Some(key)) = (on_upgrade, key) else {
        return (StatusCode::BAD_REQUEST, "not a WebSocket upgrade").into_response();
    };
    let place = match gw.ws_handshakes.take(peer.ip()) {
        Ok(place) => place,
        Err(refused) => {
            gw.agents.metrics().ws_handshake_refused();
            let ws = &gw.config.gateway.ws;
            match (refused, refusal_warning_due(refused)) {
                (_, None) => {}
                (NoPlace::Full, Some(suppressed)) => tracing::warn!(
                    %peer, limit = ws.max_pending_handshakes, suppressed,
                    "websocket upgrade refused: gateway.ws.maxPendingHandshakes handshakes in progress; further \
                     refusals this minute are only counted (wasmclaw_ws_handshakes_refused_total)"
                ),
                (NoPlace::ClientFull, Some(suppressed)) => tracing::warn!(
                    %peer, limit = ws.pending_handshakes_per_client(), suppressed,
                    "websocket upgrade refused: this client has gateway.ws.maxPendingHandshakesPerClient \
                     handshakes in progress; further refusals this minute are only counted \
                     (wasmclaw_ws_handshakes_refused_total)"
                ),
            }
            let mut res =
                (StatusCode::SERVICE_UNAVAILABLE, "too many WebSocket handshakes in progress; retry shortly\n")
                    .into_response();
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let conn = Conn::new(hyper_util::rt::TokioIo::new(upgraded));
                connection(gw, conn, peer.ip(), place).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a header value"));
    res
}

/// `Some(refusals not logged since)` when a refusal for `why` may be logged:
/// one line per reason a minute, so a flood of upgrades is not a flood of log lines.
fn refusal_warning_due(why: NoPlace) -> Option<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Per reason: the minute (since START, plus one) last logged, and the refusals since.
    static LOGGED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    static QUIET: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    let i = why as usize;
    let minute = START.get_or_init(Instant::now).elapsed().as_secs() / 60 + 1;
    if LOGGED[i].swap(minute, Ordering::Relaxed) == minute {
        QUIET[i].fetch_add(1, Ordering::Relaxed);
        return None;
    }
    Some(QUIET[i].swap(0, Ordering::Relaxed))
}

/// Largest frame `principal` may send after connect: only `operator.admin`
/// installs agents, so only it needs room for a component.
fn max_payload(gw: &Gateway, principal: &Principal) -> usize {
    gw.config.gateway.ws.max_payload_for(principal.allows(Scope::Admin), gw.config.agents.max_component_bytes)
}

async fn connection(gw: Arc<Gateway>, conn: Conn<socket::Io>, peer: std::net::IpAddr, place: ClientPlace) {
    let conn_id = uuid::Uuid::new_v4().to_string();
    let progress = conn.progress();
    let (out, mut rx) = Outbox::new(OUTBOX_FRAMES);
    // Until connect: the library reads one frame at a time, each at most 64 KiB.
    let mut ws = socket::open(conn, PRE_CONNECT_MAX).await;
    let nonce = uuid::Uuid::new_v4().to_string();
    let greeted = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let challenge = json!({"nonce": nonce, "ts": now_ms()});
        let challenge = json!({"type": "event", "event": "connect.challenge", "payload": challenge, "seq": 1});
        if ws.send(Message::Text(challenge.to_string().into())).await.is_err() {
            return None;
        }
        Some(handshake(&gw, &out, &mut ws, &conn_id, peer, &nonce).await)
    })
    .await;
    // Connected or not, this connection is no longer a pending handshake.
    drop(place);
    let (principal, device) = match greeted {
        Ok(None) => return,
        Ok(Some(Ok(connected))) => connected,
        Ok(Some(Err(close))) => return refuse(ws, &mut rx, close).await,
        Err(_) => {
            let close = Outgoing::Close { code: close::POLICY, reason: "connect timed out".into() };
            return refuse(ws, &mut rx, close).await;
        }
    };
    // Hand over at the end of the connect frame to a stream with this client's limit.
    let max_payload = max_payload(&gw, &principal);
    if ws.flush().await.is_err() {
        return;
    }
    let mut conn = ws.into_inner();
    conn.open_gate();
    let (sink, mut stream) = socket::open(conn, max_payload).await.split();
    let ws_config = &gw.config.gateway.ws;
    let writer = Writer {
        tick: Duration::from_millis(ws_config.tick_interval_ms),
        send_timeout: Duration::from_millis(ws_config.send_timeout_ms),
        progress,
    };
    let mut writer = tokio::spawn(writer.run(sink, rx));
    let end = serve(&gw, &out, &mut stream, max_payload, principal, device).await;
    // The runs this connection started stop now, whatever is still queued.
    out.end();
    drop(out);
    match end {
        // The writer returns the sink once it has written the close frame.
        End::Closing => match tokio::time::timeout(CLOSE_FLUSH, &mut writer).await {
            Ok(Ok(Some(sink))) => {
                if let Ok(ws) = stream.reunite(sink) {
                    socket::linger(ws).await;
                }
            }
            Ok(_) => {}
            Err(_) => writer.abort(),
        },
        End::Gone => writer.abort(),
    }
    tracing::debug!(conn_id, "websocket closed");
}

/// A handshake that failed: write its answer and the close, then linger.
async fn refuse(mut ws: Socket, rx: &mut tokio::sync::mpsc::Receiver<Queued>, close: Outgoing) {
    let mut seq = 1;
    let send = async {
        while let Ok(queued) = rx.try_recv() {
            ws.feed(render(queued.frame, &mut seq)).await?;
        }
        ws.send(render(close, &mut seq)).await
    };
    if tokio::time::timeout(CLOSE_FLUSH, send).await.is_ok_and(|sent| sent.is_ok()) {
        socket::linger(ws).await;
    }
}

/// Wait for `connect`; answer hello-ok and return who connected (and the
/// device that proved its key, if any), or an error and the close to send.
async fn handshake(
    gw: &Gateway,
    out: &Outbox,
    stream: &mut Socket,
    conn_id: &str,
    peer: std::net::IpAddr,
    nonce: &str,
) -> Result<(Principal, Option<device::ConnectedDevice>), Outgoing> {
    let policy_close = |reason: &str| Outgoing::Close { code: close::POLICY, reason: reason.into() };
    let text = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            // The library refuses a frame announced over the limit at its header.
            Some(Err(e)) if socket::too_big(&e) => {
                return Err(Outgoing::Close { code: close::TOO_BIG, reason: "frame too large before connect".into() });
            }
            _ => return Err(policy_close("expected a connect request")),
        }
    };
    let reject = |id: &Value, e: WsError| {
        let reason = e.message.clone();
        out.send(err(id, &e));
        policy_close(&reason)
    };
    let req = match decode(&text) {
        Ok(r) => r,
        Err(e) => return Err(reject(&Value::Null, e)),
    };
    if req.method != "connect" {
        return Err(reject(&req.id, WsError::invalid("the first request must be connect")));
    }
    let p = &req.params;
    let (min, max) = (p["minProtocol"].as_u64().unwrap_or(PROTOCOL), p["maxProtocol"].as_u64().unwrap_or(PROTOCOL));
    if !(min..=max).contains(&PROTOCOL) {
        return Err(reject(
            &req.id,
            WsError::invalid(format!("protocol {min}..{max} not supported; this gateway speaks {PROTOCOL}")),
        ));
    }
    if let Err(retry_after) = gw.lockout.check(peer) {
        let mut e = WsError::new(frames::codes::UNAVAILABLE, "too many failed attempts; try again later");
        e.details = Some(json!({"code": "AUTH_RATE_LIMITED", "retryAfterMs": retry_after * 1000}));
        e.retryable = true;
        return Err(reject(&req.id, e));
    }
    let authenticated = match device::authenticate(gw, p, nonce).await {
        Ok(a) => a,
        Err(refused) => {
            if refused.counts {
                gw.auth_failed(peer);
            }
            return Err(reject(&req.id, refused.error));
        }
    };
    let principal = authenticated.principal;
    let policy = &gw.config.gateway.ws;
    let role = p["role"].as_str().unwrap_or("operator");
    // A client asks for the least it needs; it gets what it asked for and
    // its credential holds, and the connection may do no more than that.
    let principal = match p["scopes"].as_array() {
        Some(asked) => {
            let asked: Vec<Scope> = asked.iter().filter_map(|s| s.as_str().and_then(Scope::parse)).collect();
            principal.narrowed(&asked)
        }
        None => principal,
    };
    let scopes: Vec<&str> = principal.scopes().iter().map(|s| s.name()).collect();
    let client_id = p["client"]["id"].as_str().unwrap_or_default();
    let mut auth = json!({"role": role, "scopes": scopes});
    if let Some(proven) = authenticated.device.as_ref().filter(|_| !authenticated.by_device_token)
        && let Some(token) = device::pair(gw, proven, &principal, client_id).await
    {
        auth["deviceToken"] = json!(token);
    }
    out.send(ok(
        &req.id,
        json!({
            "type": "hello-ok",
            "protocol": PROTOCOL,
            "server": {"version": env!("CARGO_PKG_VERSION"), "connId": conn_id, "name": "wasmclaw"},
            "features": {"methods": methods::names(), "events": methods::EVENTS},
            "auth": auth,
            "policy": {
                "maxPayload": max_payload(gw, &principal),
                "maxBufferedBytes": max_payload(gw, &principal) * 2,
                "tickIntervalMs": policy.tick_interval_ms,
            },
        }),
    ));
    tracing::info!(
        conn_id, principal = principal.name(), client = %p["client"]["id"], version = %p["client"]["version"],
        device = authenticated.device.as_ref().map_or("", |d| d.id.as_str()), by_device_token = authenticated.by_device_token,
        "websocket client connected"
    );
    let by_device_token = authenticated.by_device_token;
    Ok((principal, authenticated.device.map(|d| device::ConnectedDevice { id: d.id, by_device_token })))
}

/// How a connection ended.
enum End {
    /// We queued a close frame.
    Closing,
    /// The client left, or stopped reading.
    Gone,
}

/// The request loop of a connected client.
async fn serve(
    gw: &Arc<Gateway>,
    out: &Outbox,
    stream: &mut futures::stream::SplitStream<Socket>,
    max_payload: usize,
    principal: Principal,
    device: Option<device::ConnectedDevice>,
) -> End {
    let mut changes = gw.agents.subscribe();
    let mut devices_gone = gw.devices_gone.subscribe();
    let mut shutdown = gw.shutdown_signal();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT));
    let mut place = None;
    loop {
        tokio::select! {
            // Read the next request only when it has a place to run in.
            taken = in_flight.clone().acquire_owned(), if place.is_none() => place = taken.ok(),
            message = stream.next(), if place.is_some() => {
                let text = match message {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        out.push(err(&Value::Null, &WsError::invalid("binary frames are not supported; send JSON text"))).await;
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    // The library has queued its reply; a close of ours sends it.
                    Some(Ok(Message::Close(_))) => {
                        out.push(Outgoing::Close { code: close::NORMAL, reason: String::new() }).await;
                        return End::Closing;
                    }
                    Some(Err(e)) if socket::too_big(&e) => {
                        out.push(Outgoing::Close { code: close::TOO_BIG, reason: format!("frame over {max_payload} bytes") }).await;
                        return End::Closing;
                    }
                    _ => return End::Gone,
                };
                match decode(&text) {
                    Ok(req) => {
                        let (gw, out, principal, place) = (gw.clone(), out.clone(), principal.clone(), place.take());
                        tokio::spawn(async move {
                            methods::dispatch(gw, out, principal, req.id, req.method, req.params).await;
                            drop(place);
                        });
                    }
                    // The connection stays usable after a bad frame.
                    Err(e) => { out.push(err(&Value::Null, &e)).await; }
                }
            }
            change = changes.recv() => {
                if let Ok(change) = change {
                    out.event("agents.changed", json!({"id": change.id, "action": change.action, "digest": change.digest})).await;
                }
            }
            // As OpenClaw does: a revoked or removed device loses its connections at once.
            gone = devices_gone.recv(), if device.is_some() => {
                let Some(device) = device.as_ref() else { continue };
                if let Some(close) = device::close_for(gw, device, gone).await {
                    out.push(close).await;
                    return End::Closing;
                }
            }
            // The writer gave up on the client (it stopped reading) or the socket failed.
            () = out.closed() => return End::Gone,
            () = draining(&mut shutdown) => {
                out.event("shutdown", json!({"reason": "gateway shutting down"})).await;
                out.push(Outgoing::Close { code: close::GOING_AWAY, reason: "gateway shutting down".into() }).await;
                return End::Closing;
            }
        }
    }
}

/// Resolves once the gateway begins to shut down.
async fn draining(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|draining| *draining).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A queued frame as a library message; events get the next `seq`.
fn render(frame: Outgoing, seq: &mut u64) -> Message {
    match frame {
        Outgoing::Frame(v) => Message::Text(v.to_string().into()),
        Outgoing::Event { event, payload } => {
            *seq += 1;
            Message::Text(json!({"type": "event", "event": event, "payload": payload, "seq": *seq}).to_string().into())
        }
        Outgoing::Close { code, reason } => {
            Message::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))
        }
    }
}

/// Writes a connected client's frames in order, numbering events and
/// ticking; gives up on a client that takes no bytes for `send_timeout`.
struct Writer {
    tick: Duration,
    send_timeout: Duration,
    progress: Arc<socket::Progress>,
}

impl Writer {
    /// Returns the sink after writing a close frame, `None` if the client is gone.
    async fn run(
        self,
        mut sink: futures::stream::SplitSink<Socket, Message>,
        mut rx: tokio::sync::mpsc::Receiver<Queued>,
    ) -> Option<futures::stream::SplitSink<Socket, Message>> {
        // The challenge was event 1.
        let mut seq = 1u64;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + self.tick, self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let Queued { frame, receipt } = tokio::select! {
                queued = rx.recv() => queued?,
                _ = ticker.tick() => Queued { frame: Outgoing::Event { event: "tick", payload: json!({"ts": now_ms()}) }, receipt: None },
            };
            let closing = matches!(frame, Outgoing::Close { .. });
            let message = render(frame, &mut seq);
            if !self.write(&mut sink, message).await {
                return None;
            }
            drop(receipt);
            if closing {
                return Some(sink);
            }
        }
    }

    /// Write one message; false if the socket failed or the client stalled.
    async fn write(&self, sink: &mut futures::stream::SplitSink<Socket, Message>, message: Message) -> bool {
        let started = Instant::now();
        let send = sink.send(message);
        tokio::pin!(send);
        // Most writes complete at once: no timer for those.
        if let Some(sent) = futures::FutureExt::now_or_never(&mut send) {
            return sent.is_ok();
        }
        let check = (self.send_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::select! {
                sent = &mut send => return sent.is_ok(),
                () = tokio::time::sleep(check) => {
                    if self.progress.stalled_for(started) >= self.send_timeout {
                        tracing::warn!(
                            send_timeout_ms = self.send_timeout.as_millis() as u64,
                            "websocket client too slow to read its frames; disconnecting"
                        );
                        return false;
                    }
                }
            }
        }
    }
}
