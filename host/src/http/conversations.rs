//! `/v1/conversations`: OpenAI's Conversations API. A conversation is a
//! session its principal owns (`sessions/conversations.rs` keeps it); a
//! response with `conversation` runs in that session (`responses/conversation.rs`).
//! Who may see a conversation is `sessions::access`'s rule: for anyone but
//! its owner an id does not exist (404).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::openai::{PageQuery, Paging};
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::sessions::{Conversation, ConversationItem, ItemPage, ItemQuery, access, now_ms};

/// Most items one request may add (OpenAI's limit).
pub const MAX_ITEMS_PER_REQUEST: usize = 20;
/// Most `metadata` pairs (OpenAI's limits, as for responses).
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

/// `POST /v1/conversations` body.
#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    items: Option<Vec<Value>>,
    metadata: Option<Value>,
}

/// `POST /v1/conversations`: a new conversation owned by the caller.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = super::chat::read_request(&gw, &headers, body).await?;
    let body: CreateBody = parse(&bytes)?;
    let items = new_items(body.items.unwrap_or_default(), "items", true)?;
    let conversation = Conversation {
        id: new_id("conv"),
        owner: caller.name().to_string(),
        metadata: metadata(body.metadata.as_ref())?.to_string(),
        agent: None,
        session_key: None,
        created_at: now_ms(),
    };
    gw.agents.sessions().create_conversation(conversation.clone(), items).await?;
    tracing::info!(conversation = %conversation.id, "conversation created");
    Ok(Json(object(&conversation)))
}

/// `GET /v1/conversations/{id}`
pub async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(object(&owned(&gw, &caller, &id, None).await?)))
}

/// `POST /v1/conversations/{id}` body.
#[derive(Debug, Deserialize)]
struct UpdateBody {
    metadata: Value,
}

/// `POST /v1/conversations/{id}`: replace its metadata.
pub async fn update(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = super::chat::read_request(&gw, &headers, body).await?;
    let body: UpdateBody = parse(&bytes)?;
    let conversation = owned(&gw, &caller, &id, None).await?;
    let conversation = Conversation { metadata: metadata(Some(&body.metadata))?.to_string(), ..conversation };
    if !gw.agents.sessions().update_conversation(conversation.clone()).await? {
        return Err(not_found(&id, None));
    }
    Ok(Json(object(&conversation)))
}

/// `DELETE /v1/conversations/{id}`: forget it, its items and its session.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let conversation = owned(&gw, &caller, &id, None).await?;
    let store = gw.agents.sessions();
    if !store.delete_conversation(&id).await? {
        return Err(not_found(&id, None));
    }
    if let Some(key) = &conversation.session_key {
        store.delete(key, &conversation.owner).await?;
    }
    tracing::info!(conversation = %id, "conversation deleted");
    Ok(Json(json!({"id": id, "object": "conversation.deleted", "deleted": true})))
}

/// `GET /v1/conversations/{id}/items`: one page, newest first unless `order=asc`.
pub async fn list_items(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let query = item_query(&query)?;
    owned(&gw, &caller, &id, None).await?;
    let page = gw.agents.sessions().conversation_items(&id, query).await?;
    Ok(Json(list(&page)))
}

/// `POST /v1/conversations/{id}/items` body.
#[derive(Debug, Deserialize)]
struct AddBody {
    items: Vec<Value>,
}

/// `POST /v1/conversations/{id}/items`: append items; the next response sends them to the agent.
pub async fn add_items(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = super::chat::read_request(&gw, &headers, body).await?;
    let body: AddBody = parse(&bytes)?;
    if body.items.is_empty() {
        return Err(ApiError::invalid_request("`items` must contain at least one item", Some("items".into())));
    }
    let items = new_items(body.items, "items", true)?;
    owned(&gw, &caller, &id, None).await?;
    gw.agents.sessions().add_conversation_items(&id, Vec::new(), items.clone()).await?;
    Ok(Json(list(&ItemPage { items, has_more: false })))
}

/// A conversation the caller owns; for anyone else it does not exist.
pub async fn owned(gw: &Gateway, caller: &Principal, id: &str, param: Option<&str>) -> Result<Conversation, ApiError> {
    let found = gw.agents.sessions().conversation(id).await?;
    found
        .filter(|c| access::owns_conversation(caller, &c.owner, c.agent.as_deref()))
        .ok_or_else(|| not_found(id, param))
}

fn not_found(id: &str, param: Option<&str>) -> ApiError {
    ApiError {
        code: Some("conversation_not_found"),
        message: format!("Conversation with id {id:?} not found."),
        param: param.map(str::to_string),
        ..ApiError::not_found()
    }
}

