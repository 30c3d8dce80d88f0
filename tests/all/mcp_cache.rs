//! MCP tool lists reused across runs (issue 27, item 9): the shipped assistant
//! lists a server's tools once per agent version and server, keeps the list
//! in the gateway's `memo` (contract 0.2.1), and lists again when the server
//! says its tools changed, a call finds a tool gone, the TTL
//! (`config.mcpToolsTtlSeconds`, or a 2026-07-28 server's `ttlMs`) passes, or
//! a new version of the agent is installed. Counted at the server:
//! `tests/mcp/server.py` logs every request (a listing's first page has no cursor).

use serde_json::Value;
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::hot_swap::admin;
use crate::mcp::{McpServer, agent, gateway, tool_names};
use crate::support::*;

/// Every tool of `server.py --mutable`, in listing order.
const MUTABLE_TOOLS: [&str; 5] = ["add", "divide", "whoami", "grow", "shrink"];

/// How many times the server was asked for its whole list.
fn listings(server: &McpServer) -> usize {
    server.seen().iter().filter(|s| s["rpc"] == "tools/list" && s["cursor"].is_null()).count()
}

/// The JSON-RPC methods the server saw after its first `from` requests.
fn rpcs_after(server: &McpServer, from: usize) -> Vec<String> {
    server.seen().iter().skip(from).map(|s| s["rpc"].as_str().unwrap_or("GET").to_string()).collect()
}

fn allowed(servers: &[&McpServer]) -> String {
    let urls: Vec<String> = servers.iter().map(|s| format!("{:?}", s.url())).collect();
    format!("http: {{ allow: [{}] }},", urls.join(", "))
}

/// One turn of `agent`; the answer's text (the run has ended, MCP requests included).
async fn turn(gw: &TestGateway, agent: &str) -> String {
    let res = gw.chat(ask(&format!("agent:{agent}"), "go")).send().await.unwrap();
    assert_eq!(res.status(), 200, "{agent}");
    content(&res.json().await.unwrap())
}

/// The tools offered in the provider's last request.
fn offered(mock: &MockProvider) -> Vec<String> {
    tool_names(&mock.requests().last().unwrap().body).into_iter().map(str::to_string).collect()
}

