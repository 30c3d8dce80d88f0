//! Outbound HTTP and MCP servers faked by `TestHost`, driven the way an agent author would.

use serde_json::json;
use wasmclaw_sdk::http::{self, HttpError};
use wasmclaw_sdk::mcp::McpClient;
use wasmclaw_sdk::testing::{FakeMcpServer, TestHost};
use wasmclaw_sdk::{Agent, AgentError, AgentInfo, Event, Message, Output, RunRequest, ToolCallDelta, llm, tools};

const API: &str = "https://api.example.com";

/// Asks the weather API about the city it is sent; says what went wrong otherwise.
#[derive(Default)]
struct Weather;

impl Agent for Weather {
    fn info() -> AgentInfo {
        AgentInfo::new("weather", "0.1.0", "Looks the weather up")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let city = req.last_user_text().unwrap_or_default();
        let answer = http::request("GET", &format!("{API}/weather?city={city}")).header("accept", "text/plain").send();
        match answer.and_then(http::Response::error_for_status) {
            Ok(response) => out.text(response.text())?,
            Err(e) => out.text(format!("no weather: {e}"))?,
        }
        Ok(())
    }
}

#[test]
fn scripted_answers_go_out_in_order_and_the_credential_is_added_but_never_read_back() {
    let paris = format!("{API}/weather?city=Paris");
    let mut host = TestHost::new()
        .http_credential(API, "Authorization", "Bearer s3cret")
        .http_response("GET", &paris, 503, "busy")
        .http_response("GET", &paris, 200, "sunny (your key: Bearer s3cret)");
    let run = host.run::<Weather>("Paris").ok();
    assert_eq!(run.text(), "no weather: request failed: status 503: busy");
    let sent = &run.http_requests[0];
    assert_eq!((sent.method.as_str(), sent.url.as_str(), sent.outcome.clone()), ("GET", paris.as_str(), Ok(503)));
    assert_eq!(sent.header("accept"), Some("text/plain"));
    assert_eq!(sent.header("authorization"), Some("Bearer s3cret"), "the gateway added it");
    assert_eq!(sent.injected, ["authorization"]);

    // The last answer repeats; a careless API echoing the key shows it redacted.
    for _ in 0..2 {
        let run = host.run::<Weather>("Paris").ok();
        assert_eq!(run.text(), "sunny (your key: [REDACTED])");
    }

    // Nothing set up: denied, as a URL outside `http.allow` is; no credential for another origin.
    let run = TestHost::new().http_credential(API, "Authorization", "x").run::<Weather>("Rome").ok();
    let text = run.text();
    assert!(text.starts_with("no weather: request denied by the gateway: GET "), "{text}");
    assert!(text.contains("TestHost::http_response"), "{text}");
    assert!(matches!(run.http_requests[0].outcome, Err(HttpError::Denied(_))));
    let other = TestHost::new()
        .http_credential("https://api.example.com/other", "Authorization", "x")
        .http_error("GET", &format!("{API}/weather?city=Oslo"), HttpError::Timeout)
        .run::<Weather>("Oslo")
        .ok();
    assert_eq!(other.text(), "no weather: request timed out");
    assert!(other.http_requests[0].injected.is_empty(), "the credential's path does not match");
}

/// Offers an MCP server's tools to the model and runs the model's calls of them.
#[derive(Default)]
struct Researcher;

const TOOLS: &str = "http://127.0.0.1:9100/mcp";

impl Agent for Researcher {
    fn info() -> AgentInfo {
        AgentInfo::new("researcher", "0.1.0", "Uses an MCP server's tools")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let mut server = McpClient::connect(TOOLS)?;
        let specs = server.list_tools()?.iter().map(|t| t.to_tool_spec()).collect();
        let mut request = llm::CompletionRequest { tools: specs, ..llm::CompletionRequest::new(req.messages) };
        loop {
            let answer = llm::complete_text(&request)?;
            if answer.tool_calls.is_empty() {
                out.text(&answer.text)?;
                return Ok(());
            }
            request.messages.push(Message { tool_calls: answer.tool_calls.clone(), ..Message::assistant("") });
            for call in &answer.tool_calls {
                let result = server.call_tool(&call.name, &call.arguments);
                request.messages.push(tools::run(call, || match result {
                    Ok(r) if r.is_error => Err(r.text),
                    Ok(r) => Ok(r.text),
                    Err(e) => Err(e.to_string()),
                }));
            }
        }
    }
}

fn call(id: &str, name: &str, arguments: &str) -> Event {
    Event::ToolCall(ToolCallDelta {
        index: 0,
        id: Some(id.into()),
        name: Some(name.into()),
        arguments: arguments.into(),
    })
}

