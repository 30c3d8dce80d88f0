//! Methods other than runs: they translate to the same calls the HTTP API makes.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use super::frames::{Outbox, WsError, codes, err, now_ms, ok};
use super::runs::{self, Door};
use crate::gateway::Gateway;
use crate::runtime::{AgentId, AgentVersion};
use crate::sessions::{StoreError, role_name};

/// Every method a connected client may call.
pub const METHODS: &[&str] = &[
    "health",
    "status",
    "agents.list",
    "models.list",
    "agent",
    "agent.wait",
    "chat.send",
    "chat.history",
    "chat.abort",
    "sessions.list",
    "sessions.reset",
    "sessions.delete",
    "agents.install",
    "agents.rollback",
    "agents.remove",
];

/// Events a client may receive.
pub const EVENTS: &[&str] = &["connect.challenge", "tick", "agent", "chat", "agents.changed", "shutdown"];

/// Answer one request (runs answer on their own, possibly twice).
pub async fn handle(gw: Arc<Gateway>, out: Outbox, id: Value, method: String, params: Value) {
    let result = match method.as_str() {
        "agent" => return runs::start(&gw, &out, &id, Door::Agent, params).await,
        "chat.send" => return runs::start(&gw, &out, &id, Door::Chat, params).await,
        "agent.wait" => runs::wait(&gw, &params).await,
        "health" => Ok(json!({"ok": true, "ts": now_ms(), "agents": gw.agents.registry().list().len()})),
        "status" => Ok(status(&gw)),
        "agents.list" => Ok(agents_list(&gw)),
        "models.list" => Ok(models_list(&gw)),
        "chat.history" => chat_history(&gw, &params).await,
        "chat.abort" => chat_abort(&gw, &params),
        "sessions.list" => sessions_list(&gw, &params).await,
        "sessions.reset" | "sessions.delete" => sessions_delete(&gw, &params).await,
        "agents.install" => agents_install(&gw, &params).await,
        "agents.rollback" => with_agent(&params, |id| gw.agents.rollback(id)).map(|v| agent_json(&v)),
        "agents.remove" => {
            with_agent(&params, |id| gw.agents.remove(id)).map(|v| json!({"id": v.id.to_string(), "removed": true}))
        }
        "connect" => Err(WsError::invalid("already connected")),
        other => Err(WsError::invalid(format!("unknown method {other:?}"))),
    };
    out.send(match result {
        Ok(payload) => ok(&id, payload),
        Err(e) => err(&id, &e),
    });
}

fn status(gw: &Gateway) -> Value {
    json!({
        "server": {"name": "wasmclaw", "version": env!("CARGO_PKG_VERSION")},
        "ts": now_ms(),
        "ready": gw.is_ready(),
        "agents": gw.agents.registry().list().iter().map(|v| agent_json(v)).collect::<Vec<_>>(),
    })
}

fn agents_list(gw: &Gateway) -> Value {
    let agents: Vec<Value> = gw.agents.registry().list().iter().map(|v| agent_json(v)).collect();
    json!({"defaultId": gw.agents.default_agent().to_string(), "mainKey": "main", "agents": agents})
}

fn models_list(gw: &Gateway) -> Value {
    let models: Vec<Value> = gw
        .agents
        .registry()
        .list()
        .iter()
        .map(|v| json!({"id": format!("openclaw/{}", v.id), "name": v.info.name, "provider": "wasmclaw"}))
        .collect();
    json!({"models": models})
}

fn agent_json(v: &AgentVersion) -> Value {
    json!({"id": v.id.to_string(), "name": v.info.name, "version": v.info.version,
           "description": v.info.description, "digest": v.digest, "source": v.source})
}

fn key_param<'p>(params: &'p Value, name: &str) -> Result<&'p str, WsError> {
    params[name].as_str().filter(|k| !k.is_empty()).ok_or_else(|| WsError::invalid(format!("missing {name}")))
}

async fn on_store<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, WsError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| WsError::new(codes::INTERNAL, e.to_string()))?
        .map_err(|e| WsError::new(codes::INTERNAL, e.to_string()))
}

async fn chat_history(gw: &Gateway, params: &Value) -> Result<Value, WsError> {
    let key = key_param(params, "sessionKey")?.to_string();
    let limit = params["limit"].as_u64().unwrap_or(200) as usize;
    let store = gw.agents.sessions().clone();
    let k = key.clone();
    let transcript = on_store(move || store.transcript(&k)).await?;
    let messages: Vec<Value> = transcript
        .map(|t| t.messages)
        .unwrap_or_default()
        .iter()
        .rev()
        .take(limit)
        .rev()
        .map(|m| {
            json!({"role": role_name(m.message.role), "content": [{"type": "text", "text": m.message.content}],
                   "timestamp": m.created_at})
        })
        .collect();
    Ok(json!({"sessionKey": key, "messages": messages}))
}

fn chat_abort(gw: &Gateway, params: &Value) -> Result<Value, WsError> {
    let key = key_param(params, "sessionKey")?;
    let aborted = gw.ws_runs.abort(key, params["runId"].as_str());
    Ok(json!({"ok": true, "aborted": !aborted.is_empty(), "runIds": aborted}))
}

async fn sessions_list(gw: &Gateway, params: &Value) -> Result<Value, WsError> {
    let agent = params["agentId"].as_str().map(str::to_string);
    let store = gw.agents.sessions().clone();
    let sessions = on_store(move || store.list(agent.as_deref())).await?;
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|s| json!({"key": s.key, "agentId": s.agent, "updatedAt": s.last_activity, "messageCount": s.message_count}))
        .collect();
    Ok(json!({"sessions": sessions}))
}

async fn sessions_delete(gw: &Gateway, params: &Value) -> Result<Value, WsError> {
    let key = key_param(params, "key").or_else(|_| key_param(params, "sessionKey"))?.to_string();
    let store = gw.agents.sessions().clone();
    let k = key.clone();
    let deleted = on_store(move || store.delete(&k)).await?;
    Ok(json!({"ok": true, "key": key, "deleted": deleted}))
}

async fn agents_install(gw: &Gateway, params: &Value) -> Result<Value, WsError> {
    let id = agent_param(params)?;
    let encoded = key_param(params, "component")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| WsError::invalid(format!("component is not base64: {e}")))?;
    if let Some(expected) = params["sha256"].as_str() {
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(WsError::invalid(format!("sha256 is {expected} but the component's is {actual}")));
        }
    }
    let version = gw.agents.install(id, bytes.into(), "websocket".into(), None).await.map_err(install_error)?;
    Ok(agent_json(&version))
}

fn agent_param(params: &Value) -> Result<AgentId, WsError> {
    let raw = key_param(params, "agentId").or_else(|_| key_param(params, "id"))?;
    AgentId::parse(raw).ok_or_else(|| WsError::invalid(format!("{raw:?} is not an agent id")))
}

fn with_agent(
    params: &Value,
    f: impl FnOnce(&AgentId) -> Result<Arc<AgentVersion>, crate::runs::InstallError>,
) -> Result<Arc<AgentVersion>, WsError> {
    f(&agent_param(params)?).map_err(install_error)
}

fn install_error(e: crate::runs::InstallError) -> WsError {
    WsError::invalid(e.to_string())
}
