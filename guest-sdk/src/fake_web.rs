//! The outside world of a native test run ([`crate::testing::TestHost`]):
//! scripted HTTP answers, fake MCP servers, and the credentials the gateway's
//! policy would add. Like the gateway, it answers only what was set up:
//! any other request is denied, and a credential's value is redacted from
//! what the agent reads back.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::http::{HttpError, Response};

/// What the gateway writes in place of a credential the answer repeats.
const REDACTED: &str = "[REDACTED]";

/// One request the agent sent, as the fake gateway passed it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpExchange {
    pub method: String,
    pub url: String,
    /// The headers as they left the gateway: the agent's, then any it injected.
    pub headers: Vec<(String, String)>,
    /// Names of the headers the gateway's credentials added (the agent never saw their values).
    pub injected: Vec<String>,
    pub body: Vec<u8>,
    /// The status the agent got, or the error instead.
    pub outcome: Result<u16, HttpError>,
}

impl HttpExchange {
    /// The first value of header `name` as sent (injected ones included).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A tool of a fake MCP server: arguments in, text out (`Err`: the tool reports a failure).
type ToolFn = Arc<dyn Fn(&Value) -> Result<String, String> + Send + Sync>;

/// An MCP server for unit tests: its tools answer from Rust closures, over
/// the same JSON-RPC requests `wasmclaw_sdk::mcp` sends a real one. It speaks
/// the handshake revisions (`2025-11-25`): the client falls back to them.
#[derive(Clone)]
pub struct FakeMcpServer {
    name: String,
    tools: Vec<(crate::mcp::McpTool, ToolFn)>,
}

impl fmt::Debug for FakeMcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tools: Vec<&str> = self.tools.iter().map(|(t, _)| t.name.as_str()).collect();
        f.debug_struct("FakeMcpServer").field("name", &self.name).field("tools", &tools).finish()
    }
}

impl FakeMcpServer {
    /// A server that names itself `name` in `initialize`, with no tools yet.
    pub fn new(name: &str) -> Self {
        Self { name: name.into(), tools: vec![] }
    }

    /// Offer tool `name` with a JSON schema of its arguments; `run` gets the
    /// arguments and returns the result text, or `Err` for a failure the model should see.
    pub fn tool(
        mut self,
        name: &str,
        description: &str,
        input_schema: Value,
        run: impl Fn(&Value) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        let tool = crate::mcp::McpTool { name: name.into(), description: description.into(), input_schema };
        self.tools.push((tool, Arc::new(run)));
        self
    }

    /// One JSON-RPC request over Streamable HTTP: the status, headers and body.
    fn answer(&self, session: Option<&str>, body: &[u8]) -> Response {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return response(400, vec![], b"not JSON".to_vec());
        };
        let method = request["method"].as_str().unwrap_or_default();
        if method != "initialize" && session != Some(SESSION) {
            return response(400, vec![], b"Bad Request: missing or unknown Mcp-Session-Id".to_vec());
        }
        let Some(id) = request.get("id") else {
            return response(202, vec![], vec![]); // a notification
        };
        let result = match method {
            "initialize" => Ok(json!({
                "protocolVersion": crate::mcp::version::HANDSHAKE_VERSIONS[0],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": self.name, "version": "0"},
            })),
            "tools/list" => {
                let tools: Vec<Value> = self
                    .tools
                    .iter()
                    .map(|(t, _)| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
                    .collect();
                Ok(json!({"tools": tools}))
            }
            "tools/call" => {
                let name = request.pointer("/params/name").and_then(Value::as_str).unwrap_or_default();
                let arguments = request.pointer("/params/arguments").cloned().unwrap_or_else(|| json!({}));
                match self.tools.iter().find(|(t, _)| t.name == name) {
                    Some((_, run)) => {
                        let (text, is_error) = match run(&arguments) {
                            Ok(text) => (text, false),
                            Err(text) => (text, true),
                        };
                        Ok(json!({"content": [{"type": "text", "text": text}], "isError": is_error}))
                    }
                    None => Err((-32602, format!("Unknown tool: {name}"))),
                }
            }
            other => Err((-32601, format!("Method not found: {other}"))),
        };
        let message = match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        };
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if method == "initialize" {
            headers.push(("mcp-session-id".into(), SESSION.into()));
        }
        response(200, headers, message.to_string().into_bytes())
    }
}

