//! Sessions have owners (issue 24, item 1): a session belongs to the
//! principal whose turn made it. Another token reads, joins, continues and
//! deletes nothing of it and gets what an unknown session gets; the main
//! secret (an unrestricted admin) reads and deletes every session but runs in
//! its own only. Listings are paged (item 8).

use serde_json::{Value, json};

use crate::support::*;

const ALICE: &str = "alice-secret-4a01";
const BOB: &str = "bob-secret-9c22";

fn owners_config() -> String {
    r#"{
  gateway: {
    auth: { mode: "token", tokens: [
      { name: "alice", tokenEnv: "ALICE_TOKEN", scopes: ["operator.read", "operator.write"] },
      { name: "bob", tokenEnv: "BOB_TOKEN", scopes: ["operator.read", "operator.write"] },
    ] },
    http: { endpoints: { chatCompletions: { enabled: true }, responses: { enabled: true } } },
  },
  agents: { entries: { main: { plugin: "echo" } } },
}"#
    .to_string()
}

fn start() -> TestGateway {
    TestGateway::start_with(
        &owners_config(),
        &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)],
    )
    .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// The same gateway in cluster mode, on the PostgreSQL database at `url`.
fn start_on(url: &str) -> TestGateway {
    let env =
        [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB), ("WASMCLAW_DATABASE_URL", url)];
    TestGateway::start_with(&owners_config(), &env).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// A chat turn as `token`, on `key` if given; status, reply (or error body) and session key.
async fn chat(gw: &TestGateway, token: &str, key: Option<&str>, body: Value) -> (u16, Value, String) {
    let mut req = reqwest::Client::new().post(gw.url("/v1/chat/completions")).bearer_auth(token).json(&body);
    if let Some(key) = key {
        req = req.header("x-openclaw-session-key", key);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let session = res.headers().get("x-openclaw-session-key").map(|v| v.to_str().unwrap().to_string());
    (status, res.json().await.unwrap(), session.unwrap_or_default())
}

async fn call(gw: &TestGateway, method: reqwest::Method, token: &str, path: &str) -> (u16, Value) {
    let res = reqwest::Client::new().request(method, gw.url(path)).bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn history(gw: &TestGateway, token: &str, key: &str) -> (u16, Value) {
    call(gw, reqwest::Method::GET, token, &format!("/sessions/{}/history", urlencode(key))).await
}

async fn reset(gw: &TestGateway, token: &str, key: &str) -> (u16, Value) {
    call(gw, reqwest::Method::DELETE, token, &format!("/sessions/{}", urlencode(key))).await
}

/// The keys of every page of `GET /sessions` as `token` sees them (`limit` per page).
async fn listed(gw: &TestGateway, token: &str, limit: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/sessions?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = call(gw, reqwest::Method::GET, token, &path).await;
        assert_eq!(status, 200, "{page}");
        let sessions = page["sessions"].as_array().unwrap();
        assert!(sessions.len() <= limit, "{page}");
        keys.extend(sessions.iter().map(|s| s["sessionKey"].as_str().unwrap().to_string()));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return keys,
        }
    }
}

