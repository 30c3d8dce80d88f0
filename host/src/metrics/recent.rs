//! Runs and failures per agent over the last minutes, in fixed time buckets:
//! what the control page charts. The Prometheus counters only ever grow, so a
//! client that wants "the last ten minutes" would have to have been watching
//! for ten minutes; this keeps the recent past in the gateway instead. Each
//! agent has its own ring (in its `AgentMeter`), numbered from one [`Clock`].

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

/// Numbers buckets from the moment the gateway's metrics were made.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Clock {
    /// The bucket number of `at`.
    pub fn index(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_millis() / BUCKET.as_millis()) as u64
    }
}

/// One agent's ring of buckets.
#[derive(Debug)]
pub struct Ring {
    slots: [Slot; BUCKETS],
}

impl Default for Ring {
    fn default() -> Self {
        Self { slots: [Slot::default(); BUCKETS] }
    }
}

/// One agent's counts, oldest bucket first; the last is the bucket in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub agent: String,
    pub runs: Vec<u64>,
    pub failures: Vec<u64>,
}

impl Ring {
    /// A run ended in bucket `index`.
    pub fn record(&mut self, index: u64, failed: bool) {
        let slot = &mut self.slots[(index % BUCKETS as u64) as usize];
        if slot.index != index {
            *slot = Slot { index, runs: 0, failures: 0 };
        }
        slot.runs += 1;
        slot.failures += u64::from(failed);
    }

    /// The window ending with bucket `last`; `None` without a run in it.
    pub fn series(&self, agent: &str, last: u64) -> Option<Series> {
        let first = (last + 1).saturating_sub(BUCKETS as u64);
        let (mut runs, mut failures) = (Vec::with_capacity(BUCKETS), Vec::with_capacity(BUCKETS));
        // Before the gateway had run a whole window, the early buckets are zeros.
        for _ in 0..(BUCKETS as u64).saturating_sub(last + 1) {
            runs.push(0);
            failures.push(0);
        }
        for index in first..=last {
            let slot = self.slots[(index % BUCKETS as u64) as usize];
            let live = slot.index == index;
            runs.push(if live { slot.runs } else { 0 });
            failures.push(if live { slot.failures } else { 0 });
        }
        runs.iter().any(|n| *n > 0).then(|| Series { agent: agent.to_string(), runs, failures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_runs_and_failures_and_forget_what_left_the_window() {
        let clock = Clock::default();
        let t0 = clock.origin;
        let (mut main, mut beta) = (Ring::default(), Ring::default());
        main.record(clock.index(t0), false);
        main.record(clock.index(t0 + Duration::from_secs(1)), true);
        main.record(clock.index(t0 + BUCKET * 2), false);
        beta.record(clock.index(t0 + BUCKET * 2), false);
        let now = clock.index(t0 + BUCKET * 2 + Duration::from_secs(3));
        let series = main.series("main", now).unwrap();
        assert!(beta.series("beta", now).is_some());
        assert_eq!(series.runs.len(), BUCKETS);
        assert_eq!(&series.runs[BUCKETS - 3..], &[2, 0, 1]);
        assert_eq!(&series.failures[BUCKETS - 3..], &[1, 0, 0]);
        // A whole window later the old buckets are gone, and so is an agent with nothing left.
        let later = clock.index(t0 + BUCKET * (BUCKETS as u32 + 2));
        main.record(later, false);
        assert!(beta.series("beta", later).is_none());
        let series = main.series("main", later).unwrap();
        assert_eq!(series.runs.iter().sum::<u64>(), 1);
        assert_eq!(*series.runs.last().unwrap(), 1);
    }
}
