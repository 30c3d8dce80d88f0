//! Hostile plugins and hostile input (issue 7, part): each limit ends only the
//! offending run, with the mapped error, and leaks nothing.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

fn limits_config() -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{
    limits: {{ timeoutMs: 1500 }},
    entries: {{
      main: {{ plugin: "echo" }},
      spin: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "loop" }} }},
      sleeper: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "sleep" }} }},
      hog: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "memory" }}, limits: {{ memoryBytes: 16777216 }} }},
      flood: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "flood" }}, limits: {{ maxOutputBytes: 65536 }} }},
      single: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "400" }}, limits: {{ maxConcurrentRuns: 1 }} }},
      trapper: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "trap" }} }},
      panicky: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "panic" }} }},
      refuser: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "unavailable" }} }},
    }},
  }},
}}"#
    )
}

async fn in_flight_total(gw: &TestGateway) -> u64 {
    let list = gw.get_json("/admin/agents").await;
    list["agents"].as_array().unwrap().iter().map(|a| a["inFlight"].as_u64().unwrap()).sum()
}

async fn healthy(gw: &TestGateway) {
    let res = gw.chat(ask("openclaw", "still fine")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "still fine");
}

#[tokio::test]
async fn each_limit_ends_only_its_run_with_the_mapped_error() {
    let gw = TestGateway::start(&limits_config());
    // (agent, status, code, at most this long)
    let cases = [
        ("spin", 504, "timeout", Duration::from_secs(5)),
        ("sleeper", 504, "timeout", Duration::from_secs(5)),
        ("hog", 500, "memory_limit", Duration::from_secs(5)),
        ("flood", 500, "output_limit", Duration::from_secs(5)),
        ("trapper", 500, "agent_trapped", Duration::from_secs(1)),
        ("panicky", 500, "agent_trapped", Duration::from_secs(1)),
        ("refuser", 503, "agent_unavailable", Duration::from_secs(1)),
    ];
    for (agent, status, code, within) in cases {
        let started = Instant::now();
        let res = gw.chat(ask(&format!("agent:{agent}"), "go")).send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(res.status(), status, "{agent}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(error_fields(&body).1.as_deref(), Some(code), "{agent}: {body}");
        assert!(took < within, "{agent} took {took:?}");
        if code == "timeout" {
            assert!(took >= Duration::from_millis(1400), "{agent} ended before its 1.5 s budget: {took:?}");
        }
        healthy(&gw).await;
    }
    // Streaming: a limit hit after output began becomes an SSE error, then [DONE].
    let mut body = ask("agent:flood", "go");
    body["stream"] = json!(true);
    let raw = gw.chat(body).send().await.unwrap().text().await.unwrap();
    let payloads = sse_payloads(&raw);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let error: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(error_fields(&error).1.as_deref(), Some("output_limit"));

    let log = gw.log();
    for (agent, words) in [("spin", "time budget"), ("hog", "memory limit"), ("flood", "output limit")] {
        assert!(
            log.lines().any(|l| l.contains(&format!("agent={agent}")) && l.contains(words)),
            "no log line for {agent}: {log}"
        );
    }
    assert_eq!(in_flight_total(&gw).await, 0, "no instance leaked");

    // The operator sees all of it in /metrics.
    let _ = reqwest::Client::new().get(gw.url("/v1/models")).bearer_auth("wrong").send().await.unwrap();
    let metrics =
        reqwest::Client::new().get(gw.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    for line in [
        "wasmclaw_run_failures_total{agent=\"spin\",kind=\"timeout\"} 1",
        "wasmclaw_run_failures_total{agent=\"sleeper\",kind=\"timeout\"} 1",
        "wasmclaw_run_failures_total{agent=\"hog\",kind=\"memory_limit\"} 1",
        "wasmclaw_run_failures_total{agent=\"flood\",kind=\"output_limit\"} 2",
        "wasmclaw_http_requests_total{route=\"/v1/chat/completions\",status=\"504\"} 2",
        "wasmclaw_runs_active 0",
        "wasmclaw_auth_failures_total 1",
        "wasmclaw_run_duration_seconds_count{agent=\"main\"} 7",
        "wasmclaw_run_failures_total{agent=\"trapper\",kind=\"trap\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in:\n{metrics}");
    }
    assert!(metrics.contains("wasmclaw_run_first_event_seconds_bucket{agent=\"main\""), "{metrics}");
    assert!(metrics.contains("wasmclaw_pool_component_instances "), "{metrics}");
}

#[tokio::test]
async fn metrics_need_the_token_or_a_loopback_only_setting() {
    let gw = TestGateway::start(&limits_config());
    assert_eq!(reqwest::get(gw.url("/metrics")).await.unwrap().status(), 401);
    let open = limits_config().replacen("gateway: {", "gateway: { metrics: { access: \"loopback\" },", 1);
    let gw = TestGateway::start(&open);
    let res = reqwest::get(gw.url("/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(res.text().await.unwrap().contains("# TYPE wasmclaw_runs_active gauge"));
}

#[tokio::test]
async fn concurrency_caps_answer_503_with_retry_after() {
    let gw = TestGateway::start(&limits_config());
    let first = tokio::spawn(gw.chat(ask("agent:single", "one two")).send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = gw.chat(ask("agent:single", "again")).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert!(second.headers().contains_key("retry-after"));
    assert_eq!(error_fields(&second.json().await.unwrap()).1.as_deref(), Some("no_capacity"));
    assert_eq!(first.await.unwrap().unwrap().status(), 200, "the run holding the slot finishes normally");
    assert_eq!(content(&gw.chat(ask("agent:single", "now")).send().await.unwrap().json().await.unwrap()), "now");
    assert!(gw.log().contains("agent at limits.maxConcurrentRuns"));

    let global =
        limits_config().replace("limits: { timeoutMs: 1500 },", "limits: { timeoutMs: 1500 }, maxConcurrentRuns: 1,");
    let gw = TestGateway::start(&global);
    let busy = tokio::spawn(gw.chat(ask("agent:single", "one two")).send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 503, "the gateway-wide cap applies to every agent");
    busy.await.unwrap().unwrap();
    healthy(&gw).await;
}

#[tokio::test]
async fn non_json_bodies_are_415_and_responses_carry_security_headers() {
    let gw = TestGateway::start(&limits_config());
    let client = reqwest::Client::new();
    for kind in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let res = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(TOKEN)
            .header("content-type", kind)
            .body(ask("openclaw", "hi").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415, "{kind}");
        assert_eq!(error_fields(&res.json().await.unwrap()).1.as_deref(), Some("unsupported_media_type"));
    }
    let res = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .body(ask("openclaw", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for path in ["/v1/chat/completions", "/health", "/nope", "/v1/models"] {
        let res = client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(res.headers()["referrer-policy"], "no-referrer", "{path}");
    }
}

#[tokio::test]
async fn deep_json_huge_headers_and_slow_bodies_are_refused_cleanly() {
    let config = limits_config().replacen("http: {", "http: { readTimeoutMs: 700,", 1);
    let gw = TestGateway::start(&config);
    let client = reqwest::Client::new();
    // Deep nesting in an honoured field hits serde's recursion limit: a 400.
    // In an ignored field it is skipped without recursion. Neither overflows the stack.
    let nested = |field: &str, depth: usize| {
        format!(
            r#"{{"messages":[{{"role":"user","content":"x"}}],"{field}":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let post = |body: String| {
        client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = post(nested("tool_choice", 10_000)).await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("recursion limit"));
    assert_eq!(post(nested("unknown_field", 1_000_000)).await.unwrap().status(), 200);
    // A header block far over hyper's limit is refused before any handler runs.
    let mut req = client.post(gw.url("/v1/chat/completions")).bearer_auth(TOKEN).json(&ask("openclaw", "hi"));
    for i in 0..200 {
        req = req.header(format!("x-padding-{i}"), "y".repeat(2000));
    }
    match req.send().await {
        Ok(res) => assert_eq!(res.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    // A body that trickles in slower than gateway.http.readTimeoutMs.
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(gw.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"messages\""
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .expect("the gateway answers")
            .unwrap();
        reply.extend_from_slice(&buf[..n]);
        if n == 0 || String::from_utf8_lossy(&reply).contains("request_timeout") {
            break;
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5));
    healthy(&gw).await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_request_ids() {
    let gw = TestGateway::start_args(&limits_config(), &["--log-format", "json"]);
    let res = gw.chat(ask("agent:trapper", "x")).header("x-request-id", "json-log-7").send().await.unwrap();
    assert_eq!(res.status(), 500);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = gw.log();
    let lines: Vec<Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "run failed"
            && l["span"]["request_id"] == "json-log-7"
            && l["fields"]["agent"] == "trapper"),
        "{log}"
    );
}
