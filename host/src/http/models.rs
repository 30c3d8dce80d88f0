//! `GET /v1/models`: what Open WebUI and friends offer as choices.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::{Extension, State};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::gateway::Gateway;

/// `openclaw` (the default agent) plus `openclaw/<id>` for every agent the caller may use.
pub async fn list(State(gw): State<Arc<Gateway>>, Extension(caller): Extension<Principal>) -> Json<Value> {
    let agents = gw.agents.visible(&caller);
    let created = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let first = agents.iter().map(|a| created(a.loaded_at)).min().unwrap_or(0);
    let mut data = vec![json!({"id": "openclaw", "object": "model", "created": first, "owned_by": "wasmclaw"})];
    data.extend(agents.iter().map(|a| {
        json!({"id": format!("openclaw/{}", a.id), "object": "model", "created": created(a.loaded_at), "owned_by": "wasmclaw"})
    }));
    Json(json!({"object": "list", "data": data}))
}
