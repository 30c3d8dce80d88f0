//! `POST /v1/responses` bodies, and the one translation of Responses input
//! into the host's chat vocabulary.
//!
//! Input items, tools and parameters are rewritten into a chat-completions
//! request body and handed to the chat door's parser ([`ChatRequest`]), so
//! both doors share one reading of messages, content parts (an
//! `input_image` arrives as an `image_url` part), tools and parameters.
//! Errors the parser finds name the Responses field (`input[2].content[0]`),
//! not the chat field it was rewritten to.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::tools::{self, Namespaced};
use crate::chat::{Message, ToolSpec};
use crate::http::error::ApiError;
use crate::http::openai::ChatRequest;

/// The fields this door consumes itself; every other field passes on as a
/// model parameter, through the chat door's parameter rule.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: Option<String>,
    pub input: Option<Input>,
    pub instructions: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub previous_response_id: Option<String>,
    pub store: Option<bool>,
    pub stream: Option<bool>,
    pub user: Option<String>,
    pub metadata: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u64>,
    pub text: Option<Value>,
    pub reasoning: Option<Value>,
    /// Everything else, passed to the agent's `params` as sent.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `input`: a string (one user message) or a list of items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// Fields that only steer the Responses API itself and mean nothing to a model.
const NOT_PARAMS: &[&str] = &["include", "truncation", "stream_options", "background", "conversation", "prompt"];

/// What a request becomes: the run's messages, tools and parameters.
pub struct Translated {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub params: Value,
    /// The flat names of namespaced function tools, to name their calls back.
    pub namespaced: Namespaced,
    /// Hosted tools left out of what reaches the agent (`web_search`, …).
    pub left_out: Vec<String>,
}

impl ResponsesRequest {
    /// Parse a body; errors name the offending field in `param`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let request: Self = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::invalid_request(format!("Malformed JSON body: {inner}"), None)
            } else {
                ApiError::invalid_request(format!("Invalid request: {inner}"), (path != ".").then_some(path))
            }
        })?;
        de.end().map_err(|e| ApiError::invalid_request(format!("Malformed JSON body: {e}"), None))?;
        Ok(request)
    }

    /// True for `stream: true`.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// True unless the client sent `store: false`.
    pub fn keep(&self) -> bool {
        self.store.unwrap_or(true)
    }

    /// Messages, tools and parameters, read by the chat door's parser.
    pub fn translate(&self) -> Result<Translated, ApiError> {
        let (messages, origins) = self.chat_messages()?;
        let mut chat = Map::new();
        chat.insert("messages".into(), Value::Array(messages));
        let tools = tools::chat_tools(self.tools.as_deref().unwrap_or_default())?;
        if self.tools.is_some() {
            chat.insert("tools".into(), Value::Array(tools.tools));
        }
        self.chat_params(&mut chat)?;
        let body = serde_json::to_vec(&Value::Object(chat)).map_err(|e| ApiError::internal(e.to_string()))?;
        let rename = |e: ApiError| ApiError { param: e.param.map(|p| responses_param(&p, &origins)), ..e };
        let request = ChatRequest::parse(&body).map_err(rename)?;
        Ok(Translated {
            messages: request.agent_messages().map_err(rename)?,
            tools: request.agent_tools().map_err(rename)?,
            params: request.params().map_err(rename)?,
            namespaced: tools.namespaced,
            left_out: tools.left_out,
        })
    }

    /// `instructions`, then the input items, as chat messages; beside each,
    /// the Responses path it came from.
    fn chat_messages(&self) -> Result<(Vec<Value>, Vec<String>), ApiError> {
        let mut messages = Vec::new();
        let mut origins = Vec::new();
        if let Some(instructions) = self.instructions.as_ref().filter(|i| !i.is_empty()) {
            messages.push(json!({"role": "system", "content": instructions}));
            origins.push("instructions".to_string());
        }
        match &self.input {
            None => {}
            Some(Input::Text(text)) => {
                messages.push(json!({"role": "user", "content": text}));
                origins.push("input".into());
            }
            Some(Input::Items(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("input[{i}]");
                    if let Some(message) = chat_message(item, &path, messages.last_mut())? {
                        messages.push(message);
                        origins.push(path);
                    }
                }
            }
        }
        if !messages.iter().any(|m| m["role"] != "system") {
            return Err(ApiError::invalid_request("`input` must contain at least one item", Some("input".into())));
        }
        Ok((messages, origins))
    }

    /// Responses parameters under their chat names; unknown fields as sent.
    fn chat_params(&self, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value.filter(|v| !v.is_null()) {
                chat.insert(key.into(), v);
            }
        };
        put("user", self.user.clone().map(Value::from));
        put("temperature", self.temperature.map(Value::from));
        put("top_p", self.top_p.map(Value::from));
        put("max_completion_tokens", self.max_output_tokens.map(Value::from));
        put("parallel_tool_calls", self.parallel_tool_calls.map(Value::from));
        put("metadata", self.metadata.clone());
        put("tool_choice", self.tool_choice.as_ref().map(tools::chat_tool_choice).transpose()?);
        put("response_format", self.text.as_ref().and_then(chat_response_format));
        put("reasoning_effort", self.reasoning.as_ref().and_then(|r| r.get("effort")).cloned());
        for (key, value) in &self.rest {
            if !NOT_PARAMS.contains(&key.as_str()) {
                put(key, Some(value.clone()));
            }
        }
        Ok(())
    }
}

