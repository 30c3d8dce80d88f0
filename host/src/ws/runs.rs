//! `agent` and `chat.send`: the same run path as HTTP, translated into
//! OpenClaw's `agent` / `chat` events; plus `agent.wait`, `chat.abort` and
//! idempotent retries through the gateway's run board.
//!
//! A run belongs to the connection that started it: when the connection
//! closes the run is aborted at once, and its result (`aborted`) stays on the
//! board for `agent.wait` from other connections and for retries.
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

use serde::Deserialize as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::frames::{Outbox, Outgoing, WsError, codes, err, now_ms, ok};
use super::methods::Call;
use crate::chat::{AgentId, Event, Reply, ToolActivity, ToolCallDelta, Usage, finish_reason_name};
use crate::runs::{Claim, Finished, IdempotencyScope, ParamsDigest, RunEnd, RunHandle, RunInput, RunResult, Tracking};
use crate::runtime::RunError;
use crate::sessions;

/// A run's text and reasoning frames go out at most this often.
const STREAM_INTERVAL: Duration = Duration::from_millis(100);
/// Merged events a run may hold while its client is behind; past this (or
/// [`MAX_PENDING_BYTES`]) the run itself waits.
const MAX_PENDING: usize = 64;
/// Bytes of merged deltas a run may hold while its client is behind.
const MAX_PENDING_BYTES: usize = 256 << 10;

/// Which method started a run: it decides the events and the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Agent,
    Chat,
}

impl Door {
    /// The id a client knows run `run_id` by. `chat.send` answers and
    /// streams under the client's `idempotencyKey`, as OpenClaw's gateway
    /// does (its run id is that key); `agent` under wasmclaw's run id, which
    /// `agent.wait` takes.
    fn wire_id<'a>(self, run_id: &'a str, client_key: Option<&'a str>) -> &'a str {
        match (self, client_key) {
            (Door::Chat, Some(key)) => key,
            _ => run_id,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Door::Agent => "agent",
            Door::Chat => "chat.send",
        }
    }
}

/// `agent` / `chat.send` params (extra fields are accepted and ignored).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunParams {
    message: String,
    agent_id: Option<String>,
    session_key: Option<String>,
    idempotency_key: Option<String>,
}

/// Start a run for `agent` or `chat.send` and answer the call.
pub async fn start(call: Call, door: Door) {
    if let Err(e) = try_start(&call, door).await {
        call.out.push(err(&call.id, &e)).await;
    }
}

async fn try_start(call: &Call, door: Door) -> Result<(), WsError> {
    let Call { gw, out, id, params, .. } = call;
    let p = RunParams::deserialize(params).map_err(|e| WsError::invalid(format!("invalid params: {e}")))?;
    let agent = match (&p.agent_id, &p.session_key) {
        (Some(a), _) => AgentId::parse(a).ok_or_else(|| WsError::invalid(format!("{a:?} is not an agent id")))?,
        (None, Some(key)) => agent_of(gw, key),
        (None, None) if door == Door::Chat => return Err(WsError::invalid("chat.send needs a sessionKey")),
        (None, None) => gw.agents.default_agent().clone(),
    };
    // The agent's main session when none is named, one per principal (the
    // main secret's is OpenClaw's `agent:<id>:main`).
    let key = p.session_key.clone().unwrap_or_else(|| sessions::main_key(&agent, call.principal.name()));
    let owner = call.principal.name();
    let session = sessions::resolve(&agent, Some(&key), None, owner).map_err(|e| WsError::invalid(e.to_string()))?;
    let agent_name = agent.to_string();
    let client_key = p.idempotency_key.clone();
    let (handle, tracking) = match begin(call, p, agent, session, &key, door)? {
        Begun::Started(handle, tracking) => (handle, tracking),
        Begun::Replay(run_id, result) => {
            let wire_id = door.wire_id(&run_id, client_key.as_deref()).to_string();
            replay(out, id, door, wire_id, result).await;
            return Ok(());
        }
    };
    let run_id = handle.run_id.clone();
    let wire_id = door.wire_id(&run_id, client_key.as_deref()).to_string();
    let accepted = match door {
        Door::Agent => json!({"runId": wire_id, "status": "accepted", "acceptedAt": now_ms()}),
        Door::Chat => json!({"runId": wire_id, "status": "started"}),
    };
    out.push(ok(id, accepted)).await;
    super::openclaw::announce_when_done(gw, &call.principal, &run_id, &key, agent_name);
    let stream = Stream::new(out.clone(), run_id, wire_id, key, door);
    tokio::spawn(stream.drive(handle, tracking, id.clone()));
    Ok(())
}

