//! `GET /runs` and `GET /runs/{id}`: recorded runs (`agents.entries.<id>.record`).
//! Who sees which is the session owner rule (`sessions::access`): a token
//! its own, the main secret and unrestricted admins every one; another's
//! run is 404 like an unknown one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::auth::Principal;
use crate::gateway::Gateway;

/// Runs a listing shows unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// `?agent=<id>&limit=…`
#[derive(Debug, Deserialize)]
pub struct ListParams {
    agent: Option<String>,
    limit: Option<String>,
}

/// `GET /runs`: `{"runs": [{"id", "agent", "digest", "sessionKey", "startedAt", "outcome", "truncated"}]}`, newest first.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::invalid_request(format!("limit must be a number from 1 to {MAX_LIMIT}"), Some("limit".into()))
        })?,
    };
    let runs = gw.agents.recordings(&caller, params.agent, limit).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// `GET /runs/{id}`: the recording as JSON (`tape::Recording`).
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = gw.agents.recording(&caller, &id).await?.ok_or_else(ApiError::run_not_found)?;
    let recording: Value = serde_json::from_str(&row.body)
        .map_err(|e| ApiError::from(crate::runs::replay::ReplayError::Unreadable(id, e.to_string())))?;
    Ok(Json(recording))
}
