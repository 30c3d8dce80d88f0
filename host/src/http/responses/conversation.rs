//! `conversation` on `POST /v1/responses`: the response runs in the
//! conversation's session, after the items the client added since the last
//! response; its input and output items then join the conversation.

use serde_json::{Value, json};

use super::request::{Input, ResponsesRequest};
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::gateway::Gateway;
use crate::http::SESSION_HEADER;
use crate::http::conversations::{self, owned};
use crate::http::error::ApiError;
use crate::sessions::{ConversationItem, ItemQuery, SessionKey};

/// Most client-added items one response sends on (a response sends all of
/// them, so they are bounded like any input).
const MAX_PENDING: usize = 1000;

/// What a response owes its conversation once it has finished.
#[derive(Debug)]
pub struct ConversationTurn {
    pub id: String,
    /// The pending items it sent to the agent.
    sent: Vec<String>,
    /// Its own input, as items.
    input: Vec<ConversationItem>,
}

impl ConversationTurn {
    /// Settle the sent items and append the input and `response`'s output.
    pub async fn record(&self, gw: &Gateway, response: &Value) -> Result<(), ApiError> {
        let output = response["output"].as_array().into_iter().flatten();
        let output = output.map(|item| ConversationItem {
            id: item["id"].as_str().unwrap_or_default().to_string(),
            body: item.to_string(),
            pending: false,
        });
        let items = self.input.iter().cloned().chain(output).collect();
        gw.agents.sessions().add_conversation_items(&self.id, self.sent.clone(), items).await?;
        Ok(())
    }
}

/// The conversation `request` names, if any: its session, and the turn to
/// record. The request's input becomes the pending items, then its own.
pub async fn join(
    gw: &Gateway,
    caller: &Principal,
    agent: &AgentId,
    request: &mut ResponsesRequest,
    explicit_session: Option<&str>,
) -> Result<Option<(SessionKey, ConversationTurn)>, ApiError> {
    let bad = |message: String, param: &str| ApiError::invalid_request(message, Some(param.into()));
    let id = match request.rest.get("conversation") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Object(c)) if c.get("id").is_some_and(Value::is_string) => {
            c["id"].as_str().unwrap_or_default().into()
        }
        Some(_) => return Err(bad("`conversation` must be an id or an object with `id`".into(), "conversation")),
    };
    if request.previous_response_id.is_some() {
        return Err(bad(
            "`previous_response_id` and `conversation` cannot be used together".into(),
            "previous_response_id",
        ));
    }
    let conversation = owned(gw, caller, &id, Some("conversation")).await?;
    if conversation.agent.as_deref().is_some_and(|a| a != agent.as_str()) {
        let bound = conversation.agent.clone().unwrap_or_default();
        return Err(bad(format!("Conversation {id:?} runs agent {bound:?}; continue it with that model"), "model"));
    }
    let key = conversation.session_key.clone().unwrap_or_else(|| format!("agent:{agent}:openai-conversation:{id}"));
    if explicit_session.is_some_and(|k| k != key) {
        return Err(bad(
            format!("Conversation {id:?} has its own session; leave out {SESSION_HEADER}"),
            SESSION_HEADER,
        ));
    }
    let store = gw.agents.sessions();
    if conversation.agent.is_none() {
        let bound = crate::sessions::Conversation {
            agent: Some(agent.to_string()),
            session_key: Some(key.clone()),
            ..conversation
        };
        store.update_conversation(bound).await?;
    }
    let query = ItemQuery { after: None, descending: false, limit: MAX_PENDING, pending_only: true };
    let pending = store.conversation_items(&id, query).await?;
    if pending.has_more {
        return Err(bad(
            format!("Conversation {id:?} has more than {MAX_PENDING} items added since its last response"),
            "conversation",
        ));
    }
    let own = match request.input.take() {
        None => Vec::new(),
        Some(Input::Text(text)) => vec![json!({"type": "message", "role": "user", "content": text})],
        Some(Input::Items(items)) => items,
    };
    let input = conversations::stored_items(own);
    let mut items: Vec<Value> = pending.items.iter().filter_map(|i| serde_json::from_str(&i.body).ok()).collect();
    items.extend(input.iter().filter_map(|i| serde_json::from_str(&i.body).ok()));
    request.input = Some(Input::Items(items));
    let sent = pending.items.into_iter().map(|i| i.id).collect();
    Ok(Some((SessionKey { key, persistent: true }, ConversationTurn { id, sent, input })))
}

/// Refuse `items` a response could not read; errors name `field[i]`.
pub fn check_input(items: &[Value], field: &str) -> Result<(), ApiError> {
    let body = serde_json::to_vec(&json!({"input": items})).map_err(ApiError::internal)?;
    let rename = |e: ApiError| ApiError { param: e.param.map(|p| p.replacen("input", field, 1)), ..e };
    ResponsesRequest::parse(&body).and_then(|r| r.translate().map(drop)).map_err(rename)
}
