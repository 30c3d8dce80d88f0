//! What OpenClaw's own Control UI (checked against `openclaw` 2026.9.6)
//! calls at start and in its chat view, beyond the methods every client
//! uses: real answers where wasmclaw has the data (sessions, agents, models,
//! identity, the config without secrets, message subscriptions), and empty,
//! well-formed answers for features it does not have (cron, approvals,
//! channels, nodes, tasks, …), so the UI shows empty pages, not errors.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::frames::{WsError, now_ms};
use super::methods::{Answer, Call, agent_model, chat_history_payload, session_defaults};
use crate::auth::Principal;
use crate::chat::Role;
use crate::gateway::Gateway;
use crate::sessions::{Access, StoredMessage, access};

/// The `__openclaw` metadata of transcript message `i`, by which OpenClaw's
/// Control UI recognizes the messages it already shows: its position (`seq`,
/// from 1, and an `id`), and for messages a run wrote, that run: the user's
/// message carries `"<idempotencyKey>:user"` (the UI's key for its own copy
/// of a message it sent), the reply `"<idempotencyKey>:assistant"`, as the
/// `chat` `final` event's message does (the run id where the client sent no key). Messages stored before runs were recorded
/// have only their position.
pub fn transcript_meta(transcript: &[StoredMessage], i: usize) -> Value {
    let seq = i + 1;
    let mut meta = json!({"id": format!("msg-{seq}"), "seq": seq});
    let m = &transcript[i];
    let Some(run) = &m.run else { return meta };
    // The id the client knows the run by: its key, as `chat.send` answers it.
    let key = run.idempotency_key.as_deref().unwrap_or(&run.run_id);
    meta["runId"] = json!(key);
    match m.message.role {
        Role::User => {
            meta["idempotencyKey"] = json!(format!("{key}:user"));
        }
        Role::Assistant => {
            meta["idempotencyKey"] = json!(assistant_key(key));
            // The run's last message: the UI then knows the run has ended.
            let next_run = transcript.get(i + 1).and_then(|n| n.run.as_ref());
            if next_run.is_none_or(|n| n.run_id != run.run_id) {
                meta["runTerminal"] = json!(true);
            }
        }
        _ => {}
    }
    meta
}

/// The idempotency key of the reply of the run the client knows as `run_id`, in history and in its `chat` `final` event.
pub fn assistant_key(run_id: &str) -> String {
    format!("{run_id}:assistant")
}

/// A session of which a run just ended: subscribers reload its messages.
#[derive(Debug, Clone)]
pub struct SessionMessage {
    pub key: String,
    pub agent: String,
}

/// Runs of this process announce here that a session has new messages.
fn feed() -> &'static broadcast::Sender<SessionMessage> {
    static FEED: OnceLock<broadcast::Sender<SessionMessage>> = OnceLock::new();
    FEED.get_or_init(|| broadcast::channel(256).0)
}

/// Once run `run_id` has ended, tell every subscribed connection of this
/// process that session `key` has new messages.
pub fn announce_when_done(gw: &Gateway, owner: &Principal, run_id: &str, key: &str, agent: String) {
    let Some(mut result) = gw.agents.board().result(owner, run_id) else { return };
    let message = SessionMessage { key: key.to_string(), agent };
    tokio::spawn(async move {
        if result.wait_for(Option::is_some).await.is_ok() {
            let _ = feed().send(message);
        }
    });
}

/// One connection's subscriptions: the session keys whose messages it
/// follows, and whether it follows changes of every session it may read.
#[derive(Default)]
pub struct Subscriptions {
    keys: Mutex<HashSet<String>>,
    all: std::sync::atomic::AtomicBool,
    forwarding: std::sync::atomic::AtomicBool,
}

impl Subscriptions {
    fn follows(&self, key: &str) -> bool {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }
}

/// Start forwarding announced messages to this connection (once).
fn forward(call: &Call, subs: &Arc<Subscriptions>) {
    if subs.forwarding.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let (gw, out, principal, subs) = (call.gw.clone(), call.out.clone(), call.principal.clone(), subs.clone());
    let mut rx = feed().subscribe();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                () = out.closed() => return,
                m = rx.recv() => match m {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let (one, every) = (subs.follows(&message.key), subs.all.load(std::sync::atomic::Ordering::Relaxed));
            if !one && !every {
                continue;
            }
            // Another principal's session stays invisible.
            let store = gw.agents.sessions();
            if !matches!(access::check(store, &principal, &message.key, Access::Read).await, Ok(Some(_))) {
                continue;
            }
            let payload = json!({"sessionKey": message.key, "key": message.key, "agentId": message.agent,
                                 "hasActiveRun": false, "reason": "message", "updatedAt": now_ms()});
            if one && !out.event("session.message", payload.clone()).await {
                return;
            }
            if every && !out.event("sessions.changed", payload).await {
                return;
            }
        }
    });
}

