//! `wasmclaw:agent@0.1.0`: the generated bindings, their conversions to the
//! host's own types, and the host side of every import. Thin by design: each
//! import forwards to its capability in `runtime::capabilities`, and all but
//! the message conversion (a 0.1 message is text) come from `host_imports!`.

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::chat;
use crate::providers::CompletionStream;
use crate::runtime::capabilities::RunState;
use crate::runtime::capabilities::llm::{CompletionRequest, LlmFailure};
use crate::runtime::capabilities::output::OutputStop;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    imports: {
        // Async so a slow client applies backpressure to the guest instead of
        // buffering without bound; trappable so a guest that keeps emitting
        // after being told to stop is killed.
        "wasmclaw:agent/output.emit": async | trappable,
        // Network waits: async so they yield to the executor and can be
        // cancelled by dropping the store.
        "wasmclaw:agent/llm.complete": async | trappable,
        "wasmclaw:agent/llm.[method]completion.next": async | trappable,
        // Reports share the output stream, and its backpressure.
        "wasmclaw:agent/tool-activity.called": async | trappable,
        "wasmclaw:agent/tool-activity.returned": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasmclaw:agent/llm.completion": crate::providers::CompletionStream,
    },
});

// `self::` because the generated module shares the crate's name.
use self::wasmclaw::agent::{config, llm, log, output, session, tool_activity, types};

/// The world's name, as logs and errors show it. The linker also serves
/// components built for 0.1.0 with it (semver-compatible names).
pub const WORLD: &str = "wasmclaw:agent@0.1.2";

/// Link every import of this world.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    Agent::add_to_linker::<RunState, HasSelf<RunState>>(linker, |s| s)
}

host_imports!();

impl From<types::Message> for chat::Message {
    fn from(m: types::Message) -> Self {
        Self {
            role: m.role.into(),
            content: m.content,
            parts: Vec::new(),
            name: m.name,
            tool_call_id: m.tool_call_id,
            tool_calls: m.tool_calls.into_iter().map(Into::into).collect(),
        }
    }
}

/// A 0.1 agent sees the text view: text parts joined with "\n"; images,
/// audio and files are left out (a placeholder would read as user text).
impl From<chat::Message> for types::Message {
    fn from(m: chat::Message) -> Self {
        Self {
            role: m.role.into(),
            content: m.content,
            name: m.name,
            tool_call_id: m.tool_call_id,
            tool_calls: m.tool_calls.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_events_survive_the_round_trip() {
        let message = chat::Message {
            role: chat::Role::Assistant,
            content: "hi".into(),
            parts: Vec::new(),
            name: Some("n".into()),
            tool_call_id: None,
            tool_calls: vec![chat::ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into() }],
        };
        assert_eq!(chat::Message::from(types::Message::from(message.clone())), message);
        let events = [
            chat::Event::Text("t".into()),
            chat::Event::Reasoning("r".into()),
            chat::Event::ToolCall(chat::ToolCallDelta {
                index: 2,
                id: Some("c".into()),
                name: None,
                arguments: "{".into(),
            }),
            chat::Event::Usage(chat::Usage { prompt_tokens: 3, completion_tokens: 4 }),
            chat::Event::Finish(chat::FinishReason::ToolCalls),
        ];
        for event in events {
            assert_eq!(guest_event(event.clone()).map(chat::Event::from), Some(event));
        }
    }
}