fn texts(transcript: &Value) -> Vec<String> {
    transcript["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_string()).collect()
}

fn not_found_code(body: &Value) -> Option<String> {
    error_fields(body).1
}

/// Status and what an error says (type, code, param, message): equal for two
/// refusals the client cannot tell apart.
fn refusal((status, body): (u16, Value)) -> (u16, Value) {
    let e = &body["error"];
    (status, json!([e["type"], e["code"], e["param"], e["message"]]))
}

#[tokio::test]
async fn another_token_gets_404_for_every_use_of_a_session_it_does_not_own() {
    another_token_gets_404_for_every_use_of(&start()).await;
}

#[tokio::test]
async fn another_token_gets_404_for_every_use_of_a_session_it_does_not_own_on_postgres() {
    let db = crate::pg::Server::start();
    let url = db.database().await;
    let gw = start_on(&url);
    another_token_gets_404_for_every_use_of(&gw).await;
    // A row written without an owner (an instance of the previous version,
    // mid rolling upgrade) belongs to the main secret.
    let client = crate::pg::connect(&url).await;
    client
        .execute(
            "INSERT INTO sessions (key, agent_id, created_at, updated_at) VALUES ('agent:main:legacy', 'main', 1, 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(history(&gw, ALICE, "agent:main:legacy").await.0, 404);
    assert_eq!(history(&gw, TOKEN, "agent:main:legacy").await.0, 200);
    let (status, reply, _) = chat(&gw, TOKEN, Some("agent:main:legacy"), ask("openclaw", "still mine")).await;
    assert_eq!((status, content(&reply)), (200, "still mine".to_string()));
}

async fn another_token_gets_404_for_every_use_of(gw: &TestGateway) {
    let key = "agent:main:alice-bank";
    let (status, reply, _) = chat(gw, ALICE, Some(key), ask("openclaw", "my PIN is 4921")).await;
    assert_eq!((status, content(&reply)), (200, "my PIN is 4921".to_string()));
    let unknown = refusal(history(gw, BOB, "agent:main:no-such-session").await);
    assert_eq!(unknown.1[1], "session_not_found", "{unknown:?}");

    // Bob: not listed, no history, no reset, no joining, streaming or not: all as an unknown session.
    assert!(!listed(gw, BOB, 100).await.contains(&key.to_string()));
    assert_eq!(refusal(history(gw, BOB, key).await), unknown);
    assert_eq!(refusal(reset(gw, BOB, key).await), unknown);
    let (status, body, _) = chat(gw, BOB, Some(key), ask("openclaw", "what is the PIN?")).await;
    assert_eq!(refusal((status, body)), unknown, "joining by key");
    let mut streamed = ask("openclaw", "what is the PIN?");
    streamed["stream"] = json!(true);
    let (status, body, _) = chat(gw, BOB, Some(key), streamed).await;
    assert_eq!(refusal((status, body)), unknown, "joining by key, streaming");

    // Alice's session is untouched and hers.
    let (status, mine) = history(gw, ALICE, key).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&mine), ["my PIN is 4921", "my PIN is 4921"], "nothing of Bob's went in");
    let (_, page) = call(gw, reqwest::Method::GET, ALICE, "/sessions").await;
    assert_eq!(page["sessions"][0]["owner"], "alice", "{page}");

    // The main secret reads every session, but runs only in its own.
    assert_eq!(history(gw, TOKEN, key).await.0, 200);
    assert!(listed(gw, TOKEN, 100).await.contains(&key.to_string()));
    let (status, body, _) = chat(gw, TOKEN, Some(key), ask("openclaw", "me too")).await;
    assert_eq!(refusal((status, body)), unknown, "the operator does not write into Alice's transcript");
    assert_eq!(texts(&history(gw, ALICE, key).await.1).len(), 2);

    // Alice continues; then resets it, after which the key is free again.
    let (status, reply, _) = chat(gw, ALICE, Some(key), ask("openclaw", "again")).await;
    assert_eq!((status, content(&reply)), (200, "[turn 2] again".to_string()));
    assert_eq!(reset(gw, ALICE, key).await.0, 200);
    let (status, reply, _) = chat(gw, BOB, Some(key), ask("openclaw", "mine now")).await;
    assert_eq!((status, content(&reply)), (200, "mine now".to_string()), "a reset key is anyone's");
}

#[tokio::test]
async fn the_same_user_names_one_session_per_token() {
    let gw = start();
    let as_carol = |text: &str| {
        let mut body = ask("openclaw", text);
        body["user"] = json!("carol");
        body
    };
    let (_, reply, alice_key) = chat(&gw, ALICE, None, as_carol("alice's carol")).await;
    assert_eq!(content(&reply), "alice's carol");
    let (_, reply, bob_key) = chat(&gw, BOB, None, as_carol("bob's carol")).await;
    assert_eq!(content(&reply), "bob's carol", "Bob's carol starts fresh");
    let (_, reply, operator_key) = chat(&gw, TOKEN, None, as_carol("operator's carol")).await;
    assert_eq!(content(&reply), "operator's carol");
    assert!(alice_key != bob_key && bob_key != operator_key && alice_key != operator_key);
    // The main secret keeps the key `user` always gave, so older sessions stay its own.
    let old = {
        use sha2::Digest;
        format!("agent:main:openai-user:{}", &hex::encode(sha2::Sha256::digest(b"carol"))[..32])
    };
    assert_eq!(operator_key, old);
    let (_, reply, again) = chat(&gw, ALICE, None, as_carol("still me")).await;
    assert_eq!((content(&reply), again), ("[turn 2] still me".to_string(), alice_key.clone()));
    assert_eq!(history(&gw, BOB, &alice_key).await.0, 404);
}