/// The agent a session key names (`agent:<id>:…`), else the default agent.
fn agent_of(gw: &crate::gateway::Gateway, session_key: &str) -> AgentId {
    session_key
        .strip_prefix("agent:")
        .and_then(|rest| rest.split(':').next())
        .and_then(AgentId::parse)
        .unwrap_or_else(|| gw.agents.default_agent().clone())
}

/// The wasmclaw run a `chat.send` client names by its `idempotencyKey` in session `session_key`.
pub fn run_of_key(call: &Call, session_key: &str, client_key: &str) -> Option<String> {
    let agent = agent_of(&call.gw, session_key);
    let scope = IdempotencyScope::new(&call.principal, agent.as_str(), session_key, client_key);
    call.gw.agents.board().run_of(&scope)
}

/// What [`begin`] did.
enum Begun {
    Started(RunHandle, Tracking),
    /// The idempotency key names an earlier run of the same request.
    Replay(String, RunResult),
}

/// Claim the idempotency key (if any), start the run and track it. Not
/// async on purpose: a claim holds the board until the run is tracked.
fn begin(
    call: &Call,
    p: RunParams,
    agent: AgentId,
    session: sessions::SessionKey,
    key: &str,
    door: Door,
) -> Result<Begun, WsError> {
    let board = call.gw.agents.board();
    let reservation = match &p.idempotency_key {
        Some(idempotency_key) => {
            let scope = IdempotencyScope::new(&call.principal, agent.as_str(), key, idempotency_key);
            match board.claim(scope, digest(door, agent.as_str(), key, &p.message)) {
                Claim::New(reservation) => Some(reservation),
                Claim::Replay { run_id, result } => return Ok(Begun::Replay(run_id, result)),
                Claim::Conflict => {
                    return Err(WsError::invalid(format!(
                        "idempotencyKey {idempotency_key:?} was already used for another request in this session"
                    )));
                }
            }
        }
        None => None,
    };
    let mut input = RunInput::user_message(call.principal.clone(), agent, session, p.message);
    input.idempotency_key = p.idempotency_key;
    // The run's log lines, the agent's own included, carry the frame's id as their request id.
    let request_id = super::frames::request_id(&call.id);
    // The frame's trace server span (none while tracing is off) is the run's parent.
    let server = crate::telemetry::ws_server_span(door.method());
    let span = server.in_scope(|| tracing::info_span!("ws_request", request_id = %request_id));
    let _server = server.enter();
    let handle = span.in_scope(|| call.gw.agents.start(input)).map_err(|e| match e {
        RunError::UnknownAgent(a) => WsError::invalid(format!("unknown agent {a:?}")),
        RunError::Internal(detail) => WsError::internal(detail),
        RunError::StoreUnavailable(detail) => WsError::unavailable("session database", detail),
        other => WsError::new(codes::UNAVAILABLE, other.to_string()),
    })?;
    let tracking = match reservation {
        Some(reservation) => reservation.track(&call.principal, &handle.run_id, key),
        None => board.track(&call.principal, &handle.run_id, key),
    };
    Ok(Begun::Started(handle, tracking))
}

