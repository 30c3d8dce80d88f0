//! Connections nobody authenticated yet (hardening issue): slow or silent
//! sockets are closed on time, caps close surplus connections at once, and
//! the gateway keeps answering those it already holds.
//!
//! Raw TCP on purpose: HTTP client libraries neither send half a header nor
//! let a test choose which connection a request goes out on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

fn http_config(http: &str) -> String {
    format!("{{ gateway: {{ http: {{ {http} }}, metrics: {{ access: \"loopback\" }} }} }}")
}

fn addr(gw: &TestGateway) -> SocketAddr {
    gw.base.trim_start_matches("http://").parse().unwrap()
}

async fn open(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(addr(gw)).await.unwrap()
}

/// A connection from another loopback address: another client as far as the gateway can tell.
async fn open_from(gw: &TestGateway, local: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr(gw)).await.unwrap()
}

/// Wait up to `within` for the gateway to close `socket`; returns how long that took.
/// Bytes the gateway sends first (a response) are read and skipped.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed()).ok_or("deadline passed")?;
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {within:?}")),
            Ok(Ok(0) | Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Read one response (status line, headers, `Content-Length` body) from `socket`.
async fn read_response(socket: &mut TcpStream) -> Result<(u16, String), String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed before a response: {:?}", String::from_utf8_lossy(&raw)));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("no status: {head}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .ok_or(format!("no content-length: {head}"))?;
    while raw.len() < head_end + length {
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed inside the body".into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok((status, String::from_utf8_lossy(&raw[head_end..head_end + length]).to_string()))
}

/// `GET path` on an open keep-alive connection.
async fn get_on(socket: &mut TcpStream, path: &str) -> Result<(u16, String), String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n");
    socket.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(PATIENCE, read_response(socket)).await.map_err(|_| format!("no answer to {path}"))?
}

/// The value of the metric line starting with `name` (labels included), if present.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Read `/metrics` on `socket` until `ready` holds for it; panics after [`PATIENCE`].
async fn wait_metrics_on(socket: &mut TcpStream, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, text) = get_on(socket, "/metrics").await.unwrap();
        assert_eq!(status, 200, "{text}");
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn half_a_header_line_is_closed_within_the_header_timeout() {
    let gw = TestGateway::start(&http_config("headerReadTimeoutMs: 500"));
    let mut socket = open(&gw).await;
    let started = Instant::now();
    socket.write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: ").await.unwrap();
    // Keep trickling, so the connection is never idle: only the header clock can end it.
    let mut buf = [0u8; 1024];
    let took = loop {
        assert!(started.elapsed() < Duration::from_secs(5), "still open after 5 s with a 500 ms header timeout");
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(_) => panic!("a response to half a header: {:?}", String::from_utf8_lossy(&buf)),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if socket.write_all(b"a").await.is_err() {
                    break started.elapsed();
                }
            }
        }
    };
    assert!(took >= Duration::from_millis(450), "closed before the header timeout: {took:?}");
    // Still serving, and the close is counted.
    let metrics = gw.wait_for_metrics(&["wasmclaw_connections_closed_total{reason=\"header_timeout\"} 1"]).await;
    assert!(metrics.contains("wasmclaw_connections_open"), "{metrics}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let gw = TestGateway::start(&http_config("idleTimeoutMs: 300, headerReadTimeoutMs: 10000"));
    // A kept-alive connection after its response…
    let mut kept = open(&gw).await;
    assert_eq!(get_on(&mut kept, "/health").await.unwrap().0, 200);
    let took = closed_within(&mut kept, Duration::from_secs(5)).await.unwrap();
    assert!(took >= Duration::from_millis(250), "closed before the idle timeout: {took:?}");
    assert!(took < Duration::from_secs(5), "the header timeout (10 s) is not what closed it: {took:?}");
    // …and one that never sent a byte.
    let mut silent = open(&gw).await;
    closed_within(&mut silent, Duration::from_secs(5)).await.unwrap();
    gw.wait_for_metrics(&["wasmclaw_connections_closed_total{reason=\"idle_timeout\"} 2"]).await;
}

