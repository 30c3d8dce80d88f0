//! The OpenAI chat-completions wire format, as the gateway speaks it upstream:
//! request bodies out, stream chunks in.

use bytes::Bytes;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::chat::{ContentPart, Event, FinishReason, Message, Role, ToolCallDelta, ToolSpec, Usage};
use crate::usage::Tokens;

/// Keys the host sets itself; an agent's `params` cannot override them.
const RESERVED: [&str; 5] = ["model", "messages", "stream", "stream_options", "tools"];

/// The streaming request body, serialized. `params` must be a JSON object (or empty).
pub fn request_body(model: &str, messages: &[Message], tools: &[ToolSpec], params: &str) -> Result<Bytes, String> {
    let mut extra = Map::new();
    if !params.trim().is_empty() {
        match serde_json::from_str::<Value>(params) {
            Ok(Value::Object(map)) => extra.extend(map.into_iter().filter(|(k, _)| !RESERVED.contains(&k.as_str()))),
            _ => return Err("params must be a JSON object".into()),
        }
    }
    // OpenAI refuses both without `tools`; clients send them regardless.
    if tools.is_empty() {
        extra.remove("tool_choice");
        extra.remove("parallel_tool_calls");
    }
    let tools = tools.iter().map(tool_json).collect::<Result<Vec<Value>, String>>()?;
    let body = Body {
        extra,
        model,
        messages: Messages(messages),
        stream: true,
        stream_options: StreamOptions { include_usage: true },
        tools,
    };
    Ok(serde_json::to_vec(&body).map_err(|e| e.to_string())?.into())
}

/// The body as it goes out, borrowing the call's messages: written straight
/// to bytes, with no `Value` tree of the conversation built and dropped per call.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    extra: Map<String, Value>,
    model: &'a str,
    messages: Messages<'a>,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(OneMessage))
    }
}

struct OneMessage<'a>(&'a Message);

impl Serialize for OneMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("role", role)?;
        if !m.tool_calls.is_empty() && m.content.is_empty() && m.parts.is_empty() {
            out.serialize_entry("content", &())?;
        } else if m.parts.is_empty() {
            out.serialize_entry("content", &m.content)?;
        } else {
            out.serialize_entry("content", &m.parts.iter().map(part_json).collect::<Vec<_>>())?;
        }
        if let Some(name) = &m.name {
            out.serialize_entry("name", name)?;
        }
        if let Some(id) = &m.tool_call_id {
            out.serialize_entry("tool_call_id", id)?;
        }
        if !m.tool_calls.is_empty() {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(
                    |c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}),
                )
                .collect();
            out.serialize_entry("tool_calls", &calls)?;
        }
        out.end()
    }
}

/// One part as an OpenAI chat content part; optional fields only when set.
fn part_json(part: &ContentPart) -> Value {
    let present = |pairs: &[(&str, &Option<String>)]| -> Map<String, Value> {
        pairs.iter().filter_map(|(k, v)| Some((k.to_string(), Value::from(v.as_deref()?)))).collect()
    };
    match part {
        ContentPart::Text(text) => json!({"type": "text", "text": text}),
        ContentPart::Image { url, detail } => {
            let mut image = present(&[("detail", detail)]);
            image.insert("url".into(), url.as_str().into());
            json!({"type": "image_url", "image_url": image})
        }
        ContentPart::Audio { data, format } => {
            json!({"type": "input_audio", "input_audio": {"data": data, "format": format}})
        }
        ContentPart::File { file_id, file_data, filename } => {
            json!({"type": "file", "file": present(&[("file_id", file_id), ("file_data", file_data), ("filename", filename)])})
        }
    }
}

fn tool_json(t: &ToolSpec) -> Result<Value, String> {
    let parameters: Value =
        serde_json::from_str(&t.parameters).map_err(|e| format!("tool {:?}: parameters are not JSON: {e}", t.name))?;
    Ok(
        json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": parameters}}),
    )
}

#[derive(Deserialize)]
struct Chunk<'a> {
    /// The model that answered (borrowed: no copy per chunk).
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<UsageIn>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    finish_reason: Option<FinishIn>,
}

/// A `finish_reason`, read without a `String`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FinishIn {
    Length,
    ToolCalls,
    FunctionCall,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    /// vLLM, DeepSeek and llama.cpp call it `reasoning_content`; others `reasoning`.
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Option<Vec<ToolCallIn>>,
}

#[derive(Deserialize)]
struct ToolCallIn {
    index: Option<u32>,
    id: Option<String>,
    function: Option<FunctionIn>,
}

