//! Shadow runs of a rollout: a sampled stable run is recorded, and the
//! candidate is replayed on that recording off the response path (no second
//! model call, no second side effect); its output never reaches the client.
//! Here: the counts by verdict and the latest examples, and the one permit
//! that keeps shadow replays to one at a time (busy: skipped and counted).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::AgentVersion;
use crate::tape::Verdict;

/// Examples `GET …/rollout` shows, newest first.
const EXAMPLES: usize = 3;

/// Shadow replays in flight at once, per rollout.
const AT_ONCE: usize = 1;

/// One rollout's shadow counts, per instance.
pub struct ShadowStats {
    runs: AtomicU64,
    identical: AtomicU64,
    changed: AtomicU64,
    diverged: AtomicU64,
    failed: AtomicU64,
    /// Sampled runs not compared: a replay was in flight, or the recording was truncated.
    skipped: AtomicU64,
    examples: Mutex<VecDeque<Verdict>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Default for ShadowStats {
    fn default() -> Self {
        Self {
            runs: Default::default(),
            identical: Default::default(),
            changed: Default::default(),
            diverged: Default::default(),
            failed: Default::default(),
            skipped: Default::default(),
            examples: Default::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(AT_ONCE)),
        }
    }
}

/// A stable run picked for a shadow run of the candidate.
pub struct Shadow {
    pub candidate: Arc<AgentVersion>,
    pub stats: Arc<ShadowStats>,
}

impl ShadowStats {
    /// A place for one shadow replay, or `None` (counted as skipped) while one runs.
    pub fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.skipped();
        }
        permit
    }

    /// A sampled run that could not be compared.
    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a shadow replay's verdict; a changed, diverged or failed one becomes an example.
    pub fn record(&self, verdict: Verdict) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let counter = match verdict.outcome {
            "identical" => &self.identical,
            "changed" => &self.changed,
            "diverged" => &self.diverged,
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if verdict.outcome != "identical" {
            let mut examples = self.examples.lock().unwrap_or_else(|p| p.into_inner());
            examples.push_front(verdict);
            examples.truncate(EXAMPLES);
        }
    }

    /// `{"runs","identical","changed","diverged","failed","skipped","examples"}`.
    pub fn summary(&self, sample: f64) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let examples: Vec<Verdict> = self.examples.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        serde_json::json!({
            "sample": sample,
            "runs": n(&self.runs),
            "identical": n(&self.identical),
            "changed": n(&self.changed),
            "diverged": n(&self.diverged),
            "failed": n(&self.failed),
            "skipped": n(&self.skipped),
            "examples": examples,
        })
    }
}
