//! Session history API: read, list and reset transcripts.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::gateway::Gateway;
use crate::sessions::{Transcript, role_name};

/// `GET /sessions/{key}/history`
pub async fn history(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let transcript = gw.agents.sessions().transcript(&key).await?;
    let transcript = transcript.filter(|t| caller.may_use_named(&t.agent)).ok_or_else(session_not_found)?;
    Ok(Json(transcript_json(&transcript)))
}

/// `DELETE /sessions/{key}`: forget the transcript and the plugin state.
pub async fn reset(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !crate::runs::may_touch_session(gw.agents.sessions(), &caller, &key).await?
        || !gw.agents.sessions().delete(&key).await?
    {
        return Err(session_not_found());
    }
    tracing::info!(session = %key, "session reset");
    Ok(Json(json!({"sessionKey": key, "deleted": true})))
}

/// `?agent=<id>`
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    agent: Option<String>,
}

/// `GET /sessions[?agent=<id>]`
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let agent = match query.agent {
        Some(raw) => Some(
            AgentId::parse(&raw)
                .ok_or_else(|| ApiError::invalid_request(format!("{raw:?} is not an agent id"), Some("agent".into())))?
                .to_string(),
        ),
        None => None,
    };
    let sessions = gw.agents.sessions().list(agent.as_deref()).await?;
    let data: Vec<Value> = sessions
        .iter()
        .filter(|s| caller.may_use_named(&s.agent))
        .map(|s| {
            json!({"sessionKey": s.key, "agentId": s.agent, "messageCount": s.message_count, "lastActivity": s.last_activity})
        })
        .collect();
    Ok(Json(json!({"sessions": data})))
}

/// The history API's JSON for one transcript (also printed by the CLI).
pub fn transcript_json(t: &Transcript) -> Value {
    let messages: Vec<Value> = t
        .messages
        .iter()
        .map(|m| {
            let mut v =
                json!({"role": role_name(m.message.role), "content": m.message.content, "createdAt": m.created_at});
            if !m.message.tool_calls.is_empty() {
                v["toolCalls"] = m
                    .message
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
                    .collect();
            }
            if let Some(id) = &m.message.tool_call_id {
                v["toolCallId"] = json!(id);
            }
            v
        })
        .collect();
    json!({"sessionKey": t.key, "agentId": t.agent, "messages": messages})
}

fn session_not_found() -> ApiError {
    ApiError { code: Some("session_not_found"), message: "No such session".into(), ..ApiError::not_found() }
}
