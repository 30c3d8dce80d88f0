//! Sessions (issue 3): transcripts, lanes, durability, plugin state, history API.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

/// `main` = echo, `slow` = faults that sleeps per word, `counter`/`counter2` = plugin state.
pub(crate) fn sessions_config(delay_ms: u32, extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    slow: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "{delay_ms}" }} }},
    counter: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "counter" }} }},
    counter2: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "counter" }} }},
  }} }},
  {extra}
}}"#
    )
}

pub(crate) fn as_user(model: &str, user: &str, text: &str) -> Value {
    let mut body = ask(model, text);
    body["user"] = json!(user);
    body
}

async fn say(gw: &TestGateway, body: Value) -> (u16, String, String) {
    let res = gw.chat(body).send().await.unwrap();
    let status = res.status().as_u16();
    let key = res.headers().get("x-openclaw-session-key").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body: Value = res.json().await.unwrap();
    (status, content(&body), key)
}

async fn history(gw: &TestGateway, key: &str) -> reqwest::Response {
    gw.session_history(key).await
}

/// A six-word streaming reply on `key`, returned once its first word has arrived.
async fn slow_stream_under_way(gw: &TestGateway, key: &str) -> reqwest::Response {
    let mut body = ask("agent:slow", "one two three four five six");
    body["stream"] = json!(true);
    let mut res = gw.chat(body).header("x-openclaw-session-key", key).send().await.unwrap();
    let mut seen = String::new();
    while !seen.contains("one ") {
        seen.push_str(&String::from_utf8_lossy(&res.chunk().await.unwrap().expect("stream ended early")));
    }
    res
}

/// The text of a streamed reply, checking it ends normally.
async fn streamed_text(res: reqwest::Response) -> String {
    let payloads = sse_payloads(&res.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1].iter().map(|p| serde_json::from_str(p).unwrap()).collect();
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop", "{chunks:?}");
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

#[tokio::test]
async fn same_user_shares_a_session_and_stateless_calls_store_nothing() {
    let gw = TestGateway::start(&sessions_config(10, ""));
    for _ in 0..3 {
        let (_, reply, key) = say(&gw, ask("openclaw", "no user")).await;
        assert_eq!(reply, "no user");
        assert_eq!(history(&gw, &key).await.status(), 404, "a per-request session is never written");
    }
    assert_eq!(gw.session_keys().await, Vec::<String>::new(), "per-request sessions are never written");

    let (_, first, key) = say(&gw, as_user("openclaw", "alice", "hi")).await;
    let (_, second, key2) = say(&gw, as_user("openclaw", "alice", "again")).await;
    assert_eq!((first.as_str(), second.as_str()), ("hi", "[turn 2] again"));
    assert_eq!(key, key2);
    assert_eq!(
        gw.transcript(&key).await,
        pairs(&[("user", "hi"), ("assistant", "hi"), ("user", "again"), ("assistant", "[turn 2] again")])
    );
    let body: Value = history(&gw, &key).await.json().await.unwrap();
    assert_eq!((body["sessionKey"].as_str(), body["agentId"].as_str()), (Some(key.as_str()), Some("main")));
    assert!(body["messages"][0]["createdAt"].as_u64().unwrap() > 1_700_000_000_000);

    assert_eq!(say(&gw, as_user("openclaw", "bob", "hello")).await.1, "hello", "another user is another session");
}

#[tokio::test]
async fn clients_that_resend_the_conversation_do_not_duplicate_it() {
    let gw = TestGateway::start(&sessions_config(10, ""));
    let (_, reply, key) = say(&gw, as_user("openclaw", "carol", "one")).await;
    let mut body = json!({"model": "openclaw", "user": "carol", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "two"},
    ]});
    let (_, second, _) = say(&gw, body.clone()).await;
    assert_eq!(second, "[turn 2] two");
    body["messages"]
        .as_array_mut()
        .unwrap()
        .extend([json!({"role": "assistant", "content": second}), json!({"role": "user", "content": "three"})]);
    assert_eq!(say(&gw, body).await.1, "[turn 3] three");
    let t = gw.transcript(&key).await;
    assert_eq!(t.len(), 6, "{t:?}");
    assert!(t.iter().all(|(role, _)| role != "system"));
}

