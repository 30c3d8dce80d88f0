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
