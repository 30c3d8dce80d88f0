//! The assistant agent: forwards the conversation to the agent's model
//! provider and streams the answer back.
//!
//! - `systemPrompt` (agent config) goes first.
//! - The conversation is the session's history plus this turn's new messages.
//!   Clients that resend the whole conversation every time (most do) are not
//!   duplicated: once the session has history, only the messages after the
//!   client's last assistant message count as new.
//! - The client's `tools` and `tool_choice` pass through; tool calls come back
//!   to the client, and usage and finish reasons are reported as the model gives them.
//! - `mcpServers` (comma-separated URLs, each also in the agent's `http.allow`):
//!   their tools are listed at the start of the run and offered next to the
//!   client's. The assistant runs the calls of those tools itself (see [`turn`]).

mod servers;
mod turn;

use wasmclaw_sdk::{Agent, AgentError, AgentInfo, Message, Output, Role, RunRequest, config, export_agent, session};

#[derive(Default)]
struct Assistant;

impl Agent for Assistant {
    fn info() -> AgentInfo {
        AgentInfo::new("assistant", env!("CARGO_PKG_VERSION"), "A chat model with server-side conversation memory")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let messages = conversation(config::get("systemPrompt"), session::history(), req.messages);
        let servers = servers::ServerTools::connect(&config::get("mcpServers").unwrap_or_default(), &req.tools);
        let max_rounds =
            config::get("maxToolRounds").and_then(|v| v.trim().parse().ok()).unwrap_or(turn::DEFAULT_MAX_TOOL_ROUNDS);
        turn::Turn { messages, client_tools: req.tools, params: req.params, servers, max_rounds }.run(out)
    }
}

/// System prompt, then the client's system messages, then history and the new turn.
fn conversation(system_prompt: Option<String>, history: Vec<Message>, client: Vec<Message>) -> Vec<Message> {
    let mut messages = Vec::with_capacity(history.len() + client.len() + 1);
    if let Some(prompt) = system_prompt.filter(|p| !p.trim().is_empty()) {
        messages.push(Message::system(prompt));
    }
    if history.is_empty() {
        messages.extend(client);
        return messages;
    }
    let new_from = client.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    let is_system = |m: &&Message| m.role == Role::System;
    messages.extend(client.iter().filter(is_system).cloned());
    messages.extend(history);
    messages.extend(client[new_from..].iter().filter(|m| !is_system(m)).cloned());
    messages
}

export_agent!(Assistant);
