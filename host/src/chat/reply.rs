//! A whole reply assembled from a run's events, and the finish-reason rule.

use super::{Event, FinishReason, Message, Role, ToolActivity, ToolCall, ToolResult, Usage};

/// Most tool calls one reply may hold: a call's `index` is below this. A
/// reply keeps a slot for every index up to the highest, so an unchecked
/// index is an allocation the guest chooses; the output capability refuses
/// larger ones before any reply sees them.
pub const MAX_TOOL_CALLS: u32 = 128;

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
    /// Tools the agent ran itself, in order; `text` is split at their places.
    pub server_tools: Vec<ToolRound>,
}

/// Server-side tool calls made with no reply text between them, and their results.
#[derive(Debug, Clone, Default)]
pub struct ToolRound {
    /// How much of the reply text came before the calls.
    pub text_before: usize,
    pub calls: Vec<ToolCall>,
    pub results: Vec<ToolResult>,
}

impl Reply {
    /// Fold one event in. Events come from the output capability, which
    /// holds tool-call indexes below [`MAX_TOOL_CALLS`]; one above it is
    /// dropped here rather than allocated for.
    pub fn push(&mut self, event: &Event) {
        match event {
            Event::Text(t) => self.text.push_str(t),
            Event::Reasoning(t) => self.reasoning.push_str(t),
            // Unreachable through `output`; never an allocation the guest picks.
            Event::ToolCall(delta) if delta.index >= MAX_TOOL_CALLS => {}
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
            Event::ServerTool(ToolActivity::Called(call)) => match self.server_tools.last_mut() {
                // No text since the round began: same assistant message.
                Some(round) if round.text_before == self.text.len() => round.calls.push(call.clone()),
                _ => self.server_tools.push(ToolRound {
                    text_before: self.text.len(),
                    calls: vec![call.clone()],
                    results: Vec::new(),
                }),
            },
            Event::ServerTool(ToolActivity::Returned(result)) => {
                // A result for no reported call has no place in the transcript.
                let round = self.server_tools.iter_mut().rev().find(|r| r.calls.iter().any(|c| c.id == result.call_id));
                if let Some(round) = round {
                    round.results.push(result.clone());
                }
            }
        }
    }

    /// The reply as transcript messages: for each round of server-side tools,
    /// the assistant message that called them (with the text before it) and
    /// one `tool` message per result; then the rest of the text with the
    /// client's tool calls.
    pub fn to_messages(&self) -> Vec<Message> {
        let mut messages = Vec::with_capacity(1 + self.server_tools.len() * 3);
        let mut at = 0;
        for round in &self.server_tools {
            messages.push(Message {
                role: Role::Assistant,
                content: self.text[at..round.text_before].to_string(),
                parts: Vec::new(),
                name: None,
                tool_call_id: None,
                tool_calls: round.calls.clone(),
            });
            messages.extend(round.results.iter().map(|r| Message {
                role: Role::Tool,
                content: r.output.clone(),
                parts: Vec::new(),
                name: None,
                tool_call_id: Some(r.call_id.clone()),
                tool_calls: Vec::new(),
            }));
            at = round.text_before;
        }
        messages.push(Message {
            role: Role::Assistant,
            content: self.text[at..].to_string(),
            parts: Vec::new(),
            name: None,
            tool_call_id: None,
            tool_calls: self.tool_calls.clone(),
        });
        messages
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> Event {
        Event::ServerTool(ToolActivity::Called(ToolCall { id: id.into(), name: "add".into(), arguments: "{}".into() }))
    }

    fn returned(id: &str, output: &str) -> Event {
        Event::ServerTool(ToolActivity::Returned(ToolResult {
            call_id: id.into(),
            output: output.into(),
            is_error: false,
        }))
    }

    #[test]
    fn server_tool_rounds_split_the_text_into_transcript_messages() {
        let mut reply = Reply::default();
        for event in [
            Event::Text("Let me add. ".into()),
            call("a"),
            call("b"),
            returned("a", "3"),
            returned("b", "7"),
            Event::Text("Then multiply. ".into()),
            call("c"),
            returned("c", "21"),
            Event::Text("It is 21.".into()),
        ] {
            reply.push(&event);
        }
        let messages = reply.to_messages();
        let shape: Vec<_> = messages
            .iter()
            .map(|m| (m.role, m.content.as_str(), m.tool_calls.len(), m.tool_call_id.as_deref()))
            .collect();
        assert_eq!(
            shape,
            [
                (Role::Assistant, "Let me add. ", 2, None),
                (Role::Tool, "3", 0, Some("a")),
                (Role::Tool, "7", 0, Some("b")),
                (Role::Assistant, "Then multiply. ", 1, None),
                (Role::Tool, "21", 0, Some("c")),
                (Role::Assistant, "It is 21.", 0, None),
            ]
        );
        // Clients still see the whole text as the answer.
        assert_eq!(reply.text, "Let me add. Then multiply. It is 21.");
    }

    #[test]
    fn a_tool_call_index_beyond_the_limit_is_never_allocated_for() {
        let mut reply = Reply::default();
        let delta = |index| {
            Event::ToolCall(super::super::ToolCallDelta { index, id: None, name: None, arguments: "{}".into() })
        };
        reply.push(&delta(4_000_000_000));
        reply.push(&delta(MAX_TOOL_CALLS));
        assert!(reply.tool_calls.is_empty());
        reply.push(&delta(MAX_TOOL_CALLS - 1));
        assert_eq!(reply.tool_calls.len(), MAX_TOOL_CALLS as usize);
    }

    #[test]
    fn a_reply_without_server_tools_is_one_message() {
        let mut reply = Reply::default();
        reply.push(&Event::Text("hi".into()));
        reply.push(&returned("nobody", "ignored"));
        assert_eq!(reply.to_messages(), [Message::text(Role::Assistant, "hi")]);
    }
}
