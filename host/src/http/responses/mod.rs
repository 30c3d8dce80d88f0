//! `/v1/responses`: OpenAI's Responses API on the one run path.
//!
//! `POST` translates the request (`request.rs`) into a `RunInput` exactly as
//! chat completions do (same agent routing, session header, auth and
//! errors), runs it with `Agents::start`, and answers with the `response`
//! object or its semantic SSE events (`object.rs`, `stream.rs`).
//!
//! Continuity: a stored response (`store`, default true) is kept in the
//! session store with the session it ran in; `previous_response_id` runs the
//! next turn in that session, so the agent sees the earlier turns as history.
//! A response without `previous_response_id` starts its own session unless
//! `x-openclaw-session-key` or `user` picks one, as in chat completions.
//! Stored responses belong to the principal that created them: for anyone
//! else an id does not exist (404).

mod background;
mod conversation;
mod items;
mod object;
mod request;
mod stream;
mod tools;

pub use items::list as input_items;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::chat::{MODEL_HEADER, SESSION_HEADER, header_text, resolve_agent};
use super::error::ApiError;
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::gateway::Gateway;
use crate::runs::RunInput;
use crate::sessions::{self, SessionKey, StoredResponse, access};
pub use background::BackgroundRuns;
use conversation::ConversationTurn;
pub use conversation::check_input;
use object::{Encoder, Meta};
use request::{Input, ResponsesRequest};

/// `POST /v1/responses`. Auth has already passed (router middleware).
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Extension(background_runs): Extension<Arc<BackgroundRuns>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = super::chat::read_request(&gw, &headers, body).await?;
    let mut request = ResponsesRequest::parse(&bytes)?;
    if let Some(Input::Items(items)) = &mut request.input {
        items::resolve_references(&gw, &caller, items).await?;
    }
    let background = request.rest.get("background").is_some_and(|b| *b == Value::Bool(true));
    if background && !request.keep() {
        // As OpenAI: a background response is fetched later, so it must be kept.
        let message = "A background response must be stored; leave out `store: false`";
        return Err(ApiError::invalid_request(message, Some("background".into())));
    }
    let agent = resolve_agent(&gw, &headers, request.model.as_deref())?;
    let explicit_session = header_text(&headers, SESSION_HEADER)?;
    let joined = conversation::join(&gw, &caller, &agent, &mut request, explicit_session).await?;
    let (joined_session, conversation) = joined.unzip();
    let session = match (joined_session, &request.previous_response_id) {
        (Some(session), _) => session,
        (None, Some(id)) => continued_session(&gw, &caller, &agent, id, explicit_session).await?,
        (None, None)
            if explicit_session.is_none() && request.user.as_deref().is_none_or(str::is_empty) && request.keep() =>
        {
            // Kept so that a later `previous_response_id` has a conversation to continue.
            SessionKey { key: format!("agent:{agent}:openai-response:{}", uuid::Uuid::new_v4()), persistent: true }
        }
        (None, None) => sessions::resolve(&agent, explicit_session, request.user.as_deref(), caller.name())?,
    };
    let translated = request.translate()?;
    if !translated.left_out.is_empty() {
        tracing::info!(
            agent = %agent,
            // Debug-quoted: tool names are the client's text.
            left_out = ?translated.left_out,
            "responses: left out tools this gateway does not serve (hosted tools); the agent sees only function tools"
        );
    }
    let namespaced = translated.namespaced;
    let input = RunInput {
        caller: caller.clone(),
        agent: agent.clone(),
        session,
        messages: translated.messages,
        tools: translated.tools,
        user: request.user.clone(),
        params: translated.params,
        model: header_text(&headers, MODEL_HEADER)?.map(str::to_string),
        idempotency_key: None,
    };
    let mut handle = gw.agents.start(input)?;
    let version = super::rollout::version_value(&handle.agent);
    let session_key = HeaderValue::from_str(&handle.session.key).map_err(|e| ApiError::internal(e.to_string()))?;
    let model = request.model.clone().unwrap_or_else(|| "openclaw".into());
    let mut echoed = echo(&request);
    if let Some(turn) = &conversation {
        echoed.insert("conversation".into(), json!({"id": turn.id}));
    }
    echoed.insert("background".into(), Value::Bool(background));
    let mut meta = Meta::new(model, request.previous_response_id.clone(), request.keep(), echoed);
    meta.namespaced = namespaced;
    let keeper = Keeper {
        gw: gw.clone(),
        store: request.keep() && handle.session.persistent,
        conversation,
        owner: caller.name().to_string(),
        agent: agent.to_string(),
        session_key: handle.session.key.clone(),
        id: meta.id.clone(),
        input: if request.keep() { items::kept(request.input.as_ref(), &meta.id).to_string() } else { String::new() },
    };
    let mut response = if background {
        let config = &gw.config.gateway.http.endpoints.responses;
        let limits = background::Limits {
            per_principal: config.max_background_per_principal,
            event_bytes: config.background_event_bytes,
        };
        let id = meta.id.clone();
        let encoder = Encoder::new(meta, true);
        let object = background_runs.start(limits, &caller, agent.as_str(), encoder, keeper, handle)?;
        if request.streaming() {
            background_runs.resume(&caller, &id, None, keep_alive(&gw)).unwrap_or_else(|| Err(not_found(&id, None)))?
        } else {
            Json(object).into_response()
        }
    } else if request.streaming() {
        let wire = stream::ResponsesWire { encoder: Encoder::new(meta, true), keeper };
        super::chat::respond_streaming(&gw, handle, wire).await?
    } else {
        let mut encoder = Encoder::new(meta, false);
        // Nothing leaves before the object is whole.
        handle.whole();
        while let Some(event) = handle.next().await {
            encoder.event(&event);
        }
        handle.finish().await?;
        let object = encoder.finish();
        keeper.keep(&object).await?;
        Json(object).into_response()
    };
    response.headers_mut().insert(SESSION_HEADER, session_key);
    response.headers_mut().insert(super::rollout::VERSION_HEADER, version);
    Ok(response)
}

