//! One turn with the model: stream its answer to the client, and while it
//! calls MCP servers' tools, run them and ask again.
//!
//! - Text, reasoning and the client's tool calls stream to the client as they
//!   come; server tool calls do not (the gateway shows them to WebSocket
//!   clients as `tool` events, from `tools::called`/`returned`).
//! - A failing server tool (or an unreachable server) gives the model the
//!   error text as the tool's result.
//! - An answer that calls both kinds: the server tools run first, then the
//!   client's calls end the turn as usual; the model reads the server results
//!   with the client's on the next turn.
//! - After `maxToolRounds` rounds the model's next server calls are not run:
//!   the turn ends with an answer saying so (finish reason `length`), so the
//!   client gets a reply and the transcript keeps the rounds that ran.

use std::collections::BTreeMap;

use wasmclaw_sdk::llm::{self, CompletionRequest, ToolCallAssembly};
use wasmclaw_sdk::{AgentError, Event, FinishReason, Message, Output, ToolCall, ToolCallDelta, ToolSpec, tools};

use crate::servers::ServerTools;

/// Rounds of server tool calls per turn unless `config.maxToolRounds` says otherwise.
pub const DEFAULT_MAX_TOOL_ROUNDS: u32 = 8;

/// Everything one turn needs.
pub struct Turn {
    pub messages: Vec<Message>,
    pub client_tools: Vec<ToolSpec>,
    pub params: String,
    pub servers: ServerTools,
    pub max_rounds: u32,
}

/// What one completion asked for, beyond the text already streamed.
#[derive(Default)]
struct Answer {
    text: String,
    /// Server tool calls by the model's index, assembled from their pieces.
    server_calls: ToolCallAssembly,
    /// The model's index → the index the client sees, for its own tools.
    client_index: BTreeMap<u32, u32>,
    saw_usage: bool,
    finish: Option<FinishReason>,
}

impl Turn {
    /// Run the turn to its end, streaming to `out`.
    pub fn run(mut self, out: &Output) -> Result<(), AgentError> {
        let mut tools = self.client_tools.clone();
        tools.extend(self.servers.specs().iter().cloned());
        let mut rounds = 0;
        let mut saw_usage = false;
        loop {
            let request = CompletionRequest {
                params: self.params.clone(),
                ..CompletionRequest::new(self.messages.clone()).with_tools(tools.clone())
            };
            let answer = self.stream(&request, out)?;
            saw_usage |= answer.saw_usage;
            if answer.server_calls.is_empty() {
                return finish(out, saw_usage, answer.finish);
            }
            if rounds == self.max_rounds {
                let names: Vec<&str> = answer.server_calls.calls().map(|c| c.name.as_str()).collect();
                out.text(format!(
                    "\n\n[Stopped: the model asked for more tool calls ({}) after {rounds} rounds, the limit set by \
                     maxToolRounds.]",
                    names.join(", ")
                ))?;
                return finish(out, saw_usage, Some(FinishReason::Length));
            }
            rounds += 1;
            let calls: Vec<ToolCall> = answer.server_calls.into_calls();
            self.messages.push(Message { tool_calls: calls.clone(), ..Message::assistant(answer.text) });
            for call in &calls {
                let result = tools::run(call, || self.servers.call(call));
                self.messages.push(result);
            }
            if !answer.client_index.is_empty() {
                // The client's calls already went out: the turn ends with them.
                return finish(out, saw_usage, answer.finish);
            }
        }
    }

    /// Stream one completion: text and the client's calls go out as they come.
    fn stream(&self, request: &CompletionRequest, out: &Output) -> Result<Answer, AgentError> {
        let mut answer = Answer::default();
        for event in llm::stream(request)? {
            match event? {
                Event::Text(t) => {
                    answer.text.push_str(&t);
                    out.text(t)?;
                }
                Event::Reasoning(t) => out.reasoning(t)?,
                Event::ToolCall(delta) => self.tool_call(delta, &mut answer, out)?,
                // Reported once at the end, summed over the turn's completions.
                Event::Usage(_) => answer.saw_usage = true,
                Event::Finish(f) => answer.finish = Some(f),
            }
        }
        Ok(answer)
    }

    /// Route a tool call piece: the first piece's name says whose tool it is.
    fn tool_call(&self, delta: ToolCallDelta, answer: &mut Answer, out: &Output) -> Result<(), AgentError> {
        let known = answer.client_index.get(&delta.index).copied();
        let server = answer.server_calls.get(delta.index).is_some()
            || known.is_none() && delta.name.as_deref().is_some_and(|n| self.servers.offers(n));
        if server {
            answer.server_calls.push(&delta);
            return Ok(());
        }
        let next = answer.client_index.len() as u32;
        let index = *answer.client_index.entry(delta.index).or_insert(next);
        out.emit(&Event::ToolCall(ToolCallDelta { index, ..delta }))?;
        Ok(())
    }
}

/// The end of the turn: the summed usage if the provider reported any, the finish reason.
fn finish(out: &Output, saw_usage: bool, reason: Option<FinishReason>) -> Result<(), AgentError> {
    if saw_usage {
        out.llm_usage()?;
    }
    if let Some(reason) = reason {
        out.finish(reason)?;
    }
    Ok(())
}
