//! `output.emit`: the run's event stream, with backpressure and a byte budget.
//! Every event a guest sends enters the host here, so this is where events
//! are checked: each one costs budget (text or not), and a tool call's index
//! stays below [`MAX_TOOL_CALLS`]. Accepted events go to the run's
//! [`Outbox`], which holds a burst until the run waits.

use std::sync::Arc;

use super::outbox::{Outbox, RunEvents};

use crate::chat::{Event, MAX_TOOL_CALLS, Reply, ToolActivity};
use crate::runtime::budget::Exhausted;

/// What every event costs on top of its text: an event with none (usage, a
/// finish, an empty delta) still takes a frame or a chunk to pass on, so a
/// guest cannot send them for free until its time runs out.
const EVENT_COST: usize = 64;

/// Why a run's output stream stopped accepting events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStop {
    /// The receiver is gone: the client disconnected or the run was cancelled.
    Closed,
    /// The run wrote more than its output budget.
    Limit,
}

/// The agent's output budget.
pub struct OutputCapability {
    budget: usize,
}

impl OutputCapability {
    /// Prepare from `limits.maxOutputBytes`.
    pub fn new(budget: usize) -> Self {
        Self { budget }
    }

    /// `keep_reply`: assemble the reply for the transcript; throw-away
    /// sessions skip it to spare a copy per event.
    pub fn instantiate(&self, events: Option<RunEvents>, keep_reply: bool) -> OutputState {
        let (events, first) = match events {
            Some(RunEvents { tx, delivery, first }) => (Some(Arc::new(Outbox::new(tx, delivery))), first),
            None => (None, None),
        };
        OutputState {
            events,
            first,
            budget: self.budget,
            stop: None,
            told: false,
            refused: None,
            reply: keep_reply.then(Reply::default),
            tape: Default::default(),
        }
    }
}

/// One run's output side.
pub struct OutputState {
    events: Option<Arc<Outbox>>,
    /// Taken by the first event accepted: the door may see it only at the end.
    first: Option<crate::metrics::FirstEvent>,
    budget: usize,
    stop: Option<OutputStop>,
    /// Whether `emit` has returned `stop` to the guest (a report cannot).
    told: bool,
    /// The tool-call index the guest sent beyond [`MAX_TOOL_CALLS`], if any.
    refused: Option<u32>,
    reply: Option<Reply>,
    /// Where a recorded or replayed run's output is kept.
    tape: crate::tape::Tape,
}

impl OutputState {
    /// Keep what the run streams on `tape` as well.
    pub fn taped(mut self, tape: crate::tape::Tape) -> Self {
        self.tape = tape;
        self
    }

