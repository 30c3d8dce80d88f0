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
      flood: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "flood" }}, limits: {{ maxOutputBytes: 65536, timeoutMs: 30000 }} }},
      single: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "400" }}, limits: {{ maxConcurrentRuns: 1, timeoutMs: 30000 }} }},
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

/// What `single` says to [`holding_a_slot`]: five words, 400 ms before each.
const HOLDER_TEXT: &str = "one two three four five";

/// A streaming run of `single`, returned once its status line is in. The run
/// took its slot before that and sleeps 400 ms before each word, so it holds
/// the slot for at least four more sleeps (1.6 s): no guess at how long a
/// spawned request takes to get going.
async fn holding_a_slot(gw: &TestGateway) -> reqwest::Response {
    let mut body = ask("agent:single", HOLDER_TEXT);
    body["stream"] = json!(true);
    let res = gw.chat(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res
}

/// Read the holder's stream to its end: it finishes normally, with every word.
async fn finishes_normally(holder: reqwest::Response) {
    let payloads = sse_payloads(&holder.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1].iter().map(|p| serde_json::from_str(p).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, HOLDER_TEXT, "the run holding the slot finishes normally");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
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

    for (agent, words) in [("spin", "time budget"), ("hog", "memory limit"), ("flood", "output limit")] {
        let line = |l: &str| l.contains(&format!("agent={agent}")) && l.contains(words);
        gw.wait_for_log(&format!("{agent}'s {words}"), |log| log.lines().any(line)).await;
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
    let first = holding_a_slot(&gw).await;
    let second = gw.chat(ask("agent:single", "again")).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert!(second.headers().contains_key("retry-after"));
    assert_eq!(error_fields(&second.json().await.unwrap()).1.as_deref(), Some("no_capacity"));
    gw.wait_for_log("the refusal", |log| log.contains("run refused: agent at limits.maxConcurrentRuns")).await;
    // The stream ends after its run, so the slot is free again.
    finishes_normally(first).await;
    assert_eq!(content(&gw.chat(ask("agent:single", "now")).send().await.unwrap().json().await.unwrap()), "now");

    let global =
        limits_config().replace("limits: { timeoutMs: 1500 },", "limits: { timeoutMs: 1500 }, maxConcurrentRuns: 1,");
    let gw = TestGateway::start(&global);
    let busy = holding_a_slot(&gw).await;
    let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 503, "the gateway-wide cap applies to every agent");
    assert_eq!(error_fields(&res.json().await.unwrap()).1.as_deref(), Some("no_capacity"));
    gw.wait_for_log("the refusal", |log| log.contains("run refused: gateway at agents.maxConcurrentRuns")).await;
    finishes_normally(busy).await;
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
    // Deep nesting hits serde's recursion limit: a 400, in a field the gateway
    // reads or in one it passes on as a param (no field is skipped unread).
    // Neither overflows the stack.
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
    let res = post(nested("unknown_field", 1_000_000)).await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("recursion limit"));
    assert_eq!(post(nested("unknown_field", 10)).await.unwrap().status(), 200, "shallow nesting passes on");
    // A header block far over hyper's limit is refused with a 431 before any
    // handler runs. Over raw TCP: the gateway may answer and close while the
    // block is still being written, so the write may fail, but the answer
    // arrived before the close and is read back.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n");
    for i in 0..200 {
        head.push_str(&format!("x-padding-{i}: {}\r\n", "y".repeat(2000)));
    }
    head.push_str("\r\n");
    let socket = tokio::net::TcpStream::connect(gw.base.trim_start_matches("http://")).await.unwrap();
    let (mut from_gateway, mut to_gateway) = socket.into_split();
    let writer = tokio::spawn(async move { to_gateway.write_all(head.as_bytes()).await.map(|()| to_gateway) });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), from_gateway.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the gateway neither answered nor closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "expected a 431, got {answer:?} ({read:?})");
    drop(writer.await.unwrap());
    // A body that trickles in slower than gateway.http.readTimeoutMs.
    let mut socket = tokio::net::TcpStream::connect(gw.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"messages\""
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
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
    let failed = |line: &str| {
        serde_json::from_str::<Value>(line).is_ok_and(|l| {
            l["fields"]["message"] == "run failed"
                && l["span"]["request_id"] == "json-log-7"
                && l["fields"]["agent"] == "trapper"
        })
    };
    let log = gw.wait_for_log("the run failure with its request id", |log| log.lines().any(failed)).await;
    // Every complete line is one JSON object (the last may still be arriving).
    let complete = &log[..log.rfind('\n').map_or(0, |end| end + 1)];
    for line in complete.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

/// Every run gets a fresh instance: whatever earlier runs wrote into the
/// memory slot it reuses (a static, 256 KiB of bss) is gone, however the pool
/// resets returned slots (`memset` of the kept pages, or only the dirty ones
/// where the kernel has `PAGEMAP_SCAN`).
#[tokio::test]
async fn a_run_finds_nothing_of_earlier_runs_in_its_memory() {
    let gw = TestGateway::start(&format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{ fresh: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "fresh" }} }} }} }} }}"#
    ));
    let reply = |gw: &TestGateway| {
        let request = gw.chat(ask("agent:fresh", "x"));
        async move {
            let res = request.send().await.unwrap();
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            body["choices"][0]["message"]["content"].as_str().unwrap().to_string()
        }
    };
    // One after another (each reuses the slot the last one returned), then
    // eight at once, then one after another again.
    for _ in 0..10 {
        assert_eq!(reply(&gw).await, "runs=1 dirty=0");
    }
    let together = futures::future::join_all((0..8).map(|_| reply(&gw))).await;
    assert!(together.iter().all(|r| r == "runs=1 dirty=0"), "{together:?}");
    for _ in 0..10 {
        assert_eq!(reply(&gw).await, "runs=1 dirty=0");
    }
}
