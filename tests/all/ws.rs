//! The WebSocket gateway protocol (issue 6) with a real client over loopback.

use std::time::Duration;

use crate::support::*;
use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn handshake_challenge_hello_and_bad_credentials() {
    let gw = TestGateway::start(&ws_config(""));
    let (mut c, challenge) = Client::open(&gw).await;
    assert_eq!((challenge["type"].as_str(), challenge["event"].as_str()), (Some("event"), Some("connect.challenge")));
    assert!(challenge["payload"]["nonce"].as_str().is_some_and(|n| n.len() >= 16));
    assert!(challenge["payload"]["ts"].as_u64().unwrap() > 1_700_000_000_000);
    let hello = c.call("connect", connect_params(TOKEN)).await;
    let p = &hello["payload"];
    assert_eq!(
        (hello["ok"].as_bool(), p["type"].as_str(), p["protocol"].as_u64()),
        (Some(true), Some("hello-ok"), Some(4))
    );
    assert!(p["server"]["version"].is_string() && p["server"]["connId"].is_string());
    let methods = p["features"]["methods"].as_array().unwrap();
    for m in ["agent", "chat.send", "chat.history", "chat.abort", "agents.list", "sessions.list"] {
        assert!(methods.iter().any(|x| x == m), "{m} missing from {methods:?}");
    }
    assert!(p["features"]["events"].as_array().unwrap().iter().any(|e| e == "tick"));
    assert_eq!(p["auth"]["role"], "operator");
    assert!(p["policy"]["maxPayload"].as_u64().unwrap() > 0 && p["policy"]["tickIntervalMs"].as_u64().unwrap() > 0);

    // Probes send min 3, max 4.
    let (mut probe, _) = Client::open(&gw).await;
    let mut params = connect_params(TOKEN);
    params["minProtocol"] = json!(3);
    assert_eq!(probe.call("connect", params).await["ok"], true);

    let (mut bad, _) = Client::open(&gw).await;
    let res = bad.call("connect", connect_params("wrong-token")).await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    let (code, reason) = bad.closed().await;
    assert_eq!(code, 1008);
    assert_eq!(reason, res["error"]["message"].as_str().unwrap());
    assert!(!gw.settled_log().await.contains(TOKEN), "secrets stay out of the log");
}

#[tokio::test]
async fn methods_before_connect_and_oversize_frames_close_the_socket() {
    let gw = TestGateway::start(&ws_config(""));
    let (mut c, _) = Client::open(&gw).await;
    let id = c.request("health", None).await;
    let res = c.response(&id).await;
    assert_eq!((res["ok"].as_bool(), res["error"]["code"].as_str()), (Some(false), Some("INVALID_REQUEST")));
    assert_eq!(c.closed().await.0, 1008);

    let (mut c, _) = Client::open(&gw).await;
    c.send(json!({"type": "req", "id": "1", "method": "connect", "params": {"pad": "x".repeat(70_000)}})).await;
    assert_eq!(c.closed().await.0, 1009, "frames before connect are capped at 64 KiB");
}

