//! WebSocket hardening: what a hostile or slow client must not be able to do
//! to the gateway, and what a disconnected client's runs do.

use std::time::{Duration, Instant};

use crate::support::*;
use futures::SinkExt;
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

/// Announce a frame of `announced` bytes before `connect`, send `sent` of
/// them, and return the close code the server answers with.
async fn half_a_huge_frame(gw: &TestGateway, announced: u64, sent: usize) -> Option<u16> {
    let mut raw = RawWs::open(gw).await;
    let challenge = raw.frame().await.expect("the challenge");
    assert_eq!(challenge.0, 1, "a text frame first");
    raw.send_reading_close(&RawWs::text_header(announced), sent).await
}

#[tokio::test]
async fn big_frames_before_connect_are_refused_without_being_buffered() {
    let gw = TestGateway::start(&config(""));
    assert_eq!(Client::connect(&gw).await.call("health", json!({})).await["ok"], true);
    let before = gw.rss_kib();

    // A real client's 1 MB frame before connect: a 1009 close.
    let (mut c, _) = Client::open(&gw).await;
    c.send(json!({"type": "req", "id": "1", "method": "connect", "params": {"pad": "x".repeat(1 << 20)}})).await;
    assert_eq!(c.closed().await.0, 1009, "frames before connect are capped at 64 KiB");

    // Several clients announce 64 MiB frames and send 4 MiB of each, at once,
    // while a sampler records the gateway's largest resident size.
    let gw = std::sync::Arc::new(gw);
    let attacks: Vec<_> = (0..8)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { half_a_huge_frame(&gw, 64 << 20, 4 << 20).await })
        })
        .collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (gw, done) = (gw.clone(), done.clone());
        async move {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(gw.rss_kib());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak.max(gw.rss_kib())
        }
    });
    let mut codes = Vec::new();
    for attack in attacks {
        codes.push(attack.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let grown = sampler.await.unwrap().saturating_sub(before);
    assert!(grown < 10 << 10, "8 × 4 MiB of refused frames grew the gateway by {grown} KiB (closes: {codes:?})");
    assert!(codes.iter().all(|c| *c == Some(1009)), "refused at the header with 1009: {codes:?}");
    let log = gw.settled_log().await;
    assert!(!log.contains("panicked"), "a connection task panicked:\n{log}");
    assert_eq!(Client::connect(&gw).await.call("health", json!({})).await["ok"], true, "the gateway is fine");
}

#[tokio::test]
async fn handshakes_beyond_the_cap_are_refused_while_connected_clients_keep_working() {
    let gw = TestGateway::start(&config(", ws: { maxPendingHandshakes: 2 }"));
    let url = gw.base.replace("http://", "ws://");
    // Connected clients do not count against the cap.
    let mut connected = Client::connect(&gw).await;
    let mut connected_too = Client::connect(&gw).await;
    let mut connected_three = Client::connect(&gw).await;
    let (pending_one, _) = Client::open(&gw).await;
    let (mut pending_two, _) = Client::open(&gw).await;
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 503, "{res:?}");
            assert!(res.headers().contains_key("retry-after"), "{res:?}");
        }
        other => panic!("a third pending handshake must be refused, got {:?}", other.map(|(_, r)| r)),
    }
    gw.wait_for_metrics(&["wasmclaw_ws_handshakes_refused_total 1"]).await;
    for c in [&mut connected, &mut connected_too, &mut connected_three] {
        assert_eq!(c.call("health", json!({})).await["ok"], true, "connected clients keep working");
    }
    // A handshake that completes frees its place at once.
    assert_eq!(pending_two.call("connect", connect_params(TOKEN)).await["ok"], true);
    assert_eq!(Client::connect(&gw).await.call("health", json!({})).await["ok"], true);
    // One that goes away frees it too, once the gateway has seen it go.
    drop(pending_one);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let first = tokio_tungstenite::connect_async(url.as_str()).await;
        let second = tokio_tungstenite::connect_async(url.as_str()).await;
        if first.is_ok() && second.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "a closed pending handshake never freed its place");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_client_holding_handshakes_cannot_keep_another_from_logging_in() {
    let gw = TestGateway::start(&config(", ws: { maxPendingHandshakes: 8 }"));
    // One address without credentials opens upgrades and never sends connect.
    let mut held = Vec::new();
    let refused = loop {
        match Client::open_from(&gw, "127.0.0.1").await {
            Ok((c, _)) => held.push(c),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => break res.status(),
            Err(e) => panic!("{e}"),
        }
        assert!(held.len() <= 8, "more pending handshakes than the gateway's cap");
    };
    assert_eq!(refused, 503);
    assert_eq!(held.len(), 6, "one client gets three quarters of the places");
    // Another client logs in every time, while the first keeps reopening upgrades.
    for attempt in 0..10 {
        let again = Client::open_from(&gw, "127.0.0.1").await;
        assert!(again.is_err(), "the holder got past its share");
        let (mut real, _) = Client::open_from(&gw, "127.0.0.2")
            .await
            .unwrap_or_else(|e| panic!("login {attempt} of another client refused: {e}"));
        assert_eq!(real.call("connect", connect_params(TOKEN)).await["ok"], true, "login {attempt}");
    }
    gw.wait_for_log("the refusal naming the setting", |log| log.contains("gateway.ws.maxPendingHandshakesPerClient"))
        .await;
}