#[test]
fn a_fake_mcp_server_lists_its_tools_and_runs_the_calls_the_agent_makes() {
    let server = FakeMcpServer::new("calc")
        .tool("add", "Add two integers", json!({"type": "object", "required": ["a", "b"]}), |args| {
            Ok(format!("the sum is {}", args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)))
        })
        .tool("divide", "Divide a by b", json!({"type": "object"}), |_| Err("cannot divide by zero".into()));
    let mut host = TestHost::new()
        .mcp_server(TOOLS, server)
        .http_credential("http://127.0.0.1:9100", "Authorization", "Bearer tools-key")
        .llm_events([call("c1", "add", r#"{"a": 2, "b": 3}"#)])
        .llm_events([call("c2", "divide", r#"{"a": 1, "b": 0}"#)])
        .llm_events([call("c3", "nope", "{}")])
        .llm_reply("Five, and no quotient.");
    let run = host.run::<Researcher>("add 2 and 3, then divide 1 by 0").ok();
    assert_eq!(run.text(), "Five, and no quotient.");

    let offered: Vec<&str> = run.llm_requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(offered, ["add", "divide"]);
    assert_eq!(run.llm_requests[0].tools[0].description, "Add two integers");
    assert_eq!(
        run.mcp_calls(),
        [
            (TOOLS.to_string(), "add".to_string(), json!({"a": 2, "b": 3})),
            (TOOLS.to_string(), "divide".to_string(), json!({"a": 1, "b": 0})),
            (TOOLS.to_string(), "nope".to_string(), json!({})),
        ]
    );
    let results: Vec<String> =
        run.llm_requests[3].messages.iter().filter(|m| m.tool_call_id.is_some()).map(Message::text).collect();
    assert_eq!(results[0], "the sum is 5");
    assert_eq!(results[1], "cannot divide by zero");
    assert!(results[2].contains("Unknown tool: nope"), "{results:?}");
    // The fake speaks the handshake revisions: the client's stateless try
    // (`server/discover`) is refused, then every request after `initialize`
    // carries the session; each carries the credential.
    assert_eq!(run.http_requests[0].header("mcp-protocol-version"), Some("2026-07-28"));
    assert_eq!(run.http_requests[2].header("mcp-protocol-version"), Some("2025-11-25"));
    assert!(run.http_requests.iter().skip(2).all(|r| r.header("mcp-session-id") == Some("fake-mcp-session")));
    assert!(run.http_requests.iter().all(|r| r.injected == ["authorization"]));
    assert_eq!(run.server_tool_calls().len(), 3);
}

/// Like `Researcher`, but keeps the server's tool list for later runs (`McpClient::cached`).
#[derive(Default)]
struct CachingResearcher;

impl Agent for CachingResearcher {
    fn info() -> AgentInfo {
        AgentInfo::new("caching-researcher", "0.1.0", "Reuses an MCP server's tool list across runs")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let (mut server, tools) = McpClient::cached(TOOLS, std::time::Duration::from_secs(300))?;
        let specs = tools.iter().map(|t| t.to_tool_spec()).collect();
        let request = llm::CompletionRequest { tools: specs, ..llm::CompletionRequest::new(req.messages) };
        let answer = llm::complete_text(&request)?;
        for call in &answer.tool_calls {
            match server.call_tool(&call.name, &call.arguments) {
                Ok(result) => out.text(&result.text)?,
                Err(e) => out.text(e.to_string())?,
            }
        }
        out.text(&answer.text)?;
        Ok(())
    }
}

fn rpcs(run: &wasmclaw_sdk::testing::TestRun) -> Vec<String> {
    let rpc = |r: &wasmclaw_sdk::testing::HttpExchange| r.json().and_then(|j| j["method"].as_str().map(String::from));
    run.http_requests.iter().filter_map(rpc).collect()
}

#[test]
fn a_cached_tool_list_is_reused_by_later_runs_until_a_call_says_the_tool_is_unknown() {
    let server = FakeMcpServer::new("calc").tool("add", "Add", json!({"type": "object"}), |_| Ok("3".into()));
    let mut host = TestHost::new()
        .mcp_server(TOOLS, server)
        .llm_reply("listed.")
        .llm_reply("quiet.")
        .llm_events([call("c1", "add", "{}")])
        .llm_events([call("c2", "gone", "{}")]);

    let first = host.run::<CachingResearcher>("hi").ok();
    assert_eq!(rpcs(&first), ["server/discover", "initialize", "notifications/initialized", "tools/list"]);
    assert!(host.memo("wasmclaw-sdk/mcp/tools http://127.0.0.1:9100/mcp").is_some(), "the list is kept");

    // A run that calls no tool asks the server nothing; one that calls opens its own session.
    let quiet = host.run::<CachingResearcher>("hi").ok();
    assert!(quiet.http_requests.is_empty(), "{:?}", rpcs(&quiet));
    assert_eq!(quiet.llm_requests[0].tools[0].name, "add", "the kept list is offered");
    let calling = host.run::<CachingResearcher>("add").ok();
    assert_eq!(rpcs(&calling), ["initialize", "notifications/initialized", "tools/call"]);
    assert_eq!(calling.text(), "3");

    // A call the server does not know: the list is forgotten, the next run lists again.
    let unknown = host.run::<CachingResearcher>("gone?").ok();
    assert!(unknown.text().contains("Unknown tool"), "{}", unknown.text());
    assert!(host.memo("wasmclaw-sdk/mcp/tools http://127.0.0.1:9100/mcp").is_none());
    host = host.llm_reply("again");
    let relisted = host.run::<CachingResearcher>("hi").ok();
    assert_eq!(rpcs(&relisted).last().map(String::as_str), Some("tools/list"));
    host.clear_memo();
    let fresh = host.llm_reply("fresh").run::<CachingResearcher>("hi").ok();
    assert!(rpcs(&fresh).contains(&"tools/list".to_string()), "a new version lists again");
}
