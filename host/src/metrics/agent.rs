//! One agent's run metrics behind a handle a run resolves once, when it
//! starts: recording its first event and its end is a few atomic adds, with
//! no map lookup, no label copied and no lock shared with other agents
//! (issue 28: a run took about 5 mutexes and 6 `String`s in metrics).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::recent::{Clock, Ring, Series};

/// Upper bounds (seconds) of run-duration and time-to-first-event buckets.
const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// A fixed-bucket histogram of durations, recorded with atomics.
#[derive(Default)]
pub(super) struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub(super) fn observe(&self, took: Duration) {
        // The count first: a scrape that sees the bucket sees the count too.
        self.count.fetch_add(1, Ordering::Release);
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Release);
        }
        self.nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(super) fn render(&self, out: &mut String, name: &str, agent: &str) {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
        let count = self.count.load(Ordering::Acquire);
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{agent=\"{agent}\",le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{agent=\"{agent}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{agent=\"{agent}\"}} {}", self.nanos.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{agent=\"{agent}\"}} {count}");
    }
}

/// One agent's run metrics; a run gets it from `Metrics::agent` when it starts.
pub struct AgentMeter {
    pub(super) run_seconds: Histogram,
    pub(super) first_event_seconds: Histogram,
    /// kind → failed runs (the rare path).
    pub(super) failures: Mutex<BTreeMap<&'static str, u64>>,
    clock: Clock,
    recent: Mutex<Ring>,
}

impl AgentMeter {
    pub(super) fn new(clock: Clock) -> Self {
        Self {
            run_seconds: Histogram::default(),
            first_event_seconds: Histogram::default(),
            failures: Mutex::default(),
            clock,
            recent: Mutex::default(),
        }
    }

    /// A run ended after `took`; `failure`: its kind when it failed.
    pub fn run_finished(&self, took: Duration, failure: Option<&'static str>) {
        self.run_seconds.observe(took);
        if let Some(kind) = failure {
            *self.failures.lock().unwrap().entry(kind).or_default() += 1;
        }
        let bucket = self.clock.index(Instant::now());
        self.recent.lock().unwrap().record(bucket, failure.is_some());
    }

    /// A run produced its first event after `took`.
    pub fn first_event(&self, took: Duration) {
        self.first_event_seconds.observe(took);
    }

    pub(super) fn series(&self, agent: &str, now: Instant) -> Option<Series> {
        self.recent.lock().unwrap().series(agent, self.clock.index(now))
    }
}

/// Times one run's first event: taken by the run's output when its guest
/// emits the first one, whether the door streams or collects.
pub struct FirstEvent {
    meter: std::sync::Arc<AgentMeter>,
    started: Instant,
}

impl FirstEvent {
    /// For a run of `meter`'s agent that started at `started`.
    pub fn new(meter: std::sync::Arc<AgentMeter>, started: Instant) -> Self {
        Self { meter, started }
    }

    /// The first event is here.
    pub fn seen(self) {
        self.meter.first_event(self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_duration_in_its_bucket_and_sums_them() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(600));
        let mut out = String::new();
        h.render(&mut out, "x", "main");
        assert!(out.contains("x_bucket{agent=\"main\",le=\"0.0025\"} 0\n"), "{out}");
        assert!(out.contains("x_bucket{agent=\"main\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{agent=\"main\",le=\"120\"} 2\n"), "beyond the last bound: +Inf only\n{out}");
        assert!(out.contains("x_bucket{agent=\"main\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{agent=\"main\"} 600.303\n"), "{out}");
        assert!(out.contains("x_count{agent=\"main\"} 3\n"), "{out}");
    }
}