/// `sessions.messages.subscribe {key}`: push `session.message` when a run of that session ends.
pub async fn messages_subscribe(call: Call) -> Answer {
    let key = call.params["key"].as_str().or_else(|| call.params["sessionKey"].as_str()).unwrap_or_default();
    if key.is_empty() {
        return Err(WsError::invalid("missing key"));
    }
    let subs = call.out.subscriptions();
    subs.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string());
    forward(&call, &subs);
    Ok(Some(json!({"subscribed": true, "key": key})))
}

/// `sessions.messages.unsubscribe {key}`
pub async fn messages_unsubscribe(call: Call) -> Answer {
    let key = call.params["key"].as_str().or_else(|| call.params["sessionKey"].as_str()).unwrap_or_default();
    call.out.subscriptions().keys.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    Ok(Some(json!({"subscribed": false, "key": key})))
}

/// `sessions.subscribe`: push `sessions.changed` when a run of any session the caller may read ends.
pub async fn sessions_subscribe(call: Call) -> Answer {
    let subs = call.out.subscriptions();
    subs.all.store(true, std::sync::atomic::Ordering::Relaxed);
    forward(&call, &subs);
    Ok(Some(json!({"subscribed": true})))
}

/// `sessions.unsubscribe`
pub async fn sessions_unsubscribe(call: Call) -> Answer {
    call.out.subscriptions().all.store(false, std::sync::atomic::Ordering::Relaxed);
    Ok(Some(json!({"subscribed": false})))
}

/// `chat.startup`: the history of the session the chat opens, with the defaults its header shows.
pub async fn chat_startup(call: Call) -> Answer {
    let defaults = session_defaults(&call);
    let mut payload = chat_history_payload(&call).await?;
    payload["defaults"] = defaults;
    payload["sessionInfo"] = json!({"sessionId": payload["sessionKey"], "key": payload["sessionKey"]});
    Ok(Some(payload))
}

/// `sessions.describe {key}`: one session the caller may read, or `session: null`.
pub async fn sessions_describe(call: Call) -> Answer {
    let key = call.params["key"].as_str().or_else(|| call.params["sessionKey"].as_str()).unwrap_or_default();
    let store = call.gw.agents.sessions();
    let found = access::check(store, &call.principal, key, Access::Read).await.map_err(super::methods::store_error)?;
    let session = found.map(|s| {
        json!({"key": key, "sessionId": key, "agentId": s.agent, "owner": s.owner, "kind": "direct",
               "hasActiveRun": false})
    });
    Ok(Some(json!({"session": session, "defaults": session_defaults(&call)})))
}

/// `agent.identity.get {agentId}`: the agent's name as its component tells it.
pub async fn agent_identity(call: Call) -> Answer {
    let id = call.params["agentId"].as_str().map(str::to_string);
    let visible = call.gw.agents.visible(&call.principal);
    let default = call.gw.agents.default_agent().to_string();
    let wanted = id.unwrap_or(default);
    let agent = visible
        .iter()
        .find(|v| v.id.as_str() == wanted)
        .ok_or_else(|| WsError::invalid(format!("unknown agent {wanted:?}")))?;
    Ok(Some(json!({"agentId": agent.id.to_string(), "name": agent.info.name, "description": agent.info.description})))
}

/// `models.authStatus`: providers keep their keys in the gateway; none needs a login here.
pub async fn models_auth_status(call: Call) -> Answer {
    let models: Vec<Value> =
        call.gw.agents.visible(&call.principal).iter().map(|v| json!(agent_model(&call, v))).collect();
    Ok(Some(json!({"providers": [], "models": models, "ts": now_ms()})))
}

