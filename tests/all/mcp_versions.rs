//! MCP protocol revisions (issue 27, item 7): the shipped assistant speaks the
//! stateless `2026-07-28` to a server that speaks it, and falls back to the
//! `initialize` handshake, accepting the revision the server answers, for
//! servers pinned to `2025-11-25`, `2025-06-18` or `2025-03-26`. The servers
//! are `tests/mcp/server.py` with `--versions`; they log the
//! `MCP-Protocol-Version` header and JSON-RPC method of every request.

use serde_json::Value;
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::mcp::{McpServer, agent, gateway, tool_names};
use crate::support::*;

const PINS: [&str; 4] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

/// The (JSON-RPC method, protocol header, has a session) of each request a server saw.
fn exchanges(server: &McpServer) -> Vec<(String, String, bool)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    server.seen().iter().map(|s| (text(&s["rpc"]), text(&s["version"]), s["session"].is_string())).collect()
}

#[tokio::test]
async fn each_protocol_revision_is_negotiated_with_a_server_pinned_to_it() {
    let servers =
        tokio::task::spawn_blocking(|| PINS.map(|pin| McpServer::start_pinned(pin == "2025-06-18", Some(pin))))
            .await
            .unwrap();
    let mock = MockProvider::start();
    let agents: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let http = format!(r#"http: {{ allow: ["{}"] }},"#, s.url());
            agent(&format!("pinned{i}"), &http, &format!(r#"mcpServers: "{}""#, s.url()))
        })
        .collect();
    let gw = gateway(&mock, &agents);

    for (i, (pin, server)) in PINS.iter().zip(&servers).enumerate() {
        mock.push(Reply::tool_call("call_add", "add", r#"{"a": 20, "b": 7}"#));
        mock.push(Reply::text(&["Done."]));
        let res = gw.chat(ask(&format!("agent:pinned{i}"), "add 20 and 7")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{pin}");
        assert_eq!(content(&res.json().await.unwrap()), "Done.", "{pin}");
        let sent: Vec<Value> = mock.requests().into_iter().map(|r| r.body).collect();
        let (listed, answered) = (&sent[sent.len() - 2], &sent[sent.len() - 1]);
        assert_eq!(tool_names(listed), ["add", "divide", "whoami"], "{pin}: every page listed: {listed}");
        let result = answered["messages"].as_array().unwrap().last().unwrap();
        assert_eq!(result["content"], "the sum is 27", "{pin}: the call went through: {answered}");

        let seen = exchanges(server);
        let rpcs: Vec<&str> = seen.iter().map(|(rpc, _, _)| rpc.as_str()).collect();
        if *pin == "2026-07-28" {
            assert_eq!(rpcs, ["server/discover", "tools/list", "tools/list", "tools/list", "tools/call"], "{seen:?}");
            assert!(seen.iter().all(|(_, v, session)| v == pin && !session), "stateless, in {pin}: {seen:?}");
        } else {
            let handshake = ["server/discover", "initialize", "notifications/initialized"];
            assert_eq!(rpcs[..3], handshake, "{pin}: a modern try, then the handshake: {seen:?}");
            assert_eq!(rpcs[3..], ["tools/list", "tools/list", "tools/list", "tools/call"], "{pin}: {seen:?}");
            assert_eq!(seen[0].1, "2026-07-28", "the newest revision is tried first: {seen:?}");
            assert_eq!(seen[1].1, "2025-11-25", "the newest handshake revision is offered: {seen:?}");
            assert!(
                seen[2..].iter().all(|(_, v, session)| v == pin && *session),
                "then {pin}, the revision the server answered, in its session: {seen:?}"
            );
        }
    }
}