#[tokio::test]
async fn bad_frames_after_connect_keep_the_connection_usable() {
    let gw = TestGateway::start(&ws_config(", ws: { tickIntervalMs: 200 }"));
    let mut c = Client::connect(&gw).await;
    c.socket.send(Message::Text("{not json".into())).await.unwrap();
    let res = c.until(|f| f["type"] == "res").await;
    assert_eq!((res["ok"].as_bool(), res["error"]["code"].as_str()), (Some(false), Some("INVALID_REQUEST")));
    let res = c.call("no.such.method", json!({})).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    let res = c.call("health", json!({})).await;
    assert_eq!(res["ok"], true, "still usable: {res}");
    let tick = c.until(|f| f["event"] == "tick").await;
    assert!(tick["payload"]["ts"].as_u64().is_some() && tick["seq"].as_u64().is_some());
    let agents = c.call("agents.list", json!({})).await;
    assert_eq!(agents["payload"]["defaultId"], "main");
    let ids: Vec<&str> =
        agents["payload"]["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["flood", "main", "slow"]);
    let models = c.call("models.list", json!({})).await;
    let models: Vec<&str> =
        models["payload"]["models"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(models, ["openclaw/flood", "openclaw/main", "openclaw/slow"]);
}

#[tokio::test]
async fn oversize_frame_after_connect_closes_with_1009() {
    // An admin's maxPayload = room for a base64 component of this size
    // (~225 KB here), as it is larger than maxPayloadBytes.
    // Echo alone: it fits the small component limit the test needs.
    let config = r#"{ gateway: { http: { endpoints: { chatCompletions: { enabled: true } } }, ws: { maxPayloadBytes: 100000 } },
      agents: { maxComponentBytes: 120000, entries: { main: { plugin: "echo" } } } }"#;
    let gw = TestGateway::start(config);
    let (mut c, _) = Client::open(&gw).await;
    // Only a connection that may install (operator.admin) gets room for a component.
    let mut params = connect_params(TOKEN);
    params["scopes"] = json!(["operator.admin"]);
    let hello = c.call("connect", params).await;
    let max = hello["payload"]["policy"]["maxPayload"].as_u64().unwrap();
    assert_eq!(max, (120_000 / 3 + 1) * 4 + 65_536, "{hello}");
    // Under it: served.
    let fits = json!({"type": "req", "id": "fits", "method": "health", "params": {"pad": "x".repeat(200_000)}});
    c.send(fits).await;
    assert_eq!(c.response("fits").await["ok"], true);
    // Over it: refused at the frame's header with a 1009 close.
    c.send(json!({"type": "req", "id": "big", "method": "health", "params": {"pad": "x".repeat(300_000)}})).await;
    assert_eq!(c.closed().await.0, 1009);
    // Far over: the same, and the gateway reads the rest without keeping it.
    let mut c = Client::connect(&gw).await;
    c.send(json!({"type": "req", "id": "huge", "method": "health", "params": {"pad": "x".repeat(20_000_000)}})).await;
    assert_eq!(c.closed().await.0, 1009);
    assert_eq!(Client::connect(&gw).await.call("health", json!({})).await["ok"], true, "the gateway is fine");
}

#[tokio::test]
async fn agent_run_streams_events_and_matches_the_http_reply() {
    let gw = TestGateway::start(&ws_config(""));
    let input = "hello  from the\twebsocket";
    let http = content(&gw.chat(ask("openclaw", input)).send().await.unwrap().json().await.unwrap());
    let mut c = Client::connect(&gw).await;
    let id = c
        .request(
            "agent",
            Some(json!({"message": input, "agentId": "main", "deliver": false, "timeout": 60, "idempotencyKey": uuid::Uuid::new_v4().to_string(), "sessionKey": "agent:main:ws-run"})),
        )
        .await;
    let accepted = c.response(&id).await;
    assert_eq!(accepted["payload"]["status"], "accepted");
    let run_id = accepted["payload"]["runId"].as_str().unwrap().to_string();
    let mut deltas = String::new();
    let mut phases = Vec::new();
    let final_res = loop {
        let f = c.read().await.unwrap();
        if f["type"] == "res" && f["id"] == id.as_str() {
            break f;
        }
        if f["event"] == "agent" {
            let p = &f["payload"];
            assert_eq!(p["runId"], run_id.as_str());
            assert!(p["seq"].as_u64().is_some() && p["ts"].as_u64().is_some());
            match p["stream"].as_str().unwrap() {
                "lifecycle" => phases.push(p["data"]["phase"].as_str().unwrap().to_string()),
                "assistant" => {
                    deltas.push_str(p["data"]["delta"].as_str().unwrap());
                    assert_eq!(p["data"]["text"].as_str().unwrap(), deltas, "text is cumulative");
                }
                _ => {}
            }
        }
    };
    assert_eq!(deltas, http, "the WS deltas concatenate to the HTTP reply");
    assert_eq!(phases, ["start", "end"]);
    let p = &final_res["payload"];
    assert_eq!((p["runId"].as_str(), p["status"].as_str()), (Some(run_id.as_str()), Some("ok")));
    assert_eq!(p["result"]["payloads"][0]["text"], http.as_str());
    assert!(p["summary"].is_string());
    let waited = c.call("agent.wait", json!({"runId": run_id})).await;
    assert_eq!(waited["payload"]["status"], "ok");
}

#[tokio::test]
async fn chat_send_and_history_share_a_session_with_http() {
    let gw = TestGateway::start(&ws_config(""));
    let key = "agent:main:shared-with-http";
    let res = gw.chat(ask("openclaw", "hi")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "hi");
    let mut c = Client::connect(&gw).await;
    let started = c.call("chat.send", json!({"sessionKey": key, "message": "again", "idempotencyKey": "chat-1"})).await;
    assert_eq!(started["payload"]["status"], "started");
    let run_id = started["payload"]["runId"].as_str().unwrap().to_string();
    let mut delta_text = String::new();
    let fin = loop {
        let f = c.until(|f| f["event"] == "chat").await;
        let p = f["payload"].clone();
        assert_eq!((p["runId"].as_str(), p["sessionKey"].as_str()), (Some(run_id.as_str()), Some(key)));
        if p["state"] == "delta" {
            delta_text.push_str(p["deltaText"].as_str().unwrap());
            assert_eq!(p["message"]["content"][0]["text"].as_str().unwrap(), delta_text, "message is cumulative");
            assert_eq!(p["message"]["role"], "assistant");
        } else {
            break p;
        }
    };
    assert_eq!(fin["state"], "final");
    assert_eq!(fin["message"]["content"][0]["text"], "[turn 2] again");
    assert_eq!(delta_text, "[turn 2] again");
    let history = c.call("chat.history", json!({"sessionKey": key})).await;
    let texts: Vec<&str> = history["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hi", "hi", "again", "[turn 2] again"]);
    // And HTTP sees the WS turn.
    let res = gw.chat(ask("openclaw", "third")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "[turn 3] third");
    let listed = c.call("sessions.list", json!({"agentId": "main"})).await;
    assert_eq!(listed["payload"]["sessions"][0]["messageCount"], 6);
    let reset = c.call("sessions.reset", json!({"key": key})).await;
    assert_eq!(reset["payload"]["deleted"], true);
}

