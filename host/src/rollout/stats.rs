//! Per-version run counts for a rollout, cheap on the hot path (a few
//! relaxed atomic adds per run), and the automatic rollback rule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::AutoRollback;

/// Upper bound of bucket `i` is `GROWTH^i` ms: 1 ms, 1.25 ms, … about 11 min
/// at the last, so a p95 is read within 25 % from a fixed 61 counters.
const GROWTH: f64 = 1.25;
const BUCKETS: usize = 61;

/// Runs, failures and a run-time histogram of one version in one rollout, on this instance.
pub struct VersionStats {
    runs: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for VersionStats {
    fn default() -> Self {
        Self { runs: AtomicU64::new(0), errors: AtomicU64::new(0), buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

/// A point-in-time reading of [`VersionStats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub runs: u64,
    pub errors: u64,
    /// The 95th percentile run time, rounded up to its bucket's bound; `None` before any run.
    pub p95_ms: Option<f64>,
}

impl VersionStats {
    /// One run that took `took`; `failed` when it ended in the version's own failure.
    pub fn record(&self, took: Duration, failed: bool) {
        let ms = took.as_secs_f64() * 1000.0;
        let bucket = if ms <= 1.0 { 0 } else { (ms.ln() / GROWTH.ln()).ceil() as usize };
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as they stand.
    pub fn read(&self) -> Reading {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let p95_ms = (total > 0).then(|| {
            let rank = (total as f64 * 0.95).ceil() as u64;
            let mut seen = 0;
            let at = counts.iter().position(|n| {
                seen += n;
                seen >= rank
            });
            GROWTH.powi(at.unwrap_or(BUCKETS - 1) as i32)
        });
        Reading { runs: self.runs.load(Ordering::Relaxed), errors: self.errors.load(Ordering::Relaxed), p95_ms }
    }
}

/// Why the candidate must leave traffic under `rules`, if it must. The
/// error rule is judged once the candidate has `minRuns` runs; the latency
/// rule once both versions have (a p95 of a handful of runs says little).
pub fn verdict(rules: &AutoRollback, stable: Reading, candidate: Reading) -> Option<String> {
    if candidate.runs < rules.min_runs {
        return None;
    }
    if let Some(max) = rules.max_error_rate {
        let rate = candidate.errors as f64 / candidate.runs as f64;
        if rate > max {
            return Some(format!(
                "candidate error rate {rate:.2} ({} of {} runs) is over autoRollback.maxErrorRate {max}",
                candidate.errors, candidate.runs
            ));
        }
    }
    if let (Some(max), Some(c), Some(s)) = (rules.max_p95_ratio, candidate.p95_ms, stable.p95_ms)
        && stable.runs >= rules.min_runs
        && c > max * s
    {
        return Some(format!(
            "candidate p95 {c:.0} ms is over autoRollback.maxP95Ratio {max} × the stable p95 {s:.0} ms \
             ({} candidate, {} stable runs)",
            candidate.runs, stable.runs
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min_runs: u64, max_error_rate: Option<f64>, max_p95_ratio: Option<f64>) -> AutoRollback {
        AutoRollback { min_runs, max_error_rate, max_p95_ratio }
    }

    fn stats(runs: &[(u64, bool)]) -> Reading {
        let s = VersionStats::default();
        for (ms, failed) in runs {
            s.record(Duration::from_millis(*ms), *failed);
        }
        s.read()
    }

    #[test]
    fn p95_is_read_within_a_bucket() {
        let mut runs: Vec<(u64, bool)> = (0..95).map(|_| (10, false)).collect();
        runs.extend((0..5).map(|_| (400, false)));
        let p95 = stats(&runs).p95_ms.unwrap();
        assert!((10.0..12.5).contains(&p95), "{p95}");
        let p95 = stats(&[(400, false); 20]).p95_ms.unwrap();
        assert!((400.0..500.0).contains(&p95), "{p95}");
        assert_eq!(stats(&[]).p95_ms, None);
        assert_eq!(stats(&[(0, false)]).p95_ms, Some(1.0));
        assert_eq!(stats(&[(u64::MAX / 1_000_000, false)]).runs, 1, "a huge time lands in the last bucket");
    }

    #[test]
    fn errors_roll_back_only_after_min_runs_and_over_the_rate() {
        let stable = stats(&[(1, false); 10]);
        let failing = |n: usize| stats(&vec![(1, true); n]);
        let r = rules(5, Some(0.2), None);
        assert_eq!(verdict(&r, stable, failing(4)), None, "too few runs to judge");
        assert!(verdict(&r, stable, failing(5)).unwrap().contains("maxErrorRate 0.2"));
        let one_in_five = stats(&[(1, true), (1, false), (1, false), (1, false), (1, false)]);
        assert_eq!(verdict(&r, stable, one_in_five), None, "at the rate is not over it");
    }

    #[test]
    fn latency_rolls_back_against_the_stable_p95() {
        let r = rules(5, None, Some(3.0));
        let (fast, slow) = (stats(&[(10, false); 10]), stats(&[(100, false); 10]));
        assert!(verdict(&r, fast, slow).unwrap().contains("maxP95Ratio 3"));
        assert_eq!(verdict(&r, fast, stats(&[(20, false); 10])), None);
        assert_eq!(verdict(&r, stats(&[(10, false); 2]), slow), None, "too few stable runs to compare");
    }
}
