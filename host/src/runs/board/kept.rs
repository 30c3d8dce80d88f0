//! What the run board keeps of finished runs: their results for
//! [`KEEP_RESULTS`], within the byte caps of [`ResultLimits`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Finished, State};

/// How long a finished run's result answers retries and waits.
pub(super) const KEEP_RESULTS: Duration = Duration::from_secs(600);

/// What a finished run costs besides its text: its entry, ids and key.
pub(super) const ENTRY_COST: usize = 256;

/// The board's byte caps on finished runs.
#[derive(Debug, Clone, Copy)]
pub struct ResultLimits {
    /// `gateway.ws.maxResultBytes`.
    pub total: usize,
    /// `gateway.ws.maxResultBytesPerPrincipal`.
    pub per_principal: usize,
}

impl Default for ResultLimits {
    fn default() -> Self {
        let ws = crate::config::WsConfig::default();
        Self { total: ws.max_result_bytes, per_principal: ws.max_result_bytes_per_principal }
    }
}

/// One principal's finished runs, oldest first.
#[derive(Default)]
pub(super) struct Kept {
    pub(super) bytes: usize,
    /// Runs whose text is still kept.
    texts: VecDeque<String>,
    /// Every finished run.
    runs: VecDeque<String>,
}

impl State {
    /// Charge the finished run `run_id` (`text` bytes of reply) to its owner,
    /// then drop what the caps no longer hold: the owner's oldest first, then
    /// the largest principal's while the total is over.
    pub(super) fn keep(&mut self, run_id: &str, text: usize) {
        let Some(entry) = self.runs.get_mut(run_id) else { return };
        entry.charge = ENTRY_COST + text;
        let owner = entry.owner.clone();
        let kept = self.kept.entry(owner.clone()).or_default();
        kept.bytes += entry.charge;
        self.kept_bytes += entry.charge;
        if text > 0 {
            kept.texts.push_back(run_id.to_string());
        }
        kept.runs.push_back(run_id.to_string());
        while self.kept.get(&owner).is_some_and(|k| k.bytes > self.limits.per_principal) {
            if !self.drop_oldest(&owner, "gateway.ws.maxResultBytesPerPrincipal") {
                break;
            }
        }
        while self.kept_bytes > self.limits.total {
            let Some(largest) = self.kept.iter().max_by_key(|(_, k)| k.bytes).map(|(o, _)| o.clone()) else { break };
            if !self.drop_oldest(&largest, "gateway.ws.maxResultBytes") {
                break;
            }
        }
    }

    /// Drop `owner`'s oldest reply text, or else its oldest finished run.
    fn drop_oldest(&mut self, owner: &str, key: &str) -> bool {
        let Some(kept) = self.kept.get_mut(owner) else { return false };
        while let Some(id) = kept.texts.pop_front() {
            let Some(entry) = self.runs.get_mut(&id) else { continue };
            let Some(finished) = entry.result.borrow().clone() else { continue };
            let slim =
                Finished { text: String::new(), end: finished.end.clone(), ended: finished.ended, dropped: true };
            entry.result = watch::channel(Some(Arc::new(slim))).1;
            let freed = finished.text.len();
            entry.charge -= freed;
            kept.bytes -= freed;
            self.kept_bytes -= freed;
            self.metrics.run_result_dropped();
            tracing::info!(
                owner,
                run_id = id,
                bytes = freed,
                "finished run's reply dropped from the run board: raise {key} to keep more for agent.wait"
            );
            return true;
        }
        while let Some(id) = kept.runs.pop_front() {
            let Some(entry) = self.runs.remove(&id) else { continue };
            kept.bytes -= entry.charge;
            self.kept_bytes -= entry.charge;
            self.idempotency.retain(|_, r| r.run_id != id);
            self.metrics.run_result_dropped();
            tracing::info!(owner, run_id = id, "finished run forgotten by the run board: raise {key} to keep more");
            return true;
        }
        false
    }
}

/// Forget runs that ended more than [`KEEP_RESULTS`] ago, and their keys.
/// Running runs stay whatever their age: dropping one would drop its abort sender.
pub(super) fn prune(state: &mut State, now: Instant) {
    let Some(cutoff) = now.checked_sub(KEEP_RESULTS) else { return };
    let State { runs, idempotency, kept, kept_bytes, .. } = state;
    runs.retain(|_, e| {
        let keep = e.result.borrow().as_ref().is_none_or(|f| f.ended > cutoff);
        if !keep && let Some(k) = kept.get_mut(&e.owner) {
            k.bytes -= e.charge;
            *kept_bytes -= e.charge;
        }
        keep
    });
    kept.retain(|_, k| {
        k.texts.retain(|id| runs.contains_key(id));
        k.runs.retain(|id| runs.contains_key(id));
        !k.runs.is_empty()
    });
    idempotency.retain(|_, r| r.at > cutoff || runs.contains_key(&r.run_id));
}
