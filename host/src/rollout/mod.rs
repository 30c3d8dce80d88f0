//! Canary rollouts, live: which version a run meets while an id has a
//! candidate (by weight, sticky per session), the per-version counts, and
//! when the candidate must leave traffic on its own. The durable rollout is
//! `registry::RolloutRecord`; `runs` shows it here and asks here per run.
//!
//! Counts are per instance: each instance judges its own traffic (a failing
//! candidate fails everywhere, so every instance sees it), and the first to
//! decide writes the rollback to the registry, which every instance follows.
//! Sharing counts would put a database write on every run.

mod shadow;
mod stats;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

pub use shadow::{Shadow, ShadowStats};
pub use stats::{Reading, VersionStats, verdict};

use crate::chat::AgentId;
use crate::config::Sticky;
use crate::registry::{RolloutRecord, RolloutState};
use crate::runtime::{AgentVersion, RunError};

/// An id's rollout as this instance serves it.
pub struct LiveRollout {
    pub agent: AgentId,
    pub record: RolloutRecord,
    /// The version the rest of the traffic meets (the id's current).
    pub stable_digest: String,
    pub candidate: Arc<AgentVersion>,
    pub stable_stats: Arc<VersionStats>,
    pub candidate_stats: Arc<VersionStats>,
    /// Counts of the candidate's shadow runs (kept across widening like the stats).
    pub shadow: Arc<ShadowStats>,
    /// Set once, by the run that tripped a rule: from then on every run meets stable.
    tripped: OnceLock<String>,
}

impl LiveRollout {
    /// `record` beside `stable_digest`; counts carry over from `before` when it is the same rollout.
    pub fn new(
        agent: AgentId,
        record: RolloutRecord,
        stable_digest: String,
        candidate: Arc<AgentVersion>,
        before: Option<&LiveRollout>,
    ) -> Self {
        let same = before.filter(|b| b.record.id == record.id);
        let stable_stats =
            same.filter(|b| b.stable_digest == stable_digest).map(|b| b.stable_stats.clone()).unwrap_or_default();
        let candidate_stats = same.map(|b| b.candidate_stats.clone()).unwrap_or_default();
        let shadow = same.map(|b| b.shadow.clone()).unwrap_or_default();
        let tripped = OnceLock::new();
        if let Some(reason) = same.and_then(|b| b.tripped.get()) {
            let _ = tripped.set(reason.clone());
        }
        Self { agent, record, stable_digest, candidate, stable_stats, candidate_stats, shadow, tripped }
    }

    /// Where it stands, counting a rollback decided here but not yet written.
    pub fn state(&self) -> (RolloutState, Option<&str>) {
        match (self.record.state, self.tripped.get()) {
            (RolloutState::Running, Some(reason)) => (RolloutState::RolledBack, Some(reason)),
            (state, _) => (state, self.record.reason.as_deref()),
        }
    }

    /// What it is and how each version does, as the admin API and WebSocket show it.
    pub fn summary(&self) -> serde_json::Value {
        let (state, reason) = self.state();
        let version = |digest: &str, r: Reading| serde_json::json!({"digest": format!("sha256:{digest}"), "runs": r.runs, "errors": r.errors, "p95Ms": r.p95_ms});
        serde_json::json!({
            "agent": self.agent.to_string(),
            "id": self.record.id,
            "state": state.as_str(),
            "reason": reason,
            "weight": self.record.weight,
            "sticky": self.record.sticky,
            "autoRollback": self.record.auto_rollback,
            "source": self.record.source,
            "startedAt": self.record.started_at,
            "stable": version(&self.stable_digest, self.stable_stats.read()),
            "candidate": version(&self.candidate.digest, self.candidate_stats.read()),
            "shadow": self.record.shadow.map(|sample| self.shadow.summary(sample)),
        })
    }

    fn running(&self) -> bool {
        self.state().0 == RolloutState::Running
    }
}

/// A rule tripped: the rollout `rollout_id` of `agent` must be rolled back.
#[derive(Debug, Clone)]
pub struct Trip {
    pub agent: AgentId,
    pub rollout_id: String,
    pub reason: String,
}

