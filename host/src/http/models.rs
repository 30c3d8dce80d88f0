//! `GET /v1/models` and `GET /v1/models/{id}`: what Open WebUI and friends
//! offer as choices, and what an SDK's `models.retrieve` checks.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::auth::Principal;
use crate::chat::agent_of_model;
use crate::gateway::Gateway;

fn created(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn model(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "wasmclaw"})
}

/// `openclaw` (the default agent) plus `openclaw/<id>` for every agent the caller may use.
pub async fn list(State(gw): State<Arc<Gateway>>, Extension(caller): Extension<Principal>) -> Json<Value> {
    let agents = gw.agents.visible(&caller);
    let first = agents.iter().map(|a| created(a.loaded_at)).min().unwrap_or(0);
    let mut data = vec![model("openclaw", first)];
    data.extend(agents.iter().map(|a| model(&format!("openclaw/{}", a.id), created(a.loaded_at))));
    Json(json!({"object": "list", "data": data}))
}

/// One entry of [`list`], found by any name `model` routes by (`openclaw`,
/// `openclaw/<id>`, `OpenClaw:<id>`, `agent:<id>`); 404 for anything the
/// caller may not use. The path may hold a `/` (`openclaw/main`), encoded or not.
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let agents = gw.agents.visible(&caller);
    let agent = agent_of_model(&id, gw.agents.default_agent())
        .and_then(|wanted| agents.iter().find(|a| a.id == wanted))
        .ok_or_else(|| ApiError::unknown_agent(&id))?;
    if id.trim().eq_ignore_ascii_case("openclaw") {
        let first = agents.iter().map(|a| created(a.loaded_at)).min().unwrap_or(0);
        return Ok(Json(model("openclaw", first)));
    }
    Ok(Json(model(&format!("openclaw/{}", agent.id), created(agent.loaded_at))))
}