/// The key `user` derives for the principal `owner` (docs/WIRE.md §3.1): anyone can compute it.
fn user_key(owner: Option<&str>, user: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    if let Some(owner) = owner {
        hash.update((owner.len() as u64).to_le_bytes());
        hash.update(owner.as_bytes());
    }
    hash.update(user.as_bytes());
    format!("agent:main:openai-user:{}", &hex::encode(hash.finalize())[..32])
}

#[tokio::test]
async fn nobody_takes_the_session_another_principals_user_will_name() {
    let gw = start();
    let as_dave = |text: &str| {
        let mut body = ask("openclaw", text);
        body["user"] = json!("dave");
        body
    };
    let (alice_dave, operator_dave) = (user_key(Some("alice"), "dave"), user_key(None, "dave"));
    // Bob names both keys before their owners ever used them: no session comes of it.
    for key in [&alice_dave, &operator_dave] {
        let (status, body, _) = chat(&gw, BOB, Some(key.as_str()), ask("openclaw", "squat")).await;
        assert_eq!((status, not_found_code(&body)), (404, Some("session_not_found".into())), "{key}: {body}");
        assert_eq!(history(&gw, TOKEN, key).await.0, 404, "{key} was created by Bob");
    }
    let (status, reply, key) = chat(&gw, ALICE, None, as_dave("alice's dave")).await;
    assert_eq!((status, content(&reply), key.as_str()), (200, "alice's dave".to_string(), alice_dave.as_str()));
    let (status, reply, key) = chat(&gw, TOKEN, None, as_dave("operator's dave")).await;
    assert_eq!((status, content(&reply), key.as_str()), (200, "operator's dave".to_string(), operator_dave.as_str()));
    // Its owner still continues a derived session by naming its key.
    let (status, reply, _) = chat(&gw, ALICE, Some(alice_dave.as_str()), ask("openclaw", "by key")).await;
    assert_eq!((status, content(&reply)), (200, "[turn 2] by key".to_string()));
    // And Bob still cannot, now that it exists.
    assert_eq!(chat(&gw, BOB, Some(alice_dave.as_str()), ask("openclaw", "join")).await.0, 404);
}