#[tokio::test]
async fn a_slow_response_is_not_an_idle_connection() {
    let config = format!(
        r#"{{
  gateway: {{ http: {{ idleTimeoutMs: 200, headerReadTimeoutMs: 300, endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{ slow: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "300" }} }} }} }},
}}"#
    );
    let gw = TestGateway::start(&config);
    // Four words, 300 ms apart: 1.2 s in which a non-streaming answer sends nothing at all.
    let started = Instant::now();
    let res = gw.chat(ask("agent:slow", "one two three four")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "one two three four");
    assert!(started.elapsed() >= Duration::from_millis(1200), "{:?}", started.elapsed());
    let mut body = ask("agent:slow", "one two three four");
    body["stream"] = json!(true);
    let raw = gw.chat(body).send().await.unwrap().text().await.unwrap();
    assert_eq!(sse_payloads(&raw).last().unwrap(), "[DONE]");
    let metrics = gw.metrics().await;
    assert!(metrics.contains("wasmclaw_connections_closed_total{reason=\"idle_timeout\"} 0"), "{metrics}");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let config =
        http_config("maxConnections: 4, maxConnectionsPerClient: 4, headerReadTimeoutMs: 60000, idleTimeoutMs: 60000");
    let gw = TestGateway::start(&config);
    let mut kept = open(&gw).await;
    assert_eq!(get_on(&mut kept, "/health").await.unwrap().0, 200);
    let mut idle = vec![open(&gw).await, open(&gw).await, open(&gw).await];
    // One accept loop takes connections in arrival order, so this is the fifth.
    let mut surplus = open(&gw).await;
    let took = closed_within(&mut surplus, Duration::from_secs(5)).await.unwrap();
    assert!(took < Duration::from_secs(1), "the connection over the cap took {took:?} to close");

    // The connections the gateway holds keep working, and the refusal is counted.
    assert_eq!(get_on(&mut kept, "/health").await.unwrap().0, 200);
    let metrics = wait_metrics_on(&mut kept, "the refusal", |m| {
        metric(m, "wasmclaw_connections_refused_total{reason=\"max_connections\"}") == Some(1.0)
    })
    .await;
    assert_eq!(metric(&metrics, "wasmclaw_connections_open"), Some(4.0), "{metrics}");
    assert_eq!(metric(&metrics, "wasmclaw_connections_max"), Some(4.0), "{metrics}");

    // A slot freed is a slot the next client gets.
    drop(idle.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut next = open(&gw).await;
        if let Ok((200, _)) = get_on(&mut next, "/health").await {
            break;
        }
        assert!(Instant::now() < deadline, "no connection accepted after one closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Waiting for the line, not settling the log: a settling request needs a
    // fifth connection while all four slots may still be held.
    gw.wait_for_log("the refusal logged", |log| {
        log.lines().any(|l| l.contains("WARN") && l.contains("maxConnections"))
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_per_client_cap_are_closed_at_once() {
    let config = http_config(
        "maxConnections: 100, maxConnectionsPerClient: 2, headerReadTimeoutMs: 60000, idleTimeoutMs: 60000",
    );
    let gw = TestGateway::start(&config);
    let mut kept = open(&gw).await;
    assert_eq!(get_on(&mut kept, "/health").await.unwrap().0, 200);
    let second = open(&gw).await;
    let mut surplus = open(&gw).await;
    let took = closed_within(&mut surplus, Duration::from_secs(5)).await.unwrap();
    assert!(took < Duration::from_secs(1), "the connection over the per-client cap took {took:?} to close");
    // Many refusals from one client: counted each, logged far fewer times.
    for _ in 0..20 {
        let mut again = open(&gw).await;
        closed_within(&mut again, Duration::from_secs(5)).await.unwrap();
    }

    // Another client address still gets in; the first one's open connection still works.
    let mut other = open_from(&gw, "127.0.0.2").await;
    assert_eq!(get_on(&mut other, "/health").await.unwrap().0, 200);
    assert_eq!(get_on(&mut kept, "/health").await.unwrap().0, 200);
    wait_metrics_on(&mut other, "the refusals", |m| {
        metric(m, "wasmclaw_connections_refused_total{reason=\"max_connections_per_client\"}") == Some(21.0)
    })
    .await;
    // Closing its connections lets the first client back in.
    drop((kept, second));
    let deadline = Instant::now() + PATIENCE;
    while reqwest::get(gw.url("/health")).await.is_err() {
        assert!(Instant::now() < deadline, "127.0.0.1 still refused after closing its connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = gw.settled_log().await;
    let warnings = log.lines().filter(|l| l.contains("WARN") && l.contains("maxConnectionsPerClient")).count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings for 21 refusals:\n{log}");
}

/// Send a `PUT /admin/agents/slow` head announcing `length` body bytes.
async fn start_upload(gw: &TestGateway, length: usize) -> TcpStream {
    let mut socket = open(gw).await;
    let head = format!(
        "PUT /admin/agents/slow HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/wasm\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

#[tokio::test]
async fn an_admin_upload_that_trickles_gets_408_after_the_read_timeout() {
    let gw = TestGateway::start(&http_config("readTimeoutMs: 500"));
    let mut socket = start_upload(&gw, 100_000).await;
    let started = Instant::now();
    let (mut reader, mut writer) = socket.split();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if writer.write_all(b"\0").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let response = async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&raw).to_string()
    };
    let head = tokio::select! {
        head = response => head,
        _ = trickle => unreachable!(),
        _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("no response to a trickling upload within 10 s"),
    };
    let took = started.elapsed();
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "408 after {took:?}");
    gw.wait_for_metrics(&["wasmclaw_http_requests_total{route=\"/admin/agents/{id}\",status=\"408\"} 1"]).await;
}

#[tokio::test]
async fn an_admin_upload_cut_short_is_not_called_too_large() {
    let gw = TestGateway::start(&http_config(""));
    let mut socket = start_upload(&gw, 100_000).await;
    socket.write_all(&[0u8; 1000]).await.unwrap();
    drop(socket);
    let metrics =
        gw.wait_for_metrics(&["wasmclaw_http_requests_total{route=\"/admin/agents/{id}\",status=\"400\"} 1"]).await;
    assert!(!metrics.contains("status=\"413\""), "{metrics}");
}

type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The next text frame as JSON; panics if the socket ends or stays silent for [`PATIENCE`].
async fn next(socket: &mut WebSocket) -> Value {
    match tokio::time::timeout(PATIENCE, socket.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(&t).unwrap(),
        other => panic!("socket ended: {other:?}"),
    }
}

#[tokio::test]
async fn an_idle_websocket_outlives_the_http_timeouts() {
    let config = "{ gateway: { http: { headerReadTimeoutMs: 300, idleTimeoutMs: 200 }, ws: { tickIntervalMs: 100 } } }";
    let gw = TestGateway::start(config);
    let (mut socket, _) = tokio_tungstenite::connect_async(gw.base.replace("http://", "ws://")).await.unwrap();
    let challenge = next(&mut socket).await;
    assert_eq!(challenge["event"], "connect.challenge");
    let connect = json!({"type": "req", "id": "1", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4, "auth": {"token": TOKEN},
        "client": {"id": "cli", "version": "test", "platform": "linux", "mode": "cli"}}});
    socket.send(Message::Text(connect.to_string().into())).await.unwrap();
    assert_eq!(next(&mut socket).await["payload"]["type"], "hello-ok");
    // The client now says nothing for over 1.5 s: five header timeouts, seven idle timeouts.
    let quiet_since = Instant::now();
    let mut ticks = 0;
    while quiet_since.elapsed() < Duration::from_millis(1500) {
        let frame = next(&mut socket).await;
        ticks += usize::from(frame["event"] == "tick");
    }
    assert!(ticks >= 5, "{ticks} ticks in 1.5 s at 100 ms");
    socket.send(Message::Text(json!({"type": "req", "id": "2", "method": "health"}).to_string().into())).await.unwrap();
    loop {
        let frame = next(&mut socket).await;
        if frame["id"] == "2" {
            assert_eq!(frame["ok"], true, "{frame}");
            break;
        }
    }
}

#[test]
fn bad_connection_settings_name_the_key() {
    for (http, key, words) in [
        ("headerReadTimeoutMs: 0", "gateway.http.headerReadTimeoutMs", "at least 1"),
        ("idleTimeoutMs: 0", "gateway.http.idleTimeoutMs", "at least 1"),
        ("idleTimeoutMs: 20000", "gateway.http.idleTimeoutMs", "headerReadTimeoutMs"),
        ("maxConnections: 0", "gateway.http.maxConnections", "at least 1"),
        ("maxConnectionsPerClient: 0", "gateway.http.maxConnectionsPerClient", "at least 1"),
        ("maxConnections: 10, maxConnectionsPerClient: 11", "gateway.http.maxConnectionsPerClient", "maxConnections"),
    ] {
        let log = TestGateway::start_with(&http_config(http), &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)])
            .err()
            .unwrap_or_else(|| panic!("{http} must be rejected"));
        assert!(log.contains(key) && log.contains(words), "{http} should name {key}: {log}");
    }
}