#[tokio::test]
async fn chat_abort_cancels_a_running_run() {
    let gw = TestGateway::start(&ws_config(""));
    let key = "agent:slow:abortable";
    let mut c = Client::connect(&gw).await;
    let started = c
        .call(
            "chat.send",
            json!({"sessionKey": key, "message": "one two three four five six seven", "idempotencyKey": "a1"}),
        )
        .await;
    let run_id = started["payload"]["runId"].as_str().unwrap().to_string();
    c.until(|f| f["event"] == "chat" && f["payload"]["state"] == "delta").await;
    let aborted = c.call("chat.abort", json!({"sessionKey": key})).await;
    assert_eq!(aborted["payload"]["aborted"], true);
    assert_eq!(aborted["payload"]["runIds"][0], run_id.as_str());
    let end = c.until(|f| f["event"] == "chat" && f["payload"]["state"] != "delta").await;
    assert_eq!(end["payload"]["state"], "aborted");
    let history = c.call("chat.history", json!({"sessionKey": key})).await;
    assert_eq!(history["payload"]["messages"].as_array().unwrap().len(), 0, "an aborted turn is not kept");
    let again = c.call("chat.abort", json!({"sessionKey": key})).await;
    assert_eq!(again["payload"]["aborted"], false);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_result_without_a_new_run() {
    let gw = TestGateway::start(&ws_config(""));
    let mut c = Client::connect(&gw).await;
    let params =
        json!({"message": "once", "agentId": "main", "sessionKey": "agent:main:idem", "idempotencyKey": "same-key"});
    let id = c.request("agent", Some(params.clone())).await;
    c.response(&id).await;
    let first = c.response(&id).await;
    assert_eq!(first["payload"]["status"], "ok");
    c.backlog.clear();

    let id2 = c.request("agent", Some(params)).await;
    let again = c.response(&id2).await;
    assert_eq!(again["payload"]["runId"], first["payload"]["runId"]);
    assert_eq!(again["payload"]["result"], first["payload"]["result"]);
    // A run for the retry would hold the session's lane before this turn,
    // which queues behind it: so this turn must see exactly one before it.
    let res =
        gw.chat(ask("openclaw", "after")).header("x-openclaw-session-key", "agent:main:idem").send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "[turn 2] after", "one run for the key, not two");
    let health = c.call("health", json!({})).await;
    assert_eq!(health["ok"], true);
    assert!(c.backlog.iter().all(|f| f["event"] != "agent"), "no events for a retry: {:?}", c.backlog);
    let history = c.call("chat.history", json!({"sessionKey": "agent:main:idem"})).await;
    assert_eq!(history["payload"]["messages"].as_array().unwrap().len(), 4, "one run per turn, not two");
}

