//! `POST /v1/chat/completions`: translate the request, run the agent, translate the reply.
//! The steps every OpenAI-style door shares (body, routing, session, model
//! header, starting the run) live here too, so `/v1/completions` is the same path.

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
use crate::chat::{AgentId, Message, ToolSpec, agent_of_model};
use crate::gateway::Gateway;
use crate::runs::{RunHandle, RunInput};
use crate::sessions;

/// Header that picks the agent, overriding `model`.
pub const AGENT_HEADER: &str = "x-openclaw-agent-id";
/// Header that picks the session, and names it in responses.
pub const SESSION_HEADER: &str = "x-openclaw-session-key";
/// Header that picks the model the agent's `llm` calls use, for this request.
pub const MODEL_HEADER: &str = "x-openclaw-model";

/// The handler. Auth has already passed (router middleware).
pub async fn completions(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_request(&gw, &headers, body).await?;
    let request = ChatRequest::parse(&bytes)?;
    let turn = Turn {
        model: request.model.as_deref(),
        user: request.user.as_deref(),
        messages: request.agent_messages()?,
        tools: request.agent_tools()?,
        params: request.params()?,
    };
    let (handle, session_key) = start(&gw, caller, &headers, turn)?;
    let version = super::rollout::version_value(&handle.agent);
    let completion = Completion::new(request.model.clone().unwrap_or_else(|| "openclaw".into()));
    let mut response = if request.streaming() {
        let encoder = ChunkEncoder::new(completion, request.include_usage());
        respond_streaming(&gw, handle, stream::DataLines(encoder)).await?
    } else {
        // A failed run names its version too: that is how a failing candidate is found.
        match handle.collect().await {
            Ok(reply) => Json(completion.whole(&reply)).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        }
    };
    response.headers_mut().insert(SESSION_HEADER, session_key);
    response.headers_mut().insert(super::rollout::VERSION_HEADER, version);
    Ok(response)
}

/// Readiness, `Content-Type` and a bounded, timely body: what every JSON door checks first.
pub(super) async fn read_request(gw: &Gateway, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    if !gw.is_ready() {
        return Err(ApiError::shutting_down());
    }
    super::require_json(headers)?;
    // A client trickling its body must not hold a connection forever.
    let http = &gw.config.gateway.http;
    super::read_body(body, http.max_body_bytes, http.read_timeout_ms).await
}

/// One turn as a door read it, before routing.
pub(super) struct Turn<'r> {
    pub model: Option<&'r str>,
    pub user: Option<&'r str>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub params: serde_json::Value,
}

/// Route, pick the session and the model, start the run; also returns the
/// session key for the response's header.
pub(super) fn start(
    gw: &Gateway,
    caller: Principal,
    headers: &HeaderMap,
    turn: Turn<'_>,
) -> Result<(RunHandle, HeaderValue), ApiError> {
    let agent = resolve_agent(gw, headers, turn.model)?;
    let explicit_session = header_text(headers, SESSION_HEADER)?;
    let session = sessions::resolve(&agent, explicit_session, turn.user, caller.name())?;
    let input = RunInput {
        caller,
        agent,
        session,
        messages: turn.messages,
        tools: turn.tools,
        user: turn.user.map(str::to_string),
        params: turn.params,
        model: header_text(headers, MODEL_HEADER)?.map(str::to_string),
        idempotency_key: None,
    };
    let handle = gw.agents.start(input)?;
    let session_key = HeaderValue::from_str(&handle.session.key).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((handle, session_key))
}

/// An SSE answer with the gateway's keep-alive and shutdown grace.
pub(super) async fn respond_streaming<W: stream::Wire>(
    gw: &Gateway,
    handle: RunHandle,
    wire: W,
) -> Result<Response, ApiError> {
    let keep_alive = std::time::Duration::from_millis(gw.config.gateway.http.sse_keep_alive_ms);
    stream::respond(handle, wire, gw.grace_signal(), keep_alive).await
}

/// Header first, then `model` (see [`agent_of_model`]); no `model` is the default agent.
pub(super) fn resolve_agent(gw: &Gateway, headers: &HeaderMap, model: Option<&str>) -> Result<AgentId, ApiError> {
    if let Some(id) = header_text(headers, AGENT_HEADER)? {
        return AgentId::parse(id).ok_or_else(|| ApiError::unknown_agent(id));
    }
    let Some(model) = model else {
        return Ok(gw.agents.default_agent().clone());
    };
    agent_of_model(model, gw.agents.default_agent()).ok_or_else(|| ApiError::unknown_agent(model))
}

/// A header's text, trimmed; an empty one counts as absent (some clients
/// send every configured header, set or not).
pub(super) fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid_request(format!("{name} must be ASCII text"), Some(name.into())))?
        .trim();
    Ok(Some(text).filter(|t| !t.is_empty()))
}