/// The session id every fake server assigns.
const SESSION: &str = "fake-mcp-session";

fn response(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Response {
    Response { status, headers, body }
}

/// A header the gateway adds to every request whose URL starts with `prefix`.
#[derive(Debug, Clone)]
struct Credential {
    prefix: String,
    header: String,
    value: String,
}

/// Everything outside the agent that a test set up.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeWeb {
    /// `(METHOD, url)` → answers in order; the last one repeats.
    routes: BTreeMap<(String, String), VecDeque<Result<Response, HttpError>>>,
    servers: BTreeMap<String, FakeMcpServer>,
    credentials: Vec<Credential>,
}

impl FakeWeb {
    /// Answer `method url` with `answer` (after the answers scripted before it).
    pub fn route(&mut self, method: &str, url: &str, answer: Result<Response, HttpError>) {
        self.routes.entry((method.to_ascii_uppercase(), url.to_string())).or_default().push_back(answer);
    }

    /// Serve `server` at `url` (every POST to exactly that URL).
    pub fn server(&mut self, url: &str, server: FakeMcpServer) {
        self.servers.insert(url.to_string(), server);
    }

    /// Add `header: value` to requests whose URL starts with `prefix`, as `http.credentials` does.
    pub fn credential(&mut self, prefix: &str, header: &str, value: &str) {
        self.credentials.push(Credential { prefix: prefix.into(), header: header.into(), value: value.into() });
    }

    /// Send a request: its answer, and the exchange to record.
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> (Result<Response, HttpError>, HttpExchange) {
        let method = method.to_ascii_uppercase();
        let mut injected = Vec::new();
        let mut secrets = Vec::new();
        for credential in self.credentials.iter().filter(|c| under(&c.prefix, url)) {
            headers.push((credential.header.to_ascii_lowercase(), credential.value.clone()));
            injected.push(credential.header.to_ascii_lowercase());
            secrets.push(credential.value.as_str());
        }
        let answer = match (self.routes.get_mut(&(method.clone(), url.to_string())), self.servers.get(url)) {
            (Some(answers), _) if answers.len() > 1 => answers.pop_front().expect("an answer"),
            (Some(answers), _) => answers.front().cloned().expect("an answer"),
            (None, Some(server)) if method == "POST" => {
                let session = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("mcp-session-id"));
                Ok(server.answer(session.map(|(_, v)| v.as_str()), &body))
            }
            _ => Err(HttpError::Denied(format!(
                "{method} {url}: the test set up no answer for it (TestHost::http_response, or \
                 TestHost::mcp_server for an MCP server)"
            ))),
        };
        let answer = answer.map(|mut r| {
            redact(&mut r, &secrets);
            r
        });
        let outcome = answer.as_ref().map(|r| r.status).map_err(Clone::clone);
        (answer, HttpExchange { method, url: url.into(), headers, injected, body, outcome })
    }
}

/// Whether `url` is `prefix` or below it (the next character starts a path, query or fragment).
fn under(prefix: &str, url: &str) -> bool {
    url.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || prefix.ends_with('/') || rest.starts_with(['/', '?', '#']))
}

/// Replace every occurrence of a credential in the answer, as the gateway does.
fn redact(response: &mut Response, secrets: &[&str]) {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        for (_, value) in &mut response.headers {
            *value = value.replace(secret, REDACTED);
        }
        let body = String::from_utf8_lossy(&response.body);
        if body.contains(secret) {
            response.body = body.replace(secret, REDACTED).into_bytes();
        }
    }
}