/// Read a run of `chat.send` to its end, `pause` before each frame; checks
/// order and cumulative fields on the way. Returns (agent deltas joined,
/// chat deltas joined, final chat payload, frames read).
async fn read_run_slowly(c: &mut Client, run_id: &str, pause: Duration) -> (String, String, Value, usize) {
    let (mut agent_text, mut chat_text) = (String::new(), String::new());
    let (mut agent_seq, mut chat_seq, mut event_seq, mut frames) = (0, 0, 0, 0usize);
    loop {
        tokio::time::sleep(pause).await;
        let f =
            c.read().await.unwrap_or_else(|closed| panic!("disconnected mid-reply after {frames} frames: {closed:?}"));
        frames += 1;
        if let Some(seq) = f["seq"].as_u64() {
            assert!(seq > event_seq, "event seq goes up: {seq} after {event_seq}");
            event_seq = seq;
        }
        let p = &f["payload"];
        if p["runId"] != run_id {
            continue;
        }
        match f["event"].as_str() {
            Some("agent") => {
                agent_seq += 1;
                assert_eq!(p["seq"], agent_seq, "agent events of a run are numbered 1, 2, …");
                if p["stream"] == "assistant" {
                    agent_text.push_str(p["data"]["delta"].as_str().unwrap());
                    assert_eq!(p["data"]["text"].as_str().unwrap(), agent_text, "text is the reply so far");
                }
            }
            Some("chat") => {
                chat_seq += 1;
                assert_eq!(p["seq"], chat_seq, "chat events of a run are numbered 1, 2, …");
                match p["state"].as_str().unwrap() {
                    "delta" => {
                        chat_text.push_str(p["deltaText"].as_str().unwrap());
                        assert_eq!(p["message"]["content"][0]["text"].as_str().unwrap(), chat_text);
                    }
                    _ => return (agent_text, chat_text, p.clone(), frames),
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_fast_agents_long_reply_reaches_a_slow_reader_completely_and_in_order() {
    let gw = TestGateway::start(&config(""));
    let expected: String = (0..5000).map(|i| format!("t{i} ")).collect();
    let mut c = Client::connect(&gw).await;
    let started = c.call("chat.send", json!({"sessionKey": "agent:burst:long", "message": "go"})).await;
    let run_id = started["payload"]["runId"].as_str().unwrap().to_string();
    let (agent_text, chat_text, fin, frames) = read_run_slowly(&mut c, &run_id, Duration::from_millis(2)).await;
    assert_eq!(fin["state"], "final", "{fin}");
    assert_eq!(fin["message"]["content"][0]["text"].as_str().unwrap(), expected, "the final frame has the whole reply");
    assert_eq!(chat_text, expected, "chat deltas add up to the reply");
    // The lifecycle end precedes the chat final; the assistant deltas are all in.
    assert_eq!(agent_text, expected, "agent deltas add up to the reply");
    assert!(frames < 2_000, "a 5,000-piece reply took {frames} frames: deltas are not coalesced");
    assert_eq!(c.call("health", json!({})).await["ok"], true, "still connected");
}

#[tokio::test]
async fn closing_the_socket_mid_run_stops_the_run_at_once() {
    let gw = TestGateway::start(&config(""));
    let words: String = (0..200).map(|i| format!("w{i} ")).collect();
    let mut observer = Client::connect(&gw).await;

    // A clean close while a chat.send run streams.
    let mut c = Client::connect(&gw).await;
    let key = "agent:slow:left-mid-run";
    let started = c.call("chat.send", json!({"sessionKey": key, "message": words, "idempotencyKey": "gone-1"})).await;
    let run_id = started["payload"]["runId"].as_str().unwrap().to_string();
    c.until(|f| f["event"] == "chat" && f["payload"]["state"] == "delta").await;
    c.socket.close(None).await.unwrap();
    drop(c);
    // 200 words × 150 ms is 30 s; the run must be gone long before.
    gw.wait_for_metrics(&[
        "wasmclaw_runs_active 0",
        "wasmclaw_run_failures_total{agent=\"slow\",kind=\"cancelled\"} 1",
    ])
    .await;
    let waited = observer.call("agent.wait", json!({"runId": run_id, "timeoutMs": 5000})).await;
    assert_eq!(waited["payload"]["status"], "aborted", "another connection sees how it ended: {waited}");
    let history = observer.call("chat.history", json!({"sessionKey": key})).await;
    assert_eq!(history["payload"]["messages"].as_array().unwrap().len(), 0, "an aborted turn is not kept");

    // An `agent` run whose client just drops the TCP connection.
    let mut c = Client::connect(&gw).await;
    let id = c
        .request("agent", Some(json!({"message": words, "agentId": "slow", "sessionKey": "agent:slow:dropped"})))
        .await;
    let accepted = c.response(&id).await;
    let run_id = accepted["payload"]["runId"].as_str().unwrap().to_string();
    c.until(|f| f["event"] == "agent" && f["payload"]["stream"] == "assistant").await;
    drop(c);
    gw.wait_for_metrics(&[
        "wasmclaw_runs_active 0",
        "wasmclaw_run_failures_total{agent=\"slow\",kind=\"cancelled\"} 2",
    ])
    .await;
    let waited = observer.call("agent.wait", json!({"runId": run_id, "timeoutMs": 5000})).await;
    assert_eq!(waited["payload"]["status"], "aborted", "{waited}");
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
    // Its own run, which `chat.send` names by the client's key, as OpenClaw does.
    assert_eq!(res["payload"]["runId"], first_run);
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

#[tokio::test]
async fn a_client_may_pipeline_requests_behind_connect() {
    let gw = TestGateway::start(&config(""));
    let (mut c, _) = Client::open(&gw).await;
    // Ping, connect and a request in one burst, before hello-ok arrives.
    c.socket.feed(tokio_tungstenite::tungstenite::Message::Ping(vec![1, 2, 3].into())).await.unwrap();
    let connect = json!({"type": "req", "id": "c", "method": "connect", "params": connect_params(TOKEN)});
    c.socket.feed(tokio_tungstenite::tungstenite::Message::Text(connect.to_string().into())).await.unwrap();
    let health = json!({"type": "req", "id": "h", "method": "health"});
    c.socket.feed(tokio_tungstenite::tungstenite::Message::Text(health.to_string().into())).await.unwrap();
    c.socket.flush().await.unwrap();
    let hello = c.response("c").await;
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    assert_eq!(c.response("h").await["ok"], true, "a request right behind connect is not lost");
}

/// Not a check: what a fast agent's long reply costs over each door. Prints
/// frames and bytes a client receives and the gateway's CPU time; run with
/// `cargo test --test all -- measure_long_replies --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure_long_replies() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let cpu_ms = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
        // utime + stime, in clock ticks of 10 ms.
        (fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()) * 10
    };
    for count in [5000u32, 20000] {
        let gw = TestGateway::start(&config("").replace("count: \"5000\"", &format!("count: \"{count}\"")));
        let before = cpu_ms(gw.pid());
        let body: Value = gw.chat(ask("openclaw/burst", "go")).send().await.unwrap().json().await.unwrap();
        println!(
            "{count} pieces over HTTP (JSON): {} bytes of reply, gateway CPU {} ms",
            content(&body).len(),
            cpu_ms(gw.pid()) - before
        );
        for method in ["chat.send", "agent"] {
            let mut c = Client::connect(&gw).await;
            let before = cpu_ms(gw.pid());
            let started = Instant::now();
            c.request(method, Some(json!({"sessionKey": format!("agent:burst:{method}"), "message": "go"}))).await;
            let (mut frames, mut bytes) = (0usize, 0usize);
            let ending = loop {
                let Some(Ok(message)) = c.socket.next().await else { break "socket ended" };
                let Message::Text(text) = message else { continue };
                frames += 1;
                bytes += text.len();
                let f: Value = serde_json::from_str(&text).unwrap();
                if f["event"] == "agent"
                    && f["payload"]["stream"] == "lifecycle"
                    && f["payload"]["data"]["phase"] != "start"
                {
                    break "lifecycle end";
                }
            };
            let took = started.elapsed();
            gw.wait_for_metrics(&["wasmclaw_runs_active 0"]).await;
            println!(
                "{count} pieces over {method}: {frames} frames, {bytes} bytes in {took:?} ({ending}), gateway CPU {} ms",
                cpu_ms(gw.pid()) - before
            );
        }
    }
}