/// The rollout a run was routed by, to count it when it ends.
pub struct Tally {
    rollout: Arc<LiveRollout>,
    candidate: bool,
}

impl Tally {
    /// Count the run; a [`Trip`] when this run made the candidate trip a rule.
    pub fn record(&self, took: Duration, result: Result<(), &RunError>) -> Option<Trip> {
        let r = &self.rollout;
        let (stats, failed) = match result {
            Ok(()) => (self.stats(), false),
            Err(e) => match counts_against_version(e) {
                Some(failed) => (self.stats(), failed),
                None => return None,
            },
        };
        stats.record(took, failed);
        let rules = r.record.auto_rollback.as_ref().filter(|_| r.running())?;
        let reason = verdict(rules, r.stable_stats.read(), r.candidate_stats.read())?;
        // Only the first run to trip reports it.
        r.tripped.set(reason.clone()).ok()?;
        Some(Trip { agent: r.agent.clone(), rollout_id: r.record.id.clone(), reason })
    }

    /// Whether this stable run is sampled for a shadow run of the candidate.
    pub fn shadow(&self) -> Option<Shadow> {
        let r = &self.rollout;
        let sample = r.record.shadow.filter(|_| !self.candidate && r.running())?;
        rand::random_bool(sample.min(1.0)).then(|| Shadow { candidate: r.candidate.clone(), stats: r.shadow.clone() })
    }

    fn stats(&self) -> &VersionStats {
        if self.candidate { &self.rollout.candidate_stats } else { &self.rollout.stable_stats }
    }
}

/// Whether a run that ended in `e` counts, and as a failure of the version:
/// `None` for endings that say nothing about the version (the client left,
/// the gateway was full, the session was not the caller's).
fn counts_against_version(e: &RunError) -> Option<bool> {
    match e {
        RunError::Cancelled
        | RunError::NoCapacity
        | RunError::SessionNotFound(_)
        | RunError::UnknownAgent(_)
        | RunError::StoreUnavailable(_) => None,
        _ => Some(true),
    }
}

/// The version a run meets and what to count it under.
pub struct Routed {
    pub version: Arc<AgentVersion>,
    pub tally: Option<Tally>,
}

/// Whether `key` falls in the candidate's `weight` percent of rollout
/// `rollout_id`: a hash, so every instance and every restart agrees and no
/// table of sessions grows; a new rollout deals sessions anew.
pub fn meets_candidate(rollout_id: &str, key: &str, weight: u8) -> bool {
    use sha2::Digest as _;
    let hash = sha2::Sha256::new().chain_update(rollout_id).chain_update([0]).chain_update(key).finalize();
    let n = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
    n % 100 < u64::from(weight)
}

/// What an id shows, at the registry revision it came from (`None`: no rollout).
type Shown = (u64, Option<Arc<LiveRollout>>);

/// Every id's live rollout, each at the registry revision it came from.
#[derive(Default)]
pub struct Rollouts {
    live: ArcSwap<HashMap<AgentId, Shown>>,
}

impl Rollouts {
    /// `id`'s rollout, running or ended.
    pub fn get(&self, id: &AgentId) -> Option<Arc<LiveRollout>> {
        self.live.load().get(id).and_then(|(_, r)| r.clone())
    }

    /// Show `rollout` for `id` at `revision`, unless a newer revision is shown.
    pub fn apply(&self, id: &AgentId, rollout: Option<Arc<LiveRollout>>, revision: u64) {
        self.live.rcu(|current| {
            let mut next = HashMap::clone(current);
            if current.get(id).is_none_or(|(r, _)| *r < revision) {
                next.insert(id.clone(), (revision, rollout.clone()));
            }
            next
        });
    }

    /// The version a run of `stable`'s id meets: `session` decides under
    /// `sticky: session`, `run_id` (fresh per run) otherwise.
    pub fn route(&self, stable: Arc<AgentVersion>, session: &str, run_id: &str) -> Routed {
        let Some(rollout) = self.get(&stable.id).filter(|r| r.running() && r.stable_digest == stable.digest) else {
            return Routed { version: stable, tally: None };
        };
        let key = match rollout.record.sticky {
            Sticky::Session => session,
            Sticky::None => run_id,
        };
        let candidate = meets_candidate(&rollout.record.id, key, rollout.record.weight);
        let version = if candidate { rollout.candidate.clone() } else { stable };
        Routed { version, tally: Some(Tally { rollout, candidate }) }
    }

