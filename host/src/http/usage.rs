//! `GET /usage`: the usage ledger summed by agent, token, model or day.
//! Whose rows a caller sees is `sessions::access::usage_owner`'s rule.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::auth::Principal;
use crate::gateway::Gateway;

/// `?groupBy=agent|token|model|day&from=…&to=…&agent=…`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageParams {
    group_by: Option<String>,
    from: Option<String>,
    to: Option<String>,
    agent: Option<String>,
}

/// `GET /usage`: `{"usage": [{"<groupBy>": …, "inputTokens": …, …}], "budgets": […]}`.
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    Query(params): Query<UsageParams>,
) -> Result<Json<Value>, ApiError> {
    let now = crate::sessions::now_ms() as i64;
    let (group_by, from, to) =
        crate::usage::parse_range(params.group_by.as_deref(), params.from.as_deref(), params.to.as_deref(), now)
            .map_err(|(param, message)| ApiError::invalid_request(message, Some(param.into())))?;
    let rows = gw.agents.usage(&caller, group_by, from, to, params.agent).await?;
    let rows: Vec<Value> = rows.iter().map(|r| r.to_json(group_by.key())).collect();
    let budgets = gw.agents.budgets(&caller).await?;
    Ok(Json(json!({ "usage": rows, "budgets": budgets })))
}
