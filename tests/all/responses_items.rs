//! The Responses API as the Vercel AI SDK and Codex use it (issue 27):
//! `item_reference` input items resolved to the caller's own stored output
//! items, Codex's default tools (a `namespace` and hosted tools), and
//! `GET /v1/responses/{id}/input_items`, against the real gateway with raw
//! HTTP, the official `openai` SDK and the AI SDK at pinned versions.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::openai_sdk::run_sdk_script;
use crate::responses::{echo_config, output_text, post, send};
use crate::support::*;

/// The assistant on the provider at `url` as `main`, with the operator and two principals.
fn principals_config(url: &str) -> String {
    format!(
        r#"{{
  gateway: {{
    auth: {{ mode: "token", tokens: [
      {{ name: "alice", tokenEnv: "ALICE_TOKEN", scopes: ["operator.write"] }},
      {{ name: "bob", tokenEnv: "BOB_TOKEN", scopes: ["operator.write"] }},
    ] }},
    http: {{ endpoints: {{ responses: {{ enabled: true }} }} }},
  }},
  providers: {{ mock: {{ baseUrl: "{url}" }} }},
  agents: {{ entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "mock-model" }} }} }},
}}"#
    )
}

pub(crate) const ALICE: &str = "alice-secret-1";
const BOB: &str = "bob-secret-2";

pub(crate) fn start(url: &str) -> TestGateway {
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)];
    TestGateway::start_with(&principals_config(url), &env).unwrap_or_else(|log| panic!("gateway failed:\n{log}"))
}

/// `(role, text)` of each message the provider was sent, system prompt left out.
pub(crate) fn dialogue(body: &Value) -> Vec<(String, String)> {
    let messages = body["messages"].as_array().unwrap_or_else(|| panic!("no messages: {body}"));
    messages
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap_or_default().to_string()))
        .collect()
}

fn turn(role: &str, text: &str) -> (String, String) {
    (role.to_string(), text.to_string())
}

fn input_items(gw: &TestGateway, token: &str, id: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().get(gw.url(&format!("/v1/responses/{id}/input_items"))).bearer_auth(token)
}

#[tokio::test]
async fn an_item_reference_is_an_output_item_of_the_callers_own_responses() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["Hello", " Ada."]));
    mock.push(Reply::text(&["You are Ada."]));
    let gw = start(&mock.url());
    let (status, first) = send(post(&gw, ALICE, json!({"model": "openclaw", "input": "I am Ada"}))).await;
    assert_eq!(status, 200, "{first}");
    let said = first["output"][0]["id"].as_str().unwrap().to_string();

    // A new conversation (no previous_response_id) that refers to the earlier answer.
    let input = json!([
        {"role": "user", "content": "I am Ada"},
        {"type": "item_reference", "id": said},
        {"role": "user", "content": "who am I?"},
    ]);
    let (status, second) = send(post(&gw, ALICE, json!({"model": "openclaw", "input": input}))).await;
    assert_eq!((status, output_text(&second)), (200, "You are Ada.".to_string()), "{second}");
    let sent = mock.requests();
    assert_eq!(
        dialogue(&sent[1].body),
        [turn("user", "I am Ada"), turn("assistant", "Hello Ada."), turn("user", "who am I?")],
        "the reference reached the model as the answer it names"
    );

    // Someone else's item, an unknown id and a reference without id: 400 naming the item, no run.
    for (token, reference, param) in [
        (BOB, json!({"type": "item_reference", "id": said}), "input[1].id"),
        (TOKEN, json!({"type": "item_reference", "id": said}), "input[1].id"),
        (ALICE, json!({"type": "item_reference", "id": "msg_nope"}), "input[1].id"),
        (ALICE, json!({"type": "item_reference", "id": first["id"]}), "input[1].id"),
        (ALICE, json!({"type": "item_reference"}), "input[1].id"),
    ] {
        let input = json!([{"role": "user", "content": "x"}, reference]);
        let (status, body) = send(post(&gw, token, json!({"model": "openclaw", "input": input}))).await;
        assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some(param)), "{body}");
    }
    assert_eq!(mock.requests().len(), 2, "refused requests never ran");
}

