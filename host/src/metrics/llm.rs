//! Model usage and cost, as the `llm` capability meters it. Labels are the
//! agent id, the configured provider, a configured model name (anything
//! else is `other`, chosen by the capability) and the principal's name:
//! all bounded by the config.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{View, slot};
use crate::usage::{Cost, Tokens};

/// agent → model → provider → token: nested, so a call already counted is
/// found by `&str` without copying its four labels.
type ByCall = BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeMap<String, Counts>>>>;

/// Tokens, cost and unmetered calls per (agent, model, provider, token).
#[derive(Default)]
pub(super) struct LlmCounters {
    by_call: ByCall,
}

#[derive(Default)]
struct Counts {
    tokens: Tokens,
    picos: u64,
    /// Usage reports counted: a key seen only unmetered has no token lines.
    reports: u64,
    unmetered: u64,
}

impl LlmCounters {
    fn entry(&mut self, agent: &str, model: &str, provider: &str, token: &str) -> &mut Counts {
        slot(slot(slot(slot(&mut self.by_call, agent), model), provider), token)
    }

    /// Every key with its counts, in label order.
    fn calls(&self) -> impl Iterator<Item = ((&str, &str, &str, &str), &Counts)> {
        self.by_call.iter().flat_map(|(agent, models)| {
            models.iter().flat_map(move |(model, providers)| {
                providers.iter().flat_map(move |(provider, tokens)| {
                    tokens
                        .iter()
                        .map(move |(token, c)| ((agent.as_str(), model.as_str(), provider.as_str(), token.as_str()), c))
                })
            })
        })
    }

    pub(super) fn used(&mut self, key: (&str, &str, &str, &str), tokens: &Tokens, picos: u64) {
        let counts = self.entry(key.0, key.1, key.2, key.3);
        counts.tokens.input += tokens.input;
        counts.tokens.output += tokens.output;
        counts.tokens.cached_input += tokens.cached_input;
        counts.picos = counts.picos.saturating_add(picos);
        counts.reports += 1;
    }

    pub(super) fn unmetered(&mut self, key: (&str, &str, &str, &str)) {
        self.entry(key.0, key.1, key.2, key.3).unmetered += 1;
    }

    pub(super) fn render(&self, out: &mut String, view: &View) {
        let visible = || self.calls().filter(|((agent, _, _, token), _)| view.agent(agent) && view.token(token));
        let head = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        head(
            out,
            "wasmclaw_llm_tokens_total",
            "Tokens model calls used, as providers reported them (input includes cached_input).",
        );
        for ((agent, model, provider, token), c) in visible().filter(|(_, c)| c.reports > 0) {
            for (kind, n) in
                [("input", c.tokens.input), ("output", c.tokens.output), ("cached_input", c.tokens.cached_input)]
            {
                let _ = writeln!(
                    out,
                    "wasmclaw_llm_tokens_total{{kind=\"{kind}\",agent=\"{agent}\",model=\"{model}\",provider=\"{provider}\",token=\"{token}\"}} {n}"
                );
            }
        }
        head(out, "wasmclaw_llm_cost_usd_total", "What model calls cost at providers.<name>.models.<model>.price.");
        let mut cost: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        for ((agent, model, _, token), c) in visible().filter(|(_, c)| c.reports > 0) {
            let sum = cost.entry((agent, model, token)).or_default();
            *sum = sum.saturating_add(c.picos);
        }
        for ((agent, model, token), picos) in cost {
            let usd = Cost::from_picos(picos);
            let _ = writeln!(
                out,
                "wasmclaw_llm_cost_usd_total{{agent=\"{agent}\",model=\"{model}\",token=\"{token}\"}} {usd}"
            );
        }
        head(out, "wasmclaw_llm_calls_unmetered_total", "Model calls whose provider reported no usage.");
        for ((agent, model, provider, token), c) in visible().filter(|(_, c)| c.unmetered > 0) {
            let _ = writeln!(
                out,
                "wasmclaw_llm_calls_unmetered_total{{agent=\"{agent}\",model=\"{model}\",provider=\"{provider}\",token=\"{token}\"}} {}",
                c.unmetered
            );
        }
    }
}
