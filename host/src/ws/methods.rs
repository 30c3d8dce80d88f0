//! The one table of WebSocket methods: name, the scope it needs, handler.
//! `hello-ok` lists the table's names and [`dispatch`] is the one place a
//! method is looked up and its scope checked. Handlers translate to the same
//! calls the HTTP API makes.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::frames::{Outbox, WsError, codes, err, now_ms, ok};
use super::runs::{self, Door};
use super::{agents, device, openclaw};
use crate::auth::{Principal, Scope};
use crate::chat::{Message, Role};
use crate::gateway::Gateway;
use crate::runtime::AgentVersion;
use crate::sessions::{self, Access, SessionQuery, StoreError, Visible, access, role_name};

/// One request of a connected client, as a handler gets it.
pub struct Call {
    pub gw: Arc<Gateway>,
    pub out: Outbox,
    pub id: Value,
    pub params: Value,
    pub principal: Principal,
}

/// `Ok(None)`: the handler answers on its own (runs answer later, or twice).
pub(super) type Answer = Result<Option<Value>, WsError>;

/// One row of the table.
pub struct Method {
    pub name: &'static str,
    pub scope: Scope,
    /// The method starts work (a run, an agent change), so each call counts
    /// against the caller's `rateLimit` as an HTTP request does.
    pub counted: bool,
    handler: fn(Call) -> BoxFuture<'static, Answer>,
}

macro_rules! method {
    ($name:literal, $scope:ident, $handler:path) => {
        Method { name: $name, scope: Scope::$scope, counted: false, handler: |call| Box::pin($handler(call)) }
    };
    ($name:literal, $scope:ident, $handler:path; counted) => {
        Method { name: $name, scope: Scope::$scope, counted: true, handler: |call| Box::pin($handler(call)) }
    };
    // A feature wasmclaw does not have: its empty answer (`openclaw::empty`).
    ($name:literal, $scope:ident; empty) => {
        Method {
            name: $name,
            scope: Scope::$scope,
            counted: false,
            handler: |_| Box::pin(async { Ok(Some(openclaw::empty($name))) }),
        }
    };
}

/// Every method a connected client may call.
pub const METHODS: &[Method] = &[
    method!("health", Read, health),
    method!("status", Read, status),
    method!("agents.list", Read, agents_list),
    method!("models.list", Read, models_list),
    method!("agent", Write, agent; counted),
    method!("agent.wait", Write, runs::wait),
    method!("chat.send", Write, chat_send; counted),
    method!("chat.history", Read, chat_history),
    method!("chat.abort", Write, chat_abort),
    method!("sessions.list", Read, sessions_list),
    method!("sessions.reset", Write, sessions_delete),
    method!("sessions.delete", Write, sessions_delete),
    method!("agents.install", Admin, agents::install; counted),
    method!("agents.rollback", Admin, agents::rollback; counted),
    method!("agents.remove", Admin, agents::remove; counted),
    method!("agents.rollout", Admin, agents::rollout; counted),
    method!("agents.rollout.get", Read, agents::rollout_get),
    method!("agents.rollout.promote", Admin, agents::rollout_promote; counted),
    method!("agents.rollout.rollback", Admin, agents::rollout_rollback; counted),
    method!("agents.rollout.end", Admin, agents::rollout_end; counted),
    method!("metrics.recent", Read, metrics_recent),
    // OpenClaw's Control UI (ws/openclaw.rs), with data wasmclaw has.
    method!("chat.startup", Read, openclaw::chat_startup),
    method!("sessions.describe", Read, openclaw::sessions_describe),
    method!("sessions.subscribe", Read, openclaw::sessions_subscribe),
    method!("sessions.unsubscribe", Read, openclaw::sessions_unsubscribe),
    method!("sessions.messages.subscribe", Read, openclaw::messages_subscribe),
    method!("sessions.messages.unsubscribe", Read, openclaw::messages_unsubscribe),
    method!("agent.identity.get", Read, openclaw::agent_identity),
    method!("models.authStatus", Read, openclaw::models_auth_status),
    method!("config.get", Read, openclaw::config_get),
    method!("system.info", Read, openclaw::system_info),
    // Paired devices (ws/device.rs).
    method!("device.pair.list", Admin, device::pair_list),
    method!("device.token.revoke", Admin, device::token_revoke),
    method!("device.pair.remove", Admin, device::pair_remove),
    // OpenClaw features wasmclaw does not have: empty answers.
    method!("chat.metadata", Read; empty),
    method!("progressCard.get", Read; empty),
    method!("tasks.list", Read; empty),
    method!("talk.catalog", Read; empty),
    method!("question.list", Read; empty),
    method!("exec.approval.list", Read; empty),
    method!("plugin.approval.list", Read; empty),
    method!("openclaw.approval.list", Read; empty),
    method!("cron.list", Read; empty),
    method!("cron.status", Read; empty),
    method!("cron.runs", Read; empty),
    method!("update.status", Read; empty),
    method!("environments.list", Read; empty),
    method!("node.list", Read; empty),
    method!("channels.status", Read; empty),
    method!("plugins.list", Read; empty),
    method!("sessions.observer.visibility", Read; empty),
    method!("sessions.branches.list", Read; empty),
    method!("sessions.companion.state", Read; empty),
    method!("usage.get", Read, usage_get),
];