#[derive(Deserialize)]
struct FunctionIn {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct UsageIn {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u32>,
}

impl UsageIn {
    fn tokens(&self) -> Tokens {
        Tokens {
            input: self.prompt_tokens.into(),
            output: self.completion_tokens.into(),
            cached_input: self.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0).into(),
            reasoning: self.completion_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0).into(),
        }
    }
}

/// The events in one `data:` payload, in wire order, and the usage it
/// reports (with the details the guest's event has no room for). `Err`
/// carries the provider's own message when it reports an error inside the stream.
/// `model` gets the answering model's name from the first chunk that has one.
pub fn chunk_events(
    data: &[u8],
    out: &mut impl Extend<Event>,
    model: &mut Option<String>,
) -> Result<Option<Tokens>, String> {
    let mut push = |event| out.extend(std::iter::once(event));
    let chunk: Chunk = serde_json::from_slice(data).map_err(|e| format!("unreadable stream chunk: {e}"))?;
    if model.is_none() {
        *model = chunk.model.filter(|m| !m.is_empty()).map(|m| m.into_owned());
    }
    if let Some(error) = chunk.error {
        let message = error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_string);
        return Err(message);
    }
    // Only the first choice: the gateway never asks for `n > 1`.
    if let Some(choice) = chunk.choices.into_iter().next() {
        if let Some(delta) = choice.delta {
            if let Some(r) = delta.reasoning_content.or(delta.reasoning).filter(|r| !r.is_empty()) {
                push(Event::Reasoning(r));
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                push(Event::Text(text));
            }
            for (position, call) in delta.tool_calls.into_iter().flatten().enumerate() {
                let function = call.function.unwrap_or(FunctionIn { name: None, arguments: None });
                push(Event::ToolCall(ToolCallDelta {
                    index: call.index.unwrap_or(position as u32),
                    id: call.id,
                    name: function.name,
                    arguments: function.arguments.unwrap_or_default(),
                }));
            }
        }
        if let Some(reason) = choice.finish_reason {
            push(Event::Finish(match reason {
                FinishIn::Length => FinishReason::Length,
                FinishIn::ToolCalls | FinishIn::FunctionCall => FinishReason::ToolCalls,
                FinishIn::Other => FinishReason::Stop,
            }));
        }
    }
    let Some(u) = chunk.usage else { return Ok(None) };
    push(Event::Usage(Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }));
    Ok(Some(u.tokens()))
}

