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
//! Protocol revisions: the stateless `2026-07-28` first (`server/discover`,
//! then every request self-contained: `_meta` with the revision, the
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers, no session);
//! a server that answers it with no recognized modern error gets the
//! handshake of `2025-11-25`, accepting `2025-06-18`, `2025-03-26` or
//! `2024-11-05` if it answers one of those (see [`version`]). Covered:
//! `initialize` then `notifications/initialized`, `tools/list` (all pages),
//! `tools/call`; answers as `application/json` or as an SSE stream
//! (`text/event-stream`); the `Mcp-Session-Id` the server assigns (and a new
//! session when the server answers 404 to it). Not covered: server-to-client
//! requests (sampling, elicitation, MRTR input requests),
//! `subscriptions/listen`, resumption, resources and prompts, `x-mcp-header`
//! parameter headers.
//!
//! Across runs: [`McpClient::cached`] reuses the tool list an earlier run of
//! the same agent version listed (kept in the gateway's [`crate::memo`], see
//! [`cache`] for when it is asked again), and opens the connection only
//! when a tool is called.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ToolSpec;
use crate::http::{self, HttpError};

mod cache;
mod results;
pub mod version;

use results::{parse_tool, rpc_result, sse_messages, tool_result};
use version::{Era, HANDSHAKE_VERSIONS, MODERN_VERSIONS};

/// The newest protocol revision this client offers; it falls back to older ones per server.
pub const PROTOCOL_VERSION: &str = MODERN_VERSIONS[0];

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// A connection to one MCP server: stateless (modern revisions) or a session.
#[derive(Debug, Clone)]
pub struct McpClient {
    url: String,
    /// Set only in a handshake-era session.
    session_id: Option<String>,
    protocol_version: String,
    /// Whether the revision is a modern one: no session, `_meta` on every request.
    stateless: bool,
    next_id: u64,
    server_name: String,
    /// Set by [`Self::cached`]: how long a listing is kept for later runs.
    keep_tools: Option<Duration>,
    /// A client from the memo before the server first answered it: the
    /// revision is an earlier run's, and a handshake-era server has no
    /// session for this run yet.
    unconfirmed: bool,
    /// The server said its tools changed during the listing under way.
    list_changed: bool,
}

impl McpClient {
    /// Find the revision to speak: a modern request first, the `initialize`
    /// handshake for servers that answer it as handshake-era servers do.
    pub fn connect(url: &str) -> Result<Self, McpError> {
        let mut client = Self {
            url: url.to_string(),
            session_id: None,
            protocol_version: PROTOCOL_VERSION.to_string(),
            stateless: true,
            next_id: 1,
            server_name: String::new(),
            keep_tools: None,
            unconfirmed: false,
            list_changed: false,
        };
        client.discover()?;
        Ok(client)
    }

    /// A client for `url` and its tools, reusing what an earlier run of this
    /// agent version listed less than `keep` ago: then no request is made
    /// until a tool is called (a handshake-era server gets its `initialize`
    /// then). Otherwise it connects and lists now, and keeps the list for
    /// `keep` (zero keeps nothing). The list is asked again sooner when the
    /// server sends `notifications/tools/list_changed`, a call answers
    /// "unknown tool", or its session ends.
    pub fn cached(url: &str, keep: Duration) -> Result<(Self, Vec<McpTool>), McpError> {
        if let Some(known) = cache::recall(url).filter(|_| !keep.is_zero()) {
            let client = Self {
                url: url.to_string(),
                session_id: None,
                protocol_version: known.protocol_version,
                stateless: known.stateless,
                next_id: 1,
                server_name: known.server_name,
                keep_tools: Some(keep),
                unconfirmed: true,
                list_changed: false,
            };
            return Ok((client, known.tools));
        }
        let mut client = Self::connect(url)?;
        client.keep_tools = Some(keep).filter(|k| !k.is_zero());
        let tools = client.list_tools()?;
        Ok((client, tools))
    }

