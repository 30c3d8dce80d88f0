//! Admin API for canary rollouts: start (or widen) one, read how each
//! version does, promote the candidate, or end it.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::parse_id;
use super::error::ApiError;
use crate::auth::Principal;
use crate::config::{AutoRollback, Sticky};
use crate::gateway::Gateway;
use crate::registry::RolloutEnd;
use crate::rollout::{LiveRollout, Reading};
use crate::runs::{Candidate, RolloutSpec};
use crate::runtime::AgentSource;

/// The header naming the version (`sha256:<hex>`) that served a run.
pub const VERSION_HEADER: &str = "x-wasmclaw-agent-version";

/// The [`VERSION_HEADER`] value for `version`.
pub fn version_value(version: &crate::runtime::AgentVersion) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!("sha256:{}", version.digest)).expect("hex is a header value")
}

/// `PUT /admin/agents/{id}/rollout`
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StartBody {
    candidate: CandidateBody,
    weight: u8,
    #[serde(default)]
    sticky: Sticky,
    auto_rollback: Option<AutoRollback>,
    shadow: Option<ShadowBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateBody {
    /// The component, base64.
    component: Option<String>,
    /// `sha256:<hex>` (or bare hex) of a component the registry keeps.
    digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowBody {
    sample: f64,
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
    let body: StartBody = super::openai::parse_json(&bytes)?;
    if body.weight > 100 {
        return Err(ApiError::invalid_request(format!("weight {} is over 100", body.weight), Some("weight".into())));
    }
    if let Some(Err((field, message))) = body.auto_rollback.map(|a| a.check()) {
        return Err(ApiError::invalid_request(message, Some(format!("autoRollback.{field}"))));
    }
    if body.shadow.is_some_and(|s| s.sample != 0.0) {
        return Err(ApiError::invalid_request(
            "shadow runs are not available yet: they answer from recorded runs, which this gateway does not \
             record yet; send no `shadow` (or `sample: 0`)",
            Some("shadow.sample".into()),
        ));
    }
    let candidate = match (body.candidate.component, body.candidate.digest) {
        (Some(b64), None) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| {
                ApiError::invalid_request(format!("not base64: {e}"), Some("candidate.component".into()))
            })?;
            Candidate::Component(bytes.into())
        }
        (None, Some(digest)) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or(&digest).to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::invalid_request(
                    format!("{digest:?} is not a sha256 digest (sha256:<64 hex digits>)"),
                    Some("candidate.digest".into()),
                ));
            }
            Candidate::Digest(hex)
        }
        _ => {
            return Err(ApiError::invalid_request(
                "candidate needs exactly one of `component` (base64) and `digest` (sha256:…)",
                Some("candidate".into()),
            ));
        }
    };
    let spec = RolloutSpec { weight: body.weight, sticky: body.sticky, auto_rollback: body.auto_rollback };
    let rollout = gw.agents.start_rollout(&id, candidate, spec, AgentSource::AdminApi).await?;
    Ok(Json(rollout_json(&rollout)))
}

/// `GET /admin/agents/{id}/rollout`
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let rollout = gw.agents.rollouts().get(&id).ok_or_else(|| crate::runs::InstallError::NoRollout(id.to_string()))?;
    Ok(Json(rollout_json(&rollout)))
}

/// `POST /admin/agents/{id}/rollout/promote`
pub async fn promote(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&caller, &id)?;
    let rollout = gw.agents.end_rollout(&id, RolloutEnd::Promote).await?;
    let rollout = rollout.ok_or_else(|| crate::runs::InstallError::NoRollout(id.to_string()))?;
    Ok(Json(rollout_json(&rollout)))
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

fn rollout_json(r: &LiveRollout) -> Value {
    let (state, reason) = r.state();
    let version = |digest: &str, reading: Reading| json!({"digest": format!("sha256:{digest}"), "runs": reading.runs, "errors": reading.errors, "p95Ms": reading.p95_ms});
    json!({
        "agent": r.agent.to_string(),
        "id": r.record.id,
        "state": state.as_str(),
        "reason": reason,
        "weight": r.record.weight,
        "sticky": r.record.sticky,
        "autoRollback": r.record.auto_rollback,
        "source": r.record.source,
        "startedAt": r.record.started_at,
        "stable": version(&r.stable_digest, r.stable_stats.read()),
        "candidate": version(&r.candidate.digest, r.candidate_stats.read()),
    })
}
