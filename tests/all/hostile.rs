//! Hostile agents and providers (issue 24, items 3, 4, 7, 8 and 17): nothing a
//! guest, a provider or a client sends grows the gateway without bound, kills
//! it, or writes a line of its log. Each case ends only the offending run, with
//! a clear error, and the next request still works.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn hostile_config(extra_gateway: &str, extra_entries: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} {extra_gateway} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    "tool-index": {{ plugin: "{FAULTS_WASM}", config: {{ fault: "tool-index" }} }},
    "event-spam": {{ plugin: "{FAULTS_WASM}", config: {{ fault: "event-spam" }},
                    limits: {{ maxOutputBytes: 65536, timeoutMs: 20000 }} }},
    "tool-spam": {{ plugin: "{FAULTS_WASM}", config: {{ fault: "tool-spam", count: "200", kib: "1024" }},
                   limits: {{ maxOutputBytes: 1048576, memoryBytes: 67108864, timeoutMs: 60000 }} }},
    "log-forge": {{ plugin: "{FAULTS_WASM}", config: {{ fault: "log-forge" }} }},
{extra_entries}
  }} }},
}}"#
    )
}

/// The next request still gets its answer.
async fn still_serves(gw: &TestGateway) {
    let res = gw.chat(ask("openclaw", "still here")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "still here");
}

/// Samples the gateway's RSS every 20 ms until dropped; `peak_kib` is the highest seen.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssPeak {
    fn watch(gw: &TestGateway) -> Self {
        let (peak, stop) = (Arc::new(AtomicU64::new(gw.rss_kib())), Arc::new(AtomicBool::new(false)));
        let pid = gw.pid();
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return };
                if let Some(kib) = status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { peak, stop }
    }

    fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_tool_call_index_beyond_the_limit_fails_the_run_not_the_process() {
    let mut gw = TestGateway::start(&hostile_config("", ""));
    // HTTP, whole reply: the door that folds every event into one reply.
    let res = gw.chat(ask("agent:tool-index", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("4000000000") && message.contains("128"), "names the index and the limit: {body}");
    assert!(gw.is_running(), "the gateway survives");
    // HTTP streaming and the WebSocket fold events their own way.
    let mut streamed = ask("agent:tool-index", "hi");
    streamed["stream"] = json!(true);
    let text = gw.chat(streamed).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("128") && !text.contains("the host survived"), "the stream ends with the error: {text}");
    let mut c = Client::connect(&gw).await;
    let id = c.request("agent", Some(json!({"message": "hi", "agentId": "tool-index", "idempotencyKey": "k1"}))).await;
    let accepted = c.response(&id).await;
    assert_eq!(accepted["payload"]["status"], "accepted", "{accepted}");
    let done = c.until(|f| f["type"] == "res" && f["id"] == id.as_str() && f["payload"]["status"] != "accepted").await;
    assert_eq!(done["payload"]["status"], "error", "{done}");
    assert!(done["payload"]["summary"].as_str().unwrap().contains("128"), "{done}");
    assert!(gw.is_running(), "the gateway survives every door");
    still_serves(&gw).await;
}

#[tokio::test]
async fn events_without_text_count_against_the_output_budget() {
    let gw = TestGateway::start(&hostile_config("", ""));
    let started = Instant::now();
    let res = gw.chat(ask("agent:event-spam", "hi")).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    // Usage events carry no text: before, they never met the budget and the
    // run spun until its 20 s time budget.
    assert_eq!((status.as_u16(), error_fields(&body).1.as_deref()), (500, Some("output_limit")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(15), "stopped by the budget, not the clock");
    still_serves(&gw).await;
}

#[tokio::test]
async fn tool_reports_after_the_output_limit_are_not_kept() {
    let gw = TestGateway::start(&hostile_config("", ""));
    still_serves(&gw).await;
    let before = gw.rss_kib();
    let rss = RssPeak::watch(&gw);
    // 200 reports of a 1 MiB id and a 1 MiB name under a 1 MiB output budget.
    let res = gw.chat(ask("agent:tool-spam", "hi")).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!((status.as_u16(), error_fields(&body).1.as_deref()), (500, Some("output_limit")), "{body}");
    let grew = rss.peak_kib().saturating_sub(before) / 1024;
    drop(rss);
    // Before: every dropped report's id and name were kept, ~400 MiB.
    assert!(grew < 150, "RSS grew by {grew} MiB during the run (before {} MiB)", before / 1024);
    still_serves(&gw).await;
}

/// A provider that answers with one endless SSE line: `data: aaaa…`, 64 MiB
/// of it, then holds the connection open.
async fn endless_line_provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: ";
                if tcp.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'a'; 64 << 10];
                for _ in 0..1024 {
                    if tcp.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // Hold it open: only the gateway may end this.
                let _ = tcp.read(&mut buf).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn an_endless_provider_line_fails_the_run_without_growing_memory() {
    let provider = endless_line_provider().await;
    let config = format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ endless: {{ baseUrl: "{provider}" }} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    asker: {{ plugin: "{FAULTS_WASM}", provider: "endless", model: "m", config: {{ fault: "llm-model" }},
             limits: {{ timeoutMs: 30000 }} }},
  }} }},
}}"#
    );
    let gw = TestGateway::start(&config);
    still_serves(&gw).await;
    let before = gw.rss_kib();
    let rss = RssPeak::watch(&gw);
    let res = gw.chat(ask("agent:asker", "hi")).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    let grew = rss.peak_kib().saturating_sub(before) / 1024;
    drop(rss);
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("MiB") && message.contains("line"), "says what the provider did: {body}");
    assert!(grew < 48, "RSS grew by {grew} MiB reading the provider (before {} MiB)", before / 1024);
    still_serves(&gw).await;
}

