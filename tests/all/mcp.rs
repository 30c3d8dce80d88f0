//! MCP tool servers (issue 16): the shipped assistant lists a real MCP
//! server's tools, runs the model's calls of them itself, and the turn keeps
//! the round. The server is the official MCP Python SDK's (FastMCP, named
//! MCPServer since mcp 2) over Streamable HTTP, installed into
//! `target/mcp-venv` on first use, so the test needs only `python3` with
//! `venv` and access to PyPI, like CI has.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::support::*;

const KEY: &str = "mcp-test-key-7c1e9a";

/// Both tests need the venv; the first one to ask creates it, the other waits.
fn python_with_mcp() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(install_mcp).clone()
}

fn install_mcp() -> PathBuf {
    python_venv("mcp-venv", MCP_PACKAGE, |bin| imports(bin, "mcp.server.mcpserver, uvicorn")).join("python")
}

/// `tests/mcp/server.py` on a free loopback port, until dropped.
pub(crate) struct McpServer {
    child: Child,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    /// `--versions`: the protocol revisions it speaks (all the SDK's when `None`).
    versions: Option<String>,
}

impl McpServer {
    /// Start it (`json`: answer with application/json instead of SSE) and
    /// wait, with a deadline, until it accepts connections.
    pub(crate) fn start(json: bool) -> Self {
        Self::start_pinned(json, None)
    }

    /// Start one that speaks only the comma-separated protocol revisions `versions`.
    pub(crate) fn start_pinned(json: bool, versions: Option<&str>) -> Self {
        Self::start_with(json, versions, &[])
    }

    /// Start one with more of `server.py`'s flags (`--mutable`, `--list-ttl-ms N`).
    pub(crate) fn start_with(json: bool, versions: Option<&str>, flags: &[&str]) -> Self {
        // The server picks a free port itself: one picked here and let go could be
        // taken by another test's process before the server binds it.
        Self::start_on(0, json, versions, flags)
    }

