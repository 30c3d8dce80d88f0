//! `tool-activity` (contract 0.1.2): tools the agent runs itself, such as
//! MCP servers' tools. Each report joins the run's event stream through
//! [`super::output::OutputState::report`], so it keeps its place among the
//! text; this state only times each call for the debug log.

use std::collections::HashMap;
use std::time::Instant;

use crate::chat::{Event, ToolActivity, ToolCall, ToolResult};

/// One run's server-side tool calls in flight.
pub struct ToolActivityState {
    agent: String,
    run_id: String,
    /// Call id → tool name and start, until its result.
    started: HashMap<String, (String, Instant)>,
}

impl ToolActivityState {
    /// For the run `run_id` of `agent`.
    pub fn new(agent: &str, run_id: &str) -> Self {
        Self { agent: agent.to_string(), run_id: run_id.to_string(), started: HashMap::new() }
    }

    /// The guest is about to run `call`: the event to stream.
    pub fn called(&mut self, call: ToolCall) -> Event {
        self.started.insert(call.id.clone(), (call.name.clone(), Instant::now()));
        Event::ServerTool(ToolActivity::Called(call))
    }

    /// The guest ran a call: log it, and the event to stream.
    pub fn returned(&mut self, result: ToolResult) -> Event {
        let outcome = if result.is_error { "error" } else { "ok" };
        match self.started.remove(&result.call_id) {
            Some((tool, started)) => tracing::debug!(
                agent = self.agent,
                run_id = self.run_id,
                tool,
                call_id = result.call_id,
                ms = started.elapsed().as_millis() as u64,
                outcome,
                "server tool call"
            ),
            None => tracing::debug!(
                agent = self.agent,
                run_id = self.run_id,
                call_id = result.call_id,
                outcome,
                "server tool result for a call the agent never reported"
            ),
        }
        Event::ServerTool(ToolActivity::Returned(result))
    }
}
