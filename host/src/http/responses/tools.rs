//! Responses `tools` in the chat vocabulary: flat function tools as they are,
//! function tools inside a `namespace` under one flat name each, and hosted
//! tools the gateway does not serve (`web_search`, `file_search`, `custom`,
//! …) left out of what reaches the agent, so a client's default tool list
//! (Codex sends `web_search` and a `namespace` on every request) still runs.
//!
//! A namespaced tool reaches the agent as `{namespace}__{name}` (the
//! double-underscore join MCP clients use, inside the `[a-zA-Z0-9_-]` names
//! providers accept); its calls go back out as OpenAI sends them, `name` and
//! `namespace` apart ([`Namespaced::split`]).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::http::error::ApiError;

/// The joint between a namespace and a tool name in the flat name.
const JOINT: &str = "__";

/// Function tools that came inside a `namespace`, by their flat name.
#[derive(Debug, Clone, Default)]
pub struct Namespaced(HashMap<String, (String, String)>);

impl Namespaced {
    /// The flat name the agent sees for `name` inside `namespace`.
    pub fn flat(namespace: &str, name: &str) -> String {
        format!("{namespace}{JOINT}{name}")
    }

    /// `(namespace, name)` for a flat name this request declared.
    pub fn split(&self, flat: &str) -> Option<(&str, &str)> {
        self.0.get(flat).map(|(namespace, name)| (namespace.as_str(), name.as_str()))
    }
}

/// A request's tools, read: chat-shaped function tools, the namespaced
/// names among them, and what was left out (for the one log line).
#[derive(Debug, Default)]
pub struct ChatTools {
    pub tools: Vec<Value>,
    pub namespaced: Namespaced,
    /// `web_search`, `custom:apply_patch`, … as left out, in order.
    pub left_out: Vec<String>,
}

/// Read `tools`; only a malformed function or namespace tool is an error.
pub fn chat_tools(tools: &[Value]) -> Result<ChatTools, ApiError> {
    let mut out = ChatTools::default();
    for (i, tool) in tools.iter().enumerate() {
        match kind(tool) {
            "function" => out.tools.push(chat_function(tool, None, &format!("tools[{i}]"))?),
            "namespace" => {
                let namespace =
                    tool.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| {
                        ApiError::invalid_request("A namespace tool needs a `name`", Some(format!("tools[{i}].name")))
                    })?;
                let inner = tool.get("tools").and_then(Value::as_array).ok_or_else(|| {
                    ApiError::invalid_request("A namespace tool needs `tools`", Some(format!("tools[{i}].tools")))
                })?;
                for (j, member) in inner.iter().enumerate() {
                    if kind(member) != "function" {
                        out.left_out.push(format!("{namespace}/{}", label(member)));
                        continue;
                    }
                    let function = chat_function(member, Some(namespace), &format!("tools[{i}].tools[{j}]"))?;
                    let flat = function["function"]["name"].as_str().unwrap_or_default().to_string();
                    let name = member["name"].as_str().unwrap_or_default().to_string();
                    out.namespaced.0.insert(flat, (namespace.to_string(), name));
                    out.tools.push(function);
                }
            }
            _ => out.left_out.push(label(tool)),
        }
    }
    Ok(out)
}

/// `tool_choice` in chat terms; forcing a tool that was left out is a 400.
pub fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    let forced_away = |what: String| {
        ApiError::invalid_request(
            format!("`tool_choice` forces {what}, a tool type this gateway does not serve"),
            Some("tool_choice".into()),
        )
    };
    let Some(choice_kind) = choice.get("type").and_then(Value::as_str) else {
        // `auto`, `none` and `required` are the same in both APIs.
        return Ok(choice.clone());
    };
    match choice_kind {
        "function" => {
            let name = choice.get("name").and_then(Value::as_str).unwrap_or_default();
            let name = match choice.get("namespace").and_then(Value::as_str) {
                Some(namespace) => Namespaced::flat(namespace, name),
                None => name.to_string(),
            };
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        // A subset of the declared tools: the agent sees them all, as with `auto`/`required`.
        "allowed_tools" => Ok(Value::String(choice.get("mode").and_then(Value::as_str).unwrap_or("auto").into())),
        "custom" | "mcp" => {
            let name = choice.get("name").or_else(|| choice.get("server_label")).and_then(Value::as_str);
            Err(forced_away(format!("the {choice_kind} tool {:?}", name.unwrap_or_default())))
        }
        other => Err(forced_away(format!("{other:?}"))),
    }
}

