//! The WebSocket door: OpenClaw's gateway protocol on the root path of the
//! gateway port. Handshake, then requests and events; runs go through the
//! same path as HTTP.

mod frames;
mod methods;
mod runs;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::auth::{Principal, Scope};
use crate::config::AuthMode;
use crate::gateway::Gateway;
use frames::{Outbox, Outgoing, PROTOCOL, err, now_ms, ok};
pub use frames::{Request, WsError, decode};

/// Frames before a successful `connect` may be at most this big.
const PRE_CONNECT_MAX: usize = 64 << 10;
/// Frames a connection may have queued before it counts as a slow reader.
const OUTBOX_FRAMES: usize = 1024;
/// Time a client has to send `connect` after the challenge.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Close codes used (RFC 6455).
mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// An upgrade request on `/` (dispatched by the HTTP door): start a protocol connection.
pub fn upgrade(gw: Arc<Gateway>, peer: std::net::SocketAddr, ws: WebSocketUpgrade) -> Response {
    let max = gw.config.gateway.ws.max_payload(gw.config.agents.max_component_bytes);
    // The library limit sits above ours so an oversize frame reaches our
    // check and gets a 1009 close instead of a dropped socket.
    ws.max_message_size(max * 2)
        .max_frame_size(max * 2)
        // Measured (bench ws-idle): the 128 KiB defaults are nearly all of an
        // idle connection's memory. Frames larger than these still assemble.
        .read_buffer_size(8 << 10)
        .write_buffer_size(8 << 10)
        .on_upgrade(move |socket| connection(gw, socket, peer.ip()))
}

