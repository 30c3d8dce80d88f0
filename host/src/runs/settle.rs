//! The end of every run, however it ends: how it ended in the metrics, its
//! metered usage to the ledger and its budget reservations settled to what
//! it really spent.

use std::sync::Arc;

use super::{budget, ledger};
use crate::chat::AgentId;
use crate::runtime::RunError;
use crate::sessions::SessionStore;

/// Writes a run's metered usage to the ledger when its task ends, however
/// it ends (aborted runs too: their model calls were paid for).
pub(super) struct Settle {
    pub(super) ledger: ledger::LedgerWriter,
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) meter: crate::usage::Meter,
    pub(super) holds: budget::Holds,
    pub(super) run_id: String,
    pub(super) agent: AgentId,
}

impl Settle {
    /// What the run spent, as budgets count it.
    fn spent(&self) -> crate::usage::Charge {
        let used = self.meter.total();
        crate::usage::Charge { tokens: used.tokens.total(), cost: used.cost }
    }

    /// Settle before the run's end is reported, so the caller's next run
    /// sees what this one spent.
    pub(super) async fn finish(mut self) {
        budget::settle(self.store.as_ref(), &std::mem::take(&mut self.holds), self.spent()).await;
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.ledger.record(&self.run_id, self.agent.as_str(), &self.meter);
        // An aborted run settles here, in the background.
        let (store, holds, spent) = (self.store.clone(), std::mem::take(&mut self.holds), self.spent());
        if !holds.lock().unwrap().is_empty() {
            tokio::spawn(async move { budget::settle(store.as_ref(), &holds, spent).await });
        }
    }
}

/// What a run reserves on budgets before it starts.
pub(super) struct BudgetCheck {
    pub(super) budgets: Arc<budget::Budgets>,
    pub(super) agent_budget: Option<crate::config::BudgetConfig>,
    pub(super) estimate: crate::usage::Charge,
    pub(super) holds: budget::Holds,
}

/// Records how a run ended in the metrics, including runs whose task was
/// aborted because their client went away (those never reach the end).
pub(super) struct Outcome {
    pub(super) meter: Arc<crate::metrics::AgentMeter>,
    pub(super) started: std::time::Instant,
    pub(super) recorded: bool,
}

impl Outcome {
    pub(super) fn record(&mut self, failure: Option<&'static str>) {
        self.recorded = true;
        self.meter.run_finished(self.started.elapsed(), failure);
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(Some(RunError::Cancelled.kind()));
        }
    }
}
