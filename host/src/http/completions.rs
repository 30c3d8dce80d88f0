//! `POST /v1/completions`, the legacy endpoint: the prompt runs as one user
//! message through the same path as chat completions (routing, auth,
//! sessions, errors), answered in the `text_completion` shape.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::chat::{self, SESSION_HEADER, Turn};
use super::error::ApiError;
use super::openai::{Completion, TextRequest};
use super::stream;
use crate::auth::Principal;
use crate::chat::{Message, Role};
use crate::gateway::Gateway;

/// The handler. Auth has already passed (router middleware).
pub async fn completions(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = chat::read_request(&gw, &headers, body).await?;
    let request = TextRequest::parse(&bytes)?;
    let turn = Turn {
        model: request.model.as_deref(),
        user: request.user.as_deref(),
        messages: vec![Message::text(Role::User, request.prompt_text()?)],
        tools: Vec::new(),
        params: request.params()?,
    };
    let (handle, session_key) = chat::start(&gw, caller, &headers, turn)?;
    let version = super::rollout::version_value(&handle.agent);
    let completion = Completion::legacy(request.model.clone().unwrap_or_else(|| "openclaw".into()));
    let mut response = if request.streaming() {
        chat::respond_streaming(&gw, handle, stream::DataLines(request.encoder(completion))).await?
    } else {
        match handle.collect().await {
            Ok(reply) => Json(request.whole(&completion, &reply)).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        }
    };
    response.headers_mut().insert(SESSION_HEADER, session_key);
    response.headers_mut().insert(super::rollout::VERSION_HEADER, version);
    Ok(response)
}
