//! One run's translation into OpenClaw's `agent` / `chat` events on the
//! connection that started it (`runs` starts the run and hands it here).
//!
//! Text reaches the client as frames that carry the reply so far. To keep the
//! cost of a reply linear in its length, a run sends such a frame at most
//! every [`STREAM_INTERVAL`] and only once its previous one was written; what
//! arrives in between is merged into the next frame's `delta`. A client that
//! falls further behind makes the run wait in `emit`, as HTTP does.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::frames::{Outbox, Outgoing, now_ms, ok};
use super::runs::{Door, failure_text, final_answer};
use crate::chat::{Event, Reply, ToolActivity, ToolCallDelta, Usage, finish_reason_name};
use crate::runs::{RunEnd, RunHandle, Tracking};
use crate::runtime::RunError;

/// A run's text and reasoning frames go out at most this often.
const STREAM_INTERVAL: Duration = Duration::from_millis(100);
/// Merged events a run may hold while its client is behind; past this (or
/// [`MAX_PENDING_BYTES`]) the run itself waits.
const MAX_PENDING: usize = 64;
/// Bytes of merged deltas a run may hold while its client is behind.
const MAX_PENDING_BYTES: usize = 256 << 10;

/// Something the run produced that its client has not been sent yet.
/// Consecutive pieces of one kind merge.
#[derive(Debug)]
enum Pending {
    /// A stretch of the reply text.
    Text(Range<usize>),
    /// A stretch of the reasoning.
    Reasoning(Range<usize>),
    /// A tool call fragment, with continuation fragments of the same call appended.
    Tool(ToolCallDelta),
    /// A tool the agent ran itself: its call or its result.
    ServerTool(ToolActivity),
    Usage(Usage),
}

/// Why the event loop of a run stopped.
enum Stop {
    /// The agent returned.
    Returned,
    /// `chat.abort` asked.
    Aborted,
    /// The connection closed.
    Gone,
}

/// One run's translation into events on its connection.
pub(super) struct Stream {
    out: Outbox,
    /// wasmclaw's id of the run, as the log names it.
    run_id: String,
    /// The id the client knows the run by ([`super::runs::wire_id`]), in every event.
    wire_id: String,
    session_key: String,
    door: Door,
    seq: u64,
    chat_seq: u64,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    /// One permit: taken by a batch of frames, back once they are written.
    written: Arc<Semaphore>,
}

impl Stream {
    pub(super) fn new(out: Outbox, run_id: String, wire_id: String, session_key: String, door: Door) -> Self {
        let written = Arc::new(Semaphore::new(1));
        Self {
            out,
            run_id,
            wire_id,
            session_key,
            door,
            seq: 0,
            chat_seq: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            written,
        }
    }

    fn agent_event(&mut self, stream: &str, data: Value) -> Outgoing {
        self.seq += 1;
        let payload = json!({"runId": self.wire_id, "seq": self.seq, "stream": stream, "ts": now_ms(),
                             "sessionKey": self.session_key, "data": data});
        Outgoing::Event { event: "agent", payload }
    }

    fn chat_event(&mut self, state: &str, extra: Value) -> Option<Outgoing> {
        if self.door != Door::Chat {
            return None;
        }
        self.chat_seq += 1;
        let mut payload =
            json!({"runId": self.wire_id, "sessionKey": self.session_key, "seq": self.chat_seq, "state": state});
        if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        Some(Outgoing::Event { event: "chat", payload })
    }

