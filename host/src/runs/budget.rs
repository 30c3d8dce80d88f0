//! Budgets that block: before a run starts it reserves an estimate on the
//! caller's budget (`gateway.auth.tokens[].budget`) and the agent's
//! (`agents.entries.<id>.budget`); it is refused when what was spent in the
//! window plus the reservations of runs in flight already reached a limit.
//! When it ends (however it ends) the reservation is settled to the metered
//! figure. The counters live in the session store, so on PostgreSQL every
//! instance shares them. A reservation expires at the run's deadline plus
//! [`HOLD_MARGIN`]: a run whose instance died never settles, and its
//! reservation must not block the budget for the rest of the window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{BudgetConfig, Config};
use crate::runtime::RunError;
use crate::sessions::SessionStore;
use crate::usage::{BudgetSlot, Charge, Hold, Price, Tokens};

/// A budget in force, with the config key that sets it.
#[derive(Debug, Clone)]
struct Budget {
    /// `token:<name>` or `agent:<id>`: how messages and the counters name it.
    name: String,
    key: String,
    config: BudgetConfig,
}

impl Budget {
    fn slot(&self, now_ms: i64) -> (BudgetSlot, Option<i64>) {
        let (start, end) = self.config.window.bounds(now_ms);
        let slot = BudgetSlot {
            budget: self.name.clone(),
            window_start: start,
            max_tokens: self.config.tokens,
            max_cost: self.config.usd,
        };
        (slot, end)
    }

    fn limit_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(usd) = self.config.usd {
            parts.push(format!("${usd}"));
        }
        if let Some(tokens) = self.config.tokens {
            parts.push(format!("{tokens} tokens"));
        }
        format!("{} per {}", parts.join(" / "), self.config.window.name())
    }
}

/// The budgets of the tokens, by name (agents' come with their entry).
pub(super) struct Budgets {
    tokens: BTreeMap<String, Budget>,
    reserve_tokens: u64,
}

/// Reservations a run holds, settled when it ends.
pub(super) type Holds = Arc<Mutex<Vec<(BudgetSlot, Hold)>>>;

/// How long past a run's deadline (`limits.timeoutMs`) its reservation still
/// counts: time for the run to end and settle. A reservation older than that
/// belongs to a run that can no longer be running (its instance stopped).
pub const HOLD_MARGIN: Duration = Duration::from_secs(10);

impl Budgets {
    pub(super) fn from_config(config: &Config) -> Self {
        let tokens = config
            .gateway
            .auth
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let budget = Budget {
                    name: format!("token:{}", t.name),
                    key: format!("gateway.auth.tokens[{i}].budget"),
                    config: t.budget?,
                };
                Some((t.name.clone(), budget))
            })
            .collect();
        Self { tokens, reserve_tokens: config.agents.budget_reserve_tokens }
    }

    /// What a run reserves: its `max_completion_tokens` / `max_tokens`, else
    /// `agents.budgetReserveTokens`, as output tokens at the model's price.
    pub(super) fn estimate(&self, params: &serde_json::Value, price: Option<Price>) -> Charge {
        let tokens = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| params.get(*k).and_then(serde_json::Value::as_u64))
            .unwrap_or(self.reserve_tokens);
        let cost = price.map(|p| p.cost(&Tokens { output: tokens, ..Tokens::default() })).unwrap_or_default();
        Charge { tokens, cost }
    }

    /// What run `run_id`, which ends within `deadline`, holds on each budget:
    /// `charge` until it settles or its deadline plus [`HOLD_MARGIN`] passed.
    pub(super) fn hold(run_id: &str, charge: Charge, deadline: Duration) -> Hold {
        let now = crate::sessions::now_ms() as i64;
        let ttl = i64::try_from((deadline + HOLD_MARGIN).as_millis()).unwrap_or(i64::MAX);
        Hold { run_id: run_id.to_string(), charge, expires_at: now.saturating_add(ttl) }
    }

    /// Reserve `hold` on the caller's and the agent's budgets (those that
    /// exist); refused with the first budget that is spent. On refusal,
    /// nothing stays reserved.
    pub(super) async fn reserve(
        &self,
        store: &dyn SessionStore,
        principal: &str,
        agent: &str,
        agent_budget: Option<BudgetConfig>,
        hold: Hold,
        holds: &Holds,
    ) -> Result<(), RunError> {
        let agent_budget = agent_budget.map(|config| Budget {
            name: format!("agent:{agent}"),
            key: format!("agents.entries.{agent}.budget"),
            config,
        });
        let now = crate::sessions::now_ms() as i64;
        for budget in self.tokens.get(principal).into_iter().chain(agent_budget.as_ref()) {
            let (slot, end) = budget.slot(now);
            let taken = store.reserve_budget(slot.clone(), hold.clone()).await?;
            if !taken {
                let retry_after = end.map(|end| ((end - now).max(0) as u64).div_ceil(1000).max(1));
                let resets = end.map_or("it never resets (window \"total\")".to_string(), |end| {
                    format!("it resets at {}T00:00:00Z", crate::usage::calendar::format_day(end))
                });
                tracing::info!(budget = %budget.name, principal, agent, "run refused: budget spent; raise {} to allow more", budget.key);
                let message = format!(
                    "budget {:?} is spent ({}; {}); raise {} to allow more",
                    budget.name,
                    budget.limit_text(),
                    resets,
                    budget.key
                );
                return Err(RunError::BudgetExceeded { message, retry_after });
            }
            holds.lock().unwrap().push((slot, hold.clone()));
        }
        Ok(())
    }
}

