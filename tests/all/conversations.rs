//! `/v1/conversations` (issue 27, item 3): the official `openai` SDK drives
//! a conversation through the real gateway, and the Agents SDK keeps its
//! `OpenAIConversationsSession` in one; a conversation is its owner's
//! alone (another token gets 404, as for an unknown id); a conversation kept
//! in PostgreSQL goes on from another instance.

use std::path::Path;
use std::process::Command;

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

use crate::openai_sdk::run_sdk_script;
use crate::pg;
use crate::responses::python_with_agents;
use crate::support::*;

/// Echo as `main` and `beta`, the Responses endpoint on, and three tokens.
const OWNERS_CONFIG: &str = r#"{
  gateway: {
    auth: { mode: "token", tokens: [
      { name: "alice", tokenEnv: "ALICE_TOKEN", scopes: ["operator.write"] },
      { name: "bob", tokenEnv: "BOB_TOKEN", scopes: ["operator.write"] },
      { name: "reader", tokenEnv: "READER_TOKEN", scopes: ["operator.read"] },
    ] },
    http: { endpoints: { responses: { enabled: true } } },
  },
  agents: { entries: { main: { plugin: "echo" }, beta: { plugin: "echo" } } },
}"#;

const ALICE: &str = "alice-secret-1";
const BOB: &str = "bob-secret-2";
const READER: &str = "reader-secret-3";

fn echo_config() -> &'static str {
    r#"{
  gateway: { http: { endpoints: { responses: { enabled: true } } } },
  agents: { entries: { main: { plugin: "echo" } } },
}"#
}

/// Status and JSON body of a request.
async fn send(request: RequestBuilder) -> (u16, Value) {
    let res = request.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn get(gw: &TestGateway, token: &str, path: &str) -> RequestBuilder {
    Client::new().get(gw.url(path)).bearer_auth(token)
}

fn post(gw: &TestGateway, token: &str, path: &str, body: Value) -> RequestBuilder {
    Client::new().post(gw.url(path)).bearer_auth(token).json(&body)
}

/// The text of a `response` object's message items.
fn output_text(response: &Value) -> String {
    let items = response["output"].as_array().unwrap_or_else(|| panic!("no output: {response}"));
    let parts = items.iter().filter(|i| i["type"] == "message").flat_map(|i| i["content"].as_array().unwrap());
    parts.map(|p| p["text"].as_str().unwrap()).collect()
}

#[test]
fn python_sdk_creates_adds_runs_lists_updates_and_deletes() {
    let gw = TestGateway::start(echo_config());
    run_sdk_script(&gw, "conversations_check.py");
}

#[test]
fn the_agents_sdk_keeps_its_session_in_a_conversation() {
    let gw = TestGateway::start(echo_config());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/agents_conversations_check.py");
    let out = Command::new(python_with_agents()).arg(script).arg(gw.url("/v1")).arg(TOKEN).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "stdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
}

#[tokio::test]
async fn a_conversation_is_its_owners_alone() {
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB), ("READER_TOKEN", READER)];
    let gw = TestGateway::start_with(OWNERS_CONFIG, &env).unwrap_or_else(|log| panic!("gateway failed:\n{log}"));
    let (status, conv) =
        send(post(&gw, ALICE, "/v1/conversations", json!({"items": [{"role": "user", "content": "secret"}]}))).await;
    assert_eq!(status, 200, "{conv}");
    let id = conv["id"].as_str().unwrap();
    let path = format!("/v1/conversations/{id}");
    let items = format!("{path}/items");
    let res = post(&gw, ALICE, "/v1/responses", json!({"model": "openclaw", "input": "plans", "conversation": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = res.headers()["x-openclaw-session-key"].to_str().unwrap().to_string();

    // Everyone else, the operator and a reader included, gets what an unknown id gets.
    for token in [BOB, TOKEN, READER] {
        for request in [
            get(&gw, token, &path),
            get(&gw, token, &items),
            post(&gw, token, &path, json!({"metadata": {"a": "b"}})),
            post(&gw, token, &items, json!({"items": [{"role": "user", "content": "x"}]})),
            Client::new().delete(gw.url(&path)).bearer_auth(token),
        ] {
            let (status, body) = send(request).await;
            if token == READER && status == 403 {
                continue; // writes need operator.write before anything else
            }
            assert_eq!((status, error_fields(&body).1.as_deref()), (404, Some("conversation_not_found")), "{body}");
        }
        let run = json!({"model": "openclaw", "input": "tell me", "conversation": id});
        let (status, body) = send(post(&gw, token, "/v1/responses", run)).await;
        let expected = if token == READER { 403 } else { 404 };
        assert_eq!(status, expected, "{body}");
    }
    let (status, body) = send(post(&gw, READER, "/v1/conversations", json!({}))).await;
    assert_eq!((status, error_fields(&body).1.as_deref()), (403, Some("permission_denied")), "{body}");

    // The owner's conversation is untouched and still runs its own agent only.
    let (status, listed) = send(get(&gw, ALICE, &format!("{items}?order=asc"))).await;
    assert_eq!(status, 200, "{listed}");
    let listed: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(listed, ["message"; 3], "secret, plans, the reply");
    let other_agent = json!({"model": "openclaw:beta", "input": "x", "conversation": id});
    let (status, body) = send(post(&gw, ALICE, "/v1/responses", other_agent)).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("model")), "{body}");
    let both = json!({"model": "openclaw", "input": "x", "conversation": id, "previous_response_id": "resp_x"});
    let (status, body) = send(post(&gw, ALICE, "/v1/responses", both)).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("previous_response_id")), "{body}");
    // Items a response could not read are refused when added, naming the item.
    let bad = json!({"items": [{"role": "user", "content": "x"}, {"type": "function_call_output"}]});
    let (status, body) = send(post(&gw, ALICE, &items, bad)).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("items[1].call_id")), "{body}");
    let (status, body) = send(get(&gw, ALICE, &format!("{items}?limit=500"))).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("limit")), "{body}");

    // Deleting it takes its session along.
    let history = format!("/sessions/{session}/history");
    assert_eq!(send(get(&gw, ALICE, &history)).await.0, 200);
    let (status, body) = send(Client::new().delete(gw.url(&path)).bearer_auth(ALICE)).await;
    assert_eq!((status, &body["deleted"]), (200, &json!(true)), "{body}");
    assert_eq!(send(get(&gw, ALICE, &path)).await.0, 404);
    assert_eq!(send(get(&gw, ALICE, &history)).await.0, 404, "the conversation's session is gone");
}

