//! Input items: `item_reference`s resolved to the output items of the
//! caller's stored responses, the input kept beside a stored response, and
//! its paged listing (`GET /v1/responses/{id}/input_items`).
//!
//! An output item's id names the response it came from
//! ([`object::response_of`]), so a reference costs one lookup by primary key
//! and passes the same ownership rule as `GET /v1/responses/{id}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde_json::{Value, json};

use super::object;
use super::request::Input;
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::http::error::ApiError;
use crate::http::openai::{PageQuery, Paging};
use crate::sessions::access;

fn invalid(message: String, param: &str) -> ApiError {
    ApiError::invalid_request(message, Some(param.to_string()))
}

/// Replace each `item_reference` in `items` with the output item it names;
/// an id that is not an output item of a response the caller owns is a 400
/// naming `input[i].id`.
pub async fn resolve_references(gw: &Gateway, caller: &Principal, items: &mut [Value]) -> Result<(), ApiError> {
    let mut bodies: HashMap<String, Value> = HashMap::new();
    for (i, item) in items.iter_mut().enumerate() {
        if item.get("type").and_then(Value::as_str) != Some("item_reference") {
            continue;
        }
        let param = format!("input[{i}].id");
        let Some(id) = item.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Err(invalid("An item_reference needs an `id`".into(), &param));
        };
        let unknown = || ApiError {
            code: Some("item_not_found"),
            ..invalid(format!("Item with id {id:?} not found: it is not an output item of a stored response"), &param)
        };
        let response = object::response_of(&id).ok_or_else(unknown)?;
        if !bodies.contains_key(&response) {
            let stored = gw.agents.sessions().response(&response).await?;
            let stored = stored.filter(|r| access::is_owner(caller, &r.owner, &r.agent)).ok_or_else(unknown)?;
            let body = serde_json::from_str(&stored.body)
                .map_err(|e| ApiError::internal(format!("stored response {response}: {e}")))?;
            bodies.insert(response.clone(), body);
        }
        let output = bodies[&response]["output"].as_array().into_iter().flatten();
        *item = output.into_iter().find(|o| o["id"] == id.as_str()).cloned().ok_or_else(unknown)?;
    }
    Ok(())
}

/// The input as `input_items` lists it: every item with its `type` and an
/// `id`, message text as content parts.
pub fn kept(input: Option<&Input>, response_id: &str) -> Value {
    let items = match input {
        None => Vec::new(),
        Some(Input::Text(text)) => vec![json!({"type": "message", "role": "user", "content": text})],
        Some(Input::Items(items)) => items.clone(),
    };
    let response = response_id.strip_prefix("resp_").unwrap_or(response_id);
    let items = items.into_iter().enumerate().map(|(i, mut item)| {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message").to_string();
        item["type"] = json!(kind);
        if item.get("id").is_none_or(|id| !id.is_string()) {
            let prefix = match kind.as_str() {
                "message" => "msg",
                "function_call" => "fc",
                "function_call_output" => "fco",
                _ => "item",
            };
            // `in` keeps input ids apart from output ids: references name outputs only.
            item["id"] = json!(format!("{prefix}_{response}_in{i}"));
        }
        if kind == "message"
            && let Some(text) = item.get("content").and_then(Value::as_str).map(str::to_string)
        {
            let part = if item["role"] == "assistant" { "output_text" } else { "input_text" };
            item["content"] = json!([{"type": part, "text": text}]);
        }
        item
    });
    Value::Array(items.collect())
}

/// `GET /v1/responses/{id}/input_items`: the input a stored response
/// answered, newest first unless `order=asc`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let stored = super::owned(&gw, &caller, &id, None).await?;
    let items: Vec<Value> =
        serde_json::from_str(&stored.input).map_err(|e| ApiError::internal(format!("stored input of {id}: {e}")))?;
    Ok(Json(page(items, &query)?))
}

