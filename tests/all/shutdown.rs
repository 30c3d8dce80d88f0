//! Graceful shutdown: SIGTERM lets streams in flight finish inside the grace
//! period, ends the rest with an SSE error, and never cuts a session write.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

fn config(grace_ms: u64) -> String {
    format!(
        r#"{{
  gateway: {{ shutdownGraceMs: {grace_ms}, http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{ slow: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "250" }} }} }} }},
}}"#
    )
}

async fn start_stream(gw: &TestGateway, text: &str, key: &str) -> reqwest::Response {
    let mut body = ask("agent:slow", text);
    body["stream"] = json!(true);
    let mut res = gw.chat(body).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    res
}

async fn rest_of(mut res: reqwest::Response) -> String {
    let mut text = String::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test]
async fn streams_in_flight_at_sigterm_complete_normally() {
    let state = tempfile::tempdir().unwrap();
    let mut gw = TestGateway::start_in(state.path(), &config(30_000));
    // Twelve words, 250 ms before each: the stream runs for about 3 s.
    let words = "one two three four five six seven eight nine ten eleven twelve";
    let res = start_stream(&gw, words, "agent:slow:finishing").await;
    gw.terminate();
    let refused = async || reqwest::get(gw.url("/health")).await.is_err().then_some(());
    eventually("no new connections once shutdown began", refused).await;
    assert!(gw.is_running(), "new connections were refused only once the stream was over");
    let rest = rest_of(res).await;
    let payloads = sse_payloads(&rest);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{rest}");
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits once the stream is done");
    assert!(status.success());
    // The turn was committed before the process went away.
    let gw = TestGateway::start_in(state.path(), &config(30_000));
    let history = gw.get_json("/sessions/agent:slow:finishing/history").await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2, "{history}");
}

#[tokio::test]
async fn streams_past_the_grace_period_end_with_an_error() {
    let state = tempfile::tempdir().unwrap();
    let mut gw = TestGateway::start_in(state.path(), &config(600));
    let res = start_stream(&gw, "a b c d e f g h i j k l m n o p", "agent:slow:cut").await;
    let started = Instant::now();
    gw.terminate();
    let rest = rest_of(res).await;
    let took = started.elapsed();
    let payloads = sse_payloads(&rest);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let error: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(error_fields(&error).1.as_deref(), Some("shutting_down"), "{rest}");
    assert!(took < Duration::from_secs(3), "the stream ended {took:?} after SIGTERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits after the grace").success());
    let gw = TestGateway::start_in(state.path(), &config(600));
    let res =
        reqwest::Client::new().get(gw.url("/sessions/agent:slow:cut/history")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 404, "the cut-off turn left nothing half-written");
}
