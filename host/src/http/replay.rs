//! `POST /admin/replay {runId, component?: base64, digest?, live?}`: replay
//! a recorded run on a component (the recorded version by default) and say
//! how it compares: `identical`, `changed`, `diverged` or `failed`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use base64::Engine as _;
use serde::Deserialize;

use super::error::ApiError;
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::runs::replay::ReplaySource;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplayRequest {
    run_id: String,
    /// The component to run, base64.
    component: Option<String>,
    /// A component the registry keeps, `sha256:…`.
    digest: Option<String>,
    /// Let calls the recording cannot answer go out for real.
    #[serde(default)]
    live: bool,
}

/// `POST /admin/replay`: the verdict (`tape::Verdict`).
pub async fn replay(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    body: Body,
) -> Result<Json<crate::tape::Verdict>, ApiError> {
    // base64 is 4/3 of the bytes, plus the rest of the object.
    let limit = gw.config.agents.max_component_bytes / 3 * 4 + 64 * 1024;
    let bytes = super::read_body(body, limit, gw.config.gateway.http.read_timeout_ms).await?;
    let request: ReplayRequest = super::openai::parse_json(&bytes)?;
    let source = match (request.component, request.digest) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request("send component or digest, not both", Some("digest".into())));
        }
        (Some(b64), None) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| {
                ApiError::invalid_request(format!("component is not base64: {e}"), Some("component".into()))
            })?;
            ReplaySource::Bytes(bytes.into())
        }
        (None, Some(digest)) => ReplaySource::Digest(digest),
        (None, None) => ReplaySource::Recorded,
    };
    let verdict = gw.agents.replay(&caller, &request.run_id, source, request.live).await?;
    Ok(Json(verdict))
}