/// A function tool in the chat shape, named flat when inside a namespace.
fn chat_function(tool: &Value, namespace: Option<&str>, path: &str) -> Result<Value, ApiError> {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid_request("A function tool needs a `name`", Some(format!("{path}.name"))))?;
    let mut function = Map::new();
    for key in ["description", "parameters", "strict"] {
        if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), v.clone());
        }
    }
    let name = namespace.map_or_else(|| name.to_string(), |namespace| Namespaced::flat(namespace, name));
    function.insert("name".into(), name.into());
    Ok(json!({"type": "function", "function": function}))
}

fn kind(tool: &Value) -> &str {
    tool.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// How a left-out tool is named in the log: its type, and its name if it has one.
fn label(tool: &Value) -> String {
    let kind = match kind(tool) {
        "" => "(no type)",
        k => k,
    };
    match tool.get("name").and_then(Value::as_str) {
        Some(name) => format!("{kind}:{name}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codex_tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "name": "shell", "parameters": {"type": "object"}}),
            json!({"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [
                {"type": "function", "name": "spawn_agent", "description": "d", "parameters": {"type": "object"}},
                {"type": "custom", "name": "freeform"},
            ]}),
            json!({"type": "web_search", "external_web_access": false}),
            json!({"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}),
        ]
    }

    #[test]
    fn namespaced_functions_are_flat_and_hosted_tools_are_left_out() {
        let tools = chat_tools(&codex_tools()).unwrap();
        let names: Vec<&str> = tools.tools.iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["shell", "multi_agent_v1__spawn_agent"]);
        assert_eq!(tools.tools[1]["function"]["description"], "d");
        assert_eq!(tools.namespaced.split("multi_agent_v1__spawn_agent"), Some(("multi_agent_v1", "spawn_agent")));
        assert_eq!(tools.namespaced.split("shell"), None, "a flat tool keeps its name");
        assert_eq!(tools.left_out, ["multi_agent_v1/custom:freeform", "web_search", "custom:apply_patch"]);
    }

    #[test]
    fn only_a_choice_that_forces_a_left_out_tool_is_refused() {
        assert_eq!(chat_tool_choice(&json!("auto")).unwrap(), json!("auto"));
        let namespaced = json!({"type": "function", "name": "spawn_agent", "namespace": "multi_agent_v1"});
        assert_eq!(
            chat_tool_choice(&namespaced).unwrap(),
            json!({"type": "function", "function": {"name": "multi_agent_v1__spawn_agent"}})
        );
        let allowed = json!({"type": "allowed_tools", "mode": "required", "tools": []});
        assert_eq!(chat_tool_choice(&allowed).unwrap(), json!("required"));
        for forced in [json!({"type": "web_search"}), json!({"type": "custom", "name": "apply_patch"})] {
            let err = chat_tool_choice(&forced).err().unwrap();
            assert_eq!((err.status.as_u16(), err.param.as_deref()), (400, Some("tool_choice")), "{forced}");
        }
    }

    #[test]
    fn a_namespace_without_a_name_or_tools_names_the_field() {
        let err = chat_tools(&[json!({"type": "namespace", "tools": []})]).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("tools[0].name"));
        let err = chat_tools(&[json!({"type": "namespace", "name": "n"})]).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("tools[0].tools"));
    }
}