/// What makes two requests with one idempotency key the same request.
fn digest(door: Door, agent: &str, session: &str, message: &str) -> ParamsDigest {
    let mut hash = sha2::Sha256::new();
    for part in [door.method(), agent, session, message] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// A retried request: the first run's answer again, no events, no new run.
async fn replay(out: &Outbox, id: &Value, door: Door, run_id: String, mut result: RunResult) {
    if door == Door::Chat {
        let status = result.borrow().as_ref().map_or("in_flight", |finished| outcome(&finished.end).0);
        out.push(ok(id, json!({"runId": run_id, "status": status, "cached": true}))).await;
        return;
    }
    let (out, id) = (out.clone(), id.clone());
    tokio::spawn(async move {
        let finished = result.wait_for(Option::is_some).await.ok().and_then(|done| done.clone());
        if let Some(finished) = finished {
            out.push(ok(&id, final_answer(&run_id, &finished))).await;
        }
    });
}

/// `agent.wait {runId, timeoutMs?}`: the caller's own runs only.
pub async fn wait(call: Call) -> Result<Option<Value>, WsError> {
    let run_id = call.params["runId"].as_str().ok_or_else(|| WsError::invalid("agent.wait needs a runId"))?;
    let mut result = call
        .gw
        .agents
        .board()
        .result(&call.principal, run_id)
        .ok_or_else(|| WsError::invalid(format!("unknown run {run_id:?}")))?;
    let timeout = Duration::from_millis(call.params["timeoutMs"].as_u64().unwrap_or(30_000));
    match tokio::time::timeout(timeout, result.wait_for(Option::is_some)).await {
        Ok(Ok(done)) => Ok(done.as_ref().map(|finished| final_answer(run_id, finished))),
        _ => Ok(Some(json!({"runId": run_id, "status": "timeout"}))),
    }
}

/// What a client is told of a run that failed as `e`. A database's own
/// words (addresses, errno, settings) stay in the log, where the run's
/// failure is written with them (`runs`), as the HTTP doors do.
fn failure_text(e: &RunError) -> String {
    match e {
        RunError::StoreUnavailable(_) => {
            "The session database is unavailable; retry shortly (the gateway logged the details)".to_string()
        }
        e => e.to_string(),
    }
}

/// `status` and `summary` of a run's ending, as OpenClaw's CLI reads them.
fn outcome(end: &RunEnd) -> (&'static str, String) {
    match end {
        RunEnd::Completed => ("ok", "completed".to_string()),
        RunEnd::Aborted => ("aborted", "aborted".to_string()),
        RunEnd::Failed(e @ RunError::Timeout(_)) => ("timeout", e.to_string()),
        RunEnd::Failed(e) => ("error", failure_text(e)),
    }
}

/// The final `res` of an `agent` run.
fn final_answer(run_id: &str, finished: &Finished) -> Value {
    let (status, summary) = outcome(&finished.end);
    let text = &finished.text;
    let payloads = if text.is_empty() { json!([]) } else { json!([{"text": text}]) };
    let mut answer = json!({"runId": run_id, "status": status, "summary": summary, "result": {"payloads": payloads}});
    if let RunEnd::Failed(e @ RunError::BudgetExceeded { .. }) = &finished.end {
        answer["error"] = json!({"code": e.kind(), "message": e.to_string()});
    }
    if finished.dropped {
        // Past gateway.ws.maxResultBytes*: the ending is known, the text is gone.
        answer["resultDropped"] = json!(true);
    }
    answer
}

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
struct Stream {
    out: Outbox,
    /// wasmclaw's id of the run, as the log names it.
    run_id: String,
    /// The id the client knows the run by ([`Door::wire_id`]), in every event.
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
    fn new(out: Outbox, run_id: String, wire_id: String, session_key: String, door: Door) -> Self {
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

    async fn drive(mut self, mut handle: RunHandle, mut tracking: Tracking, request_id: Value) {
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