/// Events a client may receive.
pub const EVENTS: &[&str] = &["connect.challenge", "tick", "agent", "chat", "agents.changed", "shutdown"];

/// The names `hello-ok` advertises.
pub fn names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name).collect()
}

/// Answer one request of an authenticated connection: the one place a
/// method's scope and, for methods that start work, the caller's rate are checked.
pub async fn dispatch(gw: Arc<Gateway>, out: Outbox, principal: Principal, id: Value, method: String, params: Value) {
    let answer = match METHODS.iter().find(|m| m.name == method) {
        None if method == "connect" => Err(WsError::invalid("already connected")),
        None => Err(WsError::invalid(format!("unknown method {method:?}"))),
        Some(m) => match admit(&gw, &principal, m) {
            Ok(()) => (m.handler)(Call { gw, out: out.clone(), id: id.clone(), params, principal }).await,
            Err(e) => Err(e),
        },
    };
    match answer {
        Ok(None) => {}
        Ok(Some(payload)) => {
            out.push(ok(&id, payload)).await;
        }
        Err(e) => {
            out.push(err(&id, &e)).await;
        }
    }
}

/// May `principal` call `m` now: its scope, then (for work) its rate. Counted
/// by credential name in `wasmclaw_token_requests_total`, as HTTP requests are.
fn admit(gw: &Gateway, principal: &Principal, m: &Method) -> Result<(), WsError> {
    let metrics = gw.agents.metrics();
    if !principal.allows(m.scope) {
        tracing::info!(
            principal = principal.name(),
            method = m.name,
            scope = m.scope.name(),
            "request refused: scope missing"
        );
        metrics.token_request(principal.name(), "forbidden");
        return Err(WsError::invalid(format!("{} needs the {} scope", m.name, m.scope.name())));
    }
    if m.counted
        && let Err(retry_after) = principal.admit()
    {
        tracing::info!(
            principal = principal.name(),
            method = m.name,
            retry_after,
            "request refused: token over its rateLimit"
        );
        metrics.token_request(principal.name(), "rate_limited");
        return Err(rate_limited(principal.name(), retry_after));
    }
    metrics.token_request(principal.name(), "allowed");
    Ok(())
}

/// OpenClaw's shape for "slow down": `UNAVAILABLE`, retryable, with the wait.
fn rate_limited(token: &str, retry_after: u64) -> WsError {
    WsError {
        details: Some(json!({"code": "RATE_LIMITED", "retryAfterMs": retry_after * 1000})),
        retryable: true,
        ..WsError::new(
            codes::UNAVAILABLE,
            format!(
                "rate limit of the token {token:?} exceeded (gateway.auth.tokens[].rateLimit.requestsPerMinute); \
                 retry after {retry_after} s"
            ),
        )
    }
}