    pub(super) async fn drive(mut self, mut handle: RunHandle, mut tracking: Tracking, request_id: Value) {
        let out = self.out.clone();
        let start = self.agent_event("lifecycle", json!({"phase": "start", "startedAt": now_ms()}));
        out.push(start).await;
        let mut reply = Reply::default();
        let mut next_batch = tokio::time::Instant::now();
        let stop = {
            let abort = tracking.abort_requested();
            let closed = out.closed();
            tokio::pin!(abort, closed);
            // Made when something is held, kept until that batch goes: not one timer per event.
            let mut due = None;
            loop {
                let has_room = self.pending.len() < MAX_PENDING && self.pending_bytes < MAX_PENDING_BYTES;
                if due.is_none() && !self.pending.is_empty() {
                    due = Some(Box::pin(batch_due(next_batch, self.written.clone())));
                }
                tokio::select! {
                    biased;
                    () = &mut abort => break Stop::Aborted,
                    () = &mut closed => break Stop::Gone,
                    written = async { due.as_mut().expect("checked").await }, if due.is_some() => {
                        due = None;
                        if !self.send_pending(&reply, Some(written)).await {
                            break Stop::Gone;
                        }
                        next_batch = tokio::time::Instant::now() + STREAM_INTERVAL;
                    }
                    event = handle.next(), if has_room => match event {
                        Some(event) => {
                            reply.push(&event);
                            self.hold(&event, &reply);
                        }
                        None => break Stop::Returned,
                    },
                }
            }
        };
        let end = match stop {
            Stop::Returned => handle.finish().await.map_or_else(RunEnd::Failed, |()| RunEnd::Completed),
            Stop::Aborted | Stop::Gone => {
                drop(handle);
                RunEnd::Aborted
            }
        };
        // Before anything shows the ending (events, the answer, `agent.wait`):
        // a failure inside the gateway is logged here and named by id only.
        let end = match end {
            RunEnd::Failed(RunError::Internal(detail)) => {
                let id = super::frames::request_id(&request_id);
                tracing::error!(run_id = self.run_id, request_id = %id, detail = %detail, "run failed inside the gateway; the client was sent only the request id");
                RunEnd::Failed(RunError::Internal(format!("the gateway logged the details under request id {id}")))
            }
            end => end,
        };
        if matches!(stop, Stop::Gone) {
            tracing::info!(run_id = self.run_id, "run aborted: the connection that started it closed");
            tracking.finish(reply, end);
            return;
        }
        let mut last = self.take_pending(&reply);
        last.extend(self.closing(&reply, &end));
        // Published before the last frames: waiters elsewhere need not wait for this client.
        let finished = tracking.finish(reply, end);
        if !self.push_all(last, None).await {
            return;
        }
        if self.door == Door::Agent {
            out.push(ok(&request_id, final_answer(&self.wire_id, &finished))).await;
        }
    }

    /// Keep an event for the next batch, merging it into the last one of its kind.
    fn hold(&mut self, event: &Event, reply: &Reply) {
        match event {
            Event::Text(delta) | Event::Reasoning(delta) if delta.is_empty() => {}
            Event::Text(delta) => {
                let end = reply.text.len();
                match self.pending.back_mut() {
                    Some(Pending::Text(range)) if range.end == end - delta.len() => range.end = end,
                    _ => self.pending.push_back(Pending::Text(end - delta.len()..end)),
                }
                self.pending_bytes += delta.len();
            }
            Event::Reasoning(delta) => {
                let end = reply.reasoning.len();
                match self.pending.back_mut() {
                    Some(Pending::Reasoning(range)) if range.end == end - delta.len() => range.end = end,
                    _ => self.pending.push_back(Pending::Reasoning(end - delta.len()..end)),
                }
                self.pending_bytes += delta.len();
            }
            Event::ToolCall(call) => {
                self.pending_bytes += call.arguments.len();
                match self.pending.back_mut() {
                    Some(Pending::Tool(last))
                        if last.index == call.index && call.id.is_none() && call.name.is_none() =>
                    {
                        last.arguments.push_str(&call.arguments);
                    }
                    _ => self.pending.push_back(Pending::Tool(call.clone())),
                }
            }
            Event::Usage(usage) => match self.pending.back_mut() {
                Some(Pending::Usage(last)) => *last = *usage,
                _ => self.pending.push_back(Pending::Usage(*usage)),
            },
            Event::ServerTool(activity) => {
                self.pending_bytes += match activity {
                    ToolActivity::Called(c) => c.arguments.len(),
                    ToolActivity::Returned(r) => r.output.len(),
                };
                self.pending.push_back(Pending::ServerTool(activity.clone()));
            }
            Event::Finish(_) => {}
        }
    }

    /// Send what is held as one batch of frames; `written` comes back once
    /// the batch is on the socket. False once the connection is gone.
    async fn send_pending(&mut self, reply: &Reply, written: Option<OwnedSemaphorePermit>) -> bool {
        let frames = self.take_pending(reply);
        self.push_all(frames, written).await
    }

