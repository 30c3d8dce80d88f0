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
            return Err("windows are UTC: timezone must be UTC or left out".into());
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/wasmclaw/gateway.json5")).map_err(|e| e.to_string())
    }

    #[test]
    fn prices_and_budgets_are_read_exactly_and_bad_ones_name_their_key() {
        let config = parse(
            r#"{ providers: { p: { baseUrl: "http://127.0.0.1:9/v1",
                   models: { m: { price: { inputPerMTok: 0.15, outputPerMTok: 0.6 } } } } },
                 agents: { entries: { main: { plugin: "echo", budget: { usd: 12.5, window: "month" } } } } }"#,
        )
        .unwrap();
        let price = config.providers["p"].price("m").unwrap();
        let tokens = crate::usage::Tokens { input: 1_000_000, output: 1_000_000, ..Default::default() };
        assert_eq!(price.cost(&tokens).to_string(), "0.75");
        assert_eq!(config.providers["p"].price("other"), None);
        let budget = config.agent_entries()["main"].budget.unwrap();
        assert_eq!(
            (budget.usd.map(|u| u.to_string()), budget.window),
            (Some("12.5".into()), super::BudgetWindow::Month)
        );

        for (text, key, why) in [
            (
                r#"{ providers: { p: { baseUrl: "http://x/v1", models: { m: { price: { inputPerMTok: -1, outputPerMTok: 1 } } } } } }"#,
                "providers.p.models.m.price",
                "not a price",
            ),
            (
                r#"{ agents: { entries: { main: { plugin: "echo", budget: { window: "day" } } } } }"#,
                "agents.entries.main.budget",
                "set usd, tokens or both",
            ),
            (
                r#"{ agents: { entries: { main: { plugin: "echo", budget: { tokens: 5, window: "day", timezone: "Europe/Paris" } } } } }"#,
                "agents.entries.main.budget",
                "windows are UTC",
            ),
        ] {
            let message = parse(text).expect_err("refused");
            assert!(message.contains(key) && message.contains(why), "{message}");
        }
    }
}
