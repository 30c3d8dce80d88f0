//! `tool-activity` (contract 0.1.2): tools the agent runs itself, such as
//! MCP servers' tools. Each report joins the run's event stream through
//! [`OutputState::report`], so it keeps its place among the text and costs
//! output budget; this state only times each call for the debug log, and
//! keeps nothing of a report the stream did not take.

use std::collections::HashMap;
use std::time::Instant;

use super::output::OutputState;
use crate::chat::{Event, ToolActivity, ToolCall, ToolResult};
use crate::telemetry;

/// Most calls timed at once; later ones are still streamed, not timed.
const MAX_TIMED: usize = 256;

/// One run's server-side tool calls in flight.
pub struct ToolActivityState {
    agent: String,
    run_id: String,
    /// Call id → tool name, start and `execute_tool` span (none while
    /// tracing is off), until its result. Only calls the stream took, so
    /// their ids and names were paid for in output budget.
    started: HashMap<String, (String, Instant, tracing::Span)>,
}

impl ToolActivityState {
    /// For the run `run_id` of `agent`.
    pub fn new(agent: &str, run_id: &str) -> Self {
        Self { agent: agent.to_string(), run_id: run_id.to_string(), started: HashMap::new() }
    }

    /// The guest is about to run `call`: stream it and time it.
    pub async fn called(&mut self, output: &mut OutputState, call: ToolCall) {
        if !output.accepts() {
            return;
        }
        let timed =
            (self.started.len() < MAX_TIMED).then(|| (call.id.clone(), call.name.clone(), telemetry::tool_span(&call)));
        if output.report(Event::ServerTool(ToolActivity::Called(call))).await
            && let Some((id, name, span)) = timed
        {
            self.started.insert(id, (name, Instant::now(), span));
        }
    }

    /// The guest ran a call: log it and stream the result.
    pub async fn returned(&mut self, output: &mut OutputState, result: ToolResult) {
        let outcome = if result.is_error { "error" } else { "ok" };
        match self.started.remove(&result.call_id) {
            Some((tool, started, span)) => {
                telemetry::tool_returned(&span, &result);
                tracing::debug!(
                    agent = self.agent,
                    run_id = self.run_id,
                    tool,
                    call_id = result.call_id,
                    ms = started.elapsed().as_millis() as u64,
                    outcome,
                    "server tool call"
                )
            }
            None if output.accepts() => tracing::debug!(
                agent = self.agent,
                run_id = self.run_id,
                call_id = result.call_id,
                outcome,
                "server tool result for a call not timed (never reported, or past the first {MAX_TIMED})"
            ),
            // The stream stopped: the guest is told by its next emit.
            None => {}
        }
        output.report(Event::ServerTool(ToolActivity::Returned(result))).await;
    }

    /// Calls being timed now.
    #[cfg(test)]
    fn timed(&self) -> usize {
        self.started.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::output::OutputCapability;
    use super::*;
    use tokio::sync::mpsc;

    fn call(i: usize, pad: usize) -> ToolCall {
        ToolCall { id: format!("{i}{}", "i".repeat(pad)), name: "n".repeat(pad), arguments: String::new() }
    }

    #[tokio::test]
    async fn reports_the_stream_dropped_are_not_kept() {
        let (tx, _rx) = mpsc::channel(1024);
        let mut output = OutputCapability::new(10_000).instantiate(Some(crate::runtime::RunEvents::new(tx)), false);
        let mut tools = ToolActivityState::new("a", "r");
        for i in 0..100 {
            tools.called(&mut output, call(i, 1000)).await;
        }
        // Four reports of ~2 KB fit in 10 KB; the rest found the stream stopped.
        assert_eq!(tools.timed(), 4);
        assert!(!output.accepts());
    }

    #[tokio::test]
    async fn timing_is_capped_while_the_stream_takes_every_report() {
        let (tx, _rx) = mpsc::channel(1024);
        let mut output = OutputCapability::new(1 << 20).instantiate(Some(crate::runtime::RunEvents::new(tx)), false);
        let mut tools = ToolActivityState::new("a", "r");
        for i in 0..MAX_TIMED + 10 {
            tools.called(&mut output, call(i, 0)).await;
        }
        assert_eq!(tools.timed(), MAX_TIMED);
        assert!(output.accepts());
        tools.returned(&mut output, ToolResult { call_id: "0".into(), output: "ok".into(), is_error: false }).await;
        assert_eq!(tools.timed(), MAX_TIMED - 1, "a result ends its timing");
    }
}
