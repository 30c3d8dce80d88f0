//! `POST /v1/chat/completions`: translate the request, run the agent, translate the reply.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::openai::{ChatRequest, ChunkEncoder, Completion};
use super::stream;
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::gateway::Gateway;
use crate::runs::RunInput;
use crate::sessions;

/// Header that picks the agent, overriding `model`.
pub const AGENT_HEADER: &str = "x-openclaw-agent-id";
/// Header that picks the session, and names it in responses.
pub const SESSION_HEADER: &str = "x-openclaw-session-key";

/// The handler. Auth has already passed (router middleware).
pub async fn completions(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !gw.is_ready() {
        return Err(ApiError::shutting_down());
    }
    super::require_json(&headers)?;
    // A client trickling its body must not hold a connection forever.
    let http = &gw.config.gateway.http;
    let bytes = super::read_body(body, http.max_body_bytes, http.read_timeout_ms).await?;
    let request = ChatRequest::parse(&bytes)?;
    let agent = resolve_agent(&gw, &headers, request.model.as_deref())?;
    let explicit_session = header_text(&headers, SESSION_HEADER)?;
    let session = sessions::resolve(&agent, explicit_session, request.user.as_deref())?;
    let input = RunInput {
        caller,
        agent,
        session,
        messages: request.agent_messages()?,
        tools: request.agent_tools()?,
        user: request.user.clone(),
        params: request.params(),
    };
    let handle = gw.agents.start(input)?;
    let session_key = HeaderValue::from_str(&handle.session.key).map_err(|e| ApiError::internal(e.to_string()))?;
    let completion = Completion::new(request.model.clone().unwrap_or_else(|| "openclaw".into()));
    let mut response = if request.streaming() {
        let encoder = ChunkEncoder::new(completion, request.include_usage());
        let keep_alive = std::time::Duration::from_millis(gw.config.gateway.http.sse_keep_alive_ms);
        stream::respond(handle, encoder, gw.grace_signal(), keep_alive).await?
    } else {
        let reply = handle.collect().await?;
        Json(completion.whole(&reply)).into_response()
    };
    response.headers_mut().insert(SESSION_HEADER, session_key);
    Ok(response)
}

/// Header first, then `model`: `openclaw[/default]`, `openclaw:<id>`, `openclaw/<id>`, `agent:<id>`.
pub(super) fn resolve_agent(gw: &Gateway, headers: &HeaderMap, model: Option<&str>) -> Result<AgentId, ApiError> {
    if let Some(id) = header_text(headers, AGENT_HEADER)? {
        return AgentId::parse(id.trim()).ok_or_else(|| ApiError::unknown_agent(id));
    }
    let Some(model) = model.map(str::trim) else {
        return Ok(gw.agents.default_agent().clone());
    };
    if model == "openclaw" || model == "openclaw/default" {
        return Ok(gw.agents.default_agent().clone());
    }
    ["openclaw:", "openclaw/", "agent:"]
        .iter()
        .find_map(|prefix| model.strip_prefix(prefix))
        .and_then(AgentId::parse)
        .ok_or_else(|| ApiError::unknown_agent(model))
}

pub(super) fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| ApiError::invalid_request(format!("{name} must be ASCII text"), Some(name.into())))
        })
        .transpose()
}
