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

/// 200 once agents are loaded; 503 while draining.
pub async fn ready(State(gw): State<Arc<Gateway>>) -> (StatusCode, Json<Value>) {
    if gw.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"})))
    }
}
