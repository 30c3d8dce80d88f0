//! A client for MCP tool servers over Streamable HTTP, the transport of the
//! Model Context Protocol for remote servers. Requests go through
//! [`crate::http`], so the gateway's policy applies: the server's origin must
//! be in the agent's `http.allow`, and credentials configured for it are
//! added by the gateway (the agent never sees them).
//!
//! ```no_run
//! # use wasmclaw_sdk::mcp::{McpClient, McpError};
//! # fn demo() -> Result<(), McpError> {
//! let mut server = McpClient::connect("http://127.0.0.1:9100/mcp")?;
//! for tool in server.list_tools()? {
//!     println!("{}: {}", tool.name, tool.description);
//! }
//! let result = server.call_tool("add", r#"{"a": 1, "b": 2}"#)?;
//! println!("{} (error: {})", result.text, result.is_error);
//! # Ok(())
//! # }
//! ```
//!
//! Covered: `initialize` then `notifications/initialized`, `tools/list` (all
//! pages), `tools/call`; answers as `application/json` or as an SSE stream
//! (`text/event-stream`); the `Mcp-Session-Id` the server assigns (and a new
//! session when the server answers 404 to it); the `MCP-Protocol-Version` header. Not covered: server-to-client requests
//! (sampling, elicitation), resumption, resources and prompts.

use serde_json::{Value, json};

use crate::ToolSpec;
use crate::http::{self, HttpError};

/// The protocol revision this client asks for; the server may answer with another it supports.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// Why an MCP request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpError {
    /// The request got no answer (denied by the gateway, unreachable, timeout, …).
    Http(HttpError),
    /// The server answered something that is not a usable MCP answer.
    Protocol(String),
    /// The server answered with a JSON-RPC error.
    Rpc { code: i64, message: String },
}

impl std::fmt::Display for McpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => write!(f, "MCP server unreachable: {e}"),
            Self::Protocol(why) => write!(f, "MCP server answered wrongly: {why}"),
            Self::Rpc { code, message } => write!(f, "MCP error {code}: {message}"),
        }
    }
}

impl std::error::Error for McpError {}

impl From<HttpError> for McpError {
    fn from(e: HttpError) -> Self {
        Self::Http(e)
    }
}

impl From<McpError> for crate::AgentError {
    fn from(e: McpError) -> Self {
        crate::AgentError::Failed(e.to_string())
    }
}

/// A tool a server offers.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
}

impl McpTool {
    /// The tool in the shape the model is offered tools.
    pub fn to_tool_spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.input_schema.to_string(),
        }
    }
}

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The text content, parts joined by newlines (non-text parts described).
    pub text: String,
    /// The tool itself reported a failure; `text` says what.
    pub is_error: bool,
}

/// A session with one MCP server.
#[derive(Debug, Clone)]
pub struct McpClient {
    url: String,
    session_id: Option<String>,
    protocol_version: String,
    next_id: u64,
    server_name: String,
}

impl McpClient {
    /// Open a session: `initialize`, then `notifications/initialized`.
    pub fn connect(url: &str) -> Result<Self, McpError> {
        let mut client = Self {
            url: url.to_string(),
            session_id: None,
            protocol_version: PROTOCOL_VERSION.to_string(),
            next_id: 1,
            server_name: String::new(),
        };
        client.initialize()?;
        Ok(client)
    }

    /// The handshake that opens a session.
    fn initialize(&mut self) -> Result<(), McpError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "wasmclaw", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = self.request("initialize", params)?;
        if let Some(version) = result.get("protocolVersion").and_then(Value::as_str) {
            self.protocol_version = version.to_string();
        }
        self.server_name = result.pointer("/serverInfo/name").and_then(Value::as_str).unwrap_or_default().to_string();
        self.notify("notifications/initialized")
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name the server gave in `initialize` (empty if none).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Every tool the server offers, following `nextCursor` across pages.
    pub fn list_tools(&mut self) -> Result<Vec<McpTool>, McpError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        // A server that repeats a cursor forever must not keep the run busy.
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let result = self.request("tools/list", params)?;
            let page = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| McpError::Protocol("tools/list result has no `tools` list".into()))?;
            tools.extend(page.iter().filter_map(parse_tool));
            cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_string);
            if cursor.is_none() {
                return Ok(tools);
            }
        }
        Err(McpError::Protocol("tools/list kept returning a nextCursor after 100 pages".into()))
    }

    /// Call tool `name` with `arguments`, JSON object text as a model writes it
    /// (empty means no arguments).
    pub fn call_tool(&mut self, name: &str, arguments: &str) -> Result<ToolResult, McpError> {
        let arguments: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments)
                .map_err(|e| McpError::Protocol(format!("the arguments are not JSON: {e}")))?
        };
        let result = self.request("tools/call", json!({"name": name, "arguments": arguments}))?;
        Ok(tool_result(&result))
    }

    /// A JSON-RPC request; its `result`.
    fn request(&mut self, method: &str, params: Value) -> Result<Value, McpError> {
        let had_session = self.session_id.is_some();
        let (mut id, mut response) = self.send(method, &params)?;
        if response.status == 404 && had_session {
            // The server forgot the session (it restarted, or the session
            // expired): the protocol says to open a new one. Once.
            self.session_id = None;
            self.initialize()?;
            (id, response) = self.send(method, &params)?;
        }
        let response = response.error_for_status()?;
        let content_type = response.header("content-type").unwrap_or_default().to_ascii_lowercase();
        let message = if content_type.starts_with("text/event-stream") {
            sse_messages(&response.text()).into_iter().find(|m| m.get("id") == Some(&json!(id)))
        } else {
            response.json::<Value>().ok()
        }
        .ok_or_else(|| McpError::Protocol(format!("no answer to {method} in the response ({content_type})")))?;
        rpc_result(message)
    }

    /// POST one request; its id and the raw response (keeping any session id it assigns).
    fn send(&mut self, method: &str, params: &Value) -> Result<(u64, http::Response), McpError> {
        let id = self.next_id;
        self.next_id += 1;
        let response = self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        if let Some(session) = response.header("mcp-session-id") {
            self.session_id = Some(session.to_string());
        }
        Ok((id, response))
    }

    /// A JSON-RPC notification (the server answers 202 with no body).
    fn notify(&mut self, method: &str) -> Result<(), McpError> {
        self.post(&json!({"jsonrpc": "2.0", "method": method}))?.error_for_status()?;
        Ok(())
    }

    fn post(&self, body: &Value) -> Result<http::Response, McpError> {
        let mut request = http::request("POST", &self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.protocol_version)
            .json(body)?;
        if let Some(session) = &self.session_id {
            request = request.header("mcp-session-id", session);
        }
        Ok(request.send()?)
    }
}