async fn agent(call: Call) -> Answer {
    runs::start(call, Door::Agent).await;
    Ok(None)
}

async fn chat_send(call: Call) -> Answer {
    runs::start(call, Door::Chat).await;
    Ok(None)
}

/// Counts only the agents the caller may use: a restricted token learns nothing of the others.
async fn health(call: Call) -> Answer {
    Ok(Some(json!({"ok": true, "ts": now_ms(), "agents": call.gw.agents.visible(&call.principal).len()})))
}

async fn status(call: Call) -> Answer {
    let gw = &call.gw;
    let gauges = gw.agents.gauges();
    Ok(Some(json!({
        "server": {"name": "wasmclaw", "version": env!("CARGO_PKG_VERSION")},
        "ts": now_ms(),
        "uptimeMs": gw.started.elapsed().as_millis() as u64,
        "ready": gw.is_ready(),
        "runs": {"active": gauges.active_runs, "max": gauges.max_runs},
        "agents": visible_agents(&call),
    })))
}

async fn agents_list(call: Call) -> Answer {
    let default = call.gw.agents.default_agent().to_string();
    let mut agents = visible_agents(&call);
    // OpenClaw's UI reads each agent's model (`model.primary`).
    for agent in &mut agents {
        let model =
            call.gw.config.agents.entries.as_ref().and_then(|e| e.get(agent["id"].as_str().unwrap_or_default()));
        agent["model"] = json!({"primary": model_name(agent["id"].as_str().unwrap_or_default(), model)});
    }
    Ok(Some(json!({"defaultId": default, "mainKey": "main", "agents": agents})))
}

/// `provider/model` of an agent's configured model, else `wasmclaw/<agent id>`.
fn model_name(id: &str, entry: Option<&crate::config::AgentEntry>) -> String {
    match entry.and_then(|e| e.provider.as_deref().zip(e.model.as_deref())) {
        Some((provider, model)) => format!("{provider}/{model}"),
        None => format!("wasmclaw/{id}"),
    }
}

/// [`model_name`] of a loaded agent.
pub(super) fn agent_model(call: &Call, v: &AgentVersion) -> String {
    let id = v.id.to_string();
    model_name(&id, call.gw.config.agents.entries.as_ref().and_then(|e| e.get(&id)))
}

/// The default agent's model, as OpenClaw's `sessions.list` `defaults` tells it.
pub(super) fn session_defaults(call: &Call) -> Value {
    let id = call.gw.agents.default_agent().to_string();
    let primary = model_name(&id, call.gw.config.agents.entries.as_ref().and_then(|e| e.get(&id)));
    let (provider, model) = primary.split_once('/').unwrap_or(("wasmclaw", primary.as_str()));
    json!({"modelProvider": provider, "model": model, "contextTokens": null, "agentId": id})
}

/// Runs and failures per agent the caller may see, in buckets over the last minutes.
async fn metrics_recent(call: Call) -> Answer {
    let series: Vec<Value> = call
        .gw
        .agents
        .metrics()
        .recent()
        .into_iter()
        .filter(|s| call.principal.may_use_named(&s.agent))
        .map(|s| json!({"agentId": s.agent, "runs": s.runs, "failures": s.failures}))
        .collect();
    let bucket_ms = crate::metrics::RECENT_BUCKET.as_millis() as u64;
    Ok(Some(json!({"ts": now_ms(), "bucketMs": bucket_ms, "agents": series})))
}

