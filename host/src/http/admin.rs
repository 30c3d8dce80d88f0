//! Admin API: inspect, replace, roll back and remove agents while traffic flows.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::gateway::Gateway;
use crate::runtime::{AgentSource, AgentVersion};

/// Header carrying the expected sha256 (hex) of an uploaded component.
pub const DIGEST_HEADER: &str = "x-wasmclaw-sha256";

/// `GET /admin/agents`
pub async fn list(State(gw): State<Arc<Gateway>>, Extension(caller): Extension<Principal>) -> Json<Value> {
    let agents: Vec<Value> = gw
        .agents
        .visible(&caller)
        .iter()
        .map(|v| agent_json(v, gw.agents.registry().slot(&v.id).and_then(|s| s.previous).as_deref()))
        .collect();
    Json(json!({"agents": agents}))
}

/// `GET /admin/agents/{id}`
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let slot = gw.agents.registry().slot(&id).ok_or_else(|| crate::runs::InstallError::NotFound(id.to_string()))?;
    Ok(Json(agent_json(&slot.current, slot.previous.as_deref())))
}

/// `PUT /admin/agents/{id}` with the component bytes as the body.
pub async fn install(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let limit = gw.config.agents.max_component_bytes;
    let bytes = super::read_body(body, limit, gw.config.gateway.http.read_timeout_ms).await?;
    if bytes.is_empty() {
        return Err(ApiError::invalid_request("The body must be the component's bytes", None));
    }
    let bytes: Arc<[u8]> = Arc::from(&bytes[..]);
    if let Some(expected) = headers.get(DIGEST_HEADER) {
        let expected = expected.to_str().unwrap_or_default().trim().to_ascii_lowercase();
        let actual = crate::runs::component_digest(bytes.clone()).await;
        if expected != actual {
            return Err(ApiError::invalid_request(
                format!("{DIGEST_HEADER} is {expected} but the body's sha256 is {actual}"),
                Some(DIGEST_HEADER.into()),
            ));
        }
    }
    let version = gw.agents.install(id, bytes, AgentSource::AdminApi).await?;
    let previous = gw.agents.registry().slot(&version.id).and_then(|s| s.previous);
    Ok(Json(agent_json(&version, previous.as_deref())))
}

/// `POST /admin/agents/{id}/rollback`
pub async fn rollback(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let version = gw.agents.rollback(&id).await?;
    let previous = gw.agents.registry().slot(&id).and_then(|s| s.previous);
    Ok(Json(agent_json(&version, previous.as_deref())))
}

/// `DELETE /admin/agents/{id}`
pub async fn remove(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let removed = gw.agents.remove(&id).await?;
    Ok(Json(json!({"id": id.to_string(), "removed": true, "digest": removed.digest})))
}

/// A valid id the caller may use; another caller's agent is as unknown as a missing one.
pub(super) fn parse_id(caller: &Principal, raw: &str) -> Result<AgentId, ApiError> {
    let id = AgentId::parse(raw).ok_or_else(|| {
        ApiError::invalid_request(
            format!("{raw:?} is not a valid agent id ([a-z0-9][a-z0-9_-]{{0,63}})"),
            Some("id".into()),
        )
    })?;
    if !caller.may_use(&id) {
        return Err(crate::runs::InstallError::NotFound(id.to_string()).into());
    }
    Ok(id)
}

fn agent_json(v: &AgentVersion, previous: Option<&AgentVersion>) -> Value {
    let loaded_at = v.loaded_at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    json!({
        "id": v.id.to_string(),
        "digest": v.digest,
        "name": v.info.name,
        "version": v.info.version,
        "description": v.info.description,
        "source": v.source.to_string(),
        "loadedAt": loaded_at,
        "inFlight": v.in_flight(),
        "fromCache": v.from_cache,
        "previous": previous.map(|p| json!({"digest": p.digest, "name": p.info.name, "version": p.info.version})),
    })
}
