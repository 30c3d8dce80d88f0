//! Agents that act (issue 16): outbound HTTP, deny by default, with
//! credentials the gateway injects and per-run limits. Through both doors:
//! the contract's `http.fetch` (the SDK's client) and `wasi:http` (a guest's
//! own client): [`fetch_both`] asks the same of each and expects one answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::support::*;

/// What the test server saw: the `authorization` header of each request.
type Seen = Arc<Mutex<Vec<String>>>;

/// A loopback server that counts the requests reaching it (any path).
async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let app = axum::Router::new().fallback(move || async move {
        count.fetch_add(1, Ordering::SeqCst);
        "reached"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// A loopback HTTP server the agents call; returns its address and what it saw.
/// `/redirect` sends the client to `elsewhere`.
async fn server_redirecting_to(elsewhere: String) -> (SocketAddr, Seen) {
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/echo-auth",
            get(|State(seen): State<Seen>, headers: HeaderMap| async move {
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                seen.lock().unwrap().push(auth.clone());
                ([("x-echo", auth.clone())], format!("you sent {auth}"))
            }),
        )
        .route("/big", get(|| async { "x".repeat(2000) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(SLOW).await;
                "late"
            }),
        )
        .route("/redirect", get(move || async move { (StatusCode::FOUND, [("location", elsewhere)]).into_response() }))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// How long `/slow` takes to answer: far beyond any test's patience with a timeout.
const SLOW: Duration = Duration::from_secs(30);

/// [`server_redirecting_to`] a closed port.
async fn server() -> (SocketAddr, Seen) {
    server_redirecting_to("http://127.0.0.1:9/elsewhere".into()).await
}

/// A gateway with agent `id` = the faults fixture in `fetch` mode and `http`
/// as its block, sending through `http.fetch`; and its twin `wasi-{id}`,
/// the same but sending through `wasi:http`.
pub(crate) fn gateway(agents: &[(&str, &str)], env: &[(&str, &str)]) -> Result<TestGateway, String> {
    let entries: Vec<String> = agents
        .iter()
        .map(|(id, http)| {
            format!(
                r#"{id}: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "fetch" }} {http} }},
                   "wasi-{id}": {{ plugin: "{FAULTS_WASM}", config: {{ fault: "fetch", client: "wasi" }} {http} }},"#
            )
        })
        .collect();
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          agents: {{ entries: {{ main: {{ plugin: "echo" }}, {} }} }} }}"#,
        entries.join("\n")
    );
    let mut all = vec![("OPENCLAW_GATEWAY_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    TestGateway::start_with(&config, &all)
}

/// The agent's reply to a message of URLs (one line per URL).
pub(crate) async fn fetch(gw: &TestGateway, agent: &str, urls: &[String]) -> String {
    let res = gw.chat(ask(&format!("agent:{agent}"), &urls.join(" "))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    content(&res.json().await.unwrap())
}

/// [`fetch`] through `http.fetch` (agent `agent`) and through `wasi:http`
/// (its twin): both doors must give the guest the same answers.
pub(crate) async fn fetch_both(gw: &TestGateway, agent: &str, urls: &[String]) -> String {
    let reply = fetch(gw, agent, urls).await;
    let wasi = fetch(gw, &format!("wasi-{agent}"), urls).await;
    assert_eq!(reply, wasi, "http.fetch (left) and wasi:http (right) answered differently");
    reply
}

#[tokio::test]
async fn requests_outside_the_allow_list_are_denied_and_the_run_still_answers() {
    let (addr, _) = server().await;
    let allow = format!(r#", http: {{ allow: ["http://{addr}/hello"] }}"#);
    let gw = gateway(&[("open", &allow), ("closed", "")], &[]).unwrap();
    let hello = format!("http://{addr}/hello");
    let reply = fetch_both(&gw, "open", &[hello.clone(), format!("http://{addr}/big")]).await;
    assert!(reply.contains(&format!("{hello} -> 200 [] hello")), "{reply}");
    assert!(reply.contains("/big -> error: request denied by the gateway"), "a path outside the prefix: {reply}");
    let reply = fetch_both(&gw, "closed", std::slice::from_ref(&hello)).await;
    assert!(reply.contains("error: request denied by the gateway"), "{reply}");
    let log = gw.wait_for_log("the denial", |l| l.contains("outbound HTTP denied") && l.contains("agent=closed")).await;
    let lines: Vec<&str> =
        log.lines().filter(|l| l.contains("outbound HTTP denied") && l.contains("agent=closed")).collect();
    assert_eq!(lines.len(), 1, "one warning per denied request: {lines:#?}");
    let line = lines[0];
    for part in ["method=\"GET\"", &format!("origin=\"http://{addr}\""), "key=\"agents.entries.closed.http.allow\""] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(&format!(
            r#"wasmclaw_agent_http_requests_total{{agent="open",origin="http://{addr}",outcome="200"}} 1"#
        )),
        "{metrics}"
    );
    assert!(metrics.contains(r#"agent="closed""#) && metrics.contains(r#"outcome="denied""#), "{metrics}");
}

#[tokio::test]
async fn redirects_are_not_followed_and_internal_names_need_a_literal_rule() {
    let (denied, denied_hits) = counting_server().await;
    let (addr, _) = server_redirecting_to(format!("http://{denied}/elsewhere")).await;
    let port = addr.port();
    // `*` names no host: loopback is out of reach through it, by address or by name.
    let wildcard = format!(r#", http: {{ allow: ["http://*:{port}"] }}"#);
    let literal = format!(r#", http: {{ allow: ["http://{addr}", "http://localhost:{port}"] }}"#);
    let gw = gateway(&[("wild", &wildcard), ("named", &literal)], &[]).unwrap();
    let by_name = format!("http://localhost:{port}/hello");
    let by_address = format!("http://{addr}/hello");
    let reply = fetch_both(&gw, "wild", &[by_name.clone(), by_address.clone()]).await;
    assert!(reply.contains(&format!("{by_name} -> error: request denied by the gateway")), "{reply}");
    assert!(reply.contains(&format!("{by_address} -> error: request denied by the gateway")), "{reply}");
    let reply = fetch_both(&gw, "named", &[by_name.clone(), format!("http://{addr}/redirect")]).await;
    assert!(reply.contains(&format!("{by_name} -> 200")), "a rule naming the host reaches it: {reply}");
    assert!(reply.contains("/redirect -> 302"), "the redirect reaches the guest unfollowed: {reply}");
    assert_eq!(denied_hits.load(Ordering::SeqCst), 0, "nothing was sent to the redirect's target");
    // The guest following it itself is a new request, checked like any other.
    let reply = fetch_both(&gw, "named", &[format!("http://{denied}/elsewhere")]).await;
    assert!(reply.contains("error: request denied by the gateway"), "{reply}");
    assert_eq!(denied_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn hosts_and_paths_are_checked_as_the_sender_reads_them() {
    let (addr, _) = server().await;
    let port = addr.port();
    let wildcard = format!(r#", http: {{ allow: ["http://*:{port}"] }}"#);
    let prefix = format!(r#", http: {{ allow: ["http://{addr}/hello"] }}"#);
    let gw = gateway(&[("wild", &wildcard), ("prefix", &prefix)], &[]).unwrap();
    // Other spellings of 127.0.0.1 that URL parsers turn back into it.
    let spellings: Vec<String> = ["2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1"]
        .iter()
        .map(|h| format!("http://{h}:{port}/hello"))
        .collect();
    let reply = fetch_both(&gw, "wild", &spellings).await;
    for url in &spellings {
        assert!(reply.contains(&format!("{url} -> error: request denied by the gateway")), "{url}: {reply}");
    }
    // Dot segments leave the allowed prefix once the path is normalised.
    let escapes = [format!("http://{addr}/hello/../big"), format!("http://{addr}/hello/%2e%2e/big")];
    let reply = fetch_both(&gw, "prefix", &escapes).await;
    for url in &escapes {
        assert!(reply.contains(&format!("{url} -> error: request denied by the gateway")), "{url}: {reply}");
    }
    assert!(!reply.contains("xxxx"), "{reply}");
}

#[tokio::test]
async fn credentials_reach_the_server_and_nothing_else() {
    const KEY: &str = "sk-test-9f8e7d6c5b4a";
    let (addr, seen) = server().await;
    let http = format!(
        r#", http: {{ allow: ["http://{addr}"], credentials: [{{ match: "http://{addr}/echo-auth", header: "Authorization", prefix: "Bearer ", valueEnv: "TEST_API_KEY" }}] }}"#
    );
    let gw = gateway(&[("caller", &http)], &[("TEST_API_KEY", KEY)]).unwrap();
    for (n, agent) in ["caller", "wasi-caller"].into_iter().enumerate() {
        let res = gw
            .chat(ask(&format!("agent:{agent}"), &format!("http://{addr}/echo-auth http://{addr}/hello")))
            .send()
            .await
            .unwrap();
        let raw = res.text().await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), n + 1, "only the matching request carries it ({agent})");
        assert!(raw.contains("x-echo: Bearer [REDACTED]") && raw.contains("you sent Bearer [REDACTED]"), "{raw}");
        assert!(!raw.contains(KEY), "the client never sees the key: {raw}");
    }
    assert_eq!(seen.lock().unwrap().as_slice(), [format!("Bearer {KEY}"), format!("Bearer {KEY}")]);
    assert!(!gw.log().contains(KEY), "the log never shows the key");
    assert!(!gw.metrics().await.contains(KEY));

    // A missing variable stops start-up, naming it.
    let err = gateway(&[("caller", &http)], &[]).err().expect("start-up must fail without the variable");
    assert!(
        err.contains("TEST_API_KEY") && err.contains("agents.entries.caller.http.credentials[0].valueEnv"),
        "{err}"
    );
}

#[tokio::test]
async fn each_per_run_limit_holds_and_the_log_names_it() {
    let (addr, _) = server().await;
    let limits = |l: &str| format!(r#", http: {{ allow: ["http://{addr}"], limits: {{ {l} }} }}"#);
    let gw = gateway(
        &[
            ("few", &limits("maxRequestsPerRun: 2")),
            ("small", &limits("maxResponseBytes: 1000")),
            ("quick", &limits("timeoutMs: 300")),
        ],
        &[],
    )
    .unwrap();
    let hello = format!("http://{addr}/hello");
    let reply = fetch_both(&gw, "few", &[hello.clone(), hello.clone(), hello.clone()]).await;
    assert_eq!(reply.matches("-> 200").count(), 2, "{reply}");
    assert!(reply.contains("limit of 2 outbound requests"), "{reply}");
    let reply = fetch_both(&gw, "small", &[format!("http://{addr}/big")]).await;
    assert!(reply.contains("error: response too large"), "{reply}");
    let started = Instant::now();
    let reply = fetch_both(&gw, "quick", &[format!("http://{addr}/slow"), hello.clone()]).await;
    assert!(reply.contains("/slow -> error: request timed out"), "{reply}");
    assert!(reply.contains(&format!("{hello} -> 200")), "the run goes on after the timeout: {reply}");
    assert!(started.elapsed() < SLOW / 10, "answered {:?} after asking", started.elapsed());
    let log = gw.log();
    for (agent, key) in [
        ("few", "http.limits.maxRequestsPerRun"),
        ("small", "http.limits.maxResponseBytes"),
        ("quick", "http.limits.timeoutMs"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(&format!("agent={agent}")) && l.contains(key)),
            "a warning for {agent} names {key}:\n{log}"
        );
    }
}

/// A raw server: it accepts one connection, reads the request, never
/// answers; it says when it accepted and when the gateway closed the connection.
async fn silent_server() -> (SocketAddr, tokio::sync::oneshot::Receiver<()>, tokio::sync::oneshot::Receiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = tokio::sync::oneshot::channel();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut socket, _) = listener.accept().await.unwrap();
        let _ = accepted_tx.send(());
        let mut buf = [0u8; 4096];
        while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        let _ = closed_tx.send(Instant::now());
    });
    (addr, accepted, closed)
}

#[tokio::test]
async fn a_client_that_goes_away_aborts_the_outbound_request() {
    let servers = [silent_server().await, silent_server().await];
    let (a, b) = (servers[0].0, servers[1].0);
    let http = format!(r#", http: {{ allow: ["http://{a}", "http://{b}"], limits: {{ timeoutMs: 60000 }} }}"#);
    let gw = gateway(&[("waiter", &http)], &[]).unwrap();
    for ((addr, accepted, closed), agent) in servers.into_iter().zip(["waiter", "wasi-waiter"]) {
        let mut body = ask(&format!("agent:{agent}"), &format!("http://{addr}/hang"));
        body["stream"] = serde_json::json!(true);
        let res = gw.chat(body).send().await.unwrap();
        tokio::time::timeout(PATIENCE, accepted).await.expect("the request reached the server").unwrap();
        let gone = Instant::now();
        drop(res);
        let closed_at =
            tokio::time::timeout(PATIENCE, closed).await.expect("the gateway closed the connection").unwrap();
        assert!(
            closed_at - gone < Duration::from_secs(1),
            "{agent}: closed {:?} after the client left",
            closed_at - gone
        );
    }
}

/// The policy belongs to the agent id: a hot swap keeps it, and an edit to the
/// entry's `http` block applies to the next run without a restart.
#[tokio::test]
async fn the_policy_follows_the_agent_id_through_a_swap_and_a_live_edit() {
    let (addr, _) = server().await;
    let hello = format!("http://{addr}/hello");
    let big = format!("http://{addr}/big");
    let gw = gateway(&[("act", &format!(r#", http: {{ allow: ["{hello}"] }}"#))], &[]).unwrap();
    let allowed_only_hello =
        |reply: &str| reply.contains(&format!("{hello} -> 200")) && reply.contains(&format!("{big} -> error"));
    let reply = fetch(&gw, "act", &[hello.clone(), big.clone()]).await;
    assert!(allowed_only_hello(&reply), "{reply}");

    // A swap to a new upload of the agent keeps what its entry grants.
    let res = crate::hot_swap::admin(&gw, reqwest::Method::PUT, "/act")
        .body(std::fs::read(FAULTS_WASM).unwrap())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let reply = fetch(&gw, "act", &[hello.clone(), big.clone()]).await;
    assert!(allowed_only_hello(&reply), "after the swap: {reply}");

    // Widening the allow list in the config file applies live, and stays.
    let widened = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          agents: {{ entries: {{ main: {{ plugin: "echo" }},
            act: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "fetch" }}, http: {{ allow: ["{hello}", "{big}"] }} }} }} }} }}"#
    );
    std::fs::write(gw.state_dir().join("gateway.json5"), widened).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = fetch(&gw, "act", std::slice::from_ref(&big)).await;
        if reply.contains(&format!("{big} -> 200")) {
            break;
        }
        assert!(Instant::now() < deadline, "the widened allow list never applied: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let reply = fetch(&gw, "act", &[hello.clone(), big.clone()]).await;
        assert!(reply.contains(&format!("{hello} -> 200")) && reply.contains(&format!("{big} -> 200")), "{reply}");
    }
}