    /// The run's outbox, for the future that runs the guest to hand over
    /// when it waits ([`super::outbox::hand_over_on_wait`]) and for host calls that yield.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.events.as_ref()
    }

    /// Send one event; waits while the consumer is slow. `Err(stop)` tells
    /// the guest to stop; a guest that emits again after that is trapped.
    pub async fn emit(&mut self, ev: Event) -> wasmtime::Result<Result<(), OutputStop>> {
        if let Some(stop) = self.stop {
            if !self.told {
                // A report found the stream stopped: this is the guest's first word of it.
                self.told = true;
                return Ok(Err(stop));
            }
            // It was told to stop and did not: end it rather than let it spin.
            wasmtime::bail!("agent kept emitting after emit returned {stop:?}");
        }
        if let Event::ToolCall(delta) = &ev
            && delta.index >= MAX_TOOL_CALLS
        {
            // A contract violation, not a budget the guest can react to: end the run.
            self.refused = Some(delta.index);
            wasmtime::bail!("tool call index {} is beyond the limit of {MAX_TOOL_CALLS}", delta.index);
        }
        if let Event::Usage(claim) = &ev {
            // The host meters usage itself; what the agent says is its claim
            // only. It still costs budget, so it cannot be sent for free.
            tracing::debug!(
                prompt_tokens = claim.prompt_tokens,
                completion_tokens = claim.completion_tokens,
                "the agent's own usage claim (not passed on)"
            );
            if event_size(&ev) > self.budget {
                self.stop = Some(OutputStop::Limit);
                self.told = true;
                return Ok(Err(OutputStop::Limit));
            }
            self.budget -= event_size(&ev);
            return Ok(Ok(()));
        }
        let sent = self.send(ev).await;
        self.told = self.stop.is_some();
        sent
    }

    /// The run's usage as the host metered it, its last event. Not counted
    /// against the agent's budget, and not sent if the stream already stopped.
    pub async fn metered(&mut self, usage: &crate::usage::RunUsage) {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let ev = Event::Usage(crate::chat::Usage {
            prompt_tokens: clamp(usage.tokens.input),
            completion_tokens: clamp(usage.tokens.output),
        });
        if self.accepts() {
            self.budget = self.budget.saturating_add(event_size(&ev));
            let _ = self.send(ev).await;
        }
        // Sent after the guest returned: nothing would hand it over later.
        if let Some(outbox) = &self.events {
            outbox.hand_over();
        }
    }

    /// Put a report (server-side tool activity) in the stream, in order
    /// with the text; whether the stream took it. Reports return nothing to
    /// the guest: once the stream has stopped they are dropped, and the next
    /// `emit` says why.
    pub async fn report(&mut self, ev: Event) -> bool {
        // A stop found here is told by the next `emit` (`told` stays false).
        self.accepts() && matches!(self.send(ev).await, Ok(Ok(())))
    }

    /// Whether the stream still takes events: a report made now may be kept.
    pub fn accepts(&self) -> bool {
        self.stop.is_none() && self.refused.is_none()
    }

    async fn send(&mut self, ev: Event) -> wasmtime::Result<Result<(), OutputStop>> {
        let Some(events) = &self.events else {
            return Ok(Err(OutputStop::Closed));
        };
        let size = event_size(&ev);
        if size > self.budget {
            self.stop = Some(OutputStop::Limit);
            return Ok(Err(OutputStop::Limit));
        }
        self.budget -= size;
        if let Some(first) = self.first.take() {
            first.seen();
        }
        if self.tape.is_on() {
            self.tape.output(&ev);
        }
        if let Some(reply) = &mut self.reply {
            reply.push(&ev);
        }
        if events.pass(ev).await.is_err() {
            self.stop = Some(OutputStop::Closed);
            return Ok(Err(OutputStop::Closed));
        }
        Ok(Ok(()))
    }

    /// Why output stopped, as a run budget.
    pub fn exhausted(&self) -> Option<Exhausted> {
        if let Some(index) = self.refused {
            return Some(Exhausted::ToolCalls(index));
        }
        self.stop.map(|stop| match stop {
            OutputStop::Closed => Exhausted::Cancelled,
            OutputStop::Limit => Exhausted::Output,
        })
    }

    /// The reply so far (empty for throw-away sessions).
    pub fn take_reply(&mut self) -> Reply {
        self.reply.take().unwrap_or_default()
    }
}

