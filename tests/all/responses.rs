//! `/v1/responses` (issue 17): the official `openai` SDK and the OpenAI
//! Agents SDK against the real gateway, continuity through
//! `previous_response_id` (also across instances on PostgreSQL), function
//! tool rounds through the assistant and the mock provider, and who may see
//! a stored response.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::openai_sdk::run_sdk_script;
use crate::pg;
use crate::support::*;

/// Echo as `main`, both OpenAI endpoints on.
pub fn echo_config() -> String {
    r#"{
  gateway: { http: { endpoints: { chatCompletions: { enabled: true }, responses: { enabled: true } } } },
  agents: { entries: { main: { plugin: "echo" } } },
}"#
    .to_string()
}

/// The assistant on the mock provider as `main`.
fn assistant_config(mock: &MockProvider) -> String {
    assistant_config_with(mock, "")
}

/// The same, with more `gateway.http` settings.
fn assistant_config_with(mock: &MockProvider, http_extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ responses: {{ enabled: true }} }}, {http_extra} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "mock-model" }} }} }},
}}"#,
        mock.url()
    )
}

/// `(event, data)` of each SSE event in `raw`; comments as `(":", text)`.
fn sse_events(raw: &str) -> Vec<(String, Value)> {
    raw.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            if event.starts_with(':') {
                return (":".to_string(), Value::String(event.to_string()));
            }
            let (kind, data) = event.split_once('\n').unwrap_or_else(|| panic!("not `event:` + `data:`: {event:?}"));
            let kind = kind.strip_prefix("event: ").unwrap_or_else(|| panic!("no event line: {event:?}"));
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], kind, "the event line names the payload's type");
            (kind.to_string(), data)
        })
        .collect()
}

pub fn post(gw: &TestGateway, token: &str, body: Value) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(gw.url("/v1/responses")).bearer_auth(token).json(&body)
}

/// Status and JSON body of a request.
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let res = request.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The text of a `response` object's message items.
pub fn output_text(response: &Value) -> String {
    let items = response["output"].as_array().unwrap_or_else(|| panic!("no output: {response}"));
    items
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap())
        .map(|p| p["text"].as_str().unwrap())
        .collect()
}

#[test]
fn python_sdk_creates_streams_continues_retrieves_and_deletes() {
    let gw = TestGateway::start(&echo_config());
    run_sdk_script(&gw, "responses_check.py");
}