/// One input item as a chat message, or `None` when it extends `last` (a
/// function call joins the assistant message before it) or means nothing
/// to a model (`reasoning`).
fn chat_message(item: &Value, path: &str, last: Option<&mut Value>) -> Result<Option<Value>, ApiError> {
    let bad = |message: String, at: &str| ApiError::invalid_request(message, Some(at.to_string()));
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = item
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("A message item needs a `role`".into(), &format!("{path}.role")))?;
            let Some(content) = chat_content(item, "content", path)? else {
                return Err(bad("A message item needs `content`".into(), &format!("{path}.content")));
            };
            Ok(Some(json!({"role": role, "content": content})))
        }
        "function_call" => {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("A function_call item needs `{name}`"), &format!("{path}.{name}")))
            };
            // A call of a namespaced tool goes to the agent under the flat name it was declared by.
            let name = match item.get("namespace").and_then(Value::as_str) {
                Some(namespace) => Namespaced::flat(namespace, field("name")?),
                None => field("name")?.to_string(),
            };
            let call = json!({
                "id": field("call_id")?, "type": "function",
                "function": {"name": name, "arguments": field("arguments")?},
            });
            // Parallel calls, and a call after the text that came with it, are one assistant message.
            if let Some(last) = last.filter(|m| m["role"] == "assistant") {
                match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    Some(calls) => calls.push(call),
                    None => last["tool_calls"] = json!([call]),
                }
                return Ok(None);
            }
            Ok(Some(json!({"role": "assistant", "content": null, "tool_calls": [call]})))
        }
        "function_call_output" => {
            let call_id = item
                .get("call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("A function_call_output item needs `call_id`".into(), &format!("{path}.call_id")))?;
            let Some(content) = chat_content(item, "output", path)? else {
                return Err(bad(
                    "A function_call_output item needs `output` (a string or content parts)".into(),
                    &format!("{path}.output"),
                ));
            };
            Ok(Some(json!({"role": "tool", "tool_call_id": call_id, "content": content})))
        }
        "reasoning" => Ok(None),
        other => Err(bad(
            format!("Unsupported input item type {other:?}; expected message, function_call or function_call_output"),
            &format!("{path}.type"),
        )),
    }
}

/// `item[key]` as chat content: a string as it is, parts each in the chat
/// shape; `None` when it is neither.
fn chat_content(item: &Value, key: &str, path: &str) -> Result<Option<Value>, ApiError> {
    Ok(match item.get(key) {
        Some(Value::String(text)) => Some(Value::String(text.clone())),
        Some(Value::Array(parts)) => Some(Value::Array(
            parts
                .iter()
                .enumerate()
                .map(|(p, part)| chat_part(part, &format!("{path}.{key}[{p}]")))
                .collect::<Result<_, _>>()?,
        )),
        _ => None,
    })
}

/// A Responses content part in the chat-completions shape.
fn chat_part(part: &Value, path: &str) -> Result<Value, ApiError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    let text = |key: &str| part.get(key).cloned().unwrap_or(Value::Null);
    Ok(match kind {
        "input_text" | "output_text" | "text" => json!({"type": "text", "text": text("text")}),
        "refusal" => json!({"type": "text", "text": text("refusal")}),
        "input_image" => {
            let Some(url) = part.get("image_url").filter(|u| u.is_string()) else {
                return Err(ApiError::invalid_request(
                    "An input_image part needs `image_url` (a URL or a data URL); `file_id` is not supported",
                    Some(format!("{path}.image_url")),
                ));
            };
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| !d.is_null()) {
                image["detail"] = detail.clone();
            }
            json!({"type": "image_url", "image_url": image})
        }
        "input_file" => {
            let mut file = Map::new();
            for key in ["file_data", "file_id", "filename"] {
                if let Some(v) = part.get(key).filter(|v| !v.is_null()) {
                    file.insert(key.into(), v.clone());
                }
            }
            json!({"type": "file", "file": file})
        }
        "input_audio" => json!({"type": "input_audio", "input_audio": text("input_audio")}),
        // Unknown parts go to the parser as they are: it decides, and says which.
        _ => part.clone(),
    })
}