#[tokio::test]
async fn a_conversation_in_postgres_goes_on_from_another_instance() {
    let db = pg::Server::start();
    let url = db.database().await;
    let start = || {
        TestGateway::start_with(echo_config(), &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", &url)])
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    };
    let (one, two) = (start(), start());
    let (status, conv) =
        send(post(&one, TOKEN, "/v1/conversations", json!({"items": [{"role": "user", "content": "hello"}]}))).await;
    assert_eq!(status, 200, "{conv}");
    let id = conv["id"].as_str().unwrap();
    let run = |input: &str| json!({"model": "openclaw", "input": input, "conversation": id});
    let (_, first) = send(post(&two, TOKEN, "/v1/responses", run("on two"))).await;
    assert_eq!(output_text(&first), "on two", "{first}");
    let (_, added) = send(post(
        &one,
        TOKEN,
        &format!("/v1/conversations/{id}/items"),
        json!({"items": [{"role": "user", "content": "more"}]}),
    ))
    .await;
    assert_eq!(added["data"].as_array().map(Vec::len), Some(1), "{added}");
    let (_, second) = send(post(&one, TOKEN, "/v1/responses", run("back on one"))).await;
    assert_eq!(output_text(&second), "[turn 3] back on one", "{second}");
    let (_, third) = send(post(&two, TOKEN, "/v1/responses", run("again"))).await;
    assert_eq!(output_text(&third), "[turn 5] again", "the added item was sent once: {third}");
    let (status, page) = send(get(&two, TOKEN, &format!("/v1/conversations/{id}/items?limit=4"))).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!((page["data"].as_array().unwrap().len(), &page["has_more"]), (4, &json!(true)), "{page}");
    let after = page["last_id"].as_str().unwrap();
    let (_, rest) = send(get(&one, TOKEN, &format!("/v1/conversations/{id}/items?limit=10&after={after}"))).await;
    let texts: Vec<&str> =
        rest["data"].as_array().unwrap().iter().map(|i| i["content"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["more", "on two", "on two", "hello"], "newest first: {rest}");
    assert_eq!(rest["has_more"], json!(false));
}