/// The agents the caller may use, each with its rollback target and its rollout (running or ended).
fn visible_agents(call: &Call) -> Vec<Value> {
    let registry = call.gw.agents.registry();
    let rollouts = call.gw.agents.rollouts();
    let visible = call.gw.agents.visible(&call.principal);
    visible
        .iter()
        .map(|v| {
            let mut agent = agent_json_full(v, registry.slot(&v.id).and_then(|s| s.previous).as_deref());
            agent["rollout"] = json!(rollouts.get(&v.id).map(|r| r.summary()));
            agent
        })
        .collect()
}

/// [`agent_json`] plus when it loaded, its runs in flight and the version a rollback returns to.
fn agent_json_full(v: &AgentVersion, previous: Option<&AgentVersion>) -> Value {
    let mut agent = agent_json(v);
    let loaded_at = v.loaded_at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    agent["loadedAt"] = json!(loaded_at);
    agent["inFlight"] = json!(v.in_flight());
    agent["previous"] =
        json!(previous.map(|p| json!({"digest": p.digest, "name": p.info.name, "version": p.info.version})));
    agent
}

async fn models_list(call: Call) -> Answer {
    let models: Vec<Value> = call
        .gw
        .agents
        .visible(&call.principal)
        .iter()
        .map(|v| json!({"id": format!("openclaw/{}", v.id), "name": v.info.name, "provider": "wasmclaw"}))
        .collect();
    Ok(Some(json!({"models": models})))
}
pub(super) fn agent_json(v: &AgentVersion) -> Value {
    json!({"id": v.id.to_string(), "name": v.info.name, "version": v.info.version,
           "description": v.info.description, "digest": v.digest, "source": v.source.to_string()})
}

pub(super) fn key_param<'p>(params: &'p Value, name: &str) -> Result<&'p str, WsError> {
    params[name].as_str().filter(|k| !k.is_empty()).ok_or_else(|| WsError::invalid(format!("missing {name}")))
}

pub(super) fn store_error(e: StoreError) -> WsError {
    match e {
        StoreError::Unavailable(_) => WsError::unavailable("session database", e),
        e => WsError::internal(e),
    }
}

async fn chat_history(call: Call) -> Answer {
    chat_history_payload(&call).await.map(Some)
}

/// `chat.history`'s answer (also the start of `chat.startup`'s).
pub(super) async fn chat_history_payload(call: &Call) -> Result<Value, WsError> {
    let params = &call.params;
    let key = key_param(params, "sessionKey")?.to_string();
    let limit = params["limit"].as_u64().unwrap_or(200) as usize;
    let store = call.gw.agents.sessions();
    // Another principal's session reads as an unknown one: no messages.
    let readable = access::check(store, &call.principal, &key, Access::Read).await.map_err(store_error)?;
    let transcript = match readable {
        Some(_) => store.transcript(&key).await.map_err(store_error)?,
        None => None,
    };
    let stored = transcript.map(|t| t.messages).unwrap_or_default();
    // Tool results name their tool, which only the call that asked for it says.
    let names: HashMap<&str, &str> =
        stored.iter().flat_map(|m| &m.message.tool_calls).map(|c| (c.id.as_str(), c.name.as_str())).collect();
    let from = stored.len().saturating_sub(limit);
    let messages: Vec<Value> = stored[from..]
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut message = history_message(&m.message, m.created_at, &names);
            message["__openclaw"] = super::openclaw::transcript_meta(&stored, from + i);
            message
        })
        .collect();
    Ok(json!({"sessionKey": key, "messages": messages}))
}

/// One transcript message in OpenClaw's history shape: text parts, the
/// assistant's tool calls as `toolCall` parts, tool results as `toolResult`.
fn history_message(m: &Message, created_at: u64, names: &HashMap<&str, &str>) -> Value {
    let text = json!({"type": "text", "text": m.content});
    if m.role == Role::Tool {
        let id = m.tool_call_id.as_deref().unwrap_or_default();
        return json!({"role": "toolResult", "toolCallId": id, "toolName": names.get(id), "content": [text],
                      "timestamp": created_at});
    }
    let mut content = vec![text];
    content.extend(m.tool_calls.iter().map(|c| {
        let arguments = serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!({}));
        json!({"type": "toolCall", "id": c.id, "name": c.name, "arguments": arguments})
    }));
    json!({"role": role_name(m.role), "content": content, "timestamp": created_at})
}

