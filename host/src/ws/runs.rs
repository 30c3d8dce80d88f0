//! `agent` and `chat.send`: the same run path as HTTP, translated into
//! OpenClaw's `agent` / `chat` events; plus `agent.wait`, `chat.abort` and
//! idempotent retries. Runs outlive the connection that started them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use super::frames::{Outbox, WsError, codes, err, now_ms, ok};
use crate::gateway::Gateway;
use crate::runs::RunInput;
use crate::runtime::{AgentId, Event, RunError, finish_reason_name};
use crate::sessions;

/// How long a finished run's result answers retries and `agent.wait`.
const KEEP_RESULTS: Duration = Duration::from_secs(600);

/// Which method started a run: it decides the events and the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Agent,
    Chat,
}

struct Entry {
    session_key: String,
    abort: Option<oneshot::Sender<()>>,
    result: watch::Receiver<Option<Value>>,
    started: Instant,
}

/// Every WebSocket-started run of the gateway, across connections.
#[derive(Default)]
pub struct RunBoard {
    runs: Mutex<HashMap<String, Entry>>,
    idempotency: Mutex<HashMap<String, (Instant, String)>>,
}

impl RunBoard {
    fn prune(&self) {
        let cutoff = Instant::now() - KEEP_RESULTS;
        self.runs.lock().unwrap().retain(|_, e| e.started > cutoff);
        self.idempotency.lock().unwrap().retain(|_, (at, _)| *at > cutoff);
    }

    fn result(&self, run_id: &str) -> Option<watch::Receiver<Option<Value>>> {
        self.runs.lock().unwrap().get(run_id).map(|e| e.result.clone())
    }

