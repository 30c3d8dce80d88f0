//! WebSocket hardening: what a hostile or slow client must not be able to do
//! to the gateway, and what a disconnected client's runs do.

use crate::support::*;
use serde_json::{Value, json};

/// `main` = echo, a slow agent, a fast one with a long reply, a failing one.
fn config(extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} {extra} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    slow: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "150" }} }},
    burst: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "burst", count: "5000" }} }},
    failing: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "failed" }} }},
  }} }},
}}"#
    )
}

/// Send `chat.send` and read its events to the end; returns (res, final chat
/// payload), the latter `null` when no run started.
async fn chat_to_the_end(c: &mut Client, params: Value) -> (Value, Value) {
    let res = c.call("chat.send", params).await;
    assert_eq!(res["ok"], true, "{res}");
    if res["payload"]["status"] != "started" {
        return (res, Value::Null);
    }
    let run_id = res["payload"]["runId"].clone();
    let end =
        c.until(|f| f["event"] == "chat" && f["payload"]["runId"] == run_id && f["payload"]["state"] != "delta").await;
    (res, end["payload"].clone())
}

#[tokio::test]
async fn idempotency_keys_belong_to_the_caller_agent_and_session() {
    let gw = TestGateway::start(&config(""));
    let mut a = Client::connect(&gw).await;
    let mut b = Client::connect(&gw).await;
    let first = json!({"sessionKey": "agent:main:s1", "message": "first", "idempotencyKey": "k"});
    let (res, fin) = chat_to_the_end(&mut a, first.clone()).await;
    assert_eq!(res["payload"]["status"], "started");
    assert_eq!(fin["message"]["content"][0]["text"], "first");
    let first_run = res["payload"]["runId"].clone();

    // Another client, same key, another session: its own message runs.
    let (res, fin) =
        chat_to_the_end(&mut b, json!({"sessionKey": "agent:main:s2", "message": "second", "idempotencyKey": "k"}))
            .await;
    assert_eq!(res["payload"]["status"], "started", "not a replay of another session's run: {res}");
    assert_ne!(res["payload"]["runId"], first_run);
    assert_eq!(fin["message"]["content"][0]["text"], "second");
    // Same key, another agent (and session), through `agent`.
    let id = b.request("agent", Some(json!({"message": "third", "agentId": "slow", "idempotencyKey": "k"}))).await;
    assert_eq!(b.response(&id).await["payload"]["status"], "accepted");
    let done = b.until(|f| f["id"] == id.as_str() && f["payload"]["status"] != "accepted").await;
    assert_eq!(done["payload"]["result"]["payloads"][0]["text"], "third", "{done}");

    // Same scope, different parameters: refused.
    let mut changed = first.clone();
    changed["message"] = json!("something else");
    let res = a.call("chat.send", changed).await;
    assert_eq!((res["ok"].as_bool(), res["error"]["code"].as_str()), (Some(false), Some("INVALID_REQUEST")), "{res}");
    // Same scope, same parameters: the first run, cached.
    let res = b.call("chat.send", first).await;
    assert_eq!(res["payload"], json!({"runId": first_run, "status": "ok", "cached": true}));
    let history = a.call("chat.history", json!({"sessionKey": "agent:main:s1"})).await;
    assert_eq!(history["payload"]["messages"].as_array().unwrap().len(), 2, "one run, not two");
}

#[tokio::test]
async fn a_chat_send_replay_reports_how_the_first_run_really_ended() {
    let gw = TestGateway::start(&config(""));
    let mut c = Client::connect(&gw).await;
    let failing = json!({"sessionKey": "agent:failing:x", "message": "m", "idempotencyKey": "f"});
    let (_, end) = chat_to_the_end(&mut c, failing.clone()).await;
    assert_eq!(end["state"], "error");
    let replay = c.call("chat.send", failing).await;
    assert_eq!(
        (replay["payload"]["status"].as_str(), replay["payload"]["cached"].as_bool()),
        (Some("error"), Some(true))
    );

    let words: String = (0..200).map(|i| format!("w{i} ")).collect();
    let slow = json!({"sessionKey": "agent:slow:x", "message": words, "idempotencyKey": "a"});
    let started = c.call("chat.send", slow.clone()).await;
    let run_id = started["payload"]["runId"].clone();
    c.until(|f| f["event"] == "chat" && f["payload"]["state"] == "delta").await;
    let replay = c.call("chat.send", slow.clone()).await;
    assert_eq!(replay["payload"], json!({"runId": run_id, "status": "in_flight", "cached": true}));
    assert_eq!(c.call("chat.abort", json!({"sessionKey": "agent:slow:x"})).await["payload"]["aborted"], true);
    c.until(|f| f["event"] == "chat" && f["payload"]["state"] == "aborted").await;
    let replay = c.call("chat.send", slow).await;
    assert_eq!(replay["payload"], json!({"runId": run_id, "status": "aborted", "cached": true}));
}
