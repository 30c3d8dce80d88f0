//! Tools the agent runs itself during a turn (contract 0.1.2
//! `tool-activity`), such as the tools of MCP servers ([`crate::mcp`]).
//!
//! The model's calls of such tools never go to the client as `tool_calls`.
//! Report each call before running it and its result after: the gateway keeps
//! both in the session transcript (the next turn's history shows them, as an
//! `assistant` message with `tool_calls` and one `tool` message per result)
//! and shows them to WebSocket clients as `agent` events with `stream: "tool"`.
//!
//! ```no_run
//! # use wasmclaw_sdk::{tools, Message, ToolCall};
//! # fn add(arguments: &str) -> Result<String, String> { Ok("3".into()) }
//! # let call = ToolCall { id: "c1".into(), name: "add".into(), arguments: "{}".into() };
//! // Reports the call, runs it, reports the result: append the message it returns.
//! let message: Message = tools::run(&call, || add(&call.arguments));
//! ```

use crate::{Message, ToolCall};

/// One report of a tool the agent ran, as `testing::TestRun` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolReport {
    /// The agent was about to run this call.
    Called(ToolCall),
    /// The result of the call with `call_id`: the output, or the error text when `is_error`.
    Returned { call_id: String, output: String, is_error: bool },
}

/// Report that the agent is running `call` itself.
pub fn called(call: &ToolCall) {
    crate::host::tool_called(call)
}

/// Report the result of the call `call_id`: its output, or the error text when `is_error`.
pub fn returned(call_id: &str, output: &str, is_error: bool) {
    crate::host::tool_returned(call_id, output, is_error)
}

/// Report `call`, run it with `tool`, report the result, and return the
/// `tool` message to append to the conversation. An `Err` is reported as an
/// error and given to the model as the result text, so it can react.
pub fn run(call: &ToolCall, tool: impl FnOnce() -> Result<String, String>) -> Message {
    called(call);
    let (output, is_error) = match tool() {
        Ok(output) => (output, false),
        Err(error) => (error, true),
    };
    returned(&call.id, &output, is_error);
    Message::tool(call.id.clone(), output)
}

#[cfg(test)]
mod tests {
    use crate::testing::TestHost;
    use crate::{Agent, AgentError, AgentInfo, Event, Message, Output, Role, RunRequest, ToolCallDelta, llm};

    /// A tool loop: runs the model's `shout` calls itself, then answers.
    #[derive(Default)]
    struct Looper;

    impl Agent for Looper {
        fn info() -> AgentInfo {
            AgentInfo::new("looper", "0", "runs its tools")
        }

        fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
            let mut messages = req.messages;
            loop {
                let request = llm::CompletionRequest {
                    messages: messages.clone(),
                    tools: vec![],
                    params: "{}".into(),
                    model: None,
                };
                let answer = llm::complete_text(&request)?;
                out.text(&answer.text)?;
                if answer.tool_calls.is_empty() {
                    return Ok(());
                }
                messages.push(Message { tool_calls: answer.tool_calls.clone(), ..Message::assistant(answer.text) });
                for call in &answer.tool_calls {
                    messages.push(super::run(call, || match call.arguments.as_str() {
                        "" => Err("nothing to shout".into()),
                        text => Ok(text.to_uppercase()),
                    }));
                }
            }
        }
    }

    fn call(id: &str, arguments: &str) -> Event {
        Event::ToolCall(ToolCallDelta {
            index: 0,
            id: Some(id.into()),
            name: Some("shout".into()),
            arguments: arguments.into(),
        })
    }

    #[test]
    fn a_tool_loop_is_recorded_and_kept_in_the_session_as_the_gateway_keeps_it() {
        let mut host = TestHost::new()
            .llm_events([Event::Text("Shouting. ".into()), call("c1", "hi")])
            .llm_events([call("c2", "")])
            .llm_reply("Done.");
        let run = host.run::<Looper>("shout hi").ok();
        assert_eq!(run.text(), "Shouting. Done.");
        let calls: Vec<String> = run.server_tool_calls().into_iter().map(|c| c.id).collect();
        assert_eq!(calls, ["c1", "c2"]);
        let tool_results = &run.llm_requests[2].messages[2..];
        assert_eq!(tool_results[0], Message::tool("c1", "HI"));
        assert_eq!(tool_results[2], Message::tool("c2", "nothing to shout"));
        let session: Vec<(Role, String, usize)> =
            host.session().iter().map(|m| (m.role, m.text(), m.tool_calls.len())).collect();
        // No text between the two rounds: one assistant message calls both, as the gateway stores it.
        assert_eq!(
            session,
            [
                (Role::User, "shout hi".into(), 0),
                (Role::Assistant, "Shouting. ".into(), 2),
                (Role::Tool, "HI".into(), 0),
                (Role::Tool, "nothing to shout".into(), 0),
                (Role::Assistant, "Done.".into(), 0),
            ]
        );
    }
}