/// Lines a guest writes (its log, stdout, panic message, error) and ids a
/// client sends stay inside one line of the gateway's log.
#[tokio::test]
async fn guest_text_and_request_ids_cannot_forge_log_lines() {
    let gw = TestGateway::start(&hostile_config("", ""));
    let res = gw.chat(ask("agent:log-forge", "hi")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "logged");
    for (text, status) in [("panic", 500), ("fail", 500)] {
        let res = gw.chat(ask("agent:log-forge", text)).send().await.unwrap();
        assert_eq!(res.status(), status, "{text}");
    }
    // A WebSocket frame id becomes the run's request id in the log.
    let mut c = Client::connect(&gw).await;
    c.send(json!({"type": "req", "id": "ws\nFORGED-WS level=ERROR", "method": "agent",
                  "params": {"message": "hi", "agentId": "log-forge", "idempotencyKey": "k"}}))
        .await;
    c.until(|f| f["type"] == "res" && f["payload"]["status"] == "ok").await;
    let log = gw.settled_log().await;
    let forged: Vec<&str> = log.lines().filter(|l| l.starts_with("FORGED")).collect();
    assert!(forged.is_empty(), "guest text started log lines: {forged:?}");
    assert!(!log.contains('\r') && !log.contains('\x1b'), "raw control characters reached the log");
    for escaped in ["guest line\\nFORGED-LOG", "guest panic\\nFORGED-PANIC", "guest failure\\nFORGED-ERROR"] {
        assert!(log.contains(escaped), "{escaped} is logged, escaped:\n{log}");
    }

    // Request ids: a safe one is kept, anything else replaced by a fresh one.
    let client = reqwest::Client::new();
    let sent = |id: &str| client.get(gw.url("/health")).header("x-request-id", id.to_string()).send();
    let kept = sent("abc-123_x.y:z").await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123_x.y:z");
    for hostile in ["r1 forged=yes", "r1\tforged=yes", "r1\"forged", &"a".repeat(129)] {
        let res = sent(hostile).await.unwrap();
        let given = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(given, hostile, "an unsafe request id is replaced");
        assert!(
            !given.is_empty()
                && given.len() <= 128
                && given.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)),
            "{given:?}"
        );
    }
    let log = gw.settled_log().await;
    assert!(!log.contains("forged=yes"), "a request id injected a field:\n{log}");
    still_serves(&gw).await;
}

/// One WebSocket `agent` run of `large` (a 1 MiB reply) with idempotency key `key`; returns its run id.
async fn large_run(c: &mut Client, key: &str) -> String {
    // A session per run: the replies must not pile up as one session's history.
    let params =
        json!({"message": "hi", "agentId": "large", "idempotencyKey": key, "sessionKey": format!("agent:large:{key}")});
    let id = c.request("agent", Some(params)).await;
    let accepted = c.response(&id).await;
    let run_id = accepted["payload"]["runId"].as_str().unwrap().to_string();
    let done = c.until(|f| f["type"] == "res" && f["id"] == id.as_str() && f["payload"]["status"] != "accepted").await;
    assert_eq!(done["payload"]["status"], "ok", "{done}");
    // Drop the run's events: they were read to reach the answer.
    c.backlog.clear();
    run_id
}

#[tokio::test]
async fn the_run_board_keeps_finished_replies_within_its_byte_caps() {
    let limits = ", ws: { maxResultBytes: 8388608, maxResultBytesPerPrincipal: 4194304 }";
    let large = format!(
        r#"    large: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "large", bytes: "1048576" }},
              limits: {{ maxOutputBytes: 2097152 }} }},"#
    );
    let gw = TestGateway::start(&hostile_config(limits, &large));
    let mut c = Client::connect(&gw).await;
    let first = large_run(&mut c, "warm-up").await;
    let before = gw.rss_kib();
    let mut runs = Vec::new();
    for i in 0..100 {
        runs.push(large_run(&mut c, &format!("k{i}")).await);
    }
    drop(c);
    // Before: 100 replies of 1 MiB were held for 10 minutes, after their socket closed.
    let grew = gw.rss_kib().saturating_sub(before) / 1024;
    assert!(grew < 50, "RSS grew by {grew} MiB holding finished replies (before {} MiB)", before / 1024);
    // The newest reply is still there for agent.wait; the oldest was dropped, its ending kept.
    let mut c = Client::connect(&gw).await;
    let newest = c.call("agent.wait", json!({"runId": runs.last().unwrap()})).await;
    assert_eq!(newest["payload"]["result"]["payloads"][0]["text"].as_str().map(str::len), Some(1 << 20), "newest kept");
    let oldest = c.call("agent.wait", json!({"runId": first})).await;
    assert_eq!(oldest["payload"]["status"], "ok", "its ending is kept: {oldest}");
    assert_eq!(oldest["payload"]["result"]["payloads"], json!([]), "its reply was dropped");
    assert_eq!(oldest["payload"]["resultDropped"], true, "{oldest}");
    // A retry with the first key is still a replay, not a second run.
    let params =
        json!({"message": "hi", "agentId": "large", "idempotencyKey": "warm-up", "sessionKey": "agent:large:warm-up"});
    let again = c.request("agent", Some(params)).await;
    let replay = c.response(&again).await;
    assert_eq!(replay["payload"]["runId"], first.as_str(), "{replay}");
    let metrics = gw.metrics().await;
    let evicted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmclaw_ws_run_results_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no eviction counter:\n{metrics}"));
    assert!(evicted >= 90, "{evicted} replies dropped");
    gw.wait_for_log("the drop is logged", |log| log.contains("gateway.ws.maxResultBytesPerPrincipal")).await;
    still_serves(&gw).await;
}