/// `config.get`: a view of the config that holds no secret (none is ever copied into it).
pub async fn config_get(call: Call) -> Answer {
    let config = &call.gw.config;
    let entries: serde_json::Map<String, Value> = call
        .gw
        .agents
        .visible(&call.principal)
        .iter()
        .map(|v| {
            let model = agent_model(&call, v);
            (v.id.to_string(), json!({"name": v.info.name, "model": {"primary": model}}))
        })
        .collect();
    let mode = match config.gateway.auth.mode {
        crate::config::AuthMode::Token => "token",
        crate::config::AuthMode::Password => "password",
        crate::config::AuthMode::None => "none",
    };
    let view = json!({
        "gateway": {"auth": {"mode": mode}},
        "agents": {"defaults": {"model": {"primary": session_defaults(&call)["model"]}}, "entries": entries},
    });
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(view.to_string().as_bytes()));
    Ok(Some(json!({"exists": true, "valid": true, "issues": [], "config": view, "hash": hash,
                   "appliedConfigHash": hash})))
}

/// `system.info`: what the gateway process is.
pub async fn system_info(call: Call) -> Answer {
    Ok(Some(json!({
        "server": {"name": "wasmclaw", "version": env!("CARGO_PKG_VERSION")},
        "platform": std::env::consts::OS, "arch": std::env::consts::ARCH,
        "uptimeMs": call.gw.started.elapsed().as_millis() as u64,
    })))
}

/// Methods of OpenClaw features wasmclaw does not have, each with the empty answer the UI reads.
pub fn empty(method: &str) -> Value {
    match method {
        "cron.list" => json!({"jobs": [], "total": 0, "offset": 0, "limit": 0, "hasMore": false}),
        "cron.status" => json!({"enabled": false, "jobs": 0, "nextWakeAtMs": null}),
        "cron.runs" => json!({"entries": [], "total": 0, "hasMore": false}),
        "exec.approval.list" | "plugin.approval.list" | "openclaw.approval.list" => json!([]),
        "question.list" => json!({"questions": []}),
        "tasks.list" => json!({"tasks": [], "nextCursor": null}),
        "talk.catalog" => json!({"realtime": {"ready": false, "activeProvider": null, "providers": []},
                                 "transcription": {"ready": false, "providers": []}, "voices": []}),
        "progressCard.get" => json!({"card": null}),
        "chat.metadata" => json!({}),
        "update.status" => json!({"activeRun": null, "lastRun": null, "sentinel": null, "available": false}),
        "environments.list" => json!({"environments": [], "profiles": []}),
        "node.list" => json!({"nodes": []}),
        "channels.status" => json!({"ts": now_ms(), "channels": {}, "channelOrder": [], "channelAccounts": {}}),
        "plugins.list" => json!({"plugins": []}),
        "sessions.observer.visibility" => json!({"ok": true}),
        "sessions.branches.list" => json!({"branches": []}),
        "sessions.companion.state" => json!({"state": null}),
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message;
    use crate::sessions::RunMark;

    fn stored(role: Role, run: Option<(&str, Option<&str>)>) -> StoredMessage {
        let run = run.map(|(id, key)| RunMark { run_id: id.into(), idempotency_key: key.map(Into::into) });
        StoredMessage { message: Message::text(role, "x"), created_at: 1, run }
    }

    #[test]
    fn a_runs_messages_carry_its_keys_and_its_last_reply_ends_it() {
        let t = [
            stored(Role::User, None),
            stored(Role::User, Some(("r1", Some("client-1")))),
            stored(Role::Assistant, Some(("r1", Some("client-1")))),
            stored(Role::Tool, Some(("r1", Some("client-1")))),
            stored(Role::Assistant, Some(("r1", Some("client-1")))),
            stored(Role::User, Some(("r2", None))),
        ];
        let meta: Vec<Value> = (0..t.len()).map(|i| transcript_meta(&t, i)).collect();
        // Stored before runs were recorded: its position only.
        assert_eq!(meta[0], json!({"id": "msg-1", "seq": 1}));
        // The run is named by the client's key, as `chat.send` answered it.
        assert_eq!(meta[1], json!({"id": "msg-2", "seq": 2, "runId": "client-1", "idempotencyKey": "client-1:user"}));
        // A reply the run went on from is not its end; its last one is.
        let reply = json!({"id": "msg-3", "seq": 3, "runId": "client-1", "idempotencyKey": "client-1:assistant"});
        assert_eq!(meta[2], reply);
        assert_eq!(meta[3], json!({"id": "msg-4", "seq": 4, "runId": "client-1"}));
        assert_eq!(meta[4]["runTerminal"], true);
        // Without a client key, the user's message is keyed by the run.
        assert_eq!((meta[5]["runId"].as_str(), meta[5]["idempotencyKey"].as_str()), (Some("r2"), Some("r2:user")));
    }
}