/// `?stream=true&starting_after=N` on `GET /v1/responses/{id}` (text, so a
/// bad value gets the OpenAI error shape).
#[derive(Debug, Deserialize)]
pub struct RetrieveQuery {
    stream: Option<String>,
    starting_after: Option<String>,
}

/// `GET /v1/responses/{id}`: a background response as it stands (or its
/// events again, `stream=true`), else a stored response as it was returned.
pub async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Extension(background): Extension<Arc<BackgroundRuns>>,
    Path(id): Path<String>,
    Query(query): Query<RetrieveQuery>,
) -> Result<Response, ApiError> {
    if query.stream.as_deref() == Some("true") {
        let starting_after = match query.starting_after.as_deref() {
            None => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                ApiError::invalid_request("`starting_after` must be a sequence number", Some("starting_after".into()))
            })?),
        };
        if let Some(resumed) = background.resume(&caller, &id, starting_after, keep_alive(&gw)) {
            return resumed;
        }
        owned(&gw, &caller, &id, None).await?;
        let message = "Only a background response can be streamed again, for a while after it started";
        return Err(ApiError::invalid_request(message, Some("stream".into())));
    }
    if let Some(object) = background.object(&caller, &id) {
        return Ok(Json(object).into_response());
    }
    let stored = owned(&gw, &caller, &id, None).await?;
    let body: Value =
        serde_json::from_str(&stored.body).map_err(|e| ApiError::internal(format!("stored response: {e}")))?;
    Ok(Json(body).into_response())
}

/// `POST /v1/responses/{id}/cancel`: stop a background response.
pub async fn cancel(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Extension(background): Extension<Arc<BackgroundRuns>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(object) = background.cancel(&caller, &id) {
        return Ok(Json(object));
    }
    owned(&gw, &caller, &id, None).await?;
    Err(ApiError::invalid_request("Only a background response can be cancelled", None))
}

