//! What runs cost, as the host measures it: the tokens each model call used
//! (read from the provider's own `usage`, never from the guest), their price,
//! and the sum per run. The `llm` capability opens a [`Call`] per completion;
//! the run's [`Meter`] adds them up for the client's `usage`, the ledger and
//! budgets.

pub mod calendar;
mod cost;
mod ledger;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub use cost::{Cost, Price};
pub use ledger::{BudgetSlot, Charge, GroupBy, Hold, UsageQuery, UsageRow, UsageTotals, parse_range};

/// Tokens one call (or several, summed) used, as the provider counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    /// Prompt tokens, cached ones included (OpenAI's `prompt_tokens`).
    pub input: u64,
    /// Completion tokens, reasoning included (`completion_tokens`).
    pub output: u64,
    /// Prompt tokens served from the provider's cache (`prompt_tokens_details.cached_tokens`).
    pub cached_input: u64,
    /// Completion tokens spent reasoning (`completion_tokens_details.reasoning_tokens`).
    pub reasoning: u64,
}

impl Tokens {
    /// Input and output together, what a `tokens` budget counts.
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    fn add(&mut self, other: &Tokens) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cached_input = self.cached_input.saturating_add(other.cached_input);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
    }

    /// What `self` adds over `before` (a provider may report running totals).
    fn since(&self, before: &Tokens) -> Tokens {
        Tokens {
            input: self.input.saturating_sub(before.input),
            output: self.output.saturating_sub(before.output),
            cached_input: self.cached_input.saturating_sub(before.cached_input),
            reasoning: self.reasoning.saturating_sub(before.reasoning),
        }
    }
}

/// One run's model calls, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunUsage {
    pub tokens: Tokens,
    pub cost: Cost,
    /// Completions the run started.
    pub llm_calls: u64,
    /// Calls whose provider reported no usage: counted, never guessed.
    pub unmetered_calls: u64,
}

impl RunUsage {
    /// `other` added to this sum.
    pub fn add(&mut self, other: &RunUsage) {
        self.tokens.add(&other.tokens);
        self.cost = self.cost.plus(other.cost);
        self.llm_calls = self.llm_calls.saturating_add(other.llm_calls);
        self.unmetered_calls = self.unmetered_calls.saturating_add(other.unmetered_calls);
    }
}

/// Where a call's usage goes besides its run: the metrics, by these labels.
pub trait Sink: Send + Sync {
    /// `tokens` more were used (costing `cost`) by a call of `labels`.
    fn used(&self, labels: &Labels, tokens: &Tokens, cost: Cost);
    /// A call of `labels` ended without the provider reporting usage.
    fn unmetered(&self, labels: &Labels);
}

/// Who made a call and through what, as metrics and the log name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub agent: String,
    pub provider: String,
    /// The model asked for; `other` when neither the entry's nor a priced one
    /// (a client-chosen name must not grow the label set).
    pub model: String,
    /// The principal's name (never a secret).
    pub token: String,
}

/// A run's usage, shared by its calls while it runs.
#[derive(Clone, Default)]
pub struct Meter {
    /// The principal the run is billed to.
    principal: Arc<str>,
    sum: Arc<Mutex<Sums>>,
}

/// The run's total and its share per model label.
#[derive(Default)]
struct Sums {
    total: RunUsage,
    by_model: BTreeMap<String, RunUsage>,
}

impl Sums {
    fn add(&mut self, model: &str, part: RunUsage) {
        self.total.add(&part);
        match self.by_model.get_mut(model) {
            Some(sum) => sum.add(&part),
            None => {
                self.by_model.insert(model.to_string(), part);
            }
        }
    }
}

impl Meter {
    /// A meter for a run of `principal`.
    pub fn new(principal: &str) -> Self {
        Self { principal: principal.into(), sum: Default::default() }
    }

    /// The principal's name.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The calls so far, summed.
    pub fn total(&self) -> RunUsage {
        self.sum.lock().unwrap().total
    }

