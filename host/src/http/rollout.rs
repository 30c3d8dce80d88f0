//! Admin API for canary rollouts: start (or widen) one, read how each
//! version does, promote the candidate, or end it.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use serde_json::{Value, json};

use super::admin::parse_id;
use super::error::ApiError;
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::registry::RolloutEnd;
use crate::runs::{InstallError, RolloutRequest};
use crate::runtime::AgentSource;

/// The header naming the version (`sha256:<hex>`) that served a run.
pub const VERSION_HEADER: &str = "x-wasmclaw-agent-version";

/// The [`VERSION_HEADER`] value for `version`.
pub fn version_value(version: &crate::runtime::AgentVersion) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!("sha256:{}", version.digest)).expect("hex is a header value")
}

/// `PUT /admin/agents/{id}/rollout`
pub async fn start(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    // base64 is 4/3 of the bytes, plus the rest of the object.
    let limit = gw.config.agents.max_component_bytes / 3 * 4 + 64 * 1024;
    let bytes = super::read_body(body, limit, gw.config.gateway.http.read_timeout_ms).await?;
    let request: RolloutRequest = super::openai::parse_json(&bytes)?;
    let (candidate, spec) = request.check().map_err(|e| ApiError::invalid_request(e.message, Some(e.param)))?;
    let rollout = gw.agents.start_rollout(&id, candidate, spec, AgentSource::AdminApi).await?;
    Ok(Json(rollout.summary()))
}

/// `GET /admin/agents/{id}/rollout`
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let rollout = gw.agents.rollouts().get(&id).ok_or_else(|| InstallError::NoRollout(id.to_string()))?;
    Ok(Json(rollout.summary()))
}

/// `POST /admin/agents/{id}/rollout/promote`
pub async fn promote(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let rollout = gw.agents.end_rollout(&id, RolloutEnd::Promote).await?;
    let rollout = rollout.ok_or_else(|| InstallError::NoRollout(id.to_string()))?;
    Ok(Json(rollout.summary()))
}

/// `POST /admin/agents/{id}/rollout/rollback`: all traffic back to stable, the rollout kept as `rolledBack`.
pub async fn roll_back(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let rollout = gw.agents.end_rollout(&id, RolloutEnd::rolled_back_by(caller.name())).await?;
    let rollout = rollout.ok_or_else(|| InstallError::NoRollout(id.to_string()))?;
    Ok(Json(rollout.summary()))
}

/// `DELETE /admin/agents/{id}/rollout`
pub async fn end(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    gw.agents.end_rollout(&id, RolloutEnd::Remove).await?;
    Ok(Json(json!({"agent": id.to_string(), "ended": true})))
}