async fn respond(gw: &TestGateway, token: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(gw.url("/v1/responses")).bearer_auth(token).json(&body);
    if let Some(key) = key {
        req = req.header("x-openclaw-session-key", key);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn stored_responses_survive_another_tokens_reset_and_cannot_be_continued_by_it() {
    let gw = start();
    let key = "agent:main:alice-responses";
    let (status, first) = respond(&gw, ALICE, Some(key), json!({"model": "openclaw", "input": "remember 77"})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    let response_path = format!("/v1/responses/{id}");

    // Bob cannot continue it, join its session, or delete the session (and its responses with it).
    let continued = json!({"model": "openclaw", "input": "what number?", "previous_response_id": id});
    let (status, body) = respond(&gw, BOB, None, continued.clone()).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (404, Some("previous_response_id")), "{body}");
    let (status, body) = respond(&gw, BOB, Some(key), json!({"model": "openclaw", "input": "x"})).await;
    assert_eq!((status, not_found_code(&body).as_deref()), (404, Some("session_not_found")), "{body}");
    assert_eq!(reset(&gw, BOB, key).await.0, 404);
    assert_eq!(call(&gw, reqwest::Method::GET, ALICE, &response_path).await.0, 200, "Alice's response is still there");

    // Alice continues it.
    let (status, body) = respond(&gw, ALICE, None, continued).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(texts(&history(&gw, ALICE, key).await.1).len(), 4);

    // An unrestricted admin may delete any session; its responses go with it.
    assert_eq!(reset(&gw, TOKEN, key).await.0, 200);
    assert_eq!(call(&gw, reqwest::Method::GET, ALICE, &response_path).await.0, 404);
    assert_eq!(history(&gw, ALICE, key).await.0, 404);
}

/// Run `agent` over `c` and return the session key its events name and the final payload.
async fn ws_agent(c: &mut Client, params: Value) -> (String, Value) {
    let id = c.request("agent", Some(params)).await;
    let accepted = c.response(&id).await;
    assert_eq!(accepted["payload"]["status"], "accepted", "{accepted}");
    let event = c.until(|f| f["event"] == "agent").await;
    let key = event["payload"]["sessionKey"].as_str().unwrap().to_string();
    let done = c.response(&id).await;
    (key, done["payload"].clone())
}

/// Connected as `token` with read and write (and admin, when asked for: a
/// client holds only the scopes it asks for).
async fn ws_as(gw: &TestGateway, token: &str, admin: bool) -> Client {
    let (mut c, _) = Client::open(gw).await;
    let mut params = connect_params(token);
    params["scopes"] = json!(["operator.read", "operator.write"]);
    if admin {
        params["scopes"] = json!(["operator.read", "operator.write", "operator.admin"]);
    }
    let hello = c.call("connect", params).await;
    assert_eq!(hello["ok"], true, "{hello}");
    c
}

fn history_texts(res: &Value) -> Vec<String> {
    let messages = res["payload"]["messages"].as_array().unwrap_or_else(|| panic!("{res}"));
    messages.iter().map(|m| m["content"][0]["text"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_websocket_default_session_is_per_principal_and_history_is_the_owners() {
    let gw = start();
    let mut alice = ws_as(&gw, ALICE, false).await;
    let mut bob = ws_as(&gw, BOB, false).await;
    let mut operator = ws_as(&gw, TOKEN, true).await;
    let (alice_key, done) = ws_agent(&mut alice, json!({"message": "alice private"})).await;
    assert_eq!((alice_key.as_str(), done["status"].as_str()), ("agent:main:main:alice", Some("ok")));
    let (bob_key, done) = ws_agent(&mut bob, json!({"message": "bob here"})).await;
    assert_eq!(bob_key, "agent:main:main:bob");
    assert_eq!(done["result"]["payloads"][0]["text"], "bob here", "Bob's default session is his own: {done}");
    // Nobody can take the main secret's main session before it is used (or any other's).
    for key in ["agent:main:main", "agent:main:main:alice"] {
        let (status, body, _) = chat(&gw, BOB, Some(key), ask("openclaw", "squat")).await;
        assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("x-openclaw-session-key")), "{body}");
        let res = bob.call("agent", json!({"message": "squat", "sessionKey": key})).await;
        assert_eq!((res["ok"].as_bool(), res["error"]["code"].as_str()), (Some(false), Some("INVALID_REQUEST")));
    }
    // OpenClaw's CLI with the main secret finds the main session where it always was.
    let (operator_key, done) = ws_agent(&mut operator, json!({"message": "operator"})).await;
    assert_eq!(
        (operator_key.as_str(), &done["result"]["payloads"][0]["text"]),
        ("agent:main:main", &json!("operator"))
    );

    // chat.history: Bob reads Alice's session as an unknown one (empty).
    let unknown = bob.call("chat.history", json!({"sessionKey": "agent:main:nothing-here"})).await;
    let theirs = bob.call("chat.history", json!({"sessionKey": alice_key})).await;
    assert_eq!((history_texts(&theirs), history_texts(&unknown)), (vec![], vec![]), "{theirs}");
    let mine = alice.call("chat.history", json!({"sessionKey": alice_key})).await;
    assert_eq!(history_texts(&mine), ["alice private", "alice private"]);
    let read_all = operator.call("chat.history", json!({"sessionKey": alice_key})).await;
    assert_eq!(history_texts(&read_all).len(), 2, "the main secret, connected as admin, reads every session");
    let mut operator_as_writer = ws_as(&gw, TOKEN, false).await;
    let narrowed = operator_as_writer.call("chat.history", json!({"sessionKey": alice_key})).await;
    assert_eq!(history_texts(&narrowed).len(), 0, "without operator.admin in connect it reads its own only");

    // Joining a session of Alice's by key runs nothing and shows nothing of it.
    let notes = "agent:main:alice-notes";
    let (_, done) = ws_agent(&mut alice, json!({"message": "note to self", "sessionKey": notes})).await;
    assert_eq!(done["status"], "ok", "{done}");
    let (_, done) = ws_agent(&mut bob, json!({"message": "let me in", "sessionKey": notes})).await;
    assert_eq!((done["status"].as_str(), &done["result"]["payloads"]), (Some("error"), &json!([])), "{done}");
    let notes_history = alice.call("chat.history", json!({"sessionKey": notes})).await;
    assert_eq!(history_texts(&notes_history), ["note to self", "note to self"]);
    // sessions.list and sessions.delete see only Bob's own.
    let list = bob.call("sessions.list", json!({})).await;
    let keys: Vec<&str> =
        list["payload"]["sessions"].as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, [bob_key.as_str()]);
    let deleted = bob.call("sessions.delete", json!({"key": alice_key})).await;
    assert_eq!(deleted["payload"]["deleted"], false);
    let mine = alice.call("chat.history", json!({"sessionKey": alice_key})).await;
    assert_eq!(history_texts(&mine), ["alice private", "alice private"], "nothing of Bob's went in");
}

#[tokio::test]
async fn session_listings_are_paged_over_http_and_websocket() {
    session_listings_are_paged(&start()).await;
}

#[tokio::test]
async fn session_listings_are_paged_on_postgres() {
    let db = crate::pg::Server::start();
    session_listings_are_paged(&start_on(&db.database().await)).await;
}

async fn session_listings_are_paged(gw: &TestGateway) {
    let mut alice_keys = Vec::new();
    for i in 0..7 {
        let key = format!("agent:main:page-{i}");
        assert_eq!(chat(gw, ALICE, Some(&key), ask("openclaw", "x")).await.0, 200);
        alice_keys.push(key);
    }
    assert_eq!(chat(gw, BOB, Some("agent:main:bobs"), ask("openclaw", "x")).await.0, 200);

    // Three at a time: every one of Alice's sessions exactly once, and never Bob's
    // (the order within one millisecond is by key, so compare sorted).
    let mut pages = listed(gw, ALICE, 3).await;
    pages.sort();
    let expected = alice_keys.clone();
    assert_eq!(pages, expected);
    assert_eq!(listed(gw, TOKEN, 2).await.len(), 8, "the main secret pages through everyone's");
    let (_, page) = call(gw, reqwest::Method::GET, ALICE, "/sessions").await;
    assert_eq!((page["sessions"].as_array().unwrap().len(), &page["nextCursor"]), (7, &Value::Null), "default 100");

    // Bad paging parameters name themselves.
    for (query, param) in
        [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("cursor=not-a-cursor", "cursor")]
    {
        let (status, body) = call(gw, reqwest::Method::GET, ALICE, &format!("/sessions?{query}")).await;
        assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some(param)), "{query}: {body}");
    }

    // The WebSocket pages the same way.
    let mut c = ws_as(gw, ALICE, false).await;
    let mut seen = Vec::new();
    let mut params = json!({"limit": 4});
    loop {
        let res = c.call("sessions.list", params.clone()).await;
        let payload = &res["payload"];
        seen.extend(payload["sessions"].as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap().to_string()));
        match payload["nextCursor"].as_str() {
            Some(next) => params["cursor"] = json!(next),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, expected);
    let res = c.call("sessions.list", json!({"limit": 5000})).await;
    assert_eq!((res["ok"].as_bool(), res["error"]["code"].as_str()), (Some(false), Some("INVALID_REQUEST")), "{res}");
}