/// The `error.message` of an error body, else the start of the body itself.
pub fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("error")).or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .map_or_else(|| body.trim().to_string(), str::to_string);
    message.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body as JSON again, to look at.
    fn request_json(model: &str, messages: &[Message], tools: &[ToolSpec], params: &str) -> Result<Value, String> {
        request_body(model, messages, tools, params).map(|body| serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn stream_chunks_become_events_in_order() {
        let mut events = Vec::new();
        let data = r#"{"choices":[{"index":0,"delta":{"content":"Hi","tool_calls":[{"index":1,"id":"c1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let tokens = chunk_events(data.as_bytes(), &mut events, &mut None).unwrap();
        assert_eq!(tokens, Some(Tokens { input: 3, output: 4, cached_input: 0, reasoning: 0 }));
        assert!(matches!(&events[0], Event::Text(t) if t == "Hi"));
        assert!(matches!(&events[1], Event::ToolCall(c) if c.index == 1 && c.id.as_deref() == Some("c1")));
        assert!(matches!(events[2], Event::Finish(FinishReason::ToolCalls)));
        assert!(matches!(events[3], Event::Usage(Usage { prompt_tokens: 3, completion_tokens: 4 })));
    }

    #[test]
    fn cached_and_reasoning_tokens_are_read_from_the_details() {
        let data = r#"{"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":40,"total_tokens":140,
            "prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":30}}}"#;
        let mut events = Vec::new();
        let tokens = chunk_events(data.as_bytes(), &mut events, &mut None).unwrap();
        assert_eq!(tokens, Some(Tokens { input: 100, output: 40, cached_input: 64, reasoning: 30 }));
        assert!(matches!(events[..], [Event::Usage(Usage { prompt_tokens: 100, completion_tokens: 40 })]));
        let none = chunk_events(br#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#, &mut Vec::new(), &mut None);
        assert_eq!(none, Ok(None), "a chunk with no usage reports none");
    }

    #[test]
    fn finish_reasons_are_read_without_a_string_and_unknown_ones_stop() {
        for (reason, want) in [
            ("length", FinishReason::Length),
            ("tool_calls", FinishReason::ToolCalls),
            ("function_call", FinishReason::ToolCalls),
            ("stop", FinishReason::Stop),
            ("content_filter", FinishReason::Stop),
            ("\\u006cength", FinishReason::Length),
        ] {
            let data = format!(r#"{{"choices":[{{"delta":{{}},"finish_reason":"{reason}"}}]}}"#);
            let mut events = Vec::new();
            chunk_events(data.as_bytes(), &mut events, &mut None).unwrap();
            assert!(matches!(events[..], [Event::Finish(f)] if f == want), "{reason}: {events:?}");
        }
    }

    #[test]
    fn the_answering_model_is_read_from_the_first_chunk_that_names_it() {
        let mut model = None;
        chunk_events(br#"{"choices":[]}"#, &mut Vec::new(), &mut model).unwrap();
        assert_eq!(model, None);
        let first = br#"{"model":"gpt-4o-2024-08-06","choices":[{"delta":{"content":"a"}}]}"#;
        chunk_events(first, &mut Vec::new(), &mut model).unwrap();
        chunk_events(br#"{"model":"other","choices":[]}"#, &mut Vec::new(), &mut model).unwrap();
        assert_eq!(model.as_deref(), Some("gpt-4o-2024-08-06"));
        let mut escaped = None;
        chunk_events(br#"{"model":"a\/b","choices":[]}"#, &mut Vec::new(), &mut escaped).unwrap();
        assert_eq!(escaped.as_deref(), Some("a/b"), "an escaped name is read too");
    }

    #[test]
    fn an_error_inside_the_stream_is_reported() {
        let err = chunk_events(br#"{"error":{"message":"overloaded"}}"#, &mut Vec::new(), &mut None).unwrap_err();
        assert_eq!(err, "overloaded");
        assert!(chunk_events(b"not json", &mut Vec::new(), &mut None).is_err());
    }

    #[test]
    fn parts_go_out_as_content_arrays_and_text_as_a_string() {
        let parts = vec![
            ContentPart::Text("look".into()),
            ContentPart::Image { url: "data:image/png;base64,AAAA".into(), detail: Some("low".into()) },
            ContentPart::Audio { data: "UklG".into(), format: "wav".into() },
            ContentPart::File { file_id: None, file_data: Some("JVBE".into()), filename: Some("a.pdf".into()) },
        ];
        let messages = [Message::text(Role::System, "be brief"), Message::with_parts(Role::User, parts)];
        let body = request_json("m", &messages, &[], "").unwrap();
        assert_eq!(body["messages"][0]["content"], "be brief");
        assert_eq!(
            body["messages"][1]["content"],
            json!([
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                {"type": "file", "file": {"file_data": "JVBE", "filename": "a.pdf"}},
            ])
        );
    }

    #[test]
    fn the_body_carries_roles_names_tool_calls_and_tools_as_openai_reads_them() {
        use crate::chat::ToolCall;
        let mut asked = Message::text(Role::User, "weather?");
        asked.name = Some("ada".into());
        let mut called = Message::text(Role::Assistant, "");
        called.tool_calls = vec![ToolCall { id: "c1".into(), name: "get".into(), arguments: r#"{"q":1}"#.into() }];
        let mut answered = Message::text(Role::Tool, "sunny");
        answered.tool_call_id = Some("c1".into());
        let tools =
            [ToolSpec { name: "get".into(), description: "d".into(), parameters: r#"{"type":"object"}"#.into() }];
        let messages = [asked, called, answered];
        let body = request_json("m", &messages, &tools, r#"{"temperature":0,"tool_choice":"auto"}"#).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "m", "stream": true, "stream_options": {"include_usage": true},
                "temperature": 0, "tool_choice": "auto",
                "messages": [
                    {"role": "user", "content": "weather?", "name": "ada"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}}]},
                    {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                ],
                "tools": [{"type": "function", "function": {"name": "get", "description": "d", "parameters": {"type": "object"}}}],
            })
        );
        let bad = [ToolSpec { name: "t".into(), description: String::new(), parameters: "{".into() }];
        assert!(request_body("m", &[], &bad, "").unwrap_err().contains("tool \"t\""));
    }

    #[test]
    fn params_cannot_replace_what_the_host_sets() {
        let body =
            request_json("m", &[], &[], r#"{"model":"other","stream":false,"temperature":0.5,"tool_choice":"auto"}"#)
                .unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["stream"], true);
        assert_eq!(body["temperature"], 0.5);
        assert!(body.get("tool_choice").is_none(), "tool_choice without tools is rejected by OpenAI");
        let body = request_json("m", &[], &[], r#"{"parallel_tool_calls":false,"max_completion_tokens":9}"#).unwrap();
        assert!(body.get("parallel_tool_calls").is_none(), "so is parallel_tool_calls");
        assert_eq!(body["max_completion_tokens"], 9, "passed under the name the client used");
        assert!(request_body("m", &[], &[], "[1]").is_err());
    }
}