    /// A loaded candidate of `id` with `digest`.
    pub fn find(&self, id: &AgentId, digest: &str) -> Option<Arc<AgentVersion>> {
        self.get(id).map(|r| r.candidate.clone()).filter(|v| v.digest == digest)
    }

    /// Prometheus lines for the rollouts of agents `visible` admits:
    /// runs and failures by version (only the two digests of each rollout).
    pub fn render(&self, out: &mut String, visible: &dyn Fn(&str) -> bool) {
        let live = self.live.load();
        let mut rollouts: Vec<&Arc<LiveRollout>> =
            live.values().filter_map(|(_, r)| r.as_ref()).filter(|r| visible(r.agent.as_str())).collect();
        rollouts.sort_by(|a, b| a.agent.cmp(&b.agent));
        let _ = writeln!(
            out,
            "# HELP wasmclaw_rollout_runs_total Runs per version of an agent with a rollout (this instance).\n\
             # TYPE wasmclaw_rollout_runs_total counter"
        );
        for r in &rollouts {
            for (role, digest, stats) in versions(r) {
                let n = stats.read().runs;
                let _ = writeln!(
                    out,
                    "wasmclaw_rollout_runs_total{{agent=\"{}\",version=\"sha256:{digest}\",role=\"{role}\"}} {n}",
                    r.agent
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP wasmclaw_rollout_run_failures_total Failed runs per version of an agent with a rollout.\n\
             # TYPE wasmclaw_rollout_run_failures_total counter"
        );
        for r in &rollouts {
            for (role, digest, stats) in versions(r) {
                let n = stats.read().errors;
                let _ = writeln!(
                    out,
                    "wasmclaw_rollout_run_failures_total{{agent=\"{}\",version=\"sha256:{digest}\",role=\"{role}\"}} {n}",
                    r.agent
                );
            }
        }
    }
}

fn versions(r: &LiveRollout) -> [(&'static str, &str, &VersionStats); 2] {
    [("stable", &r.stable_digest, &r.stable_stats), ("candidate", &r.candidate.digest, &r.candidate_stats)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_split_by_weight_and_never_move() {
        let share = |weight: u8| {
            (0..10_000).filter(|i| meets_candidate("r1", &format!("session-{i}"), weight)).count() as f64 / 10_000.0
        };
        assert!((share(50) - 0.5).abs() < 0.02, "{}", share(50));
        assert!((share(10) - 0.1).abs() < 0.02, "{}", share(10));
        assert_eq!(share(0), 0.0);
        assert_eq!(share(100), 1.0);
        let first: Vec<bool> = (0..100).map(|i| meets_candidate("r1", &format!("s{i}"), 50)).collect();
        let again: Vec<bool> = (0..100).map(|i| meets_candidate("r1", &format!("s{i}"), 50)).collect();
        assert_eq!(first, again);
        let other: Vec<bool> = (0..100).map(|i| meets_candidate("r2", &format!("s{i}"), 50)).collect();
        assert_ne!(first, other, "a new rollout deals sessions anew");
    }

    #[test]
    fn only_the_versions_own_failures_count_against_it() {
        assert_eq!(counts_against_version(&RunError::Cancelled), None, "the client left");
        assert_eq!(counts_against_version(&RunError::NoCapacity), None);
        assert_eq!(counts_against_version(&RunError::SessionNotFound("k".into())), None);
        assert_eq!(counts_against_version(&RunError::Trapped("unreachable".into())), Some(true));
        assert_eq!(counts_against_version(&RunError::Failed("no".into())), Some(true));
    }

    #[test]
    fn widening_the_weight_only_moves_sessions_to_the_candidate() {
        for i in 0..1000 {
            let key = format!("s{i}");
            if meets_candidate("r", &key, 20) {
                assert!(meets_candidate("r", &key, 60), "{key} moved back to stable");
            }
        }
    }
}