async fn connection(gw: Arc<Gateway>, socket: WebSocket, peer: std::net::IpAddr) {
    let conn_id = uuid::Uuid::new_v4().to_string();
    let (sink, mut stream) = socket.split();
    let (out, rx, overflow) = Outbox::new(OUTBOX_FRAMES);
    let connected = Arc::new(AtomicBool::new(false));
    let tick = Duration::from_millis(gw.config.gateway.ws.tick_interval_ms);
    let mut writer = tokio::spawn(write_frames(sink, rx, connected.clone(), tick));

    out.event("connect.challenge", json!({"nonce": uuid::Uuid::new_v4().to_string(), "ts": now_ms()}));
    let max_payload = gw.config.gateway.ws.max_payload(gw.config.agents.max_component_bytes);
    let end = match tokio::time::timeout(CONNECT_TIMEOUT, handshake(&gw, &out, &mut stream, &conn_id, peer)).await {
        Ok(Ok(principal)) => {
            connected.store(true, Ordering::Relaxed);
            serve(&gw, &out, &mut stream, &overflow, max_payload, principal).await
        }
        Ok(Err(close)) => {
            out.send(close);
            End::Closing
        }
        Err(_) => {
            out.send(Outgoing::Close { code: close::POLICY, reason: "connect timed out".into() });
            End::Closing
        }
    };
    drop(out);
    // Runs still hold outboxes, so the writer will not end by itself: give a
    // close frame a moment to flush, and stop at once if nobody is reading.
    match end {
        End::Closing => {
            if tokio::time::timeout(Duration::from_secs(5), &mut writer).await.is_err() {
                writer.abort();
            }
            // Linger for the client's close reply: dropping a socket with
            // unread input makes the kernel reset it, which can destroy the
            // close frame we just sent.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        End::Gone => writer.abort(),
    }
    tracing::debug!(conn_id, "websocket closed");
}

/// Wait for `connect`; answer hello-ok and return who connected, or an
/// error and the close to send.
async fn handshake(
    gw: &Gateway,
    out: &Outbox,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    conn_id: &str,
    peer: std::net::IpAddr,
) -> Result<Principal, Outgoing> {
    let policy_close = |reason: &str| Outgoing::Close { code: close::POLICY, reason: reason.into() };
    let text = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) if t.len() > PRE_CONNECT_MAX => {
                return Err(Outgoing::Close { code: close::TOO_BIG, reason: "frame too large before connect".into() });
            }
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
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
    let presented = p["auth"]["token"].as_str().or_else(|| p["auth"]["password"].as_str()).unwrap_or_default();
    let Some(principal) = gw.auth.authenticate(presented) else {
        gw.agents.metrics().auth_failure();
        if let Some(lockout) = gw.lockout.fail(peer) {
            tracing::warn!(%peer, lockout_secs = lockout.as_secs(), "client locked out after repeated auth failures");
        }
        let (message, detail) = match gw.auth.mode() {
            AuthMode::Password => ("unauthorized: gateway password mismatch", "AUTH_PASSWORD_MISMATCH"),
            AuthMode::Token | AuthMode::None => ("unauthorized: gateway token mismatch", "AUTH_TOKEN_MISMATCH"),
        };
        let mut e = WsError::invalid(message);
        e.details = Some(json!({"code": detail}));
        tracing::info!(client = %p["client"]["id"], "websocket connect refused: wrong credentials");
        return Err(reject(&req.id, e));
    };
    gw.lockout.succeed(peer);
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
    out.send(ok(
        &req.id,
        json!({
            "type": "hello-ok",
            "protocol": PROTOCOL,
            "server": {"version": env!("CARGO_PKG_VERSION"), "connId": conn_id, "name": "wasmclaw"},
            "features": {"methods": methods::names(), "events": methods::EVENTS},
            "auth": {"role": role, "scopes": scopes},
            "policy": {
                "maxPayload": policy.max_payload(gw.config.agents.max_component_bytes),
                "maxBufferedBytes": policy.max_payload(gw.config.agents.max_component_bytes) * 2,
                "tickIntervalMs": policy.tick_interval_ms,
            },
        }),
    ));
    tracing::info!(
        conn_id, principal = principal.name(), client = %p["client"]["id"], version = %p["client"]["version"],
        "websocket client connected"
    );
    Ok(principal)
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
    stream: &mut futures::stream::SplitStream<WebSocket>,
    overflow: &tokio::sync::Notify,
    max_payload: usize,
    principal: Principal,
) -> End {
    let mut changes = gw.agents.subscribe();
    let mut shutdown = gw.shutdown_signal();
    loop {
        tokio::select! {
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        out.send(err(&Value::Null, &WsError::invalid("binary frames are not supported; send JSON text")));
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    // The library refuses frames past twice our limit; say so.
                    Some(Err(e)) if e.to_string().contains("limit") => {
                        out.send(Outgoing::Close { code: close::TOO_BIG, reason: format!("frame over {max_payload} bytes") });
                        return End::Closing;
                    }
                    _ => return End::Gone,
                };
                if text.len() > max_payload {
                    out.send(Outgoing::Close { code: close::TOO_BIG, reason: format!("frame over {max_payload} bytes") });
                    return End::Closing;
                }
                match decode(&text) {
                    Ok(req) => {
                        let principal = principal.clone();
                        tokio::spawn(methods::dispatch(gw.clone(), out.clone(), principal, req.id, req.method, req.params));
                    }
                    // The connection stays usable after a bad frame.
                    Err(e) => { out.send(err(&Value::Null, &e)); }
                }
            }
            change = changes.recv() => {
                if let Ok(change) = change {
                    out.event("agents.changed", json!({"id": change.id, "action": change.action, "digest": change.digest}));
                }
            }
            _ = overflow.notified() => {
                tracing::warn!("websocket client too slow to read its frames; disconnecting");
                return End::Gone;
            }
            _ = shutdown.wait_for(|draining| *draining) => {
                out.event("shutdown", json!({"reason": "gateway shutting down"}));
                out.send(Outgoing::Close { code: close::GOING_AWAY, reason: "gateway shutting down".into() });
                return End::Closing;
            }
        }
    }
}

/// Write queued frames in order, numbering events; tick while connected.
async fn write_frames(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    connected: Arc<AtomicBool>,
    tick: Duration,
) {
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => f,
                None => break,
            },
            _ = ticker.tick() => {
                if !connected.load(Ordering::Relaxed) { continue; }
                Outgoing::Event { event: "tick", payload: json!({"ts": now_ms()}) }
            }
        };
        let message = match frame {
            Outgoing::Frame(v) => Message::Text(v.to_string().into()),
            Outgoing::Event { event, payload } => {
                seq += 1;
                Message::Text(
                    json!({"type": "event", "event": event, "payload": payload, "seq": seq}).to_string().into(),
                )
            }
            Outgoing::Close { code, reason } => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                return;
            }
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