/// The last tool result the model was given.
fn last_tool_result(mock: &MockProvider) -> String {
    let body: Value = mock.requests().last().unwrap().body.clone();
    let result = body["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "tool").cloned();
    result.map(|m| m["content"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn runs_reuse_one_listing_until_a_call_finds_a_tool_gone() {
    let (server, plain) = tokio::task::spawn_blocking(|| {
        (McpServer::start_with(false, None, &["--mutable", "--list-ttl-ms", "600000"]), McpServer::start(false))
    })
    .await
    .unwrap();
    let mock = MockProvider::start();
    let gw = gateway(
        &mock,
        &[
            agent("research", &allowed(&[&server]), &format!(r#"mcpServers: "{}""#, server.url())),
            agent("plain", &allowed(&[&plain]), &format!(r#"mcpServers: "{}""#, plain.url())),
        ],
    );

    // Four runs, one listing: the server speaks 2026-07-28 and lets its list be kept 10 minutes.
    for run in 0..4 {
        mock.push(Reply::text(&["Hi."]));
        assert_eq!(turn(&gw, "research").await, "Hi.");
        assert_eq!(offered(&mock), MUTABLE_TOOLS, "run {run} offers every tool");
    }
    assert_eq!(listings(&server), 1);
    assert_eq!(
        rpcs_after(&server, 0),
        ["server/discover", "tools/list", "tools/list", "tools/list", "tools/list", "tools/list"]
    );

    // A call on the kept list needs no discovery either: the revision was kept with it.
    mock.push(Reply::tool_call("call_add", "add", r#"{"a": 1, "b": 2}"#));
    mock.push(Reply::text(&["Three."]));
    assert_eq!(turn(&gw, "research").await, "Three.");
    assert_eq!(last_tool_result(&mock), "the sum is 3");
    assert_eq!(rpcs_after(&server, 6), ["tools/call"]);

    // `shrink` removes `add` telling nobody: the next run still offers it; its
    // call answers "Unknown tool", so the run after lists again, once.
    mock.push(Reply::tool_call("call_shrink", "shrink", "{}"));
    mock.push(Reply::text(&["Shrunk."]));
    assert_eq!(turn(&gw, "research").await, "Shrunk.");
    mock.push(Reply::tool_call("call_add2", "add", r#"{"a": 1, "b": 2}"#));
    mock.push(Reply::text(&["Gone."]));
    assert_eq!(turn(&gw, "research").await, "Gone.");
    assert!(offered(&mock).contains(&"add".to_string()), "nobody said `add` went");
    assert!(last_tool_result(&mock).contains("Unknown tool: add"), "{}", last_tool_result(&mock));
    assert_eq!(listings(&server), 1);
    for _ in 0..2 {
        mock.push(Reply::text(&["Hi."]));
        turn(&gw, "research").await;
        assert_eq!(offered(&mock), ["divide", "whoami", "grow", "shrink"], "listed again, without `add`");
    }
    assert_eq!(listings(&server), 2, "listed again once, then kept");

    // A server whose list says `ttlMs: 0` (the SDK's default) is listed every run.
    for _ in 0..2 {
        mock.push(Reply::text(&["Hi."]));
        turn(&gw, "plain").await;
    }
    assert_eq!(listings(&plain), 2);
}

#[tokio::test]
async fn a_handshake_server_that_says_its_tools_changed_is_listed_again() {
    let server =
        tokio::task::spawn_blocking(|| McpServer::start_with(false, Some("2025-11-25"), &["--mutable"])).await.unwrap();
    let mock = MockProvider::start();
    let gw = gateway(&mock, &[agent("research", &allowed(&[&server]), &format!(r#"mcpServers: "{}""#, server.url()))]);

    mock.push(Reply::text(&["Hi."]));
    turn(&gw, "research").await;
    let handshake = ["server/discover", "initialize", "notifications/initialized"];
    let first: Vec<String> = rpcs_after(&server, 0);
    assert_eq!(first[..3], handshake, "{first:?}");
    assert_eq!(listings(&server), 1);
    let seen = server.seen().len();

    // No tool called: no request at all. A call: a session of the run's own, no discovery, no listing.
    mock.push(Reply::text(&["Hi."]));
    turn(&gw, "research").await;
    assert_eq!(server.seen().len(), seen, "{:?}", rpcs_after(&server, seen));
    mock.push(Reply::tool_call("call_grow", "grow", "{}"));
    mock.push(Reply::text(&["Grown."]));
    assert_eq!(turn(&gw, "research").await, "Grown.");
    assert_eq!(last_tool_result(&mock), "multiply added");
    assert_eq!(rpcs_after(&server, seen), ["initialize", "notifications/initialized", "tools/call"]);

    // `grow` sent notifications/tools/list_changed in its answer: the next run lists again, then keeps it.
    mock.push(Reply::text(&["Hi."]));
    turn(&gw, "research").await;
    assert!(offered(&mock).contains(&"multiply".to_string()), "{:?}", offered(&mock));
    assert_eq!(listings(&server), 2);
    let seen = server.seen().len();
    mock.push(Reply::text(&["Hi."]));
    turn(&gw, "research").await;
    assert_eq!(server.seen().len(), seen, "kept again: {:?}", rpcs_after(&server, seen));
}

#[tokio::test]
async fn each_server_keeps_its_list_for_its_own_ttl() {
    let (kept, brief) = tokio::task::spawn_blocking(|| {
        let flags = ["--list-ttl-ms", "600000"];
        (McpServer::start_with(false, None, &flags), McpServer::start_with(false, None, &flags))
    })
    .await
    .unwrap();
    let mock = MockProvider::start();
    let config =
        format!(r#"mcpServers: "{}, {}", mcpToolsTtlSeconds: "3600, {}=1""#, kept.url(), brief.url(), brief.url());
    let gw = gateway(&mock, &[agent("research", &allowed(&[&kept, &brief]), &config)]);

    mock.push(Reply::text(&["Hi."]));
    turn(&gw, "research").await;
    assert_eq!((listings(&kept), listings(&brief)), (1, 1));
    eventually("the 1-second list listed again", async || {
        mock.push(Reply::text(&["Hi."]));
        turn(&gw, "research").await;
        (listings(&brief) >= 2).then_some(())
    })
    .await;
    assert_eq!(listings(&kept), 1, "the other server's hour holds");
}

/// A component with a custom section appended: the same agent, another digest.
fn another_build(wasm: &[u8]) -> Vec<u8> {
    let (name, payload) = (b"wasmclaw-test", b"rebuilt");
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    let mut bytes = wasm.to_vec();
    bytes.push(0); // custom section
    bytes.push(section.len() as u8);
    bytes.extend(section);
    bytes
}

#[tokio::test]
async fn a_new_version_of_the_agent_starts_with_no_list() {
    let server =
        tokio::task::spawn_blocking(|| McpServer::start_with(false, None, &["--list-ttl-ms", "600000"])).await.unwrap();
    let mock = MockProvider::start();
    let gw = gateway(&mock, &[agent("research", &allowed(&[&server]), &format!(r#"mcpServers: "{}""#, server.url()))]);
    for _ in 0..2 {
        mock.push(Reply::text(&["Hi."]));
        turn(&gw, "research").await;
    }
    assert_eq!(listings(&server), 1);

    let wasm = another_build(&std::fs::read(env!("WASMCLAW_PLUGIN_ASSISTANT")).unwrap());
    let res = admin(&gw, reqwest::Method::PUT, "/research").body(wasm).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    for _ in 0..2 {
        mock.push(Reply::text(&["Hi."]));
        turn(&gw, "research").await;
        assert_eq!(offered(&mock), ["add", "divide", "whoami"]);
    }
    assert_eq!(listings(&server), 2, "the new version listed once, then kept its own list");
}