#[tokio::test]
async fn transcripts_survive_restart_and_kill_9_mid_stream() {
    let state = tempfile::tempdir().unwrap();
    let config = sessions_config(300, "");
    let key = "agent:slow:durable";
    let mut gw = TestGateway::start_in(state.path(), &config);
    for text in ["a", "b"] {
        let res = gw.chat(ask("agent:slow", text)).header("x-openclaw-session-key", key).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = slow_stream_under_way(&gw, key).await;
    gw.kill9();
    drop(res);

    let gw = TestGateway::start_in(state.path(), &config);
    let expected = pairs(&[("user", "a"), ("assistant", "a"), ("user", "b"), ("assistant", "[turn 2] b")]);
    assert_eq!(gw.transcript(key).await, expected, "complete turns kept, interrupted turn absent");
    let res = gw.chat(ask("agent:slow", "c")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "[turn 3] c");
}

#[tokio::test]
async fn concurrent_runs_on_one_key_are_serialized_in_order() {
    // A stream's status line goes out at its first word or after
    // sseKeepAliveMs, whichever is first; its run took its place in the
    // session's lane before that. Here that is after 20 ms, while the run
    // still sleeps 100 ms before its only word: so the runs overlap, and
    // only the lane keeps them apart.
    let config = sessions_config(100, "").replace(
        "endpoints: { chatCompletions: { enabled: true } }",
        "endpoints: { chatCompletions: { enabled: true } }, sseKeepAliveMs: 20",
    );
    let gw = TestGateway::start(&config);
    let key = "agent:slow:lane";
    let mut readers = Vec::new();
    for i in 0..10 {
        let mut body = ask("agent:slow", &format!("m{i}"));
        body["stream"] = json!(true);
        // Send the next request only once this one has its status line: the
        // arrival order is the index order by construction, not by timing.
        let res = gw.chat(body).header("x-openclaw-session-key", key).send().await.unwrap();
        assert_eq!(res.status(), 200);
        readers.push(tokio::spawn(streamed_text(res)));
    }
    let mut replies = Vec::new();
    for reader in readers {
        replies.push(reader.await.unwrap());
    }
    let expected: Vec<String> =
        (0..10).map(|i| if i == 0 { "m0".to_string() } else { format!("[turn {}] m{i}", i + 1) }).collect();
    assert_eq!(replies, expected, "each run saw every earlier turn, in arrival order");
    let t = gw.transcript(key).await;
    assert_eq!(t.len(), 20);
    for (i, pair) in t.chunks(2).enumerate() {
        assert_eq!(pair[0], ("user".to_string(), format!("m{i}")));
        assert_eq!(pair[1], ("assistant".to_string(), expected[i].clone()), "turns are not interleaved");
    }
}

/// [`sessions_config`] with `slow` sleeping `delay_ms` per word and a stream's
/// status line sent after 20 ms: once a stream has its 200, its run has taken
/// its place in the session's lane.
pub(crate) fn lane_config(delay_ms: u32) -> String {
    sessions_config(delay_ms, "").replace(
        "endpoints: { chatCompletions: { enabled: true } }",
        "endpoints: { chatCompletions: { enabled: true } }, sseKeepAliveMs: 20",
    )
}

/// Issue 24, item 2: A runs on a session (six words at `lane_config`'s delay),
/// B waits behind it and C behind B; B's client hangs up. C must still wait
/// for A to end: it then sees A's turn. After that the lane works as before.
pub(crate) async fn a_waiter_hanging_up_lets_no_one_past_the_running_turn(gw: &TestGateway) {
    let key = "agent:slow:a-b-c";
    let send = async |text: &str| {
        let mut body = ask("agent:slow", text);
        body["stream"] = json!(true);
        let res = gw.chat(body).header("x-openclaw-session-key", key).send().await.unwrap();
        assert_eq!(res.status(), 200, "{text}");
        res
    };
    // In this order by construction: each is sent once the one before has its place.
    let a = tokio::spawn(streamed_text(send("one two three four five six").await));
    let b = send("b").await;
    let c = tokio::spawn(streamed_text(send("c").await));
    drop(b);
    gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="slow",kind="cancelled"} 1"#]).await;
    assert!(!a.is_finished(), "A must still run when B's hang-up is seen, or this test proves nothing");
    assert_eq!(a.await.unwrap(), "one two three four five six");
    assert_eq!(c.await.unwrap(), "[turn 2] c", "C started only after A had ended, and saw its turn");
    let res = gw.chat(ask("agent:slow", "d")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "[turn 3] d", "the lane still works");
    let expected = pairs(&[
        ("user", "one two three four five six"),
        ("assistant", "one two three four five six"),
        ("user", "c"),
        ("assistant", "[turn 2] c"),
        ("user", "d"),
        ("assistant", "[turn 3] d"),
    ]);
    assert_eq!(gw.transcript(key).await, expected, "B left nothing, and no turn interleaved");
}

