//! `agent` and `chat.send`: the same run path as HTTP, translated into
//! OpenClaw's `agent` / `chat` events; plus `agent.wait`, `chat.abort` and
//! idempotent retries through the gateway's run board. Runs outlive the
//! connection that started them.

use std::time::Duration;

use serde::Deserialize as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::frames::{Outbox, WsError, codes, err, now_ms, ok};
use super::methods::Call;
use crate::chat::{AgentId, Event, Reply, finish_reason_name};
use crate::runs::{Claim, Finished, IdempotencyScope, ParamsDigest, RunEnd, RunHandle, RunInput, RunResult, Tracking};
use crate::runtime::RunError;
use crate::sessions;

/// Which method started a run: it decides the events and the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Agent,
    Chat,
}

impl Door {
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
        call.out.send(err(&call.id, &e));
    }
}

async fn try_start(call: &Call, door: Door) -> Result<(), WsError> {
    let Call { gw, out, id, params, .. } = call;
    let p = RunParams::deserialize(params).map_err(|e| WsError::invalid(format!("invalid params: {e}")))?;
    let agent = match (&p.agent_id, &p.session_key) {
        (Some(a), _) => AgentId::parse(a).ok_or_else(|| WsError::invalid(format!("{a:?} is not an agent id")))?,
        (None, Some(key)) => key
            .strip_prefix("agent:")
            .and_then(|rest| rest.split(':').next())
            .and_then(AgentId::parse)
            .unwrap_or_else(|| gw.agents.default_agent().clone()),
        (None, None) if door == Door::Chat => return Err(WsError::invalid("chat.send needs a sessionKey")),
        (None, None) => gw.agents.default_agent().clone(),
    };
    // OpenClaw's main session of an agent when none is named.
    let key = p.session_key.clone().unwrap_or_else(|| format!("agent:{agent}:main"));
    let session = sessions::resolve(&agent, Some(&key), None).map_err(|e| WsError::invalid(e.to_string()))?;
    let (handle, tracking) = match begin(call, p, agent, session, &key, door)? {
        Begun::Started(handle, tracking) => (handle, tracking),
        Begun::Replay(run_id, result) => {
            replay(out, id, door, run_id, result);
            return Ok(());
        }
    };
    let run_id = handle.run_id.clone();
    let accepted = match door {
        Door::Agent => json!({"runId": run_id, "status": "accepted", "acceptedAt": now_ms()}),
        Door::Chat => json!({"runId": run_id, "status": "started"}),
    };
    out.send(ok(id, accepted));
    let stream = Stream { out: out.clone(), run_id, session_key: key, door, seq: 0, chat_seq: 0 };
    tokio::spawn(stream.drive(handle, tracking, id.clone()));
    Ok(())
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
    let input = RunInput::user_message(agent, session, p.message);
    let handle = call.gw.agents.start(input).map_err(|e| match e {
        RunError::UnknownAgent(a) => WsError::invalid(format!("unknown agent {a:?}")),
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
fn replay(out: &Outbox, id: &Value, door: Door, run_id: String, mut result: RunResult) {
    if door == Door::Chat {
        let status = result.borrow().as_ref().map_or("in_flight", |finished| outcome(&finished.end).0);
        out.send(ok(id, json!({"runId": run_id, "status": status, "cached": true})));
        return;
    }
    let (out, id) = (out.clone(), id.clone());
    tokio::spawn(async move {
        let finished = result.wait_for(Option::is_some).await.ok().and_then(|done| done.clone());
        if let Some(finished) = finished {
            out.send(ok(&id, final_answer(&run_id, &finished)));
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

/// `status` and `summary` of a run's ending, as OpenClaw's CLI reads them.
fn outcome(end: &RunEnd) -> (&'static str, String) {
    match end {
        RunEnd::Completed => ("ok", "completed".to_string()),
        RunEnd::Aborted => ("aborted", "aborted".to_string()),
        RunEnd::Failed(e @ RunError::Timeout(_)) => ("timeout", e.to_string()),
        RunEnd::Failed(e) => ("error", e.to_string()),
    }
}

/// The final `res` of an `agent` run.
fn final_answer(run_id: &str, finished: &Finished) -> Value {
    let (status, summary) = outcome(&finished.end);
    let text = &finished.reply.text;
    let payloads = if text.is_empty() { json!([]) } else { json!([{"text": text}]) };
    json!({"runId": run_id, "status": status, "summary": summary, "result": {"payloads": payloads}})
}

struct Stream {
    out: Outbox,
    run_id: String,
    session_key: String,
    door: Door,
    seq: u64,
    chat_seq: u64,
}

impl Stream {
    fn agent_event(&mut self, stream: &str, data: Value) {
        self.seq += 1;
        self.out.event(
            "agent",
            json!({"runId": self.run_id, "seq": self.seq, "stream": stream, "ts": now_ms(),
                   "sessionKey": self.session_key, "data": data}),
        );
    }

    fn chat_event(&mut self, state: &str, extra: Value) {
        if self.door != Door::Chat {
            return;
        }
        self.chat_seq += 1;
        let mut payload =
            json!({"runId": self.run_id, "sessionKey": self.session_key, "seq": self.chat_seq, "state": state});
        if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        self.out.event("chat", payload);
    }

    async fn drive(mut self, mut handle: RunHandle, mut tracking: Tracking, request_id: Value) {
        self.agent_event("lifecycle", json!({"phase": "start", "startedAt": now_ms()}));
        let mut reply = Reply::default();
        let end = loop {
            tokio::select! {
                event = handle.next() => match event {
                    Some(event) => {
                        reply.push(&event);
                        self.forward(&event, &reply);
                    }
                    None => break handle.finish().await.map_or_else(RunEnd::Failed, |()| RunEnd::Completed),
                },
                // Only a real request stops the run: a sender dropped by the
                // board is not one.
                Ok(()) = &mut tracking.abort => {
                    drop(handle);
                    break RunEnd::Aborted;
                }
            }
        };
        let message = json!({"role": "assistant", "content": [{"type": "text", "text": reply.text}]});
        match &end {
            RunEnd::Completed => {
                self.agent_event("lifecycle", json!({"phase": "end", "endedAt": now_ms()}));
                let mut extra = json!({"message": message, "stopReason": finish_reason_name(reply.finish_reason())});
                if let Some(u) = reply.usage {
                    extra["usage"] = json!({"inputTokens": u.prompt_tokens, "outputTokens": u.completion_tokens});
                }
                self.chat_event("final", extra);
            }
            RunEnd::Aborted => {
                self.agent_event("lifecycle", json!({"phase": "end", "aborted": true, "endedAt": now_ms()}));
                self.chat_event("aborted", json!({"message": message}));
            }
            RunEnd::Failed(e) => {
                self.agent_event("lifecycle", json!({"phase": "error", "error": e.to_string(), "endedAt": now_ms()}));
                self.chat_event("error", json!({"errorMessage": e.to_string()}));
            }
        }
        let finished = tracking.finish(reply, end);
        if self.door == Door::Agent {
            self.out.send(ok(&request_id, final_answer(&self.run_id, &finished)));
        }
    }

    fn forward(&mut self, event: &Event, reply: &Reply) {
        match event {
            Event::Text(delta) => {
                self.agent_event("assistant", json!({"text": reply.text, "delta": delta}));
                let message = json!({"role": "assistant", "content": [{"type": "text", "text": reply.text}]});
                self.chat_event("delta", json!({"deltaText": delta, "message": message}));
            }
            Event::Reasoning(delta) => self.agent_event("thinking", json!({"text": reply.reasoning, "delta": delta})),
            Event::ToolCall(c) => self.agent_event(
                "tool",
                json!({"phase": "call", "index": c.index, "toolCallId": c.id, "name": c.name, "arguments": c.arguments}),
            ),
            Event::Usage(u) => self.agent_event(
                "usage",
                json!({"inputTokens": u.prompt_tokens, "outputTokens": u.completion_tokens}),
            ),
            Event::Finish(_) => {}
        }
    }
}