async fn chat_abort(call: Call) -> Answer {
    let key = key_param(&call.params, "sessionKey")?;
    // `chat.send` named its run by the client's key; a run id is taken as it is.
    let run = call.params["runId"].as_str().map(|r| runs::run_of_key(&call, key, r).unwrap_or_else(|| r.to_string()));
    let aborted = call.gw.agents.board().abort(&call.principal, key, run.as_deref());
    // Named as `chat.send` named them: by the client's key where it sent one.
    let ids: Vec<String> = aborted.into_iter().map(|(id, client_key)| client_key.unwrap_or(id)).collect();
    Ok(Some(json!({"ok": true, "aborted": !ids.is_empty(), "runIds": ids})))
}

/// One page of the sessions the caller may read (`limit`, `cursor` as on HTTP).
async fn sessions_list(call: Call) -> Answer {
    let params = &call.params;
    // No wasmclaw session is spawned by another (OpenClaw's sub-agent
    // sessions); the UI asks for them with a limit of 10000, past the page size.
    if params["spawnedBy"].is_string() {
        return Ok(Some(json!({"sessions": [], "nextCursor": null, "defaults": session_defaults(&call)})));
    }
    let agent = params["agentId"].as_str().map(str::to_string);
    let limit = match &params["limit"] {
        Value::Null => None,
        // Not a whole number: out of range on purpose, so the error names the bounds.
        other => Some(other.as_u64().unwrap_or(0)),
    };
    let (limit, after) =
        sessions::parse_page(limit, params["cursor"].as_str()).map_err(|e| WsError::invalid(e.message))?;
    let query = SessionQuery { agent, visible: Visible::to(&call.principal), after, limit };
    let page = call.gw.agents.sessions().list(query).await.map_err(store_error)?;
    let sessions: Vec<Value> = page
        .sessions
        .iter()
        .map(|s| {
            json!({"key": s.key, "agentId": s.agent, "owner": s.owner, "updatedAt": s.last_activity,
                   "messageCount": s.message_count})
        })
        .collect();
    let defaults = session_defaults(&call);
    Ok(Some(json!({"sessions": sessions, "nextCursor": page.next.map(|c| c.encode()), "defaults": defaults})))
}

async fn sessions_delete(call: Call) -> Answer {
    let params = &call.params;
    let key = key_param(params, "key").or_else(|_| key_param(params, "sessionKey"))?;
    let store = call.gw.agents.sessions();
    let deleted = match access::check(store, &call.principal, key, Access::Delete).await.map_err(store_error)? {
        Some(session) => store.delete(key, &session.owner).await.map_err(store_error)?,
        None => false,
    };
    Ok(Some(json!({"ok": true, "key": key, "deleted": deleted})))
}

/// `usage.get`: `GET /usage` over the socket (`groupBy`, `from`, `to`, `agentId`).
async fn usage_get(call: Call) -> Answer {
    let p = &call.params;
    let text = |key: &str| match &p[key] {
        Value::Number(n) => Some(n.to_string()),
        other => other.as_str().map(str::to_string),
    };
    let now = now_ms() as i64;
    let (group_by, from, to) =
        crate::usage::parse_range(text("groupBy").as_deref(), text("from").as_deref(), text("to").as_deref(), now)
            .map_err(|(_, message)| WsError::invalid(message))?;
    let agents = &call.gw.agents;
    let rows = agents.usage(&call.principal, group_by, from, to, text("agentId")).await.map_err(store_error)?;
    let budgets = agents.budgets(&call.principal).await.map_err(store_error)?;
    Ok(Some(json!({"usage": rows.iter().map(|r| r.to_json(group_by.key())).collect::<Vec<_>>(), "budgets": budgets})))
}
