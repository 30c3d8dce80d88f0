//! Chat completion responses and stream chunks, exactly as docs/WIRE.md lists them.

use serde::Serialize;

use crate::chat::{Event, FinishReason, Reply, Usage, finish_reason, finish_reason_name};
use crate::http::stream::{Encoder, SseWriter};

/// What every response of one completion shares.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Completion {
    /// A new chat completion id for `model` (echoed as the client sent it).
    pub fn new(model: String) -> Self {
        Self::with_prefix("chatcmpl", model)
    }

    /// A new legacy (`text_completion`) id, `cmpl-…` as OpenAI's.
    pub fn legacy(model: String) -> Self {
        Self::with_prefix("cmpl", model)
    }

    fn with_prefix(prefix: &str, model: String) -> Self {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()), created, model }
    }

    /// The non-streaming `chat.completion` body.
    pub fn whole<'a>(&'a self, reply: &'a Reply) -> impl Serialize + 'a {
        let tool_calls: Vec<ToolCallJson<'_>> = reply
            .tool_calls
            .iter()
            .map(|c| ToolCallJson {
                id: &c.id,
                kind: "function",
                function: FunctionJson { name: &c.name, arguments: &c.arguments },
            })
            .collect();
        // OpenAI sends `content: null` beside tool calls when there is no text.
        let content = (tool_calls.is_empty() || !reply.text.is_empty()).then_some(reply.text.as_str());
        let message = AssistantMessage { role: "assistant", content, tool_calls };
        WholeCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [WholeChoice { index: 0, message, finish_reason: finish_reason_name(reply.finish_reason()) }],
            usage: reply.usage.into(),
        }
    }
}

#[derive(Serialize)]
struct WholeCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [WholeChoice<'a>; 1],
    usage: UsageJson,
}

#[derive(Serialize)]
struct WholeChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallJson<'a>>,
}

#[derive(Serialize)]
struct ToolCallJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionJson<'a>,
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// Turns run events into `chat.completion.chunk` objects, in order, as JSON text.
///
/// Chunks are typed structs serialized straight to text, not `Value` trees:
/// a stream writes one per token, and building a map per chunk was a tenth
/// of the gateway's CPU while streaming.
pub struct ChunkEncoder {
    completion: Completion,
    include_usage: bool,
    saw_tool_calls: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    /// Absent unless the client asked for usage; then `null` on every chunk
    /// but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageJson>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// `usage` as OpenAI spells it.
#[derive(Serialize, Clone, Copy)]
pub(super) struct UsageJson {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

impl From<Option<Usage>> for UsageJson {
    /// An agent that reported no usage counts as zero tokens, as docs/WIRE.md shows.
    fn from(usage: Option<Usage>) -> Self {
        let u = usage.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: 0 });
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

impl ChunkEncoder {
    /// An encoder for one stream.
    pub fn new(completion: Completion, include_usage: bool) -> Self {
        Self { completion, include_usage, saw_tool_calls: false, finish: None, usage: None }
    }

    fn chunk(&self, choices: &[Choice<'_>], usage: Option<UsageJson>, out: &mut SseWriter) {
        let chunk = Chunk {
            id: &self.completion.id,
            object: "chat.completion.chunk",
            created: self.completion.created,
            model: &self.completion.model,
            choices,
            usage: self.include_usage.then_some(usage),
        };
        out.json(&chunk);
    }

    fn delta(&self, delta: Delta<'_>, out: &mut SseWriter) {
        self.chunk(&[Choice { index: 0, delta, finish_reason: None }], None, out);
    }
}

impl Encoder for ChunkEncoder {
    /// The first chunk: the assistant role only. No `content: ""`: a reply
    /// that only calls tools would read as an empty text part (the AI SDK's).
    fn start(&self, out: &mut SseWriter) {
        self.delta(Delta { role: Some("assistant"), content: None, tool_calls: None }, out);
    }

    /// Chunks for one event (none for usage/finish, which arrive at the end).
    fn event(&mut self, event: &Event, out: &mut SseWriter) {
        match event {
            Event::Text(t) if !t.is_empty() => self.delta(Delta { content: Some(t), ..Delta::default() }, out),
            // Server-side tools are the agent's business: OpenAI clients see only the answer.
            Event::Text(_) | Event::Reasoning(_) | Event::ServerTool(_) => {}
            Event::ToolCall(call) => {
                self.saw_tool_calls = true;
                let index = call.index;
                if let Some(id) = &call.id {
                    let name = call.name.as_deref().unwrap_or_default();
                    let function = FunctionDelta { name: Some(name), arguments: "" };
                    let opening = ToolCallDelta { index, id: Some(id), kind: Some("function"), function };
                    self.delta(Delta { tool_calls: Some([opening]), ..Delta::default() }, out);
                }
                if !call.arguments.is_empty() {
                    let function = FunctionDelta { name: None, arguments: &call.arguments };
                    let more = ToolCallDelta { index, id: None, kind: None, function };
                    self.delta(Delta { tool_calls: Some([more]), ..Delta::default() }, out);
                }
            }
            Event::Usage(u) => self.usage = Some(*u),
            Event::Finish(f) => self.finish = Some(*f),
        }
    }

    /// The closing chunks: the finish reason, then usage when asked for.
    fn finish(&self, out: &mut SseWriter) {
        let reason = finish_reason_name(finish_reason(self.finish, self.saw_tool_calls));
        self.chunk(&[Choice { index: 0, delta: Delta::default(), finish_reason: Some(reason) }], None, out);
        if self.include_usage {
            self.chunk(&[], Some(self.usage.into()), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::chat::ToolCallDelta as CallEvent;

    fn chunks(events: &[Event]) -> Vec<Value> {
        let mut encoder = ChunkEncoder::new(Completion::new("openclaw".into()), false);
        let mut out = SseWriter::default();
        encoder.start(&mut out);
        for event in events {
            encoder.event(event, &mut out);
        }
        encoder.finish(&mut out);
        out.payloads().iter().map(|c| serde_json::from_str(c).unwrap()).collect()
    }

    #[test]
    fn a_reply_that_only_calls_tools_never_carries_content() {
        let call = CallEvent { index: 0, id: Some("call_1".into()), name: Some("f".into()), arguments: "{}".into() };
        let chunks = chunks(&[Event::ToolCall(call), Event::Finish(FinishReason::ToolCalls)]);
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant"}), "the first chunk is the role only");
        for chunk in &chunks {
            assert!(chunk["choices"][0]["delta"].get("content").is_none(), "no content in {chunk}");
        }
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn text_appears_only_as_the_agent_writes_it() {
        let chunks = chunks(&[Event::Text(String::new()), Event::Text("hi".into())]);
        let contents: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("content")).collect();
        assert_eq!(contents, [&json!("hi")]);
    }
}
