//! The sandbox's edges for outbound HTTP (issue 24: 5, 6, 13, 14; issue 29:
//! 10): what a hostile guest or a reflecting server tries, and what holds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::outbound::{fetch_both, gateway};
use crate::support::*;

/// Serve `app` on a loopback port.
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A kernel figure of the gateway's, in KiB (`VmHWM`: the peak resident set).
fn proc_status_kib(gw: &TestGateway, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Size of each response the pinning agent holds.
const PINNED: usize = 8_000_000;

/// Issue 24, item 5: 32 responses of 8 MB held unread grew the gateway by
/// 270 MB. Buffered bodies now count against the run's `limits.memoryBytes`:
/// the requests past it fail with a clear error, the run answers, and the
/// peak stays near the limit, run after run.
#[tokio::test]
async fn responses_a_guest_holds_count_against_its_memory_limit() {
    let addr = serve(axum::Router::new().route("/big", get(|| async { vec![b'x'; PINNED] }))).await;
    let http = format!(r#", http: {{ allow: ["http://{addr}"] }}, limits: {{ memoryBytes: {} }}"#, 40 << 20);
    let gw = gateway(&[("pin", &http)], &[]).unwrap();
    let pin = |count: usize| {
        let text = format!("http-pin http://{addr}/big {count}");
        let gw = &gw;
        async move {
            let res = gw.chat(ask("agent:pin", &text)).send().await.unwrap();
            assert_eq!(res.status(), 200, "the run answers");
            content(&res.json().await.unwrap())
        }
    };
    // Pay the one-off costs (compiling, the first instance, the client) first.
    assert_eq!(pin(1).await, "held 1 of 1");
    let before = proc_status_kib(&gw, "VmHWM:");
    let replies = [pin(32).await, pin(32).await];
    let grown_mib = (proc_status_kib(&gw, "VmHWM:") - before) / 1024;
    eprintln!("the gateway's peak grew by {grown_mib} MiB: {replies:?}");
    // Unbounded, 32 bodies of 8 MB are ~250 MiB; bounded, about the limit.
    assert!(grown_mib < 120, "the gateway's peak grew by {grown_mib} MiB");
    for reply in replies {
        let held: usize = reply.strip_prefix("held ").and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
        assert!((1..8).contains(&held), "a 40 MiB run holds a few 8 MB bodies, not 32: {reply}");
        assert!(reply.contains("memory limit") && reply.contains("limits.memoryBytes"), "{reply}");
    }
    let log = gw.wait_for_log("the refusal", |l| l.contains("outbound HTTP failed (limits.memoryBytes)")).await;
    assert!(log.contains("agent=pin"), "{log}");
    assert!(gw.metrics().await.contains(r#"outcome="memory""#));
    // The gateway serves the next request, and the freed bytes are the run's again.
    assert_eq!(pin(1).await, "held 1 of 1");
}

/// Issue 24, item 5, the other way: request bodies were collected without a
/// cap. One that does not fit in the run's memory (the guest's copy counts
/// too) fails that request, unsent; the run goes on.
#[tokio::test]
async fn a_request_body_past_the_memory_limit_fails_that_request_only() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    let upload = move |body: axum::body::Body| async move {
        let mut stream = body.into_data_stream();
        let mut n = 0;
        while let Some(Ok(chunk)) = futures::StreamExt::next(&mut stream).await {
            n += chunk.len();
        }
        record.lock().unwrap().push(n);
        format!("received {n}")
    };
    let addr = serve(axum::Router::new().route("/upload", axum::routing::post(upload))).await;
    let http = format!(r#", http: {{ allow: ["http://{addr}"] }}, limits: {{ memoryBytes: {} }}"#, 40 << 20);
    let gw = gateway(&[("poster", &http)], &[]).unwrap();
    let big = 24 << 20;
    // Through `http.fetch`, then `wasi:http`.
    for agent in ["poster", "wasi-poster"] {
        let text = format!("http-post http://{addr}/upload {big} 1024");
        let res = gw.chat(ask(&format!("agent:{agent}"), &text)).send().await.unwrap();
        assert_eq!(res.status(), 200, "the run answers");
        let reply = content(&res.json().await.unwrap());
        let refused = reply.lines().next().unwrap_or_default();
        assert!(
            refused.starts_with(&format!("{big} -> error:")) && refused.contains("limits.memoryBytes"),
            "{agent}: a body past the limit: {reply}"
        );
        assert!(refused.contains("request body"), "{refused}");
        assert!(reply.contains("1024 -> 200 received 1024"), "{agent}: the run goes on: {reply}");
    }
    assert_eq!(received.lock().unwrap().as_slice(), [1024, 1024], "the refused bodies were never sent");
}

/// Issue 24, item 6: denied requests used to add a metric line per origin
/// the guest made up; now they count under `denied`, with no origin.
#[tokio::test]
async fn denied_origins_add_no_metric_lines() {
    let addr = serve(axum::Router::new().route("/hello", get(|| async { "hello" }))).await;
    let http = format!(r#", http: {{ allow: ["http://{addr}/hello"] }}"#);
    let gw = gateway(&[("guessing", &http)], &[]).unwrap();
    let hello = format!("http://{addr}/hello");
    let reply = fetch_both(&gw, "guessing", &[hello.clone(), "http://first.invalid/".into()]).await;
    assert!(reply.contains(&format!("{hello} -> 200")), "{reply}");
    let lines = |m: &str| m.lines().filter(|l| l.starts_with("wasmclaw_agent_http")).count();
    let before = gw.metrics().await;
    let hosts: Vec<String> = (0..500).map(|i| format!("http://h{i}.invalid/")).collect();
    let reply = fetch_both(&gw, "guessing", &hosts).await;
    assert_eq!(reply.matches("error: request denied by the gateway").count(), 500, "{reply}");
    let after = gw.metrics().await;
    assert_eq!(lines(&after), lines(&before), "no line per denied origin:\n{after}");
    assert!(after.contains(r#"wasmclaw_agent_http_requests_total{agent="guessing",outcome="denied"} 501"#), "{after}");
    assert!(
        after.contains(&format!(
            r#"wasmclaw_agent_http_requests_total{{agent="guessing",origin="http://{addr}",outcome="200"}} 1"#
        )),
        "allowed requests carry the rule's origin:\n{after}"
    );
    assert!(!after.contains(".invalid"), "{after}");
}

/// A server that decodes the path and resolves dot segments, as many do,
/// before picking the file.
async fn normalising_server() -> SocketAddr {
    serve(axum::Router::new().fallback(|uri: Uri| async move {
        let decoded = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy().replace('\\', "/");
        let mut path: Vec<&str> = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    path.pop();
                }
                s => path.push(s),
            }
        }
        if path == ["secret.txt"] { "SECRET-CONTENTS" } else { "public file" }
    }))
    .await
}

/// Issue 24, item 13 (and issue 29, item 10): `..%2f` under a path-prefix
/// rule reached `/secret.txt` on a normalising server; a path denial now
/// says the path did not match; the outbound log line carries the client's
/// request id.
#[tokio::test]
async fn encoded_slashes_and_dots_stay_inside_a_path_prefix() {
    let addr = normalising_server().await;
    let gw = gateway(&[("files", &format!(r#", http: {{ allow: ["http://{addr}/public"] }}"#))], &[]).unwrap();
    let escapes: Vec<String> =
        ["..%2fsecret.txt", "..%2Fsecret.txt", "%2e%2e%2fsecret.txt", "..%5csecret.txt", ".%2E%5Csecret.txt"]
            .iter()
            .map(|e| format!("http://{addr}/public/{e}"))
            .collect();
    let reply = fetch_both(&gw, "files", &escapes).await;
    assert!(!reply.contains("SECRET"), "{reply}");
    assert_eq!(reply.matches("error: request denied by the gateway").count(), escapes.len(), "{reply}");
    let inside = format!("http://{addr}/public/a%2fb.txt");
    let res = gw
        .chat(ask("agent:files", &format!("{inside} http://{addr}/private.txt")))
        .header("x-request-id", "outbound-trace-7f3a")
        .send()
        .await
        .unwrap();
    let reply = content(&res.json().await.unwrap());
    assert!(reply.contains(&format!("{inside} -> 200 [] public file")), "an encoded slash inside the prefix: {reply}");
    let private = format!("http://{addr}/private.txt -> error: request denied by the gateway");
    assert!(
        reply.contains(&private) && !reply.contains("origin is not"),
        "the guest is not told a wrong cause: {reply}"
    );
    let log = gw
        .wait_for_log("the path denial", |l| l.lines().any(|l| l.contains("denied") && l.contains("/private.txt")))
        .await;
    let denial = log.lines().find(|l| l.contains("denied") && l.contains("/private.txt")).unwrap();
    assert!(denial.contains("the path did not match") && denial.contains("/public"), "{denial}");
    assert!(!denial.contains("no allow rule"), "{denial}");
    let sent =
        log.lines().find(|l| l.contains("outbound HTTP") && l.contains("a%2fb.txt")).expect("a line per request");
    assert!(sent.contains("outbound-trace-7f3a"), "the client's request id: {sent}");
    assert!(denial.contains("outbound-trace-7f3a"), "{denial}");
}

/// What the reflecting server saw: the `accept-encoding` of each request.
type Seen = Arc<Mutex<Vec<String>>>;

/// `text` with every byte percent-encoded / every character `\u`-escaped.
fn percent_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}
fn json_escape_all(text: &str) -> String {
    text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect()
}

/// A server that hands the `authorization` it got back, spelled four ways.
async fn reflecting_server() -> (SocketAddr, Seen) {
    let seen: Seen = Default::default();
    let auth =
        |headers: &HeaderMap| headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let record = seen.clone();
    let app = axum::Router::new()
        .route(
            "/json",
            get(move |h: HeaderMap| async move { format!(r#"{{"seen":"{}"}}"#, json_escape_all(&auth(&h))) }),
        )
        .route("/percent", get(move |h: HeaderMap| async move { format!("seen={}", percent_all(&auth(&h))) }))
        .route(
            "/raw-header",
            get(move |h: HeaderMap| async move {
                let mut value = b"\xff".to_vec();
                value.extend_from_slice(auth(&h).as_bytes());
                ([("x-raw", HeaderValue::from_bytes(&value).unwrap())], "ok").into_response()
            }),
        )
        .route(
            "/gzip",
            get(move |h: HeaderMap| async move { ([("content-encoding", "gzip")], auth(&h)).into_response() }),
        )
        .layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let record = record.clone();
            async move {
                let encoding = request.headers().get("accept-encoding").map(|v| v.to_str().unwrap().to_string());
                record.lock().unwrap().push(encoding.unwrap_or_default());
                next.run(request).await
            }
        }));
    (serve(app).await, seen)
}

/// Issue 24, item 14: a server reflecting the injected credential gzipped,
/// after a 0xFF byte in a header, `\u`-escaped in JSON or percent-encoded got
/// it to the guest. Now requests carrying it ask for `identity`, a
/// compressed answer is refused, and every spelling is redacted.
#[tokio::test]
async fn a_reflected_credential_is_redacted_however_it_is_spelled() {
    const KEY: &str = "sk-test-9f8e7d6c5b4a";
    let (addr, seen) = reflecting_server().await;
    let http = format!(
        r#", http: {{ allow: ["http://{addr}"], credentials: [{{ match: "http://{addr}", header: "Authorization", prefix: "Bearer ", valueEnv: "TEST_API_KEY" }}] }}"#
    );
    let gw = gateway(&[("caller", &http)], &[("TEST_API_KEY", KEY)]).unwrap();
    let urls: Vec<String> =
        ["json", "percent", "raw-header", "gzip"].iter().map(|p| format!("http://{addr}/{p}")).collect();
    let reply = fetch_both(&gw, "caller", &urls).await;
    for spelling in [KEY.to_string(), percent_all(KEY), json_escape_all(KEY), percent_all(KEY).to_lowercase()] {
        assert!(!reply.contains(&spelling), "{spelling} reached the guest: {reply}");
    }
    let line = |path: &str| reply.lines().find(|l| l.contains(&format!("/{path} ->"))).unwrap_or_default().to_string();
    let bearer = "Bearer ";
    assert!(line("json").ends_with(&format!(r#"{{"seen":"{}[REDACTED]"}}"#, json_escape_all(bearer))), "{reply}");
    assert!(line("percent").ends_with(&format!("seen={}[REDACTED]", percent_all(bearer))), "{reply}");
    assert!(line("raw-header").contains("x-raw: \u{fffd}Bearer [REDACTED]"), "{reply}");
    assert!(line("gzip").contains("refused a compressed response (gzip)"), "{reply}");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["identity"; 8],
        "every request carrying the key asks for identity, through either door"
    );
    assert!(!gw.log().contains(KEY));
}