impl Budgets {
    /// Every budget `caller` may see, as `usage.get` and `GET /usage` list
    /// them: its own token's, and the agents' it may use (every token's
    /// too for those that read all usage).
    pub(super) async fn report(
        &self,
        store: &dyn SessionStore,
        caller: &crate::auth::Principal,
        agents: &BTreeMap<String, crate::config::AgentEntry>,
    ) -> Result<Vec<serde_json::Value>, crate::sessions::StoreError> {
        let all = crate::sessions::access::usage_owner(caller).is_none();
        let tokens = self.tokens.iter().filter(|(name, _)| all || *name == caller.name()).map(|(_, b)| b.clone());
        let agents = agents.iter().filter(|(id, _)| caller.may_use_named(id)).filter_map(|(id, e)| {
            Some(Budget { name: format!("agent:{id}"), key: format!("agents.entries.{id}.budget"), config: e.budget? })
        });
        let now = crate::sessions::now_ms() as i64;
        let mut out = Vec::new();
        for budget in tokens.chain(agents) {
            let (slot, end) = budget.slot(now);
            let (spent, reserved) = store.budget_counters(slot).await?;
            let c = &budget.config;
            // The share left of the tighter limit, 0 to 1.
            let share =
                |spent: u64, limit: u64| if limit == 0 { 0.0 } else { 1.0 - (spent as f64 / limit as f64).min(1.0) };
            let remaining =
                [c.tokens.map(|t| share(spent.tokens, t)), c.usd.map(|u| share(spent.cost.picos(), u.picos()))]
                    .into_iter()
                    .flatten()
                    .fold(1.0_f64, f64::min);
            out.push(serde_json::json!({
                "name": budget.name, "window": c.window.name(), "resetsAt": end,
                "usd": c.usd.map(|u| u.usd()), "tokens": c.tokens,
                "spentUsd": spent.cost.usd(), "spentTokens": spent.tokens,
                "reservedUsd": reserved.cost.usd(), "reservedTokens": reserved.tokens,
                "remaining": remaining,
            }));
        }
        Ok(out)
    }
}

/// Give back every reservation of a run and count what it spent instead.
pub(super) async fn settle(store: &dyn SessionStore, holds: &Holds, spent: Charge) {
    let holds = std::mem::take(&mut *holds.lock().unwrap());
    for (slot, hold) in holds {
        if let Err(e) = store.settle_budget(slot.clone(), hold.run_id, spent).await {
            tracing::warn!(budget = %slot.budget, error = %e, "cannot settle a run's budget reservation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BudgetWindow;
    use crate::usage::Cost;

    fn budgets() -> Budgets {
        Budgets { tokens: BTreeMap::new(), reserve_tokens: 1024 }
    }

    #[test]
    fn a_run_reserves_its_token_limit_else_the_default_at_the_output_price() {
        let price = Price::per_mtok(1.0, 2.0, None).unwrap();
        let b = budgets();
        let capped = b.estimate(&serde_json::json!({"max_tokens": 100}), Some(price));
        assert_eq!(capped, Charge { tokens: 100, cost: Cost::from_picos(200_000_000) });
        let newer = b.estimate(&serde_json::json!({"max_completion_tokens": 7, "max_tokens": 100}), None);
        assert_eq!(newer, Charge { tokens: 7, cost: Cost::default() }, "the newer name first; no price, no cost");
        assert_eq!(b.estimate(&serde_json::json!({}), None).tokens, 1024);
    }

    #[test]
    fn a_budget_names_its_limits_and_its_window() {
        let config = BudgetConfig { usd: Some(Cost::from_usd(2.5)), tokens: Some(1000), window: BudgetWindow::Week };
        let budget = Budget { name: "token:ci".into(), key: "gateway.auth.tokens[0].budget".into(), config };
        assert_eq!(budget.limit_text(), "$2.5 / 1000 tokens per week");
        let monday = crate::usage::calendar::parse_day("2026-11-30").unwrap();
        let (slot, end) = budget.slot(monday + 5 * crate::usage::calendar::DAY_MS);
        assert_eq!((slot.window_start, end), (monday, Some(monday + 7 * crate::usage::calendar::DAY_MS)));
        assert_eq!((slot.max_tokens, slot.max_cost), (Some(1000), Some(Cost::from_usd(2.5))));
    }
}