/// Client items as stored: each with an id and a status, message text as
/// content parts; checked now by the same reading a response gives them,
/// so a bad item is refused here and not at the next response.
pub fn new_items(items: Vec<Value>, field: &str, pending: bool) -> Result<Vec<ConversationItem>, ApiError> {
    if items.len() > MAX_ITEMS_PER_REQUEST {
        return Err(ApiError::invalid_request(
            format!("At most {MAX_ITEMS_PER_REQUEST} items can be added at once; got {}", items.len()),
            Some(field.into()),
        ));
    }
    if !items.is_empty() {
        super::responses::check_input(&items, field)?;
    }
    Ok(stored_items(items).into_iter().map(|item| ConversationItem { pending, ..item }).collect())
}

/// Items as stored ([`stored_item`]), not pending.
pub fn stored_items(items: Vec<Value>) -> Vec<ConversationItem> {
    items
        .into_iter()
        .map(stored_item)
        .map(|item| ConversationItem {
            id: item["id"].as_str().unwrap_or_default().to_string(),
            body: item.to_string(),
            pending: false,
        })
        .collect()
}

/// One input item in the shape OpenAI lists it.
fn stored_item(item: Value) -> Value {
    let Value::Object(mut item) = item else { return item };
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message").to_string();
    let prefix = match kind.as_str() {
        "message" => "msg",
        "function_call" => "fc",
        "function_call_output" => "fco",
        _ => "item",
    };
    item.insert("type".into(), Value::from(kind.clone()));
    if !item.get("id").is_some_and(Value::is_string) {
        item.insert("id".into(), Value::from(new_id(prefix)));
    }
    item.entry("status").or_insert_with(|| Value::from("completed"));
    if kind == "message"
        && let Some(Value::String(text)) = item.get("content")
    {
        let part =
            if item.get("role").and_then(Value::as_str) == Some("assistant") { "output_text" } else { "input_text" };
        let content = json!([{"type": part, "text": text}]);
        item.insert("content".into(), content);
    }
    Value::Object(item)
}

fn item_query(query: &PageQuery) -> Result<ItemQuery, ApiError> {
    let Paging { limit, descending, after, .. } = query.paging()?;
    Ok(ItemQuery { after, descending, limit, pending_only: false })
}

/// `metadata` checked against OpenAI's limits: at most 16 string pairs.
fn metadata(value: Option<&Value>) -> Result<Value, ApiError> {
    let bad = |message: String| ApiError::invalid_request(message, Some("metadata".into()));
    let map = match value {
        None | Some(Value::Null) => return Ok(Value::Object(Map::new())),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(bad("`metadata` must be an object of strings".into())),
    };
    if map.len() > MAX_METADATA_PAIRS {
        return Err(bad(format!("`metadata` may have at most {MAX_METADATA_PAIRS} keys")));
    }
    for (key, value) in map {
        let Some(text) = value.as_str() else { return Err(bad(format!("`metadata.{key}` must be a string"))) };
        if key.len() > MAX_METADATA_KEY || text.len() > MAX_METADATA_VALUE {
            return Err(bad(format!(
                "`metadata` keys are at most {MAX_METADATA_KEY} characters and values at most {MAX_METADATA_VALUE}"
            )));
        }
    }
    Ok(Value::Object(map.clone()))
}

/// The `conversation` object.
fn object(c: &Conversation) -> Value {
    let metadata: Value = serde_json::from_str(&c.metadata).unwrap_or_else(|_| json!({}));
    json!({"id": c.id, "object": "conversation", "created_at": c.created_at / 1000, "metadata": metadata})
}

/// A page of items as OpenAI's `list` object.
fn list(page: &ItemPage) -> Value {
    let data: Vec<Value> = page.items.iter().map(|i| serde_json::from_str(&i.body).unwrap_or(Value::Null)).collect();
    json!({
        "object": "list",
        "data": data,
        "first_id": page.items.first().map(|i| i.id.clone()),
        "last_id": page.items.last().map(|i| i.id.clone()),
        "has_more": page.has_more,
    })
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_request(format!("Malformed JSON body: {inner}"), None)
        } else {
            ApiError::invalid_request(format!("Invalid request: {inner}"), (path != ".").then_some(path))
        }
    })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_items_get_ids_and_content_parts() {
        let item = stored_item(json!({"role": "user", "content": "hi"}));
        assert!(item["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(item["type"], "message");
        assert_eq!(item["content"], json!([{"type": "input_text", "text": "hi"}]));
        let kept = stored_item(json!({"type": "message", "id": "msg_x", "role": "assistant", "content": "yo"}));
        assert_eq!((kept["id"].as_str(), &kept["content"][0]["type"]), (Some("msg_x"), &json!("output_text")));
    }

    #[test]
    fn metadata_keeps_openai_limits() {
        assert_eq!(metadata(None).unwrap(), json!({}));
        assert!(metadata(Some(&json!({"a": "b"}))).is_ok());
        assert!(metadata(Some(&json!({"a": 1}))).is_err());
        let many: Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(metadata(Some(&Value::Object(many))).is_err());
    }
}