/// The JSON-RPC messages of an SSE body: the `data` of each event, joined per event.
fn sse_messages(body: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain([""]) {
        if line.is_empty() {
            if !data.is_empty() {
                if let Ok(message) = serde_json::from_str(&data) {
                    messages.push(message);
                }
                data.clear();
            }
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    messages
}

/// A JSON-RPC response's `result`, or its error.
fn rpc_result(mut message: Value) -> Result<Value, McpError> {
    if let Some(error) = message.get("error") {
        return Err(McpError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or_default(),
            message: error.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        });
    }
    message
        .get_mut("result")
        .map(Value::take)
        .ok_or_else(|| McpError::Protocol("a JSON-RPC response with neither result nor error".into()))
}

fn parse_tool(tool: &Value) -> Option<McpTool> {
    Some(McpTool {
        name: tool.get("name")?.as_str()?.to_string(),
        description: tool.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
        input_schema: tool.get("inputSchema").cloned().unwrap_or_else(|| json!({"type": "object"})),
    })
}

/// A `tools/call` result as text for the model.
fn tool_result(result: &Value) -> ToolResult {
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let parts: Vec<String> = result
        .get("content")
        .and_then(Value::as_array)
        .map(|content| content.iter().map(content_text).collect())
        .unwrap_or_default();
    let text = match result.get("structuredContent") {
        // Structured output without text parts: the model gets it as JSON.
        Some(structured) if parts.is_empty() => structured.to_string(),
        _ => parts.join("\n"),
    };
    ToolResult { text, is_error }
}

fn content_text(part: &Value) -> String {
    let field = |name: &str| part.get(name).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "text" => field("text").to_string(),
        "resource" => match part.pointer("/resource/text").and_then(Value::as_str) {
            Some(text) => text.to_string(),
            None => format!("[resource {}]", part.pointer("/resource/uri").and_then(Value::as_str).unwrap_or("")),
        },
        "resource_link" => format!("[resource {}]", field("uri")),
        kind => format!("[{kind} {}]", field("mimeType")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_bodies_yield_each_event_s_message() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                    id: 7\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\ndata: \"result\":{}}\n\n";
        let messages = sse_messages(body);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1]["id"], 2);
    }

    #[test]
    fn rpc_errors_and_results_are_told_apart() {
        let error = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Unknown tool: x"}});
        assert_eq!(rpc_result(error), Err(McpError::Rpc { code: -32602, message: "Unknown tool: x".into() }));
        assert_eq!(rpc_result(json!({"id": 1, "result": {"a": 1}})), Ok(json!({"a": 1})));
    }

    #[test]
    fn tool_results_become_text_for_the_model() {
        let result = json!({"content": [{"type": "text", "text": "3"}, {"type": "image", "mimeType": "image/png", "data": ""}], "isError": false});
        assert_eq!(tool_result(&result), ToolResult { text: "3\n[image image/png]".into(), is_error: false });
        let failed = json!({"content": [{"type": "text", "text": "division by zero"}], "isError": true});
        assert!(tool_result(&failed).is_error);
        let structured = json!({"content": [], "structuredContent": {"sum": 3}});
        assert_eq!(tool_result(&structured).text, r#"{"sum":3}"#);
    }

    #[test]
    fn tools_without_a_schema_take_an_object() {
        let tool = parse_tool(&json!({"name": "now"})).expect("a named tool");
        assert_eq!(tool.to_tool_spec().parameters, r#"{"type":"object"}"#);
        assert!(parse_tool(&json!({"description": "no name"})).is_none());
    }
}