    /// Connect a client made from the memo. A handshake-era server gets a
    /// session in the revision agreed before (else the revision is found
    /// again); a stateless one needs nothing: its first request tells.
    fn resume(&mut self) -> Result<(), McpError> {
        if !self.unconfirmed || self.stateless {
            return Ok(());
        }
        self.unconfirmed = false;
        if self.initialize().is_err() {
            self.forget_tools();
            self.protocol_version = PROTOCOL_VERSION.to_string();
            self.stateless = true;
            self.discover()?;
        }
        Ok(())
    }

    /// Ask the server for its tools again on the next run.
    fn forget_tools(&self) {
        if self.keep_tools.is_some() {
            cache::forget(&self.url);
        }
    }

    /// `server/discover` in the newest modern revision, once more in another
    /// modern revision the server names, else the handshake.
    fn discover(&mut self) -> Result<(), McpError> {
        for _ in 0..2 {
            let (id, response) = self.send("server/discover", &json!({}))?;
            let message = answer(&response, id);
            match version::era_of(response.status, message.as_ref()) {
                Era::Modern => {
                    let message = message.ok_or_else(|| McpError::Protocol("server/discover has no answer".into()))?;
                    let result = rpc_result(message)?;
                    let info = result
                        .get("serverInfo")
                        .or_else(|| result.pointer("/_meta/io.modelcontextprotocol~1serverInfo"));
                    self.server_name =
                        info.and_then(|i| i.get("name")).and_then(Value::as_str).unwrap_or_default().to_string();
                    return Ok(());
                }
                Era::RetryWith(modern) if modern != self.protocol_version => self.protocol_version = modern.to_string(),
                Era::RetryWith(modern) => {
                    return Err(McpError::Protocol(format!("the server refused protocol version {modern} it lists")));
                }
                Era::Handshake(offer) => {
                    self.stateless = false;
                    self.protocol_version = offer.to_string();
                    return self.initialize();
                }
                Era::NoCommonVersion(supported) => {
                    return Err(McpError::Protocol(format!(
                        "the server speaks protocol versions {supported:?}; this client {MODERN_VERSIONS:?} and {HANDSHAKE_VERSIONS:?}"
                    )));
                }
            }
        }
        Err(McpError::Protocol("no protocol version agreed with the server".into()))
    }