#[tokio::test]
async fn every_connection_hears_about_agent_changes() {
    let gw = TestGateway::start(&ws_config(""));
    let mut watcher = Client::connect(&gw).await;
    // Installing needs operator.admin, and a connection gets only the scopes it asks for.
    let (mut admin, _) = Client::open(&gw).await;
    let mut params = connect_params(TOKEN);
    params["scopes"] = json!(["operator.admin"]);
    assert_eq!(admin.call("connect", params).await["payload"]["auth"]["scopes"], json!(["operator.admin"]));
    // Over HTTP…
    let res = reqwest::Client::new()
        .put(gw.url("/admin/agents/newbie"))
        .bearer_auth(TOKEN)
        .body(std::fs::read(FAULTS_WASM).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let changed = watcher.until(|f| f["event"] == "agents.changed").await;
    assert_eq!(
        (changed["payload"]["id"].as_str(), changed["payload"]["action"].as_str()),
        (Some("newbie"), Some("installed"))
    );
    // …and over the WebSocket itself.
    use base64::Engine as _;
    let component = base64::engine::general_purpose::STANDARD.encode(std::fs::read(ECHO_WASM).unwrap());
    let res = admin.call("agents.install", json!({"agentId": "newbie", "component": component})).await;
    assert_eq!(res["payload"]["name"], "echo", "{res}");
    let changed = watcher.until(|f| f["event"] == "agents.changed").await;
    assert_eq!(changed["payload"]["digest"], res["payload"]["digest"]);
    let res = admin.call("agents.rollback", json!({"agentId": "newbie"})).await;
    assert_eq!(res["payload"]["name"], "faults");
    assert_eq!(watcher.until(|f| f["event"] == "agents.changed").await["payload"]["action"], "rolled-back");
    let res = admin.call("agents.install", json!({"agentId": "newbie", "component": "bm90IHdhc20="})).await;
    assert_eq!(res["ok"], false, "a broken component is refused over WS too");
    let res = admin.call("agents.remove", json!({"agentId": "newbie"})).await;
    assert_eq!(res["payload"]["removed"], true);
    assert_eq!(watcher.until(|f| f["event"] == "agents.changed").await["payload"]["action"], "removed");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let gw = TestGateway::start(&ws_config(", ws: { sendTimeoutMs: 500 }"));
    let mut c = Client::connect(&gw).await;
    // The flood agent emits until its output budget (16 MiB) is spent, far
    // more than socket buffers hold. This client reads none of it, so the
    // socket stops taking bytes and the gateway gives up on the client.
    c.request("chat.send", Some(json!({"sessionKey": "agent:flood:x", "message": "go", "idempotencyKey": "f"}))).await;
    let started = std::time::Instant::now();
    while !gw.log().contains("too slow to read") {
        assert!(started.elapsed() < Duration::from_secs(30), "a stalled reader was never cut off:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Draining what was already buffered ends in a closed socket, not an endless stream.
    let mut frames = 0usize;
    while c.read().await.is_ok() {
        frames += 1;
        assert!(frames < 1_000_000, "the stream never ended");
    }
    // Everyone else is served as usual.
    assert_eq!(Client::connect(&gw).await.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn shutdown_closes_connections_cleanly() {
    let mut gw = TestGateway::start(&ws_config(""));
    let mut c = Client::connect(&gw).await;
    gw.terminate();
    let event = c.until(|f| f["event"] == "shutdown").await;
    assert!(event["payload"]["reason"].is_string());
    assert_eq!(c.closed().await.0, 1001);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("the gateway exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn websocket_connects_share_the_auth_lock_out() {
    let config = ws_config("").replace(
        "gateway: {",
        "gateway: { auth: { mode: \"token\", rateLimit: { maxAttempts: 2, lockoutMs: 60000, exemptLoopback: false } },",
    );
    let gw = TestGateway::start(&config);
    for _ in 0..2 {
        let (mut c, _) = Client::open(&gw).await;
        assert_eq!(c.call("connect", connect_params("wrong")).await["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    }
    let (mut c, _) = Client::open(&gw).await;
    let res = c.call("connect", connect_params(TOKEN)).await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["details"]["code"], "AUTH_RATE_LIMITED");
    assert_eq!(res["error"]["retryable"], true);
    assert_eq!(c.closed().await.0, 1008);
    // HTTP from the same address is locked out too.
    let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 429);
}

#[tokio::test]
async fn chat_send_names_its_run_by_the_client_s_idempotency_key_as_openclaw_does() {
    let gw = TestGateway::start(&ws_config(""));
    let mut c = Client::connect(&gw).await;
    let key = "agent:main:named";
    let send = json!({"sessionKey": key, "message": "hi", "idempotencyKey": "client-run-7"});
    let started = c.call("chat.send", send.clone()).await;
    assert_eq!(
        (started["payload"]["runId"].as_str(), started["payload"]["status"].as_str()),
        (Some("client-run-7"), Some("started")),
        "{started}"
    );
    let lifecycle = c.until(|f| f["event"] == "agent" && f["payload"]["stream"] == "lifecycle").await;
    assert_eq!(lifecycle["payload"]["runId"], "client-run-7", "{lifecycle}");
    let fin = c.until(|f| f["event"] == "chat" && f["payload"]["state"] == "final").await;
    assert_eq!(fin["payload"]["runId"], "client-run-7", "{fin}");
    let mark = json!({"runId": "client-run-7", "idempotencyKey": "client-run-7:assistant"});
    assert_eq!(fin["payload"]["message"]["__openclaw"], mark, "{fin}");
    // History marks the run's messages the same way.
    let history = c.call("chat.history", json!({"sessionKey": key})).await;
    let metas: Vec<&serde_json::Value> =
        history["payload"]["messages"].as_array().unwrap().iter().map(|m| &m["__openclaw"]).collect();
    assert_eq!(metas[0]["runId"], "client-run-7", "{history}");
    assert_eq!((&metas[1]["runId"], &metas[1]["idempotencyKey"]), (&mark["runId"], &mark["idempotencyKey"]));
    // A retry is answered with the same id, and no second run.
    let again = c.call("chat.send", send).await;
    assert_eq!(
        (again["payload"]["runId"].as_str(), again["payload"]["cached"].as_bool()),
        (Some("client-run-7"), Some(true))
    );

    // chat.abort takes the id chat.send answered.
    let slow = "agent:slow:named";
    let send =
        json!({"sessionKey": slow, "message": "one two three four five six seven", "idempotencyKey": "client-run-8"});
    assert_eq!(c.call("chat.send", send).await["payload"]["runId"], "client-run-8");
    c.until(|f| f["event"] == "chat" && f["payload"]["state"] == "delta" && f["payload"]["runId"] == "client-run-8")
        .await;
    let aborted = c.call("chat.abort", json!({"sessionKey": slow, "runId": "client-run-8"})).await;
    assert_eq!(
        (aborted["payload"]["aborted"].as_bool(), &aborted["payload"]["runIds"]),
        (Some(true), &json!(["client-run-8"])),
        "{aborted}"
    );
    let end = c.until(|f| f["event"] == "chat" && f["payload"]["state"] != "delta").await;
    assert_eq!(
        (end["payload"]["state"].as_str(), end["payload"]["runId"].as_str()),
        (Some("aborted"), Some("client-run-8"))
    );
}

#[tokio::test]
async fn agent_names_its_run_by_the_client_s_idempotency_key_in_answers_events_waits_and_aborts() {
    let gw = TestGateway::start(&ws_config(""));
    let mut c = Client::connect(&gw).await;
    let params = json!({"message": "hi", "agentId": "main", "sessionKey": "agent:main:agent-named", "idempotencyKey": "agent-run-1"});
    let id = c.request("agent", Some(params)).await;
    let accepted = c.response(&id).await;
    assert_eq!(accepted["payload"]["runId"], "agent-run-1", "{accepted}");
    let lifecycle = c.until(|f| f["event"] == "agent" && f["payload"]["stream"] == "lifecycle").await;
    assert_eq!(lifecycle["payload"]["runId"], "agent-run-1", "{lifecycle}");
    let fin = c.response(&id).await;
    assert_eq!(
        (fin["payload"]["runId"].as_str(), fin["payload"]["status"].as_str()),
        (Some("agent-run-1"), Some("ok"))
    );
    // agent.wait takes the id agent answered.
    let waited = c.call("agent.wait", json!({"runId": "agent-run-1"})).await;
    assert_eq!(
        (waited["payload"]["runId"].as_str(), waited["payload"]["status"].as_str()),
        (Some("agent-run-1"), Some("ok")),
        "{waited}"
    );
    let unknown = c.call("agent.wait", json!({"runId": "never-sent"})).await;
    assert_eq!(unknown["ok"], false, "{unknown}");

    // chat.abort without a runId reports each run by the id its client was answered.
    let slow = "agent:slow:agent-named";
    let long = "one two three four five six seven eight nine ten";
    let id =
        c.request("agent", Some(json!({"message": long, "sessionKey": slow, "idempotencyKey": "agent-run-2"}))).await;
    assert_eq!(c.response(&id).await["payload"]["runId"], "agent-run-2");
    let unkeyed = c.call("chat.send", json!({"sessionKey": slow, "message": long})).await;
    let unkeyed = unkeyed["payload"]["runId"].as_str().expect("a run id").to_string();
    c.until(|f| {
        f["event"] == "agent" && f["payload"]["stream"] == "assistant" && f["payload"]["runId"] == "agent-run-2"
    })
    .await;
    let aborted = c.call("chat.abort", json!({"sessionKey": slow})).await;
    let mut ids: Vec<&str> =
        aborted["payload"]["runIds"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    ids.sort();
    let mut saw = vec!["agent-run-2", unkeyed.as_str()];
    saw.sort();
    assert_eq!(ids, saw, "{aborted}");
    let end = c.response(&id).await;
    assert_eq!(
        (end["payload"]["runId"].as_str(), end["payload"]["status"].as_str()),
        (Some("agent-run-2"), Some("aborted"))
    );
}