/// Codex's default tool list, abridged: a function, a namespace of functions, hosted tools.
fn codex_tools() -> Value {
    json!([
        {"type": "function", "name": "shell", "description": "Runs a command",
         "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents", "tools": [
            {"type": "function", "name": "spawn_agent", "description": "Starts a sub-agent",
             "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}},
        ]},
        {"type": "web_search", "external_web_access": false},
        {"type": "custom", "name": "apply_patch", "description": "Patches files", "format": {"type": "text"}},
        // A name is the client's text: it must not forge a log line.
        {"type": "custom", "name": "x\nINFO forged: left out tools"},
    ])
}

#[tokio::test]
async fn codex_default_tools_reach_the_agent_as_functions_and_calls_go_back_namespaced() {
    let mock = MockProvider::start();
    mock.push(Reply::tool_call("call_s1", "multi_agent_v1__spawn_agent", r#"{"task": "count"}"#));
    mock.push(Reply::text(&["Spawned."]));
    let gw = start(&mock.url());
    let request = json!({"model": "openclaw", "input": "spawn one", "tools": codex_tools(), "stream": true});
    let res = post(&gw, ALICE, request).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let raw = res.text().await.unwrap();
    let completed = raw
        .split("\n\n")
        .find_map(|event| event.strip_prefix("event: response.completed\ndata: "))
        .unwrap_or_else(|| panic!("no response.completed: {raw}"));
    let response: Value = serde_json::from_str(completed).unwrap();
    let call = response["response"]["output"][0].clone();
    assert_eq!(
        (call["type"].as_str(), call["name"].as_str(), call["namespace"].as_str()),
        (Some("function_call"), Some("spawn_agent"), Some("multi_agent_v1")),
        "{response}"
    );
    assert!(!raw.contains("multi_agent_v1__"), "the flat name stays inside the gateway: {raw}");

    let sent = mock.requests();
    let names: Vec<&str> =
        sent[0].body["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["shell", "multi_agent_v1__spawn_agent"], "{}", sent[0].body);
    let logged = || gw.log().lines().filter(|l| l.contains("left out tools")).map(str::to_string).collect::<Vec<_>>();
    let lines = eventually("the left-out tools to be logged", async || Some(logged()).filter(|l| !l.is_empty())).await;
    assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
    assert!(lines[0].contains("web_search") && lines[0].contains("custom:apply_patch"), "{}", lines[0]);

    // Codex sends the call back as it got it, namespace and all, with its output.
    let input = json!([call, {"type": "function_call_output", "call_id": "call_s1", "output": "agent 7 started"}]);
    let next = json!({"model": "openclaw", "input": input, "tools": codex_tools(),
                      "previous_response_id": response["response"]["id"]});
    let (status, body) = send(post(&gw, ALICE, next)).await;
    assert_eq!((status, output_text(&body)), (200, "Spawned.".to_string()), "{body}");
    let sent = mock.requests();
    let messages = sent[1].body["messages"].as_array().unwrap();
    let calls: Vec<&Value> = messages.iter().filter_map(|m| m.get("tool_calls")).collect();
    assert!(calls.iter().all(|c| c[0]["function"]["name"] == "multi_agent_v1__spawn_agent"), "{}", sent[1].body);
    assert_eq!(messages.last().unwrap()["content"], "agent 7 started");

    // Only forcing a tool that was left out is refused.
    for forced in [json!({"type": "web_search"}), json!({"type": "custom", "name": "apply_patch"})] {
        let request = json!({"model": "openclaw", "input": "x", "tools": codex_tools(), "tool_choice": forced});
        let (status, body) = send(post(&gw, ALICE, request)).await;
        assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("tool_choice")), "{body}");
    }
    assert_eq!(mock.requests().len(), 2, "refused requests never ran");
    assert_eq!(logged().len(), 2, "one line for each request that ran");
}

#[tokio::test]
async fn input_items_are_the_owners_alone() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["hi"]));
    let gw = start(&mock.url());
    let (_, created) = send(post(&gw, ALICE, json!({"model": "openclaw", "input": "hello there"}))).await;
    let id = created["id"].as_str().unwrap();
    let (status, page) = send(input_items(&gw, ALICE, id)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"][0]["content"], json!([{"type": "input_text", "text": "hello there"}]));
    assert_eq!((page["first_id"].clone(), page["has_more"].clone()), (page["data"][0]["id"].clone(), json!(false)));
    for token in [BOB, TOKEN] {
        let (status, body) = send(input_items(&gw, token, id)).await;
        assert_eq!((status, error_fields(&body).1.as_deref()), (404, Some("response_not_found")), "{body}");
    }
    let (status, body) = send(input_items(&gw, ALICE, id).query(&[("limit", "0")])).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("limit")), "{body}");
}

#[test]
fn the_python_sdk_pages_input_items() {
    let gw = TestGateway::start(&echo_config());
    run_sdk_script(&gw, "responses_input_items.py");
}

