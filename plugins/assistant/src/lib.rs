//! The assistant agent: forwards the conversation to the agent's model
//! provider and streams the answer back.
//!
//! - `systemPrompt` (agent config) goes first.
//! - The conversation is the session's history plus this turn's new messages
//!   (`session::conversation`): clients that resend the whole conversation
//!   every time (most do) are not duplicated: once the session has history,
//!   only the messages after the client's last assistant message count as new.
//! - The client's `tools` and `tool_choice` pass through; tool calls come back
//!   to the client, and usage and finish reasons are reported as the model gives them.
//! - `mcpServers` (comma-separated URLs, each also in the agent's `http.allow`):
//!   their tools are listed at the start of the run and offered next to the
//!   client's. The assistant runs the calls of those tools itself (see [`turn`]).
//!   Each list is reused by later runs for `mcpToolsTtlSeconds` (default 300;
//!   `SECONDS` for every server, `URL=SECONDS` for one, comma-separated; 0
//!   lists every run), sooner when the server says its tools changed.

mod servers;
mod turn;

use wasmclaw_sdk::{Agent, AgentError, AgentInfo, Message, Output, RunRequest, config, export_agent, session};

#[derive(Default)]
struct Assistant;

impl Agent for Assistant {
    fn info() -> AgentInfo {
        AgentInfo::new("assistant", env!("CARGO_PKG_VERSION"), "A chat model with server-side conversation memory")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let mut messages = session::conversation(req.messages);
        if let Some(prompt) = config::get("systemPrompt").filter(|p| !p.trim().is_empty()) {
            messages.insert(0, Message::system(prompt));
        }
        let servers = servers::ServerTools::connect(
            &config::get("mcpServers").unwrap_or_default(),
            &config::get("mcpToolsTtlSeconds").unwrap_or_default(),
            &req.tools,
        );
        let max_rounds =
            config::get("maxToolRounds").and_then(|v| v.trim().parse().ok()).unwrap_or(turn::DEFAULT_MAX_TOOL_ROUNDS);
        turn::Turn { messages, client_tools: req.tools, params: req.params, servers, max_rounds }.run(out)
    }
}

export_agent!(Assistant);