    /// Cancel running runs of a session (or just `run_id`); returns their ids.
    pub fn abort(&self, session_key: &str, run_id: Option<&str>) -> Vec<String> {
        let mut aborted = Vec::new();
        for (id, entry) in self.runs.lock().unwrap().iter_mut() {
            if entry.session_key == session_key
                && run_id.is_none_or(|r| r == id)
                && let Some(abort) = entry.abort.take()
                && abort.send(()).is_ok()
            {
                aborted.push(id.clone());
            }
        }
        aborted
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

/// Start a run for `agent` or `chat.send` and answer `id`.
pub async fn start(gw: &Arc<Gateway>, out: &Outbox, id: &Value, door: Door, params: Value) {
    if let Err(e) = try_start(gw, out, id, door, params).await {
        out.send(err(id, &e));
    }
}

async fn try_start(gw: &Arc<Gateway>, out: &Outbox, id: &Value, door: Door, params: Value) -> Result<(), WsError> {
    let p: RunParams = serde_json::from_value(params).map_err(|e| WsError::invalid(format!("invalid params: {e}")))?;
    let board = &gw.ws_runs;
    board.prune();
    if let Some(key) = &p.idempotency_key {
        let earlier = board.idempotency.lock().unwrap().get(key).map(|(_, run)| run.clone());
        if let Some(run_id) = earlier.and_then(|r| board.result(&r).map(|rx| (r, rx))) {
            return replay(out, id, door, run_id.0, run_id.1).await;
        }
    }
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
    let input = RunInput::user_message(agent, session, p.message);
    let handle = gw.agents.start(input).map_err(|e| match e {
        RunError::UnknownAgent(a) => WsError::invalid(format!("unknown agent {a:?}")),
        other => WsError::new(codes::UNAVAILABLE, other.to_string()),
    })?;
    let run_id = handle.run_id.clone();
    let (abort_tx, abort_rx) = oneshot::channel();
    let (result_tx, result_rx) = watch::channel(None);
    board.runs.lock().unwrap().insert(
        run_id.clone(),
        Entry { session_key: key.clone(), abort: Some(abort_tx), result: result_rx, started: Instant::now() },
    );
    if let Some(k) = p.idempotency_key {
        board.idempotency.lock().unwrap().insert(k, (Instant::now(), run_id.clone()));
    }
    let accepted = match door {
        Door::Agent => json!({"runId": run_id, "status": "accepted", "acceptedAt": now_ms()}),
        Door::Chat => json!({"runId": run_id, "status": "started"}),
    };
    out.send(ok(id, accepted));
    let stream = Stream { out: out.clone(), run_id, session_key: key, door, seq: 0, chat_seq: 0 };
    tokio::spawn(stream.drive(handle, abort_rx, result_tx, id.clone()));
    Ok(())
}

/// A retried request: the first run's answer again, no events, no new run.
async fn replay(
    out: &Outbox,
    id: &Value,
    door: Door,
    run_id: String,
    mut result: watch::Receiver<Option<Value>>,
) -> Result<(), WsError> {
    if door == Door::Chat {
        let status = if result.borrow().is_some() { "ok" } else { "in_flight" };
        out.send(ok(id, json!({"runId": run_id, "status": status, "cached": true})));
        return Ok(());
    }
    let out = out.clone();
    let id = id.clone();
    tokio::spawn(async move {
        if let Ok(done) = result.wait_for(Option::is_some).await {
            out.send(ok(&id, done.clone().unwrap_or_default()));
        }
    });
    Ok(())
}

/// `agent.wait {runId, timeoutMs?}`
pub async fn wait(gw: &Arc<Gateway>, params: &Value) -> Result<Value, WsError> {
    let run_id = params["runId"].as_str().ok_or_else(|| WsError::invalid("agent.wait needs a runId"))?;
    let mut result = gw.ws_runs.result(run_id).ok_or_else(|| WsError::invalid(format!("unknown run {run_id:?}")))?;
    let timeout = Duration::from_millis(params["timeoutMs"].as_u64().unwrap_or(30_000));
    match tokio::time::timeout(timeout, result.wait_for(Option::is_some)).await {
        Ok(Ok(done)) => Ok(done.clone().unwrap_or_default()),
        _ => Ok(json!({"runId": run_id, "status": "timeout"})),
    }
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

    async fn drive(
        mut self,
        mut handle: crate::runs::RunHandle,
        mut abort: oneshot::Receiver<()>,
        result: watch::Sender<Option<Value>>,
        request_id: Value,
    ) {
        self.agent_event("lifecycle", json!({"phase": "start", "startedAt": now_ms()}));
        let mut reply = crate::runtime::Reply::default();
        let outcome = loop {
            tokio::select! {
                event = handle.next() => match event {
                    Some(event) => {
                        reply.push(&event);
                        self.forward(&event, &reply);
                    }
                    None => break handle.finish().await.map_err(Some),
                },
                _ = &mut abort => {
                    drop(handle);
                    break Err(None);
                }
            }
        };
        let text = reply.text.clone();
        let message = json!({"role": "assistant", "content": [{"type": "text", "text": text}]});
        let (status, summary) = match &outcome {
            Ok(()) => {
                self.agent_event("lifecycle", json!({"phase": "end", "endedAt": now_ms()}));
                let mut extra = json!({"message": message, "stopReason": finish_reason_name(reply.finish_reason())});
                if let Some(u) = reply.usage {
                    extra["usage"] = json!({"inputTokens": u.prompt_tokens, "outputTokens": u.completion_tokens});
                }
                self.chat_event("final", extra);
                ("ok", "completed".to_string())
            }
            Err(None) => {
                self.agent_event("lifecycle", json!({"phase": "end", "aborted": true, "endedAt": now_ms()}));
                self.chat_event("aborted", json!({"message": message}));
                ("aborted", "aborted".to_string())
            }
            Err(Some(e)) => {
                let status = if matches!(e, RunError::Timeout(_)) { "timeout" } else { "error" };
                self.agent_event("lifecycle", json!({"phase": "error", "error": e.to_string(), "endedAt": now_ms()}));
                self.chat_event("error", json!({"errorMessage": e.to_string()}));
                (status, e.to_string())
            }
        };
        let payloads = if text.is_empty() { json!([]) } else { json!([{"text": text}]) };
        let done =
            json!({"runId": self.run_id, "status": status, "summary": summary, "result": {"payloads": payloads}});
        if self.door == Door::Agent {
            self.out.send(ok(&request_id, done.clone()));
        }
        let _ = result.send(Some(done));
    }

    fn forward(&mut self, event: &Event, reply: &crate::runtime::Reply) {
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
