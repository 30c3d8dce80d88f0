//! Chat completion responses and stream chunks, exactly as WIRE.md lists them.

use serde_json::{Value, json};

use crate::runs::{Reply, finish_reason, finish_reason_name};
use crate::runtime::{Event, FinishReason, Usage};

/// What every response of one completion shares.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Completion {
    /// A new completion id for `model` (echoed as the client sent it).
    pub fn new(model: String) -> Self {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), created, model }
    }

    /// The non-streaming `chat.completion` body.
    pub fn whole(&self, reply: &Reply) -> Value {
        let mut message = json!({"role": "assistant", "content": reply.text});
        if !reply.tool_calls.is_empty() {
            let calls: Vec<Value> = reply
                .tool_calls
                .iter()
                .map(
                    |c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}),
                )
                .collect();
            message["tool_calls"] = Value::Array(calls);
            if reply.text.is_empty() {
                message["content"] = Value::Null;
            }
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason_name(reply.finish_reason())}],
            "usage": usage_json(reply.usage.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: 0 })),
        })
    }
}

/// Turns run events into `chat.completion.chunk` objects, in order.
pub struct ChunkEncoder {
    completion: Completion,
    include_usage: bool,
    saw_tool_calls: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ChunkEncoder {
    /// An encoder for one stream.
    pub fn new(completion: Completion, include_usage: bool) -> Self {
        Self { completion, include_usage, saw_tool_calls: false, finish: None, usage: None }
    }

    fn chunk(&self, choices: Value) -> Value {
        let mut chunk = json!({
            "id": self.completion.id,
            "object": "chat.completion.chunk",
            "created": self.completion.created,
            "model": self.completion.model,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn delta(&self, delta: Value) -> Value {
        self.chunk(json!([{"index": 0, "delta": delta, "finish_reason": null}]))
    }

    /// The first chunk: the assistant role with empty content.
    pub fn start(&self) -> Value {
        self.delta(json!({"role": "assistant", "content": ""}))
    }

    /// Chunks for one event (none for usage/finish, which arrive at the end).
    pub fn event(&mut self, event: &Event, out: &mut Vec<Value>) {
        match event {
            Event::Text(t) if !t.is_empty() => out.push(self.delta(json!({"content": t}))),
            Event::Text(_) | Event::Reasoning(_) => {}
            Event::ToolCall(call) => {
                self.saw_tool_calls = true;
                if let Some(id) = &call.id {
                    let name = call.name.clone().unwrap_or_default();
                    out.push(self.delta(json!({"tool_calls": [{
                        "index": call.index, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]})));
                }
                if !call.arguments.is_empty() {
                    out.push(self.delta(json!({"tool_calls": [{
                        "index": call.index, "function": {"arguments": call.arguments},
                    }]})));
                }
            }
            Event::Usage(u) => self.usage = Some(*u),
            Event::Finish(f) => self.finish = Some(*f),
        }
    }

    /// The closing chunks: the finish reason, then usage when asked for.
    pub fn finish(&self, out: &mut Vec<Value>) {
        let reason = finish_reason(self.finish, self.saw_tool_calls);
        out.push(self.chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish_reason_name(reason)}])));
        if self.include_usage {
            let mut chunk = self.chunk(json!([]));
            chunk["usage"] = usage_json(self.usage.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: 0 }));
            out.push(chunk);
        }
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}
