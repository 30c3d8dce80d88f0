//! Runs and failures per agent over the last minutes, in fixed time buckets:
//! what the control page charts. The Prometheus counters only ever grow, so a
//! client that wants "the last ten minutes" would have to have been watching
//! for ten minutes; this keeps the recent past in the gateway instead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Width of one bucket.
pub const BUCKET: Duration = Duration::from_secs(10);
/// Buckets kept per agent: ten minutes.
pub const BUCKETS: usize = 60;

/// One bucket: which bucket number it holds, and its counts.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    index: u64,
    runs: u64,
    failures: u64,
}

/// A ring of buckets per agent, numbered from the moment it was made.
#[derive(Debug)]
pub struct Recent {
    origin: Instant,
    agents: BTreeMap<String, [Slot; BUCKETS]>,
}

impl Default for Recent {
    fn default() -> Self {
        Self { origin: Instant::now(), agents: BTreeMap::new() }
    }
}

/// One agent's counts, oldest bucket first; the last is the bucket in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub agent: String,
    pub runs: Vec<u64>,
    pub failures: Vec<u64>,
}

impl Recent {
    fn index(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_millis() / BUCKET.as_millis()) as u64
    }

    /// A run of `agent` ended at `at`.
    pub fn record(&mut self, agent: &str, failed: bool, at: Instant) {
        let index = self.index(at);
        let ring = match self.agents.get_mut(agent) {
            Some(ring) => ring,
            None => self.agents.entry(agent.to_string()).or_insert([Slot::default(); BUCKETS]),
        };
        let slot = &mut ring[(index % BUCKETS as u64) as usize];
        if slot.index != index {
            *slot = Slot { index, runs: 0, failures: 0 };
        }
        slot.runs += 1;
        slot.failures += u64::from(failed);
    }

    /// Every agent with a run in the window ending at `now`.
    pub fn series(&self, now: Instant) -> Vec<Series> {
        let last = self.index(now);
        let first = (last + 1).saturating_sub(BUCKETS as u64);
        let mut out = Vec::new();
        for (agent, ring) in &self.agents {
            let (mut runs, mut failures) = (Vec::with_capacity(BUCKETS), Vec::with_capacity(BUCKETS));
            // Before the gateway had run a whole window, the early buckets are zeros.
            for _ in 0..(BUCKETS as u64).saturating_sub(last + 1) {
                runs.push(0);
                failures.push(0);
            }
            for index in first..=last {
                let slot = ring[(index % BUCKETS as u64) as usize];
                let live = slot.index == index;
                runs.push(if live { slot.runs } else { 0 });
                failures.push(if live { slot.failures } else { 0 });
            }
            if runs.iter().any(|n| *n > 0) {
                out.push(Series { agent: agent.clone(), runs, failures });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_runs_and_failures_and_forget_what_left_the_window() {
        let mut recent = Recent::default();
        let t0 = recent.origin;
        recent.record("main", false, t0);
        recent.record("main", true, t0 + Duration::from_secs(1));
        recent.record("main", false, t0 + BUCKET * 2);
        recent.record("beta", false, t0 + BUCKET * 2);
        let now = t0 + BUCKET * 2 + Duration::from_secs(3);
        let series = recent.series(now);
        assert_eq!(series.len(), 2);
        let main = series.iter().find(|s| s.agent == "main").unwrap();
        assert_eq!(main.runs.len(), BUCKETS);
        assert_eq!(&main.runs[BUCKETS - 3..], &[2, 0, 1]);
        assert_eq!(&main.failures[BUCKETS - 3..], &[1, 0, 0]);
        // A whole window later the old buckets are gone, and so is an agent with nothing left.
        recent.record("main", false, t0 + BUCKET * (BUCKETS as u32 + 2));
        let later = recent.series(t0 + BUCKET * (BUCKETS as u32 + 2));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].runs.iter().sum::<u64>(), 1);
        assert_eq!(*later[0].runs.last().unwrap(), 1);
    }
}
