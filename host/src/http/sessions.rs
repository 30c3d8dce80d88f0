//! Session history API: read, list and reset transcripts. Who may see or
//! reset which session is `sessions::access`'s rule, not decided here.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::gateway::Gateway;
use crate::sessions::{self, Access, SessionQuery, Transcript, Visible, access, role_name};

/// `GET /sessions/{key}/history`
pub async fn history(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = gw.agents.sessions();
    access::check(store, &caller, &key, Access::Read).await?.ok_or_else(ApiError::session_not_found)?;
    let transcript = store.transcript(&key).await?.ok_or_else(ApiError::session_not_found)?;
    Ok(Json(transcript_json(&transcript)))
}

/// `DELETE /sessions/{key}`: forget the transcript, the plugin state and the stored responses.
pub async fn reset(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = gw.agents.sessions();
    let session = access::check(store, &caller, &key, Access::Delete).await?.ok_or_else(ApiError::session_not_found)?;
    // Only if it still has that owner: a key deleted and taken by someone
    // else since the check is theirs.
    if !store.delete(&key, &session.owner).await? {
        return Err(ApiError::session_not_found());
    }
    tracing::info!(session = %key, owner = %session.owner, by = caller.name(), "session reset");
    Ok(Json(json!({"sessionKey": key, "deleted": true})))
}

/// `?agent=<id>&limit=<n>&cursor=<c>`
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    agent: Option<String>,
    /// Text, so a bad one gets the OpenAI error shape rather than axum's.
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /sessions[?agent=<id>][&limit=<n>][&cursor=<c>]`: one page of the
/// sessions the caller may read, most recent first.
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
    // Not a number: out of range on purpose, so `parse_page` names the bounds.
    let limit = query.limit.as_deref().map(|text| text.parse::<u64>().unwrap_or(0));
    let (limit, after) = sessions::parse_page(limit, query.cursor.as_deref())?;
    let query = SessionQuery { agent, visible: Visible::to(&caller), after, limit };
    let page = gw.agents.sessions().list(query).await?;
    let data: Vec<Value> = page
        .sessions
        .iter()
        .map(|s| {
            json!({"sessionKey": s.key, "agentId": s.agent, "owner": s.owner, "messageCount": s.message_count,
                   "lastActivity": s.last_activity})
        })
        .collect();
    Ok(Json(json!({"sessions": data, "nextCursor": page.next.map(|c| c.encode())})))
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