/// `text.format` as chat's `response_format`; plain text needs none.
fn chat_response_format(text: &Value) -> Option<Value> {
    let format = text.get("format")?;
    match format.get("type").and_then(Value::as_str)? {
        "text" => None,
        "json_schema" => {
            let mut schema = format.as_object()?.clone();
            schema.remove("type");
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => Some(format.clone()),
    }
}

/// A chat-side error path in Responses terms: `messages[3].content[0]` is
/// `input[2].content[0]` when instructions came first.
fn responses_param(chat: &str, origins: &[String]) -> String {
    if let Some(rest) = chat.strip_prefix("messages[")
        && let Some((index, tail)) = rest.split_once(']')
        && let Some(origin) = index.parse::<usize>().ok().and_then(|i| origins.get(i))
    {
        return format!("{origin}{tail}");
    }
    match chat {
        "max_completion_tokens" | "max_tokens" => "max_output_tokens".into(),
        "response_format" => "text.format".into(),
        other => other.replace(".function.", "."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;

    fn translate(body: Value) -> Result<Translated, ApiError> {
        ResponsesRequest::parse(&serde_json::to_vec(&body).unwrap())?.translate()
    }

    #[test]
    fn a_string_input_is_one_user_message_after_the_instructions() {
        let t = translate(json!({"model": "openclaw", "input": "hi", "instructions": "be brief"})).unwrap();
        let roles: Vec<Role> = t.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User]);
        assert_eq!((t.messages[0].content.as_str(), t.messages[1].content.as_str()), ("be brief", "hi"));
    }

    #[test]
    fn items_become_one_conversation_with_tool_calls_and_results() {
        let t = translate(json!({"input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ]}))
        .unwrap();
        let roles: Vec<Role> = t.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool]);
        assert_eq!(t.messages[1].content, "Checking.");
        let ids: Vec<&str> = t.messages[1].tool_calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2"]);
        assert_eq!(t.messages[2].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(t.messages[2].content, "sunny");
    }

    #[test]
    fn flat_function_tools_and_parameters_reach_the_agent_in_chat_terms() {
        let t = translate(json!({
            "input": "x", "temperature": 0.5, "max_output_tokens": 64, "store": false, "include": [],
            "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
        }))
        .unwrap();
        assert_eq!(t.tools.len(), 1);
        assert_eq!((t.tools[0].name.as_str(), t.tools[0].description.as_str()), ("f", "d"));
        assert_eq!(t.params["temperature"], 0.5);
        assert_eq!(t.params["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
        assert!(t.params.get("store").is_none() && t.params.get("include").is_none(), "{}", t.params);
    }

    #[test]
    fn codex_default_tools_reach_the_agent_as_functions_only() {
        let t = translate(json!({
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ],
            "tools": [
                {"type": "web_search"},
                {"type": "namespace", "name": "multi_agent_v1", "description": "", "tools": [
                    {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
                ]},
            ],
            "tool_choice": "auto",
        }))
        .unwrap();
        let names: Vec<&str> = t.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["multi_agent_v1__spawn_agent"]);
        assert_eq!(t.left_out, ["web_search"]);
        assert_eq!(t.messages[0].tool_calls[0].name, "multi_agent_v1__spawn_agent", "history uses the flat name too");
        assert_eq!(t.namespaced.split("multi_agent_v1__spawn_agent"), Some(("multi_agent_v1", "spawn_agent")));
        let forced =
            translate(json!({"input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}));
        assert_eq!(forced.err().unwrap().param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn image_and_file_parts_take_the_chat_completions_shape() {
        let image = json!({"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"});
        assert_eq!(
            chat_part(&image, "input[0].content[0]").unwrap(),
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}})
        );
        let file = json!({"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,AA"});
        assert_eq!(
            chat_part(&file, "p").unwrap(),
            json!({"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,AA"}})
        );
        let by_id = json!({"type": "input_image", "file_id": "file-1"});
        assert_eq!(
            chat_part(&by_id, "input[0].content[0]").err().unwrap().param.as_deref(),
            Some("input[0].content[0].image_url")
        );
    }

    #[test]
    fn errors_name_the_responses_field() {
        let err = translate(json!({"input": [{"type": "item_reference", "id": "x"}]})).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("input[0].type"));
        let err = ResponsesRequest::parse(br#"{"input": "x", "temperature": "hot"}"#).err().unwrap();
        assert_eq!((err.status.as_u16(), err.param.as_deref()), (400, Some("temperature")), "{}", err.message);
        let err = translate(json!({"input": []})).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("input"));
        let err = translate(json!({"input": "x", "tools": [{"type": "function"}]})).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("tools[0].name"), "{}", err.message);
        assert_eq!(
            responses_param("messages[1].content[0]", &["instructions".into(), "input[4]".into()]),
            "input[4].content[0]"
        );
    }
}
