//! Tool lists kept across runs in the gateway's [`crate::memo`], so a run of
//! the same agent version need not ask a server again: the list, the
//! protocol revision agreed and whether it is stateless. A session is not
//! kept: two runs at once would share its JSON-RPC ids and its server-side
//! state, so a run that calls a tool of a handshake-era server opens its own
//! (`initialize`) when it first needs it. Forgotten when the server says its
//! list changed, when a call answers "unknown tool", when its session ends
//! (404), and after the time-to-live the agent chose, or sooner when a
//! `2026-07-28` server's `ttlMs` says so (its cache directive on
//! `tools/list`; 0, the official SDKs' default, keeps nothing).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{McpError, McpTool, ToolResult};

/// What one run remembers of a server for the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Remembered {
    pub protocol_version: String,
    pub stateless: bool,
    pub server_name: String,
    pub tools: Vec<McpTool>,
}

/// The memo key of a server's tools. The revision is in the value: it is
/// only known once a server answered, and a list is only reused in it.
fn key(url: &str) -> String {
    format!("wasmclaw-sdk/mcp/tools {url}")
}

/// The tools an earlier run listed, unless expired or forgotten.
pub(crate) fn recall(url: &str) -> Option<Remembered> {
    crate::memo::get_json(&key(url))
}

/// Keep what this run listed for `ttl_ms` (a URL too long for a key is
/// simply not kept: the next run lists again).
pub(crate) fn remember(url: &str, remembered: &Remembered, ttl: std::time::Duration) {
    if let Err(e) = crate::memo::set_json(&key(url), remembered, ttl) {
        crate::log::debug!("MCP server {url}: tool list not kept for later runs: {e}");
    }
}

/// Ask the server again next time.
pub(crate) fn forget(url: &str) {
    crate::memo::remove(&key(url))
}

/// Whether messages a server sent in an answer's stream say its tools changed.
pub(crate) fn says_list_changed(messages: &[Value]) -> bool {
    messages.iter().any(|m| m.get("method").and_then(Value::as_str) == Some("notifications/tools/list_changed"))
}

/// Whether a `tools/call` answer says the server does not know the tool:
/// the spec's JSON-RPC error (-32602 "Unknown tool: …"), or, as the official
/// SDKs answer it, a tool error with that text.
pub(crate) fn unknown_tool(answer: &Result<ToolResult, McpError>) -> bool {
    let says = |text: &str| text.trim_start().to_ascii_lowercase().starts_with("unknown tool");
    match answer {
        Ok(result) => result.is_error && says(&result.text),
        Err(McpError::Rpc { code: -32602, message }) => says(message),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn list_changed_is_found_among_the_messages_of_a_stream() {
        let call = json!({"jsonrpc": "2.0", "id": 3, "result": {"content": []}});
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}});
        assert!(says_list_changed(&[changed, call.clone()]));
        assert!(!says_list_changed(&[progress, call]));
    }

    #[test]
    fn unknown_tool_is_read_from_either_shape_and_nothing_else() {
        let tool_error = |text: &str| Ok(ToolResult { text: text.into(), is_error: true });
        assert!(unknown_tool(&tool_error("Unknown tool: add")));
        assert!(unknown_tool(&Err(McpError::Rpc { code: -32602, message: "Unknown tool: add".into() })));
        assert!(!unknown_tool(&tool_error("cannot divide by zero")));
        assert!(!unknown_tool(&Ok(ToolResult { text: "Unknown tool: a novel".into(), is_error: false })));
        assert!(!unknown_tool(&Err(McpError::Rpc { code: -32602, message: "b must be a number".into() })));
        assert!(!unknown_tool(&Err(McpError::Protocol("Unknown tool".into()))));
    }
}
