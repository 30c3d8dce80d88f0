//! `agent` and `chat.send`: the same run path as HTTP, translated into
//! OpenClaw's `agent` / `chat` events; plus `agent.wait`, `chat.abort` and
//! idempotent retries through the gateway's run board.
//!
//! A run belongs to the connection that started it: when the connection
//! closes the run is aborted at once, and its result (`aborted`) stays on the
//! board for `agent.wait` from other connections and for retries.
//!
//! A run's events are written by [`super::events`].

use std::time::Duration;

use serde::Deserialize as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::frames::{Outbox, WsError, codes, err, now_ms, ok};
use super::methods::Call;
use crate::chat::AgentId;
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

/// The id a client knows run `run_id` by. `agent` and `chat.send` answer
/// and stream under the client's `idempotencyKey`, as OpenClaw's gateway
/// does (its run id is that key, which `agent.wait` and `chat.abort`
/// take); a run started without one goes by wasmclaw's run id.
pub(super) fn wire_id<'a>(run_id: &'a str, client_key: Option<&'a str>) -> &'a str {
    client_key.unwrap_or(run_id)
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
            let wire_id = wire_id(&run_id, client_key.as_deref()).to_string();
            replay(out, id, door, wire_id, result).await;
            return Ok(());
        }
    };
    let run_id = handle.run_id.clone();
    let wire_id = wire_id(&run_id, client_key.as_deref()).to_string();
    let accepted = match door {
        Door::Agent => json!({"runId": wire_id, "status": "accepted", "acceptedAt": now_ms()}),
        Door::Chat => json!({"runId": wire_id, "status": "started"}),
    };
    out.push(ok(id, accepted)).await;
    super::openclaw::announce_when_done(gw, &call.principal, &run_id, &key, agent_name);
    let stream = super::events::Stream::new(out.clone(), run_id, wire_id, key, door);
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
    let board = call.gw.agents.board();
    // The client names a run by the id it was answered: its key, or ours.
    let mut result = board
        .run_named(&call.principal, run_id)
        .and_then(|run| board.result(&call.principal, &run))
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
pub(super) fn failure_text(e: &RunError) -> String {
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
pub(super) fn final_answer(run_id: &str, finished: &Finished) -> Value {
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
