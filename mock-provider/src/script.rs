//! Replies decided by the request ([`ReplyKind::CallTools`]) and replies read
//! from JSON (`mock-provider --script FILE`).

use serde_json::{Map, Value, json};

use crate::{Reply, ReplyKind, split_words};

/// What a model that uses its tools answers `body` with: a call of the first
/// tool offered, unless the last message is a tool result, which it repeats.
pub(crate) fn use_tools(body: &Value) -> ReplyKind {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    if let Some(last) = messages.last().filter(|m| m["role"] == "tool") {
        return ReplyKind::Text(split_words(&format!("tool said: {}", content_text(&last["content"]))));
    }
    let Some(function) = body["tools"].as_array().and_then(|t| t.first()).map(|t| &t["function"]) else {
        return ReplyKind::Echo;
    };
    let name = function["name"].as_str().unwrap_or_default().to_string();
    // Ids differ per turn, as a real model's do: count the calls made so far.
    let made = messages.iter().filter_map(|m| m["tool_calls"].as_array()).map(Vec::len).sum::<usize>();
    let arguments = sample_arguments(&function["parameters"]).to_string();
    ReplyKind::ToolCalls(vec![(format!("call_mock_{}", made + 1), name, arguments)])
}

/// A message's `content` as text: a string, or the text of its parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// Arguments that satisfy a JSON schema's required properties, with a sample
/// value of each one's type: `const`, `default` or the first `enum` value if
/// the schema names one; else `"sample"`, `1`, `1.5`, `true`, `[]`, or an
/// object built the same way.
pub fn sample_arguments(schema: &Value) -> Value {
    if let Some(value) = schema.get("const").or_else(|| schema.get("default")) {
        return value.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    // `"type": ["string", "null"]`: the first type is the one to fill.
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.first().and_then(Value::as_str).unwrap_or_default(),
        kind => kind.as_str().unwrap_or(if schema.get("properties").is_some() { "object" } else { "" }),
    };
    match kind {
        "string" => json!("sample"),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "array" => json!([]),
        "null" => Value::Null,
        "object" => {
            let required = schema["required"].as_array().map(Vec::as_slice).unwrap_or_default();
            let mut object = Map::new();
            for name in required.iter().filter_map(Value::as_str) {
                object.insert(name.to_string(), sample_arguments(&schema["properties"][name]));
            }
            Value::Object(object)
        }
        _ => json!("sample"),
    }
}

/// Replies from a JSON list, in order. Each is a string (that text), or an
/// object: `{"text": "…"}`, `{"tool_calls": [{"name": "…", "arguments": {…},
/// "id": "…"}]}` (arguments as an object or as JSON text; id optional), or
/// `{"status": 429, "message": "…", "retry_after": 3}`.
pub fn script_from_json(text: &str) -> Result<Vec<Reply>, String> {
    let list: Value = serde_json::from_str(text).map_err(|e| format!("the script is not JSON: {e}"))?;
    let list = list.as_array().ok_or("the script must be a JSON list of replies")?;
    list.iter().enumerate().map(|(i, reply)| reply_from_json(reply).map_err(|e| format!("reply {i}: {e}"))).collect()
}

