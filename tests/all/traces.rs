//! Traces (issue 25): a run of the shipped assistant exports OpenTelemetry
//! spans over OTLP/HTTP to a real receiver, which decodes each protobuf export
//! with the `opentelemetry-proto` package (`tests/otlp/receiver.py`, in
//! `target/otlp-venv`, made on first use). The MCP server is the real Python
//! one of `tests/all/mcp.rs`; the model is the mock provider.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::mcp::{McpServer, agent};
use crate::support::*;

/// The caller's trace, continued when the gateway trusts it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const OTLP_KEY: &str = "Bearer otlp-secret-93f1c";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

fn python_with_otlp() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let bin = python_venv("otlp-venv", "opentelemetry-proto>=1.27,<2", |bin| {
                imports(bin, "opentelemetry.proto.collector.trace.v1.trace_service_pb2")
            });
            bin.join("python")
        })
        .clone()
}

/// `tests/otlp/receiver.py` on a free loopback port, until dropped.
struct Receiver {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Self {
        let python = python_with_otlp();
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/otlp/receiver.py");
        // Port 0: it picks a free one and prints it once it listens (one picked
        // here and let go could be taken by another test's process meanwhile).
        let mut child = Command::new(python)
            .arg(script)
            .arg("0")
            .arg(dir.path().join("spans.jsonl"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Ok(port) = line.trim().parse() else {
            panic!("the OTLP receiver exited before listening: {}", child.wait().unwrap());
        };
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span exported so far.
    fn spans(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("spans.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Wait until the spans of one whole run are in: its `invoke_agent` and
    /// the server span it hangs under (ended last, with the response body).
    async fn run_spans(&self) -> Vec<Value> {
        eventually("the spans of the run", async || {
            let spans = self.spans();
            let invoke = spans.iter().find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("invoke_agent")))?;
            let parent = invoke["parentSpanId"].as_str()?;
            spans.iter().any(|s| s["spanId"] == parent && s["kind"] == "SPAN_KIND_SERVER").then_some(spans)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named<'a>(spans: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix))).collect()
}

fn one<'a>(spans: &'a [Value], prefix: &str) -> &'a Value {
    let found = named(spans, prefix);
    assert_eq!(found.len(), 1, "one {prefix:?} span: {spans:#?}");
    found[0]
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

/// A gateway with `telemetry` (a JSON5 object, or nothing) and one assistant `research`.
fn gateway(mock: &MockProvider, telemetry: &str, agent: &str, env: &[(&str, &str)]) -> TestGateway {
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          {telemetry}
          providers: {{ mock: {{ baseUrl: "{}" }} }},
          agents: {{ entries: {{ {agent} }} }} }}"#,
        mock.url(),
    );
    let mut all = vec![("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    all.extend_from_slice(env);
    // One start at a time: each compiles the assistant in its own state folder,
    // and four at once on a busy 2-core machine can outlast the start deadline.
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    TestGateway::start_with(&config, &all).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// The assistant with the MCP server's tools; `propagate` sets `http.propagateTrace`.
fn research(server: &McpServer, propagate: bool) -> String {
    let http = format!(r#"http: {{ allow: ["{}"], propagateTrace: {propagate} }},"#, server.url());
    agent("research", &http, &format!(r#"mcpServers: "{}""#, server.url()))
}

/// The model name the mock's replies carry in [`add_round`].
const SNAPSHOT: &str = "mock-model-2026-01-01";

/// One turn in which the model calls the server's `add`, then answers.
async fn add_round(gw: &TestGateway, mock: &MockProvider, traceparent: Option<&str>) -> Value {
    // The provider answers with a dated snapshot of the model asked for, as OpenAI does.
    mock.push(Reply::tool_call("call_add", "add", r#"{"a": 2, "b": 3}"#).with_model(SNAPSHOT));
    mock.push(Reply::text(&["Two and three ", "make five."]).with_model(SNAPSHOT));
    let mut request = gw.chat(ask("agent:research", "please add 2 and 3 (secret sauce)"));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let res = request.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(content(&body), "Two and three make five.", "{body}");
    body
}

#[tokio::test]
async fn a_run_is_one_trace_continuing_the_callers_through_model_tool_and_mcp_calls() {
    let server = tokio::task::spawn_blocking(|| McpServer::start(false)).await.unwrap();
    let receiver = tokio::task::spawn_blocking(Receiver::start).await.unwrap();
    let mock = MockProvider::start();
    let telemetry = format!(
        r#"telemetry: {{ otlp: {{ endpoint: "{}", headers: {{ authorization: {{ valueEnv: "OTLP_TEST_KEY" }} }} }} }},"#,
        receiver.url()
    );
    let gw = gateway(&mock, &telemetry, &research(&server, true), &[("OTLP_TEST_KEY", OTLP_KEY)]);
    add_round(&gw, &mock, Some(&traceparent())).await;
    let spans = receiver.run_spans().await;

    // One trace, the caller's: every span of the run is in it.
    for span in &spans {
        assert_eq!(span["traceId"], TRACE_ID, "a span outside the caller's trace: {span:#}");
        assert_eq!(span["path"], "/v1/traces");
        assert_eq!(span["contentType"], "application/x-protobuf");
        assert_eq!(span["resource"]["service.name"], "wasmclaw");
        assert_eq!(span["authorization"], OTLP_KEY, "the configured header reaches the collector");
    }
    let log = gw.log();
    assert!(log.contains(&format!("collector={}", receiver.url())) && log.contains("traces: exporting"), "{log}");
    assert!(!log.contains(OTLP_KEY), "a header value is a secret: {log}");
    let server_span = one(&spans, "POST /v1/chat/completions");
    assert_eq!(server_span["kind"], "SPAN_KIND_SERVER");
    assert_eq!(server_span["parentSpanId"], PARENT_ID, "the server span continues the caller's");
    assert_eq!(attr(server_span, "http.response.status_code"), 200);

    let invoke = one(&spans, "invoke_agent research");
    assert_eq!(invoke["parentSpanId"], server_span["spanId"]);
    assert_eq!(attr(invoke, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(attr(invoke, "gen_ai.agent.name"), "research");
    assert_eq!(attr(invoke, "gen_ai.agent.id"), "research");
    let digest = gw.get_json("/admin/agents/research").await["digest"].clone();
    assert!(digest.as_str().is_some_and(|d| d.len() == 64), "{digest}");
    assert_eq!(attr(invoke, "gen_ai.agent.version"), &digest, "the version is the component's digest");
    assert!(attr(invoke, "gen_ai.conversation.id").as_str().is_some_and(|s| !s.is_empty()), "{invoke:#}");
    assert_eq!(invoke["status"], "STATUS_CODE_UNSET");

    // Two model calls (the tool call, then the answer), each a child of the run.
    let chats = named(&spans, "chat mock-model");
    assert_eq!(chats.len(), 2, "{spans:#?}");
    for chat in &chats {
        assert_eq!(chat["parentSpanId"], invoke["spanId"]);
        assert_eq!(chat["kind"], "SPAN_KIND_CLIENT");
        assert_eq!(attr(chat, "gen_ai.operation.name"), "chat");
        assert_eq!(attr(chat, "gen_ai.provider.name"), "mock");
        assert_eq!(attr(chat, "gen_ai.request.model"), "mock-model");
        assert_eq!(attr(chat, "gen_ai.response.model"), SNAPSHOT, "the model the reply names: {chat:#}");
        assert!(attr(chat, "gen_ai.usage.input_tokens").as_i64().is_some_and(|n| n > 0), "{chat:#}");
        assert!(attr(chat, "gen_ai.usage.output_tokens").as_i64().is_some_and(|n| n > 0), "{chat:#}");
    }
    let reasons: Vec<&Value> = chats.iter().map(|c| attr(c, "gen_ai.response.finish_reasons")).collect();
    assert!(reasons.contains(&&json!(["tool_call"])) && reasons.contains(&&json!(["stop"])), "{reasons:?}");

    // The provider got each call's own traceparent.
    let sent: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.headers.get("traceparent").expect("a traceparent to the provider").to_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> =
        chats.iter().map(|c| format!("00-{TRACE_ID}-{}-01", c["spanId"].as_str().unwrap())).collect();
    for traceparent in &expected {
        assert!(sent.contains(traceparent), "{traceparent} not among {sent:?}");
    }

    let tool = one(&spans, "execute_tool add");
    assert_eq!(tool["parentSpanId"], invoke["spanId"]);
    assert_eq!(attr(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(attr(tool, "gen_ai.tool.name"), "add");
    assert_eq!(attr(tool, "gen_ai.tool.call.id"), "call_add");

    // Every request to the MCP server is an HTTP client span naming its method.
    let clients: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SPAN_KIND_CLIENT" && s.get("attributes").is_some_and(|a| a.get("url.full").is_some()))
        .collect();
    assert!(clients.len() >= 3, "initialize, tools/list, tools/call at least: {spans:#?}");
    for client in &clients {
        assert_eq!(client["parentSpanId"], invoke["spanId"]);
        assert_eq!(attr(client, "url.full"), &json!(server.url()), "no query, no credentials");
        assert_eq!(attr(client, "http.request.method"), "POST");
        assert_eq!(attr(client, "server.address"), "127.0.0.1");
        assert!(attr(client, "http.response.status_code").as_i64().is_some_and(|s| s < 300), "{client:#}");
    }
    let methods: Vec<&str> = clients.iter().filter_map(|c| attr(c, "mcp.method.name").as_str()).collect();
    assert!(methods.contains(&"initialize") || methods.contains(&"tools/list"), "{methods:?}");
    let call = clients.iter().find(|c| attr(c, "mcp.method.name") == "tools/call").expect("a tools/call span");
    assert_eq!(call["name"], "tools/call add");
    assert_eq!(attr(call, "gen_ai.tool.name"), "add");

    // http.propagateTrace: the MCP server got the trace too, as the client span's child.
    let seen = server.seen();
    let posts: Vec<&Value> = seen.iter().filter(|l| l["method"] == "POST").collect();
    assert!(!posts.is_empty());
    for line in &posts {
        let traceparent = line["traceparent"].as_str().unwrap_or_else(|| panic!("no traceparent: {line}"));
        assert!(traceparent.starts_with(&format!("00-{TRACE_ID}-")), "{traceparent}");
    }

    // No content by default: not the prompt, not the reply, not the tool's arguments or result.
    for span in &spans {
        let text = span.to_string();
        for content in ["secret sauce", "make five", "the sum is", r#"\"a\": 2"#] {
            assert!(!text.contains(content), "{content:?} in a span without captureContent: {span:#}");
        }
        for key in
            ["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"]
        {
            assert!(span["attributes"].get(key).is_none(), "{key} without captureContent: {span:#}");
        }
    }

    // Steady state: a second run adds its own trace and nothing more arrives after it.
    let before = receiver.spans().len();
    mock.push(Reply::text(&["Fine."]));
    let res = gw.chat(ask("agent:research", "again")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let settled = eventually("the second run's spans", async || {
        let spans = receiver.spans();
        let runs = named(&spans, "invoke_agent");
        // Its own trace (no traceparent this time), ended with its server span.
        let second = runs.iter().find(|s| s["traceId"] != TRACE_ID)?;
        let server = spans.iter().find(|s| s["spanId"] == second["parentSpanId"])?;
        assert_eq!(server["traceId"], second["traceId"]);
        (runs.len() == 2).then_some(spans.len())
    })
    .await;
    assert!(settled > before);
    let deadline = Instant::now() + Duration::from_secs(1);
    holds_until("no span arrives after the runs ended", deadline, async || receiver.spans().len() == settled).await;
}

#[tokio::test]
async fn content_is_exported_only_with_capture_content_and_mcp_gets_no_trace_unless_allowed() {
    let server = tokio::task::spawn_blocking(|| McpServer::start(false)).await.unwrap();
    let receiver = tokio::task::spawn_blocking(Receiver::start).await.unwrap();
    let mock = MockProvider::start();
    let telemetry = format!(r#"telemetry: {{ otlp: {{ endpoint: "{}" }}, captureContent: true }},"#, receiver.url());
    let gw = gateway(&mock, &telemetry, &research(&server, false), &[]);
    add_round(&gw, &mock, None).await;
    let spans = receiver.run_spans().await;

    let chats = named(&spans, "chat mock-model");
    assert_eq!(chats.len(), 2);
    let inputs: Vec<&str> = chats.iter().filter_map(|c| attr(c, "gen_ai.input.messages").as_str()).collect();
    assert!(inputs.iter().all(|i| i.contains("please add 2 and 3 (secret sauce)")), "{inputs:?}");
    let outputs: Vec<&str> = chats.iter().filter_map(|c| attr(c, "gen_ai.output.messages").as_str()).collect();
    assert!(outputs.iter().any(|o| o.contains("Two and three make five.")), "{outputs:?}");
    let tool = one(&spans, "execute_tool add");
    assert_eq!(attr(tool, "gen_ai.tool.call.arguments"), r#"{"a": 2, "b": 3}"#);
    assert!(attr(tool, "gen_ai.tool.call.result").as_str().is_some_and(|r| r.contains("the sum is 5")), "{tool:#}");

    // The provider always gets the trace; this agent's MCP server does not (no http.propagateTrace).
    assert!(mock.requests().iter().all(|r| r.headers.contains_key("traceparent")));
    let seen = server.seen();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|l| l["traceparent"].is_null()), "{seen:?}");
}

#[tokio::test]
async fn an_untrusted_bind_starts_its_own_trace_and_the_environment_configures_export() {
    let receiver = tokio::task::spawn_blocking(Receiver::start).await.unwrap();
    let mock = MockProvider::start();
    let url = receiver.url();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()), ("OTEL_SERVICE_NAME", "gw-under-test")];
    let agent = agent("research", "", "");
    let gw = gateway(&mock, "telemetry: { trustIncomingTraceparent: false },", &agent, &env);
    mock.push(Reply::text(&["Hello."]));
    let res = gw.chat(ask("agent:research", "hi")).header("traceparent", traceparent()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let spans = receiver.run_spans().await;
    let server_span = one(&spans, "POST /v1/chat/completions");
    assert_ne!(server_span["traceId"], TRACE_ID, "an untrusted traceparent is not continued");
    assert_eq!(server_span["parentSpanId"], "", "the server span is a root");
    assert_eq!(server_span["resource"]["service.name"], "gw-under-test");
    let trace = server_span["traceId"].as_str().unwrap();
    let sent = mock.requests()[0].headers.get("traceparent").unwrap().to_str().unwrap().to_string();
    assert!(sent.starts_with(&format!("00-{trace}-")), "the provider gets the gateway's own trace: {sent}");
}

#[tokio::test]
async fn nothing_is_traced_when_telemetry_is_off() {
    let server = tokio::task::spawn_blocking(|| McpServer::start(false)).await.unwrap();
    let mock = MockProvider::start();
    // The exporter's other settings alone do not turn tracing on.
    let env = [("OTEL_SERVICE_NAME", "gw-off"), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let gw = gateway(&mock, "", &research(&server, true), &env);
    add_round(&gw, &mock, Some(&traceparent())).await;
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert!(!request.headers.contains_key("traceparent"), "tracing is off: {:?}", request.headers);
    }
    let seen = server.seen();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|l| l["traceparent"].is_null()), "propagateTrace has nothing to send: {seen:?}");
    assert!(!gw.log().contains("traces: exporting"), "{}", gw.log());
}

#[tokio::test]
async fn a_websocket_run_hangs_under_its_frames_server_span() {
    let receiver = tokio::task::spawn_blocking(Receiver::start).await.unwrap();
    let mock = MockProvider::start();
    let telemetry = format!(r#"telemetry: {{ otlp: {{ endpoint: "{}" }} }},"#, receiver.url());
    let gw = gateway(&mock, &telemetry, &agent("research", "", ""), &[]);
    mock.push(Reply::text(&["Hello over WebSocket."]));
    let mut c = Client::connect(&gw).await;
    let key = "agent:research:ws-trace";
    let started = c.call("chat.send", json!({"sessionKey": key, "message": "hi", "idempotencyKey": "w1"})).await;
    assert_eq!(started["payload"]["status"], "started", "{started}");
    let spans = receiver.run_spans().await;
    let invoke = one(&spans, "invoke_agent research");
    let server = spans.iter().find(|s| s["spanId"] == invoke["parentSpanId"]).unwrap();
    assert_eq!(server["name"], "ws chat.send");
    assert_eq!(server["kind"], "SPAN_KIND_SERVER");
    assert_eq!(attr(server, "rpc.method"), "chat.send");
    assert_eq!(server["traceId"], invoke["traceId"]);
    assert_eq!(attr(invoke, "gen_ai.conversation.id"), key);
    let chat = one(&spans, "chat mock-model");
    assert_eq!(chat["parentSpanId"], invoke["spanId"]);
}

#[tokio::test]
async fn a_sample_ratio_of_zero_exports_nothing_and_still_tells_the_provider() {
    let receiver = tokio::task::spawn_blocking(Receiver::start).await.unwrap();
    let mock = MockProvider::start();
    let telemetry = format!(r#"telemetry: {{ otlp: {{ endpoint: "{}" }}, sampleRatio: 0 }},"#, receiver.url());
    let gw = gateway(&mock, &telemetry, &agent("research", "", ""), &[]);
    mock.push(Reply::text(&["Hello."]));
    let res = gw.chat(ask("agent:research", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The provider still gets the trace, marked not sampled, so it need not record it either.
    let sent = mock.requests()[0].headers.get("traceparent").unwrap().to_str().unwrap().to_string();
    assert!(sent.starts_with("00-") && sent.ends_with("-00"), "{sent}");
    // OTEL_BSP_SCHEDULE_DELAY is 100 ms here: a second is ten export rounds.
    let until = Instant::now() + Duration::from_secs(1);
    holds_until("nothing is exported", until, async || receiver.spans().is_empty()).await;
}