#[test]
fn python_sdk_runs_a_function_tool_round_through_the_assistant() {
    let mock = MockProvider::start();
    mock.push(Reply::tool_call("call_w1", "get_weather", r#"{"city": "Paris"}"#));
    mock.push(Reply::text(&["It is sunny", " in Paris."]));
    let gw = TestGateway::start(&assistant_config(&mock));
    run_sdk_script(&gw, "responses_tools.py");

    let sent: Vec<Value> = mock.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let roles = |body: &Value| -> Vec<String> {
        body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(roles(&sent[0]), ["system", "user"], "instructions first: {}", sent[0]);
    assert_eq!(sent[0]["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent[0]["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
    // The continued turn: the first turn from the session, then the tool result.
    assert_eq!(roles(&sent[1]), ["user", "assistant", "tool"], "{}", sent[1]);
    assert_eq!(sent[1]["messages"][1]["tool_calls"][0]["id"], "call_w1");
    assert_eq!(sent[1]["messages"][2]["tool_call_id"], "call_w1");
    assert_eq!(sent[1]["messages"][2]["content"], "sunny, 21 C");
}

#[tokio::test]
async fn the_agents_sdk_runs_an_agent_with_a_tool_on_a_wasmclaw_model() {
    let mock = MockProvider::start();
    for city in ["Paris", "Oslo", "Rome"] {
        mock.push(Reply::tool_call(&format!("call_{city}"), "get_weather", &format!(r#"{{"city": "{city}"}}"#)));
        mock.push(Reply::text(&["It is sunny", &format!(" in {city}.")]));
    }
    let gw = TestGateway::start(&assistant_config(&mock));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/agents_check.py");
    let out = Command::new(python_with_agents()).arg(script).arg(gw.url("/v1")).arg(TOKEN).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "stdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );

    let sent: Vec<Value> = mock.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 6, "{sent:?}");
    // The chained run sent only the tool output; the call came from the session's history.
    for (i, city) in [(1, "Paris"), (3, "Oslo"), (5, "Rome")] {
        let messages = sent[i]["messages"].as_array().unwrap();
        let (call, result) = (&messages[messages.len() - 2], &messages[messages.len() - 1]);
        assert_eq!(call["tool_calls"][0]["id"], format!("call_{city}"), "{}", sent[i]);
        assert_eq!(call["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            (result["role"].as_str(), result["tool_call_id"].as_str()),
            (Some("tool"), Some(&*format!("call_{city}")))
        );
        assert_eq!(result["content"], format!("sunny in {city}"));
        assert_eq!(messages[0]["role"], "system", "the agent's instructions lead: {}", sent[i]);
        assert_eq!(messages[1], sent[i - 1]["messages"][1], "the question that led to the call: {}", sent[i]);
    }
    // Unchained, each of the SDK's calls starts a session (four, of two messages each: a resent
    // conversation keeps what follows its last assistant message); the chained run's two share one.
    let transcripts = futures::future::join_all(gw.session_keys().await.iter().map(|k| gw.transcript(k))).await;
    let mut lengths: Vec<usize> = transcripts.iter().map(Vec::len).collect();
    lengths.sort();
    assert_eq!(lengths, [2, 2, 2, 2, 4], "{transcripts:?}");
}

#[tokio::test]
async fn a_response_is_its_owners_alone_and_errors_name_the_field() {
    let config = r#"{
  gateway: {
    auth: { mode: "token", tokens: [
      { name: "alice", tokenEnv: "ALICE_TOKEN", scopes: ["operator.write"] },
      { name: "bob", tokenEnv: "BOB_TOKEN", scopes: ["operator.write"] },
    ] },
    http: { endpoints: { responses: { enabled: true } } },
  },
  agents: { entries: { main: { plugin: "echo" }, beta: { plugin: "echo" } } },
}"#;
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", "alice-secret-1"), ("BOB_TOKEN", "bob-secret-2")];
    let gw = TestGateway::start_with(config, &env).unwrap_or_else(|log| panic!("gateway failed:\n{log}"));
    let (status, mine) = send(post(&gw, "alice-secret-1", json!({"model": "openclaw", "input": "secret plans"}))).await;
    assert_eq!(status, 200, "{mine}");
    let id = mine["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}");

    // Bob (and the operator) get exactly what an unknown id gets.
    for token in ["bob-secret-2", TOKEN] {
        let res = reqwest::Client::new().get(gw.url(&path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 404);
        let (status, body) = send(reqwest::Client::new().delete(gw.url(&path)).bearer_auth(token)).await;
        assert_eq!((status, error_fields(&body).1.as_deref()), (404, Some("response_not_found")), "{body}");
        let continued = json!({"model": "openclaw", "input": "tell me", "previous_response_id": id});
        let (status, body) = send(post(&gw, token, continued)).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(error_fields(&body).2.as_deref(), Some("previous_response_id"));
    }
    let res = reqwest::Client::new().get(gw.url(&path)).bearer_auth("alice-secret-1").send().await.unwrap();
    assert_eq!(res.status(), 200, "the owner still sees it");
    // The owner continues it with its own agent and session only.
    let with_beta = json!({"model": "openclaw:beta", "input": "x", "previous_response_id": id});
    let (status, body) = send(post(&gw, "alice-secret-1", with_beta)).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("previous_response_id")), "{body}");
    let elsewhere = json!({"model": "openclaw", "input": "x", "previous_response_id": id});
    let (status, body) = send(post(&gw, "alice-secret-1", elsewhere).header("x-openclaw-session-key", "other")).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("x-openclaw-session-key")), "{body}");
    let (status, body) =
        send(post(&gw, "alice-secret-1", json!({"model": "openclaw", "input": "more", "previous_response_id": id})))
            .await;
    assert_eq!((status, output_text(&body)), (200, "[turn 2] more".to_string()), "{body}");
    let res = reqwest::Client::new().get(gw.url(&path)).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Bad input: 400 naming the Responses field.
    for (input, param) in [
        (json!([{"type": "item_reference", "id": "x"}]), "input[0].id"),
        (json!([{"type": "computer_call_output", "call_id": "x"}]), "input[0].type"),
        (json!([]), "input"),
        (json!([{"role": "user", "content": "x"}, {"type": "function_call_output"}]), "input[1].call_id"),
    ] {
        let (status, body) = send(post(&gw, TOKEN, json!({"model": "openclaw", "input": input}))).await;
        assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some(param)), "{body}");
    }
    let (status, body) = send(post(&gw, TOKEN, json!({"model": "openclaw:nobody", "input": "x"}))).await;
    assert_eq!((status, error_fields(&body).1.as_deref()), (404, Some("model_not_found")), "{body}");
}

#[tokio::test]
async fn sessions_follow_the_chat_rules_and_a_reset_session_takes_its_responses() {
    let gw = TestGateway::start(&echo_config());
    // `user` picks the same session as chat completions do: the chat turn is history here.
    let chat = gw.chat(json!({"model": "openclaw", "user": "ada", "messages": [{"role": "user", "content": "hi"}]}));
    let key = session_key(&chat.send().await.unwrap());
    let res = post(&gw, TOKEN, json!({"model": "openclaw", "user": "ada", "input": "there"})).send().await.unwrap();
    assert_eq!(session_key(&res), key);
    let first: Value = res.json().await.unwrap();
    assert_eq!(output_text(&first), "[turn 2] there");

    // Without user or header, each response starts a session of its own.
    let (_, a) = send(post(&gw, TOKEN, json!({"model": "openclaw", "input": "a"}))).await;
    let (_, b) = send(post(&gw, TOKEN, json!({"model": "openclaw", "input": "b"}))).await;
    assert_eq!((output_text(&a), output_text(&b)), ("a".to_string(), "b".to_string()));

    // Resetting the session forgets its responses: nothing to continue.
    let res = reqwest::Client::new().delete(gw.url(&format!("/sessions/{}", urlencode(&key)))).bearer_auth(TOKEN);
    assert_eq!(res.send().await.unwrap().status(), 200);
    let continued = json!({"model": "openclaw", "input": "x", "previous_response_id": first["id"]});
    let (status, body) = send(post(&gw, TOKEN, continued)).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_response_stored_on_one_instance_continues_on_another() {
    let db = pg::Server::start();
    let url = db.database().await;
    let start = || {
        TestGateway::start_with(&echo_config(), &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", &url)])
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    };
    let (one, two) = (start(), start());
    let (status, first) = send(post(&one, TOKEN, json!({"model": "openclaw", "input": "from one"}))).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap();
    let (status, again) =
        send(reqwest::Client::new().get(two.url(&format!("/v1/responses/{id}"))).bearer_auth(TOKEN)).await;
    assert_eq!((status, &again), (200, &first), "the other instance returns the stored object");
    let continued = json!({"model": "openclaw", "input": "on two", "previous_response_id": id, "stream": true});
    let res = post(&two, TOKEN, continued).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let raw = res.text().await.unwrap();
    let completed = raw
        .split("\n\n")
        .find_map(|event| event.strip_prefix("event: response.completed\ndata: "))
        .unwrap_or_else(|| panic!("no response.completed: {raw}"));
    let completed: Value = serde_json::from_str(completed).unwrap();
    assert_eq!(output_text(&completed["response"]), "[turn 2] on two");
    let third =
        json!({"model": "openclaw", "input": "back on one", "previous_response_id": completed["response"]["id"]});
    let (_, third) = send(post(&one, TOKEN, third)).await;
    assert_eq!(output_text(&third), "[turn 3] back on one");
}

#[tokio::test]
async fn a_stream_pings_while_silent_fails_visibly_and_a_hang_up_cancels_the_run() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["finally"]).with_first_token_delay(Duration::from_millis(1500)));
    mock.push(Reply::status(429, Some(7), "slow down"));
    mock.push(Reply::break_after(&["half", " a"]));
    mock.push(Reply::tokens(100).with_token_delay(Duration::from_millis(50)));
    let gw = TestGateway::start_with(
        &assistant_config_with(&mock, "sseKeepAliveMs: 300"),
        &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)],
    )
    .unwrap_or_else(|log| panic!("gateway failed:\n{log}"));
    let streamed = |input: &str| post(&gw, TOKEN, json!({"model": "openclaw", "input": input, "stream": true}));

    // Silence before the first token: pings, then the events, then the end.
    let raw = streamed("think hard").send().await.unwrap().text().await.unwrap();
    let events = sse_events(&raw);
    let first_delta = events.iter().position(|(k, _)| k == "response.output_text.delta").unwrap();
    assert!(events[..first_delta].iter().filter(|(k, _)| k == ":").count() >= 2, "pings while silent: {raw}");
    assert_eq!(events.last().unwrap().0, "response.completed", "{raw}");

    // A failure before any output keeps its HTTP status; one after it is `response.failed`.
    let res = streamed("too fast").send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers().get("retry-after").unwrap().to_str().unwrap()), (429, "7"));
    let raw = streamed("break").send().await.unwrap().text().await.unwrap();
    let (kind, failed) = sse_events(&raw).pop().unwrap();
    assert_eq!((kind.as_str(), &failed["response"]["status"]), ("response.failed", &json!("failed")), "{raw}");
    assert!(failed["response"]["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{failed}");
    let id = failed["response"]["id"].as_str().unwrap();
    let res = reqwest::Client::new().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(TOKEN).send().await;
    assert_eq!(res.unwrap().status(), 404, "a failed response is not kept");

    // A client that hangs up mid-stream cancels the run and the upstream request; nothing is kept.
    let (closed_before, completed_before) = (mock.closed_early(), mock.completed());
    let res = streamed("long story").send().await.unwrap();
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("tok1") {
        seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(body);
    let (_, created) = sse_events(seen.split("\n\n").next().unwrap()).pop().unwrap();
    let id = created["response"]["id"].as_str().unwrap().to_string();
    eventually("the upstream request to close", async || (mock.closed_early() == closed_before + 1).then_some(()))
        .await;
    assert_eq!(mock.completed(), completed_before, "the long reply never ran to its end");
    gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="main",kind="cancelled"} 1"#]).await;
    let res = reqwest::Client::new().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(TOKEN).send().await;
    assert_eq!(res.unwrap().status(), 404, "a cancelled response is not kept");
}

