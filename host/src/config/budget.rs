//! `budget`: how much a token (`gateway.auth.tokens[].budget`) or an agent
//! (`agents.entries.<id>.budget`) may spend per window before runs are refused.

use serde::Deserialize;

/// `{ usd?, tokens?, window, timezone? }`, money kept exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BudgetFields")]
pub struct BudgetConfig {
    /// The spending limit in dollars, as a [`crate::usage::Cost`].
    pub usd: Option<crate::usage::Cost>,
    /// The limit in tokens (input and output together).
    pub tokens: Option<u64>,
    pub window: BudgetWindow,
}

/// When a budget starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetWindow {
    /// Each UTC day.
    Day,
    /// Each ISO week, from Monday 00:00 UTC.
    Week,
    /// Each calendar month (UTC).
    Month,
    /// Never.
    Total,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFields {
    usd: Option<f64>,
    tokens: Option<u64>,
    window: BudgetWindow,
    timezone: Option<String>,
}

impl TryFrom<BudgetFields> for BudgetConfig {
    type Error = String;

    fn try_from(b: BudgetFields) -> Result<Self, String> {
        if b.timezone.as_deref().is_some_and(|tz| tz != "UTC") {
            return Err(format!(
                "timezone {:?} is not supported; windows are UTC (set \"UTC\" or leave it out)",
                b.timezone.unwrap_or_default()
            ));
        }
        if b.usd.is_none() && b.tokens.is_none() {
            return Err("set usd, tokens or both".into());
        }
        if let Some(usd) = b.usd
            && !(usd.is_finite() && usd >= 0.0)
        {
            return Err(format!("usd {usd} is not an amount (0 or more)"));
        }
        Ok(Self { usd: b.usd.map(crate::usage::Cost::from_usd), tokens: b.tokens, window: b.window })
    }
}

impl BudgetWindow {
    /// The window around `now_ms`: its start and, unless it is `total`, its end.
    pub fn bounds(self, now_ms: i64) -> (i64, Option<i64>) {
        use crate::usage::calendar;
        let (start, end) = match self {
            Self::Day => calendar::day_bounds(now_ms),
            Self::Week => calendar::week_bounds(now_ms),
            Self::Month => calendar::month_bounds(now_ms),
            Self::Total => return (0, None),
        };
        (start, Some(end))
    }

    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Total => "total",
        }
    }
}