fn event_size(ev: &Event) -> usize {
    EVENT_COST
        + match ev {
            Event::Text(t) | Event::Reasoning(t) => t.len(),
            Event::ToolCall(c) => {
                c.arguments.len() + c.id.as_ref().map_or(0, String::len) + c.name.as_ref().map_or(0, String::len)
            }
            Event::ServerTool(ToolActivity::Called(c)) => c.id.len() + c.name.len() + c.arguments.len(),
            Event::ServerTool(ToolActivity::Returned(r)) => r.call_id.len() + r.output.len(),
            Event::Usage(_) | Event::Finish(_) => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ToolCall, ToolCallDelta, ToolResult, Usage};
    use crate::metrics::{FirstEvent, Gauges, Metrics};
    use tokio::sync::mpsc;

    fn called() -> Event {
        Event::ServerTool(ToolActivity::Called(ToolCall { id: "c".into(), name: "t".into(), arguments: "{}".into() }))
    }

    #[tokio::test]
    async fn reports_keep_their_place_and_count_in_the_reply() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut out = OutputCapability::new(1 << 20).instantiate(Some(RunEvents::new(tx)), true);
        out.emit(Event::Text("a".into())).await.unwrap().unwrap();
        out.report(called()).await;
        let result = ToolResult { call_id: "c".into(), output: "42".into(), is_error: false };
        out.report(Event::ServerTool(ToolActivity::Returned(result))).await;
        out.emit(Event::Text("b".into())).await.unwrap().unwrap();
        out.outbox().unwrap().hand_over();
        let mut seen = Vec::new();
        while let Ok(event) = rx.try_recv() {
            seen.push(matches!(event, Event::ServerTool(_)));
        }
        assert_eq!(seen, [false, true, true, false]);
        assert_eq!(out.take_reply().to_messages().len(), 3, "assistant call, tool result, final text");
    }

    #[tokio::test]
    async fn a_tool_call_index_beyond_the_limit_ends_the_run_before_any_reply_sees_it() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut out = OutputCapability::new(1 << 20).instantiate(Some(RunEvents::new(tx)), true);
        let call = |index| {
            Event::ToolCall(ToolCallDelta {
                index,
                id: Some("c".into()),
                name: Some("f".into()),
                arguments: "{}".into(),
            })
        };
        out.emit(call(MAX_TOOL_CALLS - 1)).await.unwrap().unwrap();
        assert!(out.emit(call(4_000_000_000)).await.is_err(), "the guest is trapped");
        assert_eq!(out.exhausted(), Some(Exhausted::ToolCalls(4_000_000_000)));
        assert!(!out.accepts());
        assert_eq!(out.take_reply().tool_calls.len(), MAX_TOOL_CALLS as usize, "the refused call was never folded");
        out.outbox().unwrap().hand_over();
        assert!(matches!(rx.try_recv(), Ok(Event::ToolCall(_))));
        assert!(rx.try_recv().is_err(), "nor passed on");
    }

    #[tokio::test]
    async fn events_without_text_still_cost_budget() {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut out = OutputCapability::new(EVENT_COST * 10).instantiate(Some(RunEvents::new(tx)), false);
        let finish = || Event::Finish(crate::chat::FinishReason::Stop);
        for _ in 0..10 {
            out.emit(finish()).await.unwrap().unwrap();
        }
        assert_eq!(out.emit(finish()).await.unwrap(), Err(OutputStop::Limit));
        assert_eq!(out.exhausted(), Some(Exhausted::Output));
        out.outbox().unwrap().hand_over();
        let mut passed = 0;
        while rx.try_recv().is_ok() {
            passed += 1;
        }
        assert_eq!(passed, 10);
    }

    #[tokio::test]
    async fn an_agents_usage_claim_costs_budget_but_is_not_passed_on() {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut out = OutputCapability::new(EVENT_COST * 10).instantiate(Some(RunEvents::new(tx)), true);
        let claim = || Event::Usage(Usage { prompt_tokens: 999, completion_tokens: 999 });
        for _ in 0..10 {
            out.emit(claim()).await.unwrap().unwrap();
        }
        assert_eq!(out.emit(claim()).await.unwrap(), Err(OutputStop::Limit), "a claim loop meets the limit");
        assert!(rx.try_recv().is_err(), "no claim reaches the client");
        assert_eq!(out.take_reply().usage, None, "nor the stored reply");

        // The host's own figure goes out, even after the agent's budget is spent.
        let (tx, mut rx) = mpsc::channel(8);
        let mut out = OutputCapability::new(EVENT_COST).instantiate(Some(RunEvents::new(tx)), true);
        out.emit(claim()).await.unwrap().unwrap();
        let metered = crate::usage::RunUsage {
            tokens: crate::usage::Tokens { input: 7, output: 2, ..Default::default() },
            llm_calls: 1,
            ..Default::default()
        };
        out.metered(&metered).await;
        assert_eq!(rx.try_recv().unwrap(), Event::Usage(Usage { prompt_tokens: 7, completion_tokens: 2 }));
        assert_eq!(out.take_reply().usage, Some(Usage { prompt_tokens: 7, completion_tokens: 2 }));
    }

    #[tokio::test]
    async fn a_stop_met_by_a_report_is_told_by_the_next_emit_not_trapped() {
        let (tx, rx) = mpsc::channel(8);
        drop(rx);
        let mut out = OutputCapability::new(1 << 20).instantiate(Some(RunEvents::new(tx)), false);
        out.report(called()).await;
        assert_eq!(out.emit(Event::Text("x".into())).await.unwrap(), Err(OutputStop::Closed));
        assert!(out.emit(Event::Text("y".into())).await.is_err(), "emitting after being told traps");
    }

    #[tokio::test]
    async fn the_first_event_is_timed_when_the_guest_emits_it_once_even_if_the_door_sees_it_at_the_end() {
        let metrics = Metrics::default();
        let (tx, mut rx) = mpsc::channel(8);
        let delivery = super::super::outbox::Delivery::default();
        delivery.whole();
        let first = Some(FirstEvent::new(metrics.agent("main"), std::time::Instant::now()));
        let mut out = OutputCapability::new(1 << 20).instantiate(Some(RunEvents { tx, delivery, first }), false);
        let count = || {
            let text = metrics.render(&Gauges { active_runs: 0, max_runs: 1, pool_instances: None });
            let line = text.lines().find(|l| l.starts_with("wasmclaw_run_first_event_seconds_count{agent=\"main\"}"));
            line.map(|l| l.rsplit(' ').next().unwrap().to_string())
        };
        assert_eq!(count().as_deref(), Some("0"));
        for _ in 0..3 {
            out.emit(Event::Text("a".into())).await.unwrap().unwrap();
        }
        assert!(rx.try_recv().is_err(), "the door has seen nothing yet");
        assert_eq!(count().as_deref(), Some("1"), "timed once, when the guest emitted");
    }
}
