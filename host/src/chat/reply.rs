//! A whole reply assembled from a run's events, and the finish-reason rule.

use super::{Event, FinishReason, Message, Role, ToolCall, Usage};

/// A whole reply assembled from a run's events.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub text: String,
    pub reasoning: String,
    /// Tool calls in index order, assembled from their deltas.
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Usage>,
    /// What the agent said explicitly, if anything.
    pub finish: Option<FinishReason>,
}

impl Reply {
    /// Fold one event in.
    pub fn push(&mut self, event: &Event) {
        match event {
            Event::Text(t) => self.text.push_str(t),
            Event::Reasoning(t) => self.reasoning.push_str(t),
            Event::ToolCall(delta) => {
                let index = delta.index as usize;
                if self.tool_calls.len() <= index {
                    self.tool_calls.resize_with(index + 1, || ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                }
                let call = &mut self.tool_calls[index];
                if let Some(id) = &delta.id {
                    call.id.clone_from(id);
                }
                if let Some(name) = &delta.name {
                    call.name.clone_from(name);
                }
                call.arguments.push_str(&delta.arguments);
            }
            Event::Usage(u) => self.usage = Some(*u),
            Event::Finish(f) => self.finish = Some(*f),
        }
    }

    /// The reply as a transcript message.
    pub fn to_message(&self) -> Message {
        Message {
            role: Role::Assistant,
            content: self.text.clone(),
            parts: Vec::new(),
            name: None,
            tool_call_id: None,
            tool_calls: self.tool_calls.clone(),
        }
    }

    /// The finish reason: explicit, else `tool-calls` when there are calls, else `stop`.
    pub fn finish_reason(&self) -> FinishReason {
        finish_reason(self.finish, !self.tool_calls.is_empty())
    }
}

/// The rule shared by whole replies and streams.
pub fn finish_reason(explicit: Option<FinishReason>, saw_tool_calls: bool) -> FinishReason {
    explicit.unwrap_or(if saw_tool_calls { FinishReason::ToolCalls } else { FinishReason::Stop })
}

/// The wire name of a finish reason, as OpenAI and OpenClaw clients expect it.
pub fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
    }
}