    /// The handshake that opens a session (handshake-era revisions).
    fn initialize(&mut self) -> Result<(), McpError> {
        let params = json!({
            "protocolVersion": self.protocol_version,
            "capabilities": {},
            "clientInfo": {"name": "wasmclaw", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = self.request("initialize", params)?;
        let answered = result.get("protocolVersion").and_then(Value::as_str);
        self.protocol_version =
            version::handshake_answer(&self.protocol_version, answered).map_err(McpError::Protocol)?.to_string();
        self.server_name = result.pointer("/serverInfo/name").and_then(Value::as_str).unwrap_or_default().to_string();
        self.notify("notifications/initialized")
    }

    /// The protocol revision agreed with the server.
    pub fn protocol_version(&self) -> &str {
        &self.protocol_version
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name the server gave in `initialize` or `server/discover` (empty if none).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Every tool the server offers, following `nextCursor` across pages.
    pub fn list_tools(&mut self) -> Result<Vec<McpTool>, McpError> {
        self.resume()?;
        self.list_changed = false;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        // How long this run's list may be reused: the agent's choice, cut to
        // the shortest `ttlMs` a page carries (2026-07-28's cache directive;
        // 0 means stale at once, so nothing is kept).
        let mut keep = self.keep_tools;
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
            if let Some(ttl_ms) = result.get("ttlMs").and_then(Value::as_u64) {
                keep = keep.map(|k| k.min(Duration::from_millis(ttl_ms)));
            }
            cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_string);
            if cursor.is_none() {
                if let Some(keep) = keep.filter(|k| !k.is_zero() && !self.list_changed) {
                    let known = cache::Remembered {
                        protocol_version: self.protocol_version.clone(),
                        stateless: self.stateless,
                        server_name: self.server_name.clone(),
                        tools: tools.clone(),
                    };
                    cache::remember(&self.url, &known, keep);
                }
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
        self.resume()?;
        let answer = self.request("tools/call", json!({"name": name, "arguments": arguments})).map(|r| tool_result(&r));
        if cache::unknown_tool(&answer) {
            // The list this run offered is out of date.
            self.forget_tools();
        }
        answer
    }

    /// A JSON-RPC request; its `result`.
    fn request(&mut self, method: &str, params: Value) -> Result<Value, McpError> {
        let had_session = self.session_id.is_some();
        let (mut id, mut response) = self.send(method, &params)?;
        if response.status == 404 && had_session {
            // The server forgot the session (it restarted, or the session
            // expired): the protocol says to open a new one. Once. Its tools
            // may have changed with it.
            self.forget_tools();
            self.session_id = None;
            self.initialize()?;
            (id, response) = self.send(method, &params)?;
        }
        if self.unconfirmed && refused_revision(&response, id) {
            // The revision kept from an earlier run no longer holds: the
            // server did not run the request. Find the revision again, once.
            self.unconfirmed = false;
            self.forget_tools();
            self.discover()?;
            (id, response) = self.send(method, &params)?;
        }
        self.unconfirmed = false;
        match answer(&response, id) {
            // Modern servers answer errors with a 4xx and the JSON-RPC error; it says more than the status.
            Some(message) if message.get("error").is_some() || (200..300).contains(&response.status) => {
                rpc_result(message)
            }
            _ => {
                let content_type = response.header("content-type").unwrap_or_default().to_string();
                response.error_for_status()?;
                Err(McpError::Protocol(format!("no answer to {method} in the response ({content_type})")))
            }
        }
    }

    /// POST one request; its id and the raw response (keeping any session id it assigns).
    fn send(&mut self, method: &str, params: &Value) -> Result<(u64, http::Response), McpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut params = params.clone();
        if self.stateless {
            params["_meta"] = version::request_meta(&self.protocol_version);
        }
        let name = params.get("name").and_then(Value::as_str).map(version::header_value);
        let response =
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}), method, name)?;
        if let Some(session) = response.header("mcp-session-id").filter(|_| !self.stateless) {
            self.session_id = Some(session.to_string());
        }
        if is_sse(&response) && cache::says_list_changed(&sse_messages(&response.text())) {
            self.list_changed = true;
            self.forget_tools();
        }
        Ok((id, response))
    }

    /// A JSON-RPC notification (the server answers 202 with no body).
    fn notify(&mut self, method: &str) -> Result<(), McpError> {
        self.post(&json!({"jsonrpc": "2.0", "method": method}), method, None)?.error_for_status()?;
        Ok(())
    }

    fn post(&self, body: &Value, method: &str, name: Option<String>) -> Result<http::Response, McpError> {
        let mut request = http::request("POST", &self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.protocol_version)
            .json(body)?;
        if self.stateless {
            // Mirrored so that proxies can route without reading the body; the server checks they agree.
            request = request.header("mcp-method", method);
            if let Some(name) = name.filter(|_| method == "tools/call") {
                request = request.header("mcp-name", &name);
            }
        }
        if let Some(session) = &self.session_id {
            request = request.header("mcp-session-id", session);
        }
        Ok(request.send()?)
    }
}

/// Whether the answer is an SSE stream (else a JSON body).
fn is_sse(response: &http::Response) -> bool {
    response.header("content-type").unwrap_or_default().to_ascii_lowercase().starts_with("text/event-stream")
}

/// Whether a modern request was refused for its revision (an
/// `UnsupportedProtocolVersionError`, or a plain 4xx as handshake-era
/// servers answer a request without a session): the server did not run it.
fn refused_revision(response: &http::Response, id: u64) -> bool {
    match answer(response, id) {
        Some(message) => {
            matches!(version::era_of(response.status, Some(&message)), Era::RetryWith(_) | Era::NoCommonVersion(_))
        }
        None => (400..500).contains(&response.status) && response.status != 404,
    }
}

/// The JSON-RPC message answering request `id`: the body, or its event in an SSE stream.
fn answer(response: &http::Response, id: u64) -> Option<Value> {
    if is_sse(response) {
        sse_messages(&response.text()).into_iter().find(|m| m.get("id") == Some(&json!(id)))
    } else {
        serde_json::from_slice(&response.body).ok()
    }
}
