//! Liveness and readiness probes; no auth.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::gateway::Gateway;

/// Always 200 while the process serves HTTP.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once agents are loaded; 503 while draining, and in cluster mode while
/// the database is unreachable or its pool starved (requests waited for a
/// connection in vain in the last seconds): a load balancer then sends traffic
/// elsewhere; requests that reach this instance anyway are still served where they can be.
pub async fn ready(State(gw): State<Arc<Gateway>>) -> (StatusCode, Json<Value>) {
    if !gw.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"})))
    } else if gw.agents.database().is_some_and(|db| !db.is_up()) {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "database unavailable"})))
    } else if gw.agents.database().is_some_and(|db| db.is_starved()) {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "database pool exhausted"})))
    } else {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    }
}