fn keep_alive(gw: &Gateway) -> std::time::Duration {
    std::time::Duration::from_millis(gw.config.gateway.http.sse_keep_alive_ms)
}

/// `DELETE /v1/responses/{id}`: forget a stored response (its session stays).
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    owned(&gw, &caller, &id, None).await?;
    if !gw.agents.sessions().delete_response(&id).await? {
        return Err(not_found(&id, None));
    }
    Ok(Json(json!({"id": id, "object": "response", "deleted": true})))
}

/// The session `previous_response_id` ran in, if the caller owns it and it
/// belongs to the agent this request runs.
async fn continued_session(
    gw: &Gateway,
    caller: &Principal,
    agent: &AgentId,
    id: &str,
    explicit_session: Option<&str>,
) -> Result<SessionKey, ApiError> {
    let previous = owned(gw, caller, id, Some("previous_response_id")).await?;
    if previous.agent != agent.as_str() {
        return Err(ApiError::invalid_request(
            format!("Response {id:?} was made by agent {:?}; continue it with that model", previous.agent),
            Some("previous_response_id".into()),
        ));
    }
    if explicit_session.is_some_and(|k| k != previous.session_key) {
        return Err(ApiError::invalid_request(
            format!("Response {id:?} belongs to another session than {SESSION_HEADER} names"),
            Some(SESSION_HEADER.into()),
        ));
    }
    Ok(SessionKey { key: previous.session_key, persistent: true })
}

/// A stored response the caller may see; for anyone else it does not exist.
async fn owned(gw: &Gateway, caller: &Principal, id: &str, param: Option<&str>) -> Result<StoredResponse, ApiError> {
    let found = gw.agents.sessions().response(id).await?;
    found.filter(|r| access::is_owner(caller, &r.owner, &r.agent)).ok_or_else(|| not_found(id, param))
}

fn not_found(id: &str, param: Option<&str>) -> ApiError {
    ApiError {
        code: Some("response_not_found"),
        message: format!("Response with id {id:?} not found."),
        param: param.map(str::to_string),
        ..ApiError::not_found()
    }
}

/// The request fields the `response` object repeats.
fn echo(request: &ResponsesRequest) -> Map<String, Value> {
    let mut echo = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            echo.insert(key.into(), v);
        }
    };
    put("instructions", request.instructions.clone().map(Value::from));
    put("tools", request.tools.clone().map(Value::from));
    put("tool_choice", request.tool_choice.clone());
    put("temperature", request.temperature.map(Value::from));
    put("top_p", request.top_p.map(Value::from));
    put("max_output_tokens", request.max_output_tokens.map(Value::from));
    put("parallel_tool_calls", request.parallel_tool_calls.map(Value::from));
    put("metadata", request.metadata.clone());
    put("user", request.user.clone().map(Value::from));
    put("text", request.text.clone());
    put("reasoning", request.reasoning.clone());
    echo
}

/// Keeps a finished response when the client asked for `store`, and adds
/// it to its conversation (written after the turn has committed, so its
/// session exists).
pub struct Keeper {
    gw: Arc<Gateway>,
    /// Keep the response object.
    store: bool,
    /// The conversation it ran in.
    conversation: Option<ConversationTurn>,
    owner: String,
    agent: String,
    session_key: String,
    id: String,
    /// The input items as `input_items` lists them (JSON array).
    input: String,
}

impl Keeper {
    /// Store `response` (a finished object) if asked to.
    pub async fn keep(&self, response: &Value) -> Result<(), ApiError> {
        if let Some(turn) = &self.conversation {
            turn.record(&self.gw, response).await?;
        }
        if !self.store {
            return Ok(());
        }
        let stored = StoredResponse {
            id: self.id.clone(),
            owner: self.owner.clone(),
            agent: self.agent.clone(),
            session_key: self.session_key.clone(),
            body: response.to_string(),
            created_at: sessions::now_ms(),
            input: self.input.clone(),
        };
        self.gw.agents.sessions().put_response(stored).await?;
        Ok(())
    }
}