/// `openai-agents` in its own venv (`target/openai-agents-venv`), created on first use.
pub fn python_with_agents() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| python_venv("openai-agents-venv", OPENAI_AGENTS, |bin| imports(bin, "agents"))).join("python")
}

/// An `input_image` reaches a 0.2 agent, and through the assistant the
/// provider, as the same image part a chat completion would carry.
#[tokio::test]
async fn input_images_reach_the_agent_and_the_provider() {
    let input = json!([{"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "https://x.test/cat.png", "detail": "low"},
    ]}]);
    let gw = TestGateway::start(&echo_config());
    let (status, response) = send(post(&gw, TOKEN, json!({"model": "openclaw", "input": input}))).await;
    assert_eq!(status, 200, "{response}");
    let seen = output_text(&response);
    assert!(seen.contains("what is this?") && seen.contains("[image https://x.test/cat.png detail=low]"), "{seen}");

    let mock = MockProvider::start();
    mock.push(Reply::text(&["a cat"]));
    let gw = TestGateway::start(&assistant_config(&mock));
    let (status, response) = send(post(&gw, TOKEN, json!({"model": "openclaw", "input": input}))).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(output_text(&response), "a cat");
    let sent = mock.requests().remove(0).body;
    let user = sent["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        user["content"],
        json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://x.test/cat.png", "detail": "low"}},
        ]),
        "{sent}"
    );
}
