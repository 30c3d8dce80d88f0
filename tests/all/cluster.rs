//! Cluster mode (issue 15): several gateways on one PostgreSQL share
//! sessions; a session's turns never interleave across instances; a crashed
//! instance or a stopped database loses no completed turn and leaves no half
//! one; everything recovers without a restart.

use std::time::Instant;

use serde_json::{Value, json};

use crate::pg;
use crate::sessions::{a_waiter_hanging_up_lets_no_one_past_the_running_turn, as_user, lane_config, sessions_config};
use crate::support::*;

/// `n` gateways on database `url`, started side by side (each compiles its agents).
fn instances(n: usize, url: &str, config: &str) -> Vec<TestGateway> {
    std::thread::scope(|s| {
        let starting: Vec<_> = (0..n).map(|_| s.spawn(|| instance(url, config))).collect();
        starting.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

fn instance(url: &str, config: &str) -> TestGateway {
    TestGateway::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", url)])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// Status, reply text (or error message) and `Retry-After` of one chat request.
async fn say(gw: &TestGateway, body: Value) -> (u16, String, Option<String>) {
    let res = gw.chat(body).send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap();
    let text = if status == 200 { content(&body) } else { body["error"]["message"].as_str().unwrap().to_string() };
    (status, text, retry)
}

/// The session key the gateway derives for `user` on `agent`.
async fn key_of(gw: &TestGateway, model: &str, user: &str) -> String {
    let res = gw.chat(as_user(model, user, "hello")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    session_key(&res)
}

/// A six-word streaming reply on `key`, returned once its first word has arrived.
async fn slow_stream_under_way(gw: &TestGateway, key: &str) -> reqwest::Response {
    let mut body = ask("agent:slow", "one two three four five six");
    body["stream"] = json!(true);
    let mut res = gw.chat(body).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut seen = String::new();
    while !seen.contains("one ") {
        seen.push_str(&String::from_utf8_lossy(&res.chunk().await.unwrap().expect("stream ended early")));
    }
    res
}

async fn ready_status(gw: &TestGateway) -> u16 {
    reqwest::get(gw.url("/ready")).await.unwrap().status().as_u16()
}

/// Strict user/assistant pairs, as every complete turn leaves them.
fn assert_pairs(transcript: &[(String, String)]) {
    assert!(transcript.len().is_multiple_of(2), "odd transcript: {transcript:?}");
    for pair in transcript.chunks(2) {
        assert_eq!((pair[0].0.as_str(), pair[1].0.as_str()), ("user", "assistant"), "interleaved: {transcript:?}");
    }
}

#[tokio::test]
async fn a_waiting_client_that_hangs_up_lets_no_one_past_the_running_turn_on_postgres() {
    // One instance: its turns share the one control connection, on which
    // PostgreSQL's advisory lock is re-entrant, so only the in-process line
    // keeps C out while A holds the lock.
    let db = pg::Server::start();
    let gw = instance(&db.database().await, &lane_config(600));
    a_waiter_hanging_up_lets_no_one_past_the_running_turn(&gw).await;
}

#[tokio::test]
async fn one_user_alternating_between_instances_keeps_one_transcript() {
    let db = pg::Server::start();
    let gws = instances(2, &db.database().await, &sessions_config(10, ""));
    let mut expected = Vec::new();
    for i in 0..6 {
        let text = format!("m{i}");
        let (status, reply, _) = say(&gws[i % 2], as_user("openclaw", "alice", &text)).await;
        assert_eq!(status, 200, "{reply}");
        let want = if i == 0 { text.clone() } else { format!("[turn {}] {text}", i + 1) };
        assert_eq!(reply, want, "instance {} saw every earlier turn", i % 2);
        expected.extend([("user".to_string(), text), ("assistant".to_string(), want)]);
    }
    let key = key_of(&gws[0], "openclaw", "someone-else").await;
    assert_ne!(key, "", "another user is another session");
    let alice = gws[1].session_keys().await.into_iter().find(|k| *k != key).expect("alice's session is listed");
    for gw in &gws {
        assert_eq!(gw.transcript(&alice).await, expected, "both instances show one transcript in order");
    }
}

#[tokio::test]
async fn concurrent_turns_on_one_session_across_instances_never_interleave() {
    let db = pg::Server::start();
    let gws = instances(3, &db.database().await, &sessions_config(10, ""));
    const TURNS: usize = 18;
    let mut requests = Vec::new();
    for i in 0..TURNS {
        let req = gws[i % gws.len()].chat(as_user("agent:counter", "carol", &format!("x{i}")));
        requests.push(tokio::spawn(async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            content(&res.json().await.unwrap())
        }));
    }
    let mut counts = Vec::new();
    for r in requests {
        let reply = r.await.unwrap();
        counts.push(reply.strip_prefix("count=").unwrap_or_else(|| panic!("{reply}")).parse::<usize>().unwrap());
    }
    counts.sort();
    assert_eq!(counts, (1..=TURNS).collect::<Vec<_>>(), "each turn saw every earlier one, exactly once");
    let key = gws[0].session_keys().await.pop().expect("carol's session");
    let transcript = gws[1].transcript(&key).await;
    assert_eq!(transcript.len(), 2 * TURNS);
    assert_pairs(&transcript);
    let in_order: Vec<String> = transcript.iter().skip(1).step_by(2).map(|(_, c)| c.clone()).collect();
    assert_eq!(in_order, (1..=TURNS).map(|n| format!("count={n}")).collect::<Vec<_>>(), "stored in run order");
}

#[tokio::test]
async fn a_killed_instance_loses_no_completed_turn_and_frees_its_session() {
    let db = pg::Server::start();
    let config = sessions_config(300, "");
    let mut gws = instances(2, &db.database().await, &config);
    let key = "agent:slow:crash";
    for (i, text) in ["a", "b"].into_iter().enumerate() {
        let res = gws[i].chat(ask("agent:slow", text)).header("x-openclaw-session-key", key).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    // Instance 0 is mid-stream, holding the session's lane lock, when it dies.
    let stream = slow_stream_under_way(&gws[0], key).await;
    gws[0].kill9();
    drop(stream);
    let started = Instant::now();
    let res = gws[1].chat(ask("agent:slow", "c")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "[turn 3] c", "the interrupted turn left nothing");
    assert!(started.elapsed() < PATIENCE, "the dead instance's lock held the session for {:?}", started.elapsed());
    let expected = pairs(&[
        ("user", "a"),
        ("assistant", "a"),
        ("user", "b"),
        ("assistant", "[turn 2] b"),
        ("user", "c"),
        ("assistant", "[turn 3] c"),
    ]);
    assert_eq!(gws[1].transcript(key).await, expected);
}

#[tokio::test]
async fn a_database_outage_fails_session_requests_fast_and_heals_by_itself() {
    let db = pg::Server::start();
    let config = sessions_config(200, "");
    let gws = instances(2, &db.database().await, &config);
    let key = "agent:slow:outage";
    let res = gws[0].chat(ask("agent:slow", "before")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(ready_status(&gws[0]).await, 200);

    // A turn is streaming when the database goes away: its write must fail whole.
    let stream = slow_stream_under_way(&gws[1], key).await;
    db.stop();
    let tail = stream.text().await.unwrap();
    assert!(tail.contains("database"), "the interrupted turn reports the database: {tail}");

    for gw in &gws {
        let (status, message, retry) = say(gw, as_user("openclaw", "dora", "while down")).await;
        assert_eq!(status, 503, "{message}");
        assert!(retry.is_some(), "503 without Retry-After");
        assert!(message.contains("database"), "the message names the database: {message}");
        // The driver's words (addresses, errno, settings) are for the operator's log only.
        assert!(message.contains("request id"), "the message points at the log: {message}");
        assert!(!message.contains("os error") && !message.contains("database.url"), "{message}");
        let (status, reply, _) = say(gw, ask("openclaw", "no session")).await;
        assert_eq!((status, reply.as_str()), (200, "no session"), "requests without a session keep working");
        let res = gw.session_history(key).await;
        assert_eq!(res.status(), 503, "the history API is unavailable, not empty");
        assert!(res.headers().contains_key("retry-after"));
        eventually("/ready to report the outage", async || (ready_status(gw).await == 503).then_some(())).await;
    }
    gws[0]
        .wait_for_log("the outage's details in the log", |log| log.contains("the session database is unavailable"))
        .await;
    let mut ws = Client::connect(&gws[0]).await;
    let history = ws.call("chat.history", json!({"sessionKey": key})).await;
    assert_eq!((history["ok"].as_bool(), history["error"]["code"].as_str()), (Some(false), Some("UNAVAILABLE")));
    assert!(history["error"]["message"].as_str().unwrap().contains("database"), "{history}");

    db.start_again();
    for gw in &gws {
        eventually("/ready after the database returned", async || (ready_status(gw).await == 200).then_some(())).await;
        eventually("session requests after the database returned", async || {
            let res = gw.chat(as_user("openclaw", "dora", "back")).send().await.unwrap();
            (res.status() == 200).then_some(())
        })
        .await;
    }
    let res = gws[1].chat(ask("agent:slow", "after")).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let transcript = gws[0].transcript(key).await;
    let expected =
        pairs(&[("user", "before"), ("assistant", "before"), ("user", "after"), ("assistant", "[turn 2] after")]);
    assert_eq!(transcript, expected, "the turn cut off by the outage left nothing half-written");
    for gw in &gws {
        gw.wait_for_log("the reconnection", |log| log.contains("control connection to the database re-established"))
            .await;
    }
}

#[tokio::test]
async fn the_database_password_never_reaches_the_output() {
    let db = pg::Server::start();
    let url = db.database().await;
    assert!(url.contains(pg::PASSWORD));
    let config = sessions_config(10, &format!("database: {{ url: {url:?}, maxConnections: 4 }},"));
    // Down at start-up: the gateway refuses to start, naming the database only.
    db.stop();
    let log = TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)]).err().expect("must not start");
    assert!(log.contains("database"), "{log}");
    assert!(!log.contains(pg::PASSWORD) && !log.contains(&url), "the URL leaked at start-up:\n{log}");

    db.start_again();
    let gw = TestGateway::start(&config);
    assert_eq!(say(&gw, as_user("openclaw", "erin", "hi")).await.0, 200);
    db.stop();
    let mut bodies = String::new();
    for path in ["/v1/chat/completions", "/sessions", "/ready", "/metrics"] {
        let res = if path.starts_with("/v1") {
            gw.chat(as_user("openclaw", "erin", "down")).send().await.unwrap()
        } else {
            reqwest::Client::new().get(gw.url(path)).bearer_auth(TOKEN).send().await.unwrap()
        };
        bodies.push_str(&res.text().await.unwrap());
    }
    gw.wait_for_log("the lost connection", |log| log.contains("lost the control connection")).await;
    db.start_again();
    eventually("recovery", async || (ready_status(&gw).await == 200).then_some(())).await;
    let log = gw.settled_log().await;
    for output in [&log, &bodies] {
        assert!(!output.contains(pg::PASSWORD), "the password leaked:\n{output}");
        assert!(!output.contains(&url), "the URL leaked:\n{output}");
    }
}

#[tokio::test]
async fn the_postgres_store_behaves_like_sqlite() {
    let db = pg::Server::start();
    let url = db.database().await;
    let gw = instance(&url, &sessions_config(10, "sessions: { maxHistoryMessages: 4 },"));
    // History: the last four messages, so the echo counts at most two earlier turns.
    let replies: Vec<String> = {
        let mut out = Vec::new();
        for i in 0..4 {
            out.push(say(&gw, as_user("openclaw", "frank", &format!("h{i}"))).await.1);
        }
        out
    };
    assert_eq!(replies, ["h0", "[turn 2] h1", "[turn 3] h2", "[turn 3] h3"]);
    // A session belongs to its agent.
    let res = gw.chat(ask("openclaw", "mine")).header("x-openclaw-session-key", "shared").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = gw.chat(ask("agent:slow", "theirs")).header("x-openclaw-session-key", "shared").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("belongs to agent \"main\""), "{body}");
    assert_eq!(gw.transcript("shared").await.len(), 2, "the rejected turn left nothing");
    // Plugin state: kept on success only, limits enforced.
    assert_eq!(say(&gw, as_user("agent:counter", "gina", "x")).await.1, "count=1");
    assert_eq!(say(&gw, as_user("agent:counter", "gina", "fail")).await.0, 500);
    assert_eq!(say(&gw, as_user("agent:counter", "gina", "x")).await.1, "count=2", "a failed run's write is dropped");
    let refused = say(&gw, as_user("agent:counter", "gina", "too-big")).await.1;
    assert!(refused.starts_with("refused: state value is 70000 bytes"), "{refused}");
    // Listing, filtering, reset.
    let list = gw.get_json("/sessions?agent=main").await;
    let counts: Vec<(String, u64)> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sessionKey"].as_str().unwrap().to_string(), s["messageCount"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts.len(), 2, "{list}");
    assert_eq!(counts[0], ("shared".to_string(), 2), "most recent first: {list}");
    assert_eq!(counts[1].1, 8);
    assert_eq!(gw.session_keys().await.len(), 3);
    let del = reqwest::Client::new().delete(gw.url("/sessions/shared")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(gw.session_history("shared").await.status(), 404);
    // Idle expiry: any instance configured for it expires the cluster's idle sessions.
    let _expiring = instance(&url, &sessions_config(10, r#"sessions: { idleTtl: "1s" },"#));
    eventually("idle sessions to expire", async || gw.session_keys().await.is_empty().then_some(())).await;
}