#[tokio::test]
async fn a_waiting_client_that_hangs_up_lets_no_one_past_the_running_turn() {
    let gw = TestGateway::start(&lane_config(600));
    a_waiter_hanging_up_lets_no_one_past_the_running_turn(&gw).await;
}

#[tokio::test]
async fn runs_on_different_keys_run_in_parallel() {
    let gw = TestGateway::start(&sessions_config(400, ""));
    let started = Instant::now();
    assert_eq!(say(&gw, as_user("agent:slow", "solo", "x")).await.0, 200);
    let one = started.elapsed();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let req = gw.chat(as_user("agent:slow", &format!("user-{i}"), "x"));
        tasks.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let ten = started.elapsed();
    assert!(ten < one * 4, "ten sessions took {ten:?}, one took {one:?}: they did not run in parallel");
}

#[tokio::test]
async fn a_session_belongs_to_one_agent() {
    let gw = TestGateway::start(&sessions_config(10, ""));
    let res = gw.chat(ask("openclaw", "mine")).header("x-openclaw-session-key", "shared-key").send().await.unwrap();
    assert_eq!(res.status(), 200);
    for stream in [false, true] {
        let mut body = ask("agent:slow", "theirs");
        body["stream"] = json!(stream);
        let res = gw.chat(body).header("x-openclaw-session-key", "shared-key").send().await.unwrap();
        assert_eq!(res.status(), 400, "stream={stream}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("belongs to agent \"main\""), "{body}");
    }
    assert_eq!(gw.transcript("shared-key").await.len(), 2, "the rejected turn left nothing");
}

#[tokio::test]
async fn plugin_state_persists_per_session_and_agent_and_only_on_success() {
    let gw = TestGateway::start(&sessions_config(10, ""));
    assert_eq!(say(&gw, as_user("agent:counter", "alice", "x")).await.1, "count=1");
    assert_eq!(say(&gw, as_user("agent:counter", "alice", "x")).await.1, "count=2");
    let (status, _, _) = say(&gw, as_user("agent:counter", "alice", "fail")).await;
    assert_eq!(status, 500);
    assert_eq!(say(&gw, as_user("agent:counter", "alice", "x")).await.1, "count=3", "a failed run's write is dropped");
    assert_eq!(say(&gw, as_user("agent:counter", "bob", "x")).await.1, "count=1", "isolated between sessions");
    assert_eq!(say(&gw, as_user("agent:counter2", "alice", "x")).await.1, "count=1", "isolated between agents");
    assert_eq!(say(&gw, ask("agent:counter", "x")).await.1, "count=1", "per-request sessions start empty");
    assert_eq!(say(&gw, ask("agent:counter", "x")).await.1, "count=1", "and keep nothing");
    let (_, refused, _) = say(&gw, as_user("agent:counter", "alice", "too-big")).await;
    assert!(refused.starts_with("refused: state value is 70000 bytes"), "{refused}");
}