    /// The ledger rows of this run: one per model it called.
    pub fn rows(&self, run_id: &str, agent: &str, at_ms: i64) -> Vec<UsageRow> {
        let sums = self.sum.lock().unwrap();
        let row = |model: &String, usage: &RunUsage| UsageRow {
            run_id: run_id.to_string(),
            at_ms,
            agent: agent.to_string(),
            principal: self.principal.to_string(),
            model: model.clone(),
            usage: *usage,
        };
        sums.by_model.iter().map(|(model, usage)| row(model, usage)).collect()
    }

    /// A call starts: counted now, metered when its provider reports usage.
    pub fn start_call(&self, labels: Labels, price: Option<Price>, sink: Arc<dyn Sink>) -> Call {
        self.sum.lock().unwrap().add(&labels.model, RunUsage { llm_calls: 1, ..RunUsage::default() });
        Call { meter: self.clone(), labels, price, sink, reported: None }
    }
}

/// One model call being metered; its end (drop) settles whether it was.
pub struct Call {
    meter: Meter,
    labels: Labels,
    price: Option<Price>,
    sink: Arc<dyn Sink>,
    /// The last usage the provider reported for this call.
    reported: Option<Tokens>,
}

impl Call {
    /// The provider reported `now` for this call (the last report wins: some
    /// providers send running totals, so only the growth is added).
    pub fn report(&mut self, now: Tokens) {
        let added = now.since(&self.reported.unwrap_or_default());
        self.reported = Some(now);
        let cost = self.price.map(|p| p.cost(&added)).unwrap_or_default();
        let part = RunUsage { tokens: added, cost, ..RunUsage::default() };
        self.meter.sum.lock().unwrap().add(&self.labels.model, part);
        self.sink.used(&self.labels, &added, cost);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.reported.is_none() {
            let part = RunUsage { unmetered_calls: 1, ..RunUsage::default() };
            self.meter.sum.lock().unwrap().add(&self.labels.model, part);
            self.sink.unmetered(&self.labels);
            tracing::info!(
                agent = %self.labels.agent, provider = %self.labels.provider, model = %self.labels.model,
                "model call recorded unmetered: the provider reported no usage (it may not support stream_options.include_usage)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<(Tokens, u64)>);

    impl Sink for Seen {
        fn used(&self, _: &Labels, tokens: &Tokens, _: Cost) {
            self.0.lock().unwrap().0.add(tokens);
        }
        fn unmetered(&self, _: &Labels) {
            self.0.lock().unwrap().1 += 1;
        }
    }

    fn labels() -> Labels {
        Labels { agent: "a".into(), provider: "p".into(), model: "m".into(), token: "t".into() }
    }

    #[test]
    fn a_run_sums_its_calls_and_counts_the_unmetered_ones() {
        let sink = Arc::new(Seen::default());
        let meter = Meter::new("ops");
        let price = Price::per_mtok(1.0, 2.0, None).unwrap();
        let mut first = meter.start_call(labels(), Some(price), sink.clone());
        // Running totals: only the growth counts.
        first.report(Tokens { input: 10, output: 1, ..Tokens::default() });
        first.report(Tokens { input: 10, output: 5, ..Tokens::default() });
        drop(first);
        drop(meter.start_call(labels(), Some(price), sink.clone()));
        let total = meter.total();
        assert_eq!(total.tokens, Tokens { input: 10, output: 5, ..Tokens::default() });
        assert_eq!((total.llm_calls, total.unmetered_calls), (2, 1));
        assert_eq!(total.cost.to_string(), "0.00002", "10 × $1/M + 5 × $2/M");
        assert_eq!(*sink.0.lock().unwrap(), (total.tokens, 1), "the sink saw the same");
        let rows = meter.rows("r1", "a", 5);
        assert_eq!(rows.len(), 1, "one model, one row");
        assert_eq!((rows[0].principal.as_str(), rows[0].usage), ("ops", total));
    }
}