fn reply_from_json(reply: &Value) -> Result<Reply, String> {
    if let Some(text) = reply.as_str().or_else(|| reply["text"].as_str()) {
        return Ok(Reply { kind: ReplyKind::Text(split_words(text)), ..Reply::echo() });
    }
    if let Some(calls) = reply["tool_calls"].as_array() {
        let calls = calls.iter().enumerate().map(|(i, call)| {
            let name = call["name"].as_str().ok_or("a tool call without a `name`")?;
            let id = call["id"].as_str().map_or_else(|| format!("call_script_{}", i + 1), str::to_string);
            let arguments = match &call["arguments"] {
                Value::String(text) => text.clone(),
                Value::Null => "{}".to_string(),
                value => value.to_string(),
            };
            Ok((id, name.to_string(), arguments))
        });
        return Ok(Reply { kind: ReplyKind::ToolCalls(calls.collect::<Result<_, String>>()?), ..Reply::echo() });
    }
    if let Some(code) = reply["status"].as_u64() {
        let code = u16::try_from(code).map_err(|_| format!("status {code} is not an HTTP status"))?;
        let message = reply["message"].as_str().unwrap_or("scripted error");
        let retry_after = reply["retry_after"].as_u64().and_then(|s| u32::try_from(s).ok());
        return Ok(Reply::status(code, retry_after, message));
    }
    Err(format!("expected a string or an object with `text`, `tool_calls` or `status`, got {reply}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_arguments_fill_the_required_properties_with_their_types() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]},
                "exact": {"type": "boolean"}, "ratio": {"type": "number"}, "tags": {"type": "array"},
                "at": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                "optional": {"type": "string"}, "nullable": {"type": ["integer", "null"]}, "fixed": {"const": 7}
            },
            "required": ["city", "days", "unit", "exact", "ratio", "tags", "at", "nullable", "fixed"]
        });
        let expected = json!({"city": "sample", "days": 1, "unit": "c", "exact": true, "ratio": 1.5, "tags": [],
                              "at": {"lat": 1.5}, "nullable": 1, "fixed": 7});
        assert_eq!(sample_arguments(&schema), expected);
        assert_eq!(sample_arguments(&json!({"type": "object"})), json!({}));
        assert_eq!(sample_arguments(&Value::Null), json!("sample"));
    }

    #[test]
    fn a_tool_user_calls_the_first_tool_then_repeats_its_result() {
        let tools = json!([{"type": "function", "function": {"name": "add", "parameters":
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}},
            {"type": "function", "function": {"name": "other"}}]);
        let first = json!({"messages": [{"role": "user", "content": "add"}], "tools": tools});
        let ReplyKind::ToolCalls(calls) = use_tools(&first) else { panic!("a call") };
        assert_eq!(calls, [("call_mock_1".to_string(), "add".to_string(), r#"{"a":1}"#.to_string())]);
        let answered = json!({"tools": tools, "messages": [
            {"role": "user", "content": "add"},
            {"role": "assistant", "tool_calls": [{"id": "call_mock_1"}]},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": [{"type": "text", "text": "2"}]}]});
        let ReplyKind::Text(tokens) = use_tools(&answered) else { panic!("text") };
        assert_eq!(tokens.concat(), "tool said: 2");
        let again = json!({"tools": tools, "messages": [
            {"role": "assistant", "tool_calls": [{"id": "call_mock_1"}]}, {"role": "tool", "content": "2"},
            {"role": "assistant", "content": "tool said: 2"}, {"role": "user", "content": "more"}]});
        assert!(matches!(use_tools(&again), ReplyKind::ToolCalls(c) if c[0].0 == "call_mock_2"));
        assert!(matches!(use_tools(&json!({"messages": []})), ReplyKind::Echo));
    }

    #[test]
    fn scripts_read_text_tool_calls_and_errors_and_name_the_bad_reply() {
        let script = r#"["hi there", {"text": "ok"}, {"tool_calls": [{"name": "f", "arguments": {"x": 1}}]},
                        {"status": 429, "retry_after": 2}]"#;
        let replies = script_from_json(script).unwrap();
        assert!(matches!(&replies[0].kind, ReplyKind::Text(t) if t.concat() == "hi there"));
        assert!(
            matches!(&replies[2].kind, ReplyKind::ToolCalls(c) if c[0] == ("call_script_1".into(), "f".into(), r#"{"x":1}"#.into()))
        );
        assert!(matches!(&replies[3].kind, ReplyKind::Status { code: 429, retry_after: Some(2), .. }));
        let err = script_from_json(r#"["a", {"nope": 1}]"#).unwrap_err();
        assert!(err.starts_with("reply 1: expected"), "{err}");
        assert!(script_from_json("{}").unwrap_err().contains("list"));
    }
}