#[tokio::test]
async fn history_api_lists_resets_and_requires_auth() {
    let gw = TestGateway::start(&sessions_config(10, ""));
    let key = "team chat/1";
    for text in ["a", "b"] {
        let res = gw.chat(ask("openclaw", text)).header("x-openclaw-session-key", key).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    say(&gw, as_user("agent:counter", "dave", "x")).await;
    let client = reqwest::Client::new();
    let list: Value =
        client.get(gw.url("/sessions?agent=main")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{list}");
    assert_eq!((sessions[0]["sessionKey"].as_str(), sessions[0]["messageCount"].as_u64()), (Some(key), Some(4)));
    assert!(sessions[0]["lastActivity"].as_u64().unwrap() > 1_700_000_000_000);
    let all: Value = client.get(gw.url("/sessions")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["sessions"].as_array().unwrap().len(), 2);

    assert_eq!(client.get(gw.url("/sessions")).send().await.unwrap().status(), 401);
    let path = format!("/sessions/{}/history", urlencode(key));
    assert_eq!(client.get(gw.url(&path)).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(history(&gw, "no-such-session").await.status(), 404);

    let del = client.delete(gw.url(&format!("/sessions/{}", urlencode(key)))).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(history(&gw, key).await.status(), 404);
    let res = gw.chat(ask("openclaw", "fresh")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "fresh", "a reset session starts over");
    let again = client.delete(gw.url("/sessions/no-such-session")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn idle_sessions_expire_when_configured() {
    let gw = TestGateway::start(&sessions_config(10, r#"sessions: { idleTtl: "1s" },"#));
    let (_, _, key) = say(&gw, as_user("openclaw", "erin", "hi")).await;
    assert_eq!(history(&gw, &key).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while history(&gw, &key).await.status() == 200 {
        assert!(Instant::now() < deadline, "idle session was never removed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    gw.wait_for_log("the expiry", |log| log.contains("idle sessions removed")).await;
}

#[test]
fn bad_session_stores_stop_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.sqlite");
    std::fs::write(&corrupt, vec![0x42u8; 16384]).unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let unwritable = blocker.join("sessions.sqlite");
    for path in [&corrupt, &unwritable] {
        let config = format!(r#"{{ sessions: {{ path: "{}" }} }}"#, path.display());
        let log = TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)]).err().expect("must not start");
        assert!(log.contains(&path.display().to_string()), "{log}");
    }
    assert_eq!(std::fs::read(&corrupt).unwrap(), vec![0x42u8; 16384], "the corrupt file is left untouched");
}

#[tokio::test]
async fn cli_sessions_and_agent_share_the_store() {
    let state = tempfile::tempdir().unwrap();
    let config_path = state.path().join("cli.json5");
    std::fs::write(&config_path, sessions_config(10, "")).unwrap();
    let run = |args: &[&str]| {
        let out = cli(state.path()).args(args).arg("--config").arg(&config_path).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&["agent", "--message", "one", "--session-key", "cli-key"]).trim_end(), "one");
    assert_eq!(run(&["agent", "--message", "two", "--session-key", "cli-key"]).trim_end(), "[turn 2] two");
    let listed = run(&["sessions", "list", "--agent", "main"]);
    assert!(listed.starts_with("cli-key\tmain\t4 messages"), "{listed}");
    let shown: Value = serde_json::from_str(&run(&["sessions", "show", "cli-key"])).unwrap();
    assert_eq!(shown["messages"].as_array().unwrap().len(), 4);
    // The gateway sees what the CLI wrote.
    let gw = TestGateway::start_in(state.path(), &sessions_config(10, ""));
    assert_eq!(gw.transcript("cli-key").await.len(), 4);
    drop(gw);
    assert!(run(&["sessions", "reset", "cli-key"]).contains("reset"));
    assert_eq!(run(&["sessions", "list"]), "");
}

#[tokio::test]
async fn a_disconnected_run_leaves_no_turn_behind() {
    let gw = TestGateway::start(&sessions_config(150, ""));
    let key = "agent:slow:walkaway";
    let res = gw.chat(ask("agent:slow", "kept")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = slow_stream_under_way(&gw, key).await;
    drop(res);
    gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="slow",kind="cancelled"} 1"#]).await;
    // The next turn queues behind the abandoned run on the same key, so it
    // sees what that run left: nothing. And the lane was released.
    let res = gw.chat(ask("agent:slow", "next")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "[turn 2] next");
    let expected = pairs(&[("user", "kept"), ("assistant", "kept"), ("user", "next"), ("assistant", "[turn 2] next")]);
    assert_eq!(gw.transcript(key).await, expected);
}
