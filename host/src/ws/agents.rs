//! Agent changes over the socket: install, roll back and remove an agent,
//! and its rollouts; the same calls the admin API makes (`http/admin.rs`,
//! `http/rollout.rs`).

use base64::Engine as _;
use serde_json::{Value, json};

use super::frames::WsError;
use super::methods::{Answer, Call, agent_json, key_param};
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::runtime::AgentSource;

pub(super) async fn install(call: Call) -> Answer {
    let params = &call.params;
    let id = agent_param(&call.principal, params)?;
    let encoded = key_param(params, "component")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| WsError::invalid(format!("component is not base64: {e}")))?;
    if let Some(expected) = params["sha256"].as_str() {
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(WsError::invalid(format!("sha256 is {expected} but the component's is {actual}")));
        }
    }
    let version = call.gw.agents.install(id, bytes.into(), AgentSource::WebSocket).await.map_err(install_error)?;
    Ok(Some(agent_json(&version)))
}

pub(super) async fn rollback(call: Call) -> Answer {
    let id = agent_param(&call.principal, &call.params)?;
    let version = call.gw.agents.rollback(&id).await.map_err(install_error)?;
    Ok(Some(agent_json(&version)))
}

pub(super) async fn remove(call: Call) -> Answer {
    let id = agent_param(&call.principal, &call.params)?;
    let removed = call.gw.agents.remove(&id).await.map_err(install_error)?;
    Ok(Some(json!({"id": removed.id.to_string(), "removed": true})))
}

/// `agents.rollout`: the admin API's `PUT …/rollout` body beside `agentId`.
pub(super) async fn rollout(call: Call) -> Answer {
    let id = agent_param(&call.principal, &call.params)?;
    let mut body = call.params.clone();
    body.as_object_mut().map(|o| (o.remove("agentId"), o.remove("id")));
    let request: crate::runs::RolloutRequest =
        serde_json::from_value(body).map_err(|e| WsError::invalid(format!("invalid rollout: {e}")))?;
    let (candidate, spec) = request.check().map_err(|e| WsError::invalid(format!("{}: {}", e.param, e.message)))?;
    let rollout = call.gw.agents.start_rollout(&id, candidate, spec, AgentSource::WebSocket).await;
    Ok(Some(rollout.map_err(install_error)?.summary()))
}

pub(super) async fn rollout_get(call: Call) -> Answer {
    let id = agent_param(&call.principal, &call.params)?;
    let rollout = call.gw.agents.rollouts().get(&id);
    Ok(Some(rollout.ok_or_else(|| install_error(crate::runs::InstallError::NoRollout(id.to_string())))?.summary()))
}

pub(super) async fn rollout_promote(call: Call) -> Answer {
    let id = agent_param(&call.principal, &call.params)?;
    let rollout = call.gw.agents.end_rollout(&id, crate::registry::RolloutEnd::Promote).await.map_err(install_error)?;
    let rollout = rollout.ok_or_else(|| install_error(crate::runs::InstallError::NoRollout(id.to_string())))?;
    Ok(Some(rollout.summary()))
}

/// `agents.rollout.rollback`: an operator's rollback, kept as `rolledBack` with who did it.
pub(super) async fn rollout_rollback(call: Call) -> Answer {
    let id = agent_param(&call.principal, &call.params)?;
    let end = crate::registry::RolloutEnd::rolled_back_by(call.principal.name());
    let rollout = call.gw.agents.end_rollout(&id, end).await.map_err(install_error)?;
    let rollout = rollout.ok_or_else(|| install_error(crate::runs::InstallError::NoRollout(id.to_string())))?;
    Ok(Some(rollout.summary()))
}

pub(super) async fn rollout_end(call: Call) -> Answer {
    let id = agent_param(&call.principal, &call.params)?;
    call.gw.agents.end_rollout(&id, crate::registry::RolloutEnd::Remove).await.map_err(install_error)?;
    Ok(Some(json!({"agentId": id.to_string(), "ended": true})))
}

/// The `agentId` (or `id`) param; an agent the caller may not use is as unknown as a missing one.
fn agent_param(caller: &Principal, params: &Value) -> Result<AgentId, WsError> {
    let raw = key_param(params, "agentId").or_else(|_| key_param(params, "id"))?;
    let id = AgentId::parse(raw).ok_or_else(|| WsError::invalid(format!("{raw:?} is not an agent id")))?;
    if !caller.may_use(&id) {
        return Err(install_error(crate::runs::InstallError::NotFound(id.to_string())));
    }
    Ok(id)
}

fn install_error(e: crate::runs::InstallError) -> WsError {
    use crate::registry::RegistryError;
    match e {
        crate::runs::InstallError::Registry(RegistryError::Unavailable(_)) => {
            WsError::unavailable("agent registry's database", e)
        }
        crate::runs::InstallError::Registry(e) => WsError::internal(e),
        e => WsError::invalid(e.to_string()),
    }
}
