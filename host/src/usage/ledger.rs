//! The usage ledger's vocabulary: one row per run and model, and the sums
//! `GET /usage` and `usage.get` answer. The session store keeps the rows
//! (`sessions/usage.rs`), so every instance of a cluster sees all of them.

use super::{Cost, RunUsage, Tokens};

/// One run's use of one model, as written at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub run_id: String,
    /// Milliseconds since the Unix epoch, when the run ended.
    pub at_ms: i64,
    pub agent: String,
    /// The principal's name.
    pub principal: String,
    /// The model label (`other` for a name the operator never configured).
    pub model: String,
    pub usage: RunUsage,
}

/// What the rows are summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Agent,
    Token,
    Model,
    /// The UTC day, `YYYY-MM-DD`.
    Day,
}

impl GroupBy {
    /// From the `groupBy` parameter.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "agent" => Self::Agent,
            "token" => Self::Token,
            "model" => Self::Model,
            "day" => Self::Day,
            _ => return None,
        })
    }

    /// The key's name in each answered row.
    pub fn key(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Token => "token",
            Self::Model => "model",
            Self::Day => "day",
        }
    }
}

/// Which rows to sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub group_by: GroupBy,
    /// From this instant (ms, inclusive) …
    pub from_ms: i64,
    /// … to this one (ms, exclusive).
    pub to_ms: i64,
    /// Only this principal's runs; `None`: everyone's.
    pub principal: Option<String>,
    /// Only this agent's runs.
    pub agent: Option<String>,
}

/// The rows of one group, summed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageTotals {
    /// The group's value (an agent id, a token name, a model, a day).
    pub key: String,
    pub tokens: Tokens,
    pub cost: Cost,
    /// Distinct runs.
    pub runs: u64,
    pub llm_calls: u64,
    pub unmetered_calls: u64,
}

impl UsageTotals {
    /// The row as `GET /usage` shows it, under `key_name`.
    pub fn to_json(&self, key_name: &str) -> serde_json::Value {
        serde_json::json!({
            key_name: self.key,
            "inputTokens": self.tokens.input,
            "outputTokens": self.tokens.output,
            "cachedInputTokens": self.tokens.cached_input,
            "reasoningTokens": self.tokens.reasoning,
            "costUsd": self.cost.usd(),
            "runs": self.runs,
            "llmCalls": self.llm_calls,
            "unmeteredCalls": self.unmetered_calls,
        })
    }
}

/// `groupBy`, `from` and `to` as `GET /usage` and `usage.get` take them:
/// a day (`YYYY-MM-DD`, UTC; `to` includes it) or milliseconds since the
/// epoch; by default everything up to now. `Err((param, message))`.
pub fn parse_range(
    group_by: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    now_ms: i64,
) -> Result<(GroupBy, i64, i64), (&'static str, String)> {
    let group_by = match group_by {
        None => GroupBy::Agent,
        Some(g) => {
            GroupBy::parse(g).ok_or(("groupBy", format!("groupBy must be agent, token, model or day, not {g:?}")))?
        }
    };
    let instant = |param: &'static str, text: &str, end: bool| -> Result<i64, (&'static str, String)> {
        if let Ok(ms) = text.parse::<i64>() {
            return Ok(ms);
        }
        let day = super::calendar::parse_day(text)
            .ok_or((param, format!("{param} must be a day (YYYY-MM-DD) or milliseconds since 1970, not {text:?}")))?;
        Ok(if end { day + super::calendar::DAY_MS } else { day })
    };
    let from = from.map(|f| instant("from", f, false)).transpose()?.unwrap_or(0);
    let to = to.map(|t| instant("to", t, true)).transpose()?.unwrap_or(now_ms + 1);
    if to <= from {
        return Err(("to", "to must come after from".into()));
    }
    Ok((group_by, from, to))
}

/// One budget's counter for one window, with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSlot {
    /// `token:<name>` or `agent:<id>`.
    pub budget: String,
    /// The window's first millisecond (0 for `total`).
    pub window_start: i64,
    pub max_tokens: Option<u64>,
    pub max_cost: Option<Cost>,
}

/// One run's reservation on a budget's window. It counts until the run
/// settles it or until `expires_at`, so the reservation of a run whose
/// instance died (no settle will ever come) stops counting on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The run holding it.
    pub run_id: String,
    pub charge: Charge,
    /// Milliseconds since the epoch: the run's deadline plus a margin for its settling.
    pub expires_at: i64,
}

/// Tokens and money, reserved or spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charge {
    pub tokens: u64,
    pub cost: Cost,
}
