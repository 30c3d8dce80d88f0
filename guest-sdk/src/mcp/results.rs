//! Reading what a server answers: SSE bodies, JSON-RPC results, tools and
//! tool results as text for the model.

use serde_json::{Value, json};

use super::{McpError, McpTool, ToolResult};

/// The JSON-RPC messages of an SSE body: the `data` of each event, joined per event.
pub(crate) fn sse_messages(body: &str) -> Vec<Value> {
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
pub(crate) fn rpc_result(mut message: Value) -> Result<Value, McpError> {
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

pub(crate) fn parse_tool(tool: &Value) -> Option<McpTool> {
    Some(McpTool {
        name: tool.get("name")?.as_str()?.to_string(),
        description: tool.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
        input_schema: tool.get("inputSchema").cloned().unwrap_or_else(|| json!({"type": "object"})),
    })
}

/// A `tools/call` result as text for the model.
pub(crate) fn tool_result(result: &Value) -> ToolResult {
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
