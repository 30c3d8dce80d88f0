//! A reply cut into what the mock sends: the streamed chunks or the whole
//! completion, with the usage a provider would report.

use serde_json::{Value, json};

use crate::{Reply, UsageReport};

pub(crate) enum Pieces {
    /// Tokens, and whether the stream ends properly.
    Text(Vec<String>, bool),
    Tools(Vec<ToolPieces>),
}

/// One tool call of a reply, its arguments in pieces.
pub(crate) struct ToolPieces {
    pub id: String,
    pub name: String,
    pub parts: Vec<String>,
}

impl Pieces {
    pub(crate) fn completes(&self) -> bool {
        !matches!(self, Pieces::Text(_, false))
    }

    fn completion_tokens(&self) -> u32 {
        match self {
            Pieces::Text(t, _) => t.len() as u32,
            Pieces::Tools(calls) => calls.iter().map(|c| c.parts.len() as u32).sum(),
        }
    }

    fn finish<'a>(&self, reply: &'a Reply) -> &'a str {
        if matches!(self, Pieces::Tools(_)) { "tool_calls" } else { reply.finish }
    }

    pub(crate) fn chunks(&self, model: &str, reply: &Reply, prompt_tokens: u32, include_usage: bool) -> Vec<String> {
        let chunk = |delta: Value, finish: Option<&str>| {
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            .to_string()
        };
        let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        match self {
            Pieces::Text(tokens, _) => out.extend(tokens.iter().map(|t| chunk(json!({"content": t}), None))),
            Pieces::Tools(calls) => {
                for (index, ToolPieces { id, name, parts }) in calls.iter().enumerate() {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                        None,
                    ));
                    out.extend(
                        parts.iter().map(|p| {
                            chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": p}}]}), None)
                        }),
                    );
                }
            }
        }
        if !self.completes() {
            return out;
        }
        out.push(chunk(json!({}), Some(self.finish(reply))));
        if let Some(usage) = usage(reply.usage, prompt_tokens, self.completion_tokens()).filter(|_| include_usage) {
            out.push(
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [], "usage": usage})
                .to_string(),
            );
        }
        out.push("[DONE]".into());
        out
    }

    pub(crate) fn whole(&self, model: &str, reply: &Reply, prompt_tokens: u32) -> Value {
        let message = match self {
            Pieces::Text(tokens, _) => json!({"role": "assistant", "content": tokens.concat()}),
            Pieces::Tools(calls) => {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.parts.concat()}}))
                    .collect();
                json!({"role": "assistant", "content": null, "tool_calls": calls})
            }
        };
        json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
               "choices": [{"index": 0, "message": message, "finish_reason": self.finish(reply)}],
               "usage": usage(reply.usage, prompt_tokens, self.completion_tokens())})
    }
}

fn usage(report: UsageReport, prompt: u32, completion: u32) -> Option<Value> {
    let (prompt, completion, cached, reasoning) = match report {
        UsageReport::Missing => return None,
        UsageReport::Exact { prompt, completion } => (prompt, completion, 0, 0),
        UsageReport::Counted { cached, reasoning } => (prompt, completion + reasoning, cached.min(prompt), reasoning),
    };
    Some(json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": reasoning}}))
}

pub(crate) fn split_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        out.push(if i == 0 { word.to_string() } else { format!(" {word}") });
    }
    out
}