    /// What is held, as frames (numbered now, so build them in send order).
    fn take_pending(&mut self, reply: &Reply) -> Vec<Outgoing> {
        let mut frames = Vec::with_capacity(self.pending.len() * 2);
        while let Some(item) = self.pending.pop_front() {
            match item {
                Pending::Text(range) => {
                    let (so_far, delta) = (&reply.text[..range.end], &reply.text[range]);
                    frames.push(self.agent_event("assistant", json!({"text": so_far, "delta": delta})));
                    let message = json!({"role": "assistant", "content": [{"type": "text", "text": so_far}]});
                    frames.extend(self.chat_event("delta", json!({"deltaText": delta, "message": message})));
                }
                Pending::Reasoning(range) => {
                    let (so_far, delta) = (&reply.reasoning[..range.end], &reply.reasoning[range]);
                    frames.push(self.agent_event("thinking", json!({"text": so_far, "delta": delta})));
                }
                Pending::Tool(c) => frames.push(self.agent_event(
                    "tool",
                    json!({"phase": "call", "index": c.index, "toolCallId": c.id, "name": c.name, "arguments": c.arguments}),
                )),
                Pending::ServerTool(activity) => frames.push(self.agent_event("tool", server_tool_data(&activity, reply))),
                Pending::Usage(u) => frames.push(
                    self.agent_event("usage", json!({"inputTokens": u.prompt_tokens, "outputTokens": u.completion_tokens})),
                ),
            }
        }
        self.pending_bytes = 0;
        frames
    }

    /// Queue `frames` in order, `written` released with the last one.
    async fn push_all(&self, frames: Vec<Outgoing>, mut written: Option<OwnedSemaphorePermit>) -> bool {
        let last = frames.len().saturating_sub(1);
        for (i, frame) in frames.into_iter().enumerate() {
            let receipt = if i == last { written.take() } else { None };
            if !self.out.push_with_receipt(frame, receipt).await {
                return false;
            }
        }
        true
    }

    /// The frames that end a run: lifecycle end and the chat ending.
    fn closing(&mut self, reply: &Reply, end: &RunEnd) -> Vec<Outgoing> {
        let message = json!({"role": "assistant", "content": [{"type": "text", "text": reply.text}]});
        let mut frames = Vec::with_capacity(2);
        match end {
            RunEnd::Completed => {
                frames.push(self.agent_event("lifecycle", json!({"phase": "end", "endedAt": now_ms()})));
                // Marked as the history marks the stored reply, so the UI shows it once.
                let mut message = message;
                message["__openclaw"] =
                    json!({"runId": self.wire_id, "idempotencyKey": super::openclaw::assistant_key(&self.wire_id)});
                let mut extra = json!({"message": message, "stopReason": finish_reason_name(reply.finish_reason())});
                if let Some(u) = reply.usage {
                    extra["usage"] = json!({"inputTokens": u.prompt_tokens, "outputTokens": u.completion_tokens});
                }
                frames.extend(self.chat_event("final", extra));
            }
            RunEnd::Aborted => {
                frames
                    .push(self.agent_event("lifecycle", json!({"phase": "end", "aborted": true, "endedAt": now_ms()})));
                frames.extend(self.chat_event("aborted", json!({"message": message})));
            }
            RunEnd::Failed(e) => {
                let text = failure_text(e);
                let mut data = json!({"phase": "error", "error": text, "endedAt": now_ms()});
                let mut chat = json!({"errorMessage": text});
                if let RunError::BudgetExceeded { .. } = e {
                    (data["code"], chat["errorCode"]) = (json!(e.kind()), json!(e.kind()));
                }
                frames.push(self.agent_event("lifecycle", data));
                frames.extend(self.chat_event("error", chat));
            }
        }
        frames
    }
}

/// An `agent` event's data for a tool the agent ran itself, shaped like
/// OpenClaw's own tool events: `start` with the arguments, then `result`.
fn server_tool_data(activity: &ToolActivity, reply: &Reply) -> Value {
    match activity {
        ToolActivity::Called(c) => {
            // Arguments are JSON text from the model; pass them as JSON when they parse.
            let args =
                serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| Value::String(c.arguments.clone()));
            json!({"phase": "start", "name": c.name, "toolCallId": c.id, "args": args})
        }
        ToolActivity::Returned(r) => {
            let name = reply
                .server_tools
                .iter()
                .flat_map(|round| &round.calls)
                .find(|c| c.id == r.call_id)
                .map(|c| c.name.as_str());
            json!({"phase": "result", "name": name, "toolCallId": r.call_id, "isError": r.is_error, "result": r.output})
        }
    }
}

/// Resolves when the next batch may go: its time has come and the previous
/// batch has been written.
async fn batch_due(at: tokio::time::Instant, written: Arc<Semaphore>) -> OwnedSemaphorePermit {
    tokio::time::sleep_until(at).await;
    written.acquire_owned().await.expect("the semaphore is never closed")
}