/// One page of `items` (kept in input order) as OpenAI's `list` object.
fn page(mut items: Vec<Value>, query: &PageQuery) -> Result<Value, ApiError> {
    let Paging { limit, descending, after, before } = query.paging()?;
    if descending {
        items.reverse();
    }
    let position = |cursor: &str, param: &str| {
        items
            .iter()
            .position(|item| item["id"] == cursor)
            .ok_or_else(|| invalid(format!("No input item with id {cursor:?} in this response"), param))
    };
    let start = after.as_deref().map(|c| position(c, "after").map(|p| p + 1)).transpose()?.unwrap_or(0);
    let end = before.as_deref().map(|c| position(c, "before")).transpose()?.unwrap_or(items.len());
    let window = if start < end { &items[start..end] } else { &[][..] };
    let data = &window[..window.len().min(limit)];
    let id_of = |item: Option<&Value>| item.map_or(Value::Null, |i| i["id"].clone());
    Ok(json!({
        "object": "list",
        "data": data,
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": window.len() > data.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, order: Option<&str>, after: Option<&str>, before: Option<&str>) -> PageQuery {
        PageQuery::new(limit, order, after, before)
    }

    fn ids(page: &Value) -> Vec<&str> {
        page["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn kept_input_has_types_ids_and_content_parts() {
        let kept = kept(Some(&Input::Text("hi".into())), "resp_r");
        assert_eq!(
            kept,
            json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}], "id": "msg_r_in0"}])
        );
        let items = vec![json!({"role": "assistant", "content": "yo"}), json!({"type": "function_call", "id": "fc_x"})];
        let kept = super::kept(Some(&Input::Items(items)), "resp_r");
        assert_eq!(kept[0]["content"], json!([{"type": "output_text", "text": "yo"}]));
        assert_eq!((kept[0]["id"].as_str(), kept[1]["id"].as_str()), (Some("msg_r_in0"), Some("fc_x")));
        assert_eq!(object::response_of("msg_r_in0"), None, "input ids are never taken for output ids");
    }

    #[test]
    fn pages_run_newest_first_and_walk_with_after_and_before() {
        let items: Vec<Value> = (0..5).map(|i| json!({"id": format!("i{i}")})).collect();
        let first = page(items.clone(), &query(Some("2"), None, None, None)).unwrap();
        assert_eq!(ids(&first), ["i4", "i3"]);
        assert_eq!(
            (first["first_id"].as_str(), first["last_id"].as_str(), first["has_more"].as_bool()),
            (Some("i4"), Some("i3"), Some(true))
        );
        let next = page(items.clone(), &query(Some("2"), None, Some("i3"), None)).unwrap();
        assert_eq!(ids(&next), ["i2", "i1"]);
        let last = page(items.clone(), &query(Some("2"), None, Some("i1"), None)).unwrap();
        assert_eq!((ids(&last), last["has_more"].as_bool()), (vec!["i0"], Some(false)));
        let asc = page(items.clone(), &query(None, Some("asc"), Some("i0"), Some("i3"))).unwrap();
        assert_eq!((ids(&asc), asc["has_more"].as_bool()), (vec!["i1", "i2"], Some(false)));
        let empty = page(Vec::new(), &query(None, None, None, None)).unwrap();
        assert_eq!(empty, json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false}));
    }

    #[test]
    fn bad_paging_names_the_parameter() {
        let items = vec![json!({"id": "a"})];
        for (q, param) in [
            (query(Some("0"), None, None, None), "limit"),
            (query(Some("101"), None, None, None), "limit"),
            (query(None, Some("up"), None, None), "order"),
            (query(None, None, Some("zz"), None), "after"),
            (query(None, None, None, Some("zz")), "before"),
        ] {
            let err = page(items.clone(), &q).err().unwrap();
            assert_eq!((err.status.as_u16(), err.param.as_deref()), (400, Some(param)));
        }
    }
}