/// A chat-completions provider that answers each request with the next
/// scripted assistant message (text and tool calls together, which the mock
/// provider does not script), streamed when asked.
pub(crate) struct ScriptedProvider {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl ScriptedProvider {
    pub fn start(replies: Vec<Value>) -> Self {
        use axum::routing::post;
        let script = Arc::new(Mutex::new(VecDeque::from(replies)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = axum::Router::new().route(
            "/chat/completions",
            post(move |axum::Json(body): axum::Json<Value>| {
                let reply = script.lock().unwrap().pop_front().unwrap_or(json!({"content": "(script ended)"}));
                let stream = body["stream"] == true;
                seen.lock().unwrap().push(body);
                async move { completion(reply, stream) }
            }),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { url, requests }
    }
}

/// `reply` (`{content, tool_calls: [[id, name, arguments]]}`) as a completion or its SSE stream.
fn completion(reply: Value, stream: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    let text = reply["content"].as_str().unwrap_or_default().to_string();
    let calls: Vec<Value> = reply["tool_calls"].as_array().cloned().unwrap_or_default();
    let finish = if calls.is_empty() { "stop" } else { "tool_calls" };
    let usage = json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8});
    let call_json = |i: usize, c: &Value| json!({"index": i, "id": c[0], "type": "function", "function": {"name": c[1], "arguments": c[2]}});
    if !stream {
        let mut message = json!({"role": "assistant", "content": text});
        if !calls.is_empty() {
            message["tool_calls"] = calls.iter().enumerate().map(|(i, c)| call_json(i, c)).collect();
        }
        let body = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "mock-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
        return axum::Json(body).into_response();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "mock-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut sse = chunk(json!({"role": "assistant"}), None);
    if !text.is_empty() {
        sse.push_str(&chunk(json!({"content": text}), None));
    }
    for (i, c) in calls.iter().enumerate() {
        sse.push_str(&chunk(json!({"tool_calls": [call_json(i, c)]}), None));
    }
    sse.push_str(&chunk(json!({}), Some(finish)));
    let last = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "mock-model",
        "choices": [], "usage": usage});
    sse.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    ([("content-type", "text/event-stream")], sse).into_response()
}

/// The AI SDK's pinned packages, installed into `target/ai-sdk` on first use.
const AI_SDK_PACKAGES: &[&str] = &["ai@6.0.333", "@ai-sdk/openai@3.0.141", "zod@4.1.12"];

/// The directory holding `node_modules` with the AI SDK; the first test to ask installs it.
fn ai_sdk() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ai-sdk");
        let installed = |dir: &Path| {
            let version = |package: &str| {
                let manifest = std::fs::read_to_string(dir.join("node_modules").join(package).join("package.json"));
                manifest.ok().and_then(|m| serde_json::from_str::<Value>(&m).ok()).map(|m| m["version"].clone())
            };
            AI_SDK_PACKAGES.iter().all(|spec| {
                let (package, wanted) = spec.rsplit_once('@').unwrap();
                version(package).is_some_and(|v| v == wanted)
            })
        };
        if !installed(&dir) {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("package.json"), r#"{"private": true, "type": "module"}"#).unwrap();
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--save-exact", "--prefix"])
                .arg(&dir)
                .args(AI_SDK_PACKAGES)
                .status()
                .expect("npm is required (Node.js 18 or later)");
            assert!(
                status.success() && installed(&dir),
                "npm install {AI_SDK_PACKAGES:?} failed (needs the npm registry)"
            );
        }
        dir
    })
    .clone()
}

#[tokio::test]
async fn the_ai_sdk_chats_two_turns_and_runs_a_tool_loop_with_text_before_the_call() {
    let provider = ScriptedProvider::start(vec![
        json!({"content": "Hello Ada."}),
        json!({"content": "You are Ada."}),
        json!({"content": "Let me check.", "tool_calls": [["call_w1", "get_weather", "{\"city\":\"Paris\"}"]]}),
        json!({"content": "It is sunny in Paris."}),
    ]);
    let gw = start(&provider.url);
    let dir = ai_sdk();
    // ESM resolves packages from the script's own directory, so it runs beside node_modules.
    let script = dir.join("ai_sdk_check.mjs");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/ai_sdk_check.mjs"), &script).unwrap();
    let out = tokio::process::Command::new("node").arg(&script).arg(gw.url("/v1")).arg(ALICE).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "stdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let ids: Value = serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();

    // The SDK sent references (not the text) and the gateway resolved them: the
    // stored input of each follow-up holds the earlier output item under its own id.
    for (follow_up, referenced) in [("second", "first"), ("tool_result", "tool_call")] {
        let (status, earlier) = send(
            reqwest::Client::new()
                .get(gw.url(&format!("/v1/responses/{}", ids[referenced].as_str().unwrap())))
                .bearer_auth(ALICE),
        )
        .await;
        assert_eq!(status, 200, "{earlier}");
        let message = earlier["output"].as_array().unwrap().iter().find(|i| i["type"] == "message").unwrap().clone();
        let (status, page) =
            send(input_items(&gw, ALICE, ids[follow_up].as_str().unwrap()).query(&[("order", "asc")])).await;
        assert_eq!(status, 200, "{page}");
        assert!(page["data"].as_array().unwrap().contains(&message), "{message} in {page}");
    }
    let requests = provider.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert_eq!(
        dialogue(&requests[1]),
        [turn("user", "I am Ada"), turn("assistant", "Hello Ada."), turn("user", "who am I?")]
    );
    let last = requests[3]["messages"].as_array().unwrap();
    let call = &last[last.len() - 2];
    assert_eq!(
        (call["content"].as_str(), call["tool_calls"][0]["id"].as_str()),
        (Some("Let me check."), Some("call_w1"))
    );
    assert_eq!(last[last.len() - 1]["content"], "sunny in Paris");
}