    /// Start it on `port` (0: a free one; else a restart of one that was there).
    fn start_on(port: u16, json: bool, versions: Option<&str>, flags: &[&str]) -> Self {
        let python = python_with_mcp();
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp/server.py");
        let mut cmd = Command::new(python);
        cmd.arg(script).arg(port.to_string()).arg(dir.path().join("seen.jsonl"));
        if json {
            cmd.arg("--json");
        }
        if let Some(versions) = versions {
            cmd.arg("--versions").arg(versions);
        }
        cmd.args(flags);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        // It prints its port once it listens, and nothing if it cannot bind (it exits).
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut server = Self { child, port, dir, versions: versions.map(str::to_string) };
        let Ok(port) = line.trim().parse() else {
            let status = server.child.wait().unwrap();
            panic!("the MCP server exited before listening on port {port}: {status}");
        };
        // It listens already: connections wait in its backlog until the app accepts them.
        server.port = port;
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Every request the server received: method, JSON-RPC method (`rpc`) and the headers it logged.
    pub(crate) fn seen(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("seen.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// A port another process holds is not taken for the server's: the server
/// cannot bind it and exits, and the start says so instead of returning (the
/// tests met other tests' servers on a port picked free and let go).
#[test]
#[should_panic(expected = "the MCP server exited before listening")]
fn a_server_that_cannot_bind_its_port_is_not_taken_for_ready() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    McpServer::start_on(squatter.local_addr().unwrap().port(), false, None, &[]);
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An assistant agent entry on the mock provider: `http` and `config` blocks as given.
pub(crate) fn agent(id: &str, http: &str, config: &str) -> String {
    format!(r#"{id}: {{ plugin: "assistant", provider: "mock", model: "mock-model", {http} config: {{ {config} }} }},"#)
}

pub(crate) fn gateway(mock: &MockProvider, agents: &[String]) -> TestGateway {
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          providers: {{ mock: {{ baseUrl: "{}" }} }},
          agents: {{ entries: {{ {} }} }} }}"#,
        mock.url(),
        agents.join("\n")
    );
    TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("MCP_TEST_KEY", KEY)])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// Roles of a provider request's messages.
fn roles(body: &Value) -> Vec<&str> {
    body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect()
}

pub(crate) fn tool_names(body: &Value) -> Vec<&str> {
    body["tools"].as_array().map_or(vec![], |t| t.iter().map(|t| t["function"]["name"].as_str().unwrap()).collect())
}

#[tokio::test]
async fn a_server_tool_round_reaches_the_model_the_transcript_and_websocket_clients_only() {
    let server = tokio::task::spawn_blocking(|| McpServer::start(false)).await.unwrap();
    let mock = MockProvider::start();
    let http = format!(r#"http: {{ allow: ["{}"] }},"#, server.url());
    let gw = gateway(&mock, &[agent("research", &http, &format!(r#"mcpServers: "{}""#, server.url()))]);
    let key = "agent:research:mcp-round";

    // Turn 1 over WebSocket: the model calls the server's `add`, then answers.
    mock.push(Reply::tool_call("call_add", "add", r#"{"a": 2, "b": 3}"#));
    mock.push(Reply::text(&["Two and three ", "make five."]));
    let mut c = Client::connect(&gw).await;
    let started =
        c.call("chat.send", json!({"sessionKey": key, "message": "add 2 and 3", "idempotencyKey": "m1"})).await;
    assert_eq!(started["payload"]["status"], "started", "{started}");
    let mut agent_events = Vec::new();
    let fin = loop {
        let f = c.until(|f| f["event"] == "chat" || f["event"] == "agent").await;
        if f["event"] == "agent" {
            agent_events.push(f["payload"].clone());
        } else if f["payload"]["state"] != "delta" {
            break f["payload"].clone();
        }
    };
    assert_eq!(fin["state"], "final", "{fin}");
    assert_eq!(fin["message"]["content"][0]["text"], "Two and three make five.");
    let streams: Vec<(&str, &str)> = agent_events
        .iter()
        .map(|p| (p["stream"].as_str().unwrap(), p["data"]["phase"].as_str().unwrap_or("")))
        .collect();
    let tool_at =
        |phase: &str| streams.iter().position(|s| *s == ("tool", phase)).unwrap_or_else(|| panic!("{streams:?}"));
    let text_at = streams.iter().position(|(s, _)| *s == "assistant").expect("assistant text");
    assert!(
        tool_at("start") < tool_at("result") && tool_at("result") < text_at,
        "call, result, then text: {streams:?}"
    );
    let start = &agent_events[tool_at("start")]["data"];
    assert_eq!((start["name"].as_str(), start["toolCallId"].as_str()), (Some("add"), Some("call_add")));
    assert_eq!(start["args"], json!({"a": 2, "b": 3}));
    let result = &agent_events[tool_at("result")]["data"];
    assert_eq!(result["name"], "add");
    assert_eq!(result["isError"], false);
    assert_eq!(result["result"], "the sum is 5");
    assert_eq!(streams.iter().filter(|(s, _)| *s == "tool").count(), 2, "one call, one result: {streams:?}");

    let sent: Vec<Value> = mock.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 2);
    // The server lists one tool per page: all three pages are offered.
    assert_eq!(tool_names(&sent[0]), ["add", "divide", "whoami"], "the server's tools are offered: {}", sent[0]);
    assert_eq!(roles(&sent[1]), ["user", "assistant", "tool"]);
    assert_eq!(sent[1]["messages"][1]["tool_calls"][0]["function"]["name"], "add");
    assert_eq!(sent[1]["messages"][2]["tool_call_id"], "call_add");
    assert_eq!(sent[1]["messages"][2]["content"], "the sum is 5");

    // Turn 2 over the HTTP stream: a failing tool; OpenAI clients see only text.
    mock.push(Reply::tool_call("call_div", "divide", r#"{"a": 1, "b": 0}"#));
    mock.push(Reply::text(&["Dividing by zero ", "is undefined."]));
    let mut body = ask("agent:research", "divide 1 by 0");
    body["stream"] = json!(true);
    let res = gw.chat(body).header("x-openclaw-session-key", key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let raw = res.text().await.unwrap();
    for trace in ["divide", "call_div", "tool_calls", "cannot"] {
        assert!(!raw.contains(trace), "no trace of the server tool ({trace}) in the stream: {raw}");
    }
    assert!(raw.contains("is undefined.") && raw.contains(r#""finish_reason":"stop""#), "{raw}");

    let sent: Vec<Value> = mock.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 4);
    assert_eq!(roles(&sent[2]), ["user", "assistant", "tool", "assistant", "user"], "turn 1's round is in the history");
    assert_eq!(sent[2]["messages"][2]["content"], "the sum is 5");
    let error = sent[3]["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(error["tool_call_id"], "call_div");
    assert!(
        error["content"].as_str().unwrap().contains("cannot divide by zero"),
        "the error reaches the model: {error}"
    );

    // The transcript holds both rounds.
    let history: Value = gw.session_history(key).await.json().await.unwrap();
    let shape: Vec<(String, Value, Value)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["toolCalls"][0]["name"].clone(), m["toolCallId"].clone()))
        .collect();
    let (n, some) = (Value::Null, |s: &str| json!(s));
    let expected = [
        ("user", n.clone(), n.clone()),
        ("assistant", some("add"), n.clone()),
        ("tool", n.clone(), some("call_add")),
        ("assistant", n.clone(), n.clone()),
        ("user", n.clone(), n.clone()),
        ("assistant", some("divide"), n.clone()),
        ("tool", n.clone(), some("call_div")),
        ("assistant", n.clone(), n.clone()),
    ]
    .map(|(r, c, i)| (r.to_string(), c, i));
    assert_eq!(shape, expected, "{history}");

    // WebSocket history shows the round in OpenClaw's shape.
    let history = c.call("chat.history", json!({"sessionKey": key})).await;
    let messages = history["payload"]["messages"].as_array().unwrap();
    let call = messages[1]["content"].as_array().unwrap().iter().find(|p| p["type"] == "toolCall").expect("toolCall");
    assert_eq!((call["id"].as_str(), call["name"].as_str()), (Some("call_add"), Some("add")));
    assert_eq!(call["arguments"], json!({"a": 2, "b": 3}));
    assert_eq!(messages[2]["role"], "toolResult");
    assert_eq!((messages[2]["toolCallId"].as_str(), messages[2]["toolName"].as_str()), (Some("call_add"), Some("add")));
    assert_eq!(messages[2]["content"][0]["text"], "the sum is 5");

    // The server speaks every revision: both runs went stateless, in the newest.
    let seen = server.seen();
    assert!(seen.iter().all(|s| s["version"] == "2026-07-28" && s["session"].is_null()), "{seen:?}");
    assert!(seen.iter().all(|s| s["rpc"] != "initialize"), "no handshake: {seen:?}");
    assert_eq!(seen.iter().filter(|s| s["rpc"] == "server/discover").count(), 2, "one discovery per run: {seen:?}");

    let log = gw.wait_for_log("the tool calls' debug lines", |l| l.matches("server tool call").count() >= 2).await;
    let line = log.lines().find(|l| l.contains("server tool call") && l.contains("tool=\"divide\"")).expect(&log);
    for part in ["agent=\"research\"", "run_id=", "ms=", "outcome=\"error\""] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

#[tokio::test]
async fn rounds_are_limited_origins_must_be_allowed_and_credentials_stay_in_the_gateway() {
    let (server, json_server) =
        tokio::task::spawn_blocking(|| (McpServer::start(false), McpServer::start(true))).await.unwrap();
    let mock = MockProvider::start();
    let allow = |s: &McpServer| format!(r#"http: {{ allow: ["{}"] }},"#, s.url());
    let keyed = format!(
        r#"http: {{ allow: ["{}"], credentials: [{{ match: "http://127.0.0.1:{}", header: "Authorization", prefix: "Bearer ", valueEnv: "MCP_TEST_KEY" }}] }},"#,
        server.url(),
        server.port
    );
    let servers = |s: &McpServer| format!(r#"mcpServers: "{}""#, s.url());
    let gw = gateway(
        &mock,
        &[
            agent("looping", &allow(&json_server), &format!(r#"{}, maxToolRounds: "2""#, servers(&json_server))),
            agent("fenced", "", &servers(&server)),
            agent("keyed", &keyed, &servers(&server)),
        ],
    );

    // maxToolRounds: two rounds run (against the JSON-answering server), the third is refused.
    for i in 0..3 {
        mock.push(Reply::tool_call(&format!("call_{i}"), "add", r#"{"a": 1, "b": 1}"#));
    }
    let res = gw.chat(ask("agent:looping", "keep adding")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let answer = content(&body);
    assert!(answer.contains("after 2 rounds") && answer.contains("maxToolRounds"), "{answer}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert!(body["choices"][0]["message"]["tool_calls"].is_null(), "server calls never reach the client: {body}");
    assert_eq!(mock.requests().len(), 3, "two rounds, then no fourth completion");
    assert_eq!(
        json_server.seen().iter().filter(|s| s["method"] == "POST").count(),
        6,
        "server/discover, three pages of tools/list, two calls"
    );

    // An origin outside http.allow: a warning naming the key, no tools, still an answer.
    mock.push(Reply::text(&["No tools today."]));
    let res = gw.chat(ask("agent:fenced", "add 1 and 1")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "No tools today.");
    let sent = mock.requests().last().unwrap().body.clone();
    assert!(tool_names(&sent).is_empty(), "nothing offered from a denied server: {sent}");
    let log = gw.wait_for_log("the denial", |l| l.contains("agents.entries.fenced.http.allow")).await;
    assert!(log.contains("config.mcpServers"), "the assistant says which server it skipped");
    assert!(server.seen().is_empty(), "the denied server was never contacted");

    // A credential for the server's origin reaches it; the guest and the client get it redacted.
    mock.push(Reply::tool_call("call_who", "whoami", "{}"));
    mock.push(Reply::echo());
    let res = gw.chat(ask("agent:keyed", "who am I?")).send().await.unwrap();
    let raw = res.text().await.unwrap();
    let seen = server.seen();
    assert!(!seen.is_empty() && seen.iter().all(|s| s["authorization"] == format!("Bearer {KEY}")), "{seen:?}");
    let to_model = mock.requests().last().unwrap().body.to_string();
    assert!(to_model.contains("you sent authorization: Bearer [REDACTED]"), "{to_model}");
    for (place, text) in [("the model", to_model.as_str()), ("the client", raw.as_str()), ("the log", &gw.log())] {
        assert!(!text.contains(KEY), "the key never reaches {place}");
    }
}

#[tokio::test]
async fn a_server_that_restarts_mid_run_gets_a_new_session_and_the_call_goes_through() {
    // Sessions exist only before 2026-07-28.
    let server = tokio::task::spawn_blocking(|| McpServer::start_pinned(false, Some("2025-11-25"))).await.unwrap();
    let mock = MockProvider::start();
    // A restart on a busy machine can take a while: the run's time budget must not be the limit.
    let http = format!(r#"http: {{ allow: ["{}"] }}, limits: {{ timeoutMs: 180000 }},"#, server.url());
    let gw = gateway(&mock, &[agent("research", &http, &format!(r#"mcpServers: "{}""#, server.url()))]);
    // The model answers only once the server has restarted between the listing
    // and the call (a gate, not a delay: a busy machine starts Python slowly).
    let restarted_gate = Arc::new(AtomicBool::new(false));
    mock.push(Reply::tool_call("call_add", "add", r#"{"a": 4, "b": 5}"#).with_gate(restarted_gate.clone()));
    mock.push(Reply::text(&["Nine."]));
    let answer = tokio::spawn(gw.chat(ask("agent:research", "add 4 and 5")).send());

    // The listing has ended (its last answer read, not only its last request
    // received) once the model is asked, with the server's tools offered.
    eventually("the model asked with the tools listed", async || mock.requests().first().map(|r| r.body.clone())).await;
    assert!(mock.requests()[0].body["tools"].to_string().contains("\"add\""), "the server's tools are offered");
    let (port, versions) = (server.port, server.versions.clone());
    drop(server);
    let restarted =
        tokio::task::spawn_blocking(move || McpServer::start_on(port, false, versions.as_deref(), &[])).await.unwrap();
    restarted_gate.store(true, Ordering::SeqCst);

    let res = answer.await.unwrap().unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(content(&body), "Nine.", "{body}");
    let to_model = mock.requests().last().unwrap().body.clone();
    let result = to_model["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(result["content"], "the sum is 9", "the call reached the new server: {result}");
    let seen = restarted.seen();
    assert!(seen[0]["session"].is_string(), "first the old session, which the new server does not know: {seen:?}");
    assert!(seen[1]["session"].is_null(), "then a new initialize: {seen:?}");
}

/// One answer calling a server tool and a client tool: the server's runs in
/// the gateway, only the client's reaches the client, and the next turn hands
/// the model both results after their calls.
#[tokio::test]
async fn an_answer_calling_both_kinds_runs_the_server_tool_and_hands_the_client_only_its_own() {
    let server = tokio::task::spawn_blocking(|| McpServer::start(false)).await.unwrap();
    let mock = MockProvider::start();
    let http = format!(r#"http: {{ allow: ["{}"] }},"#, server.url());
    let gw = gateway(&mock, &[agent("research", &http, &format!(r#"mcpServers: "{}""#, server.url()))]);
    let session = "agent:research:mixed";
    let weather = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);

    mock.push(Reply::tool_calls(&[
        ("call_add", "add", r#"{"a": 2, "b": 3}"#),
        ("call_w", "get_weather", r#"{"city": "Paris"}"#),
    ]));
    let res = gw
        .chat(json!({"model": "agent:research", "messages": [{"role": "user", "content": "add, then weather"}], "tools": weather}))
        .header("x-openclaw-session-key", session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{body}");
    let calls = body["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "only the client's own call: {body}");
    assert_eq!((calls[0]["id"].as_str(), calls[0]["function"]["name"].as_str()), (Some("call_w"), Some("get_weather")));
    assert_eq!(mock.requests().len(), 1, "the turn ends with the client's call, no second completion");

    // The client answers its call; the model gets both results after their calls.
    mock.push(Reply::text(&["5, and sunny."]));
    let res = gw
        .chat(json!({"model": "agent:research", "tools": weather,
            "messages": [{"role": "tool", "tool_call_id": "call_w", "content": "sunny"}]}))
        .header("x-openclaw-session-key", session)
        .send()
        .await
        .unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "5, and sunny.");
    let sent = mock.requests()[1].body.clone();
    let messages = sent["messages"].as_array().unwrap();
    let tail: Vec<(&str, Value)> = messages[messages.len() - 5..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m.get("tool_call_id").cloned().unwrap_or(Value::Null)))
        .collect();
    assert_eq!(
        tail,
        [
            ("user", Value::Null),
            ("assistant", Value::Null),
            ("tool", json!("call_add")),
            ("assistant", Value::Null),
            ("tool", json!("call_w")),
        ],
        "{sent}"
    );
    let n = messages.len();
    assert_eq!(messages[n - 4]["tool_calls"][0]["function"]["name"], "add", "{sent}");
    assert!(messages[n - 3]["content"].as_str().unwrap().contains('5'), "the server's result: {sent}");
    assert_eq!(messages[n - 2]["tool_calls"][0]["id"], "call_w", "{sent}");
    assert_eq!(messages[n - 1]["content"], "sunny");
}
