//! Recording a run (`agents.entries.<id>.record`): whether this run is
//! sampled, the recording's header, and keeping it once the run has ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::batches::{Batches, Shape};

use crate::auth::Principal;
use crate::chat::RunRequest;
use crate::config::AgentEntry;
use crate::rollout::Shadow;
use crate::runtime::{AgentVersion, RunError};
use crate::sessions::{RecordingRow, RecordingSummary, SessionStore};
use crate::tape::{Recording, Tape};

/// A run being recorded.
pub(super) struct Taping {
    pub tape: Tape,
    retain_days: u32,
    /// The entry's `record` sampled this run: the recording is stored.
    keep: bool,
    /// A rollout's candidate answers this run's recording too.
    shadow: Option<Shadow>,
}

/// Start recording this run if its entry samples it; `None` (no work at all) otherwise.
pub(super) fn start(
    entry: Option<&AgentEntry>,
    version: &AgentVersion,
    caller: &Principal,
    request: &RunRequest,
    persistent: bool,
    shadow: Option<Shadow>,
) -> Option<Taping> {
    let record = entry.and_then(|e| e.record.as_ref());
    let keep = record.is_some_and(|r| r.sample > 0.0 && rand::random_bool(r.sample.min(1.0)));
    if !keep && shadow.is_none() {
        return None;
    }
    let header = Recording {
        format: crate::tape::FORMAT,
        id: request.run_id.clone(),
        agent: version.id.to_string(),
        digest: version.digest.clone(),
        world: version.world().to_string(),
        owner: caller.name().to_string(),
        started_at_ms: crate::sessions::now_ms(),
        request: request.clone(),
        persistent,
        seed: crate::tape::new_seed(),
        outcome: "ok".into(),
        ..Default::default()
    };
    let (max_bytes, retain_days) = record.map_or((crate::tape::DEFAULT_MAX_BYTES, 1), |r| (r.max_bytes, r.retain_days));
    Some(Taping { tape: Tape::record(header, max_bytes), retain_days, keep, shadow })
}

/// Recordings waiting for the writer at most (`SHAPE.queue`), and their bytes
/// at most: past either, a recording is dropped and logged rather than kept in memory.
const QUEUED_BYTES: usize = 64 << 20;
/// 1024 recordings wait at most, 256 go in one transaction, gathered for up
/// to 250 ms: a recording is listed that much later, and a busy gateway
/// commits a few times a second rather than every 50 ms (the ledger's pace).
const SHAPE: Shape = Shape { queue: 1024, batch: 256, linger: std::time::Duration::from_millis(250) };

/// Hands finished runs' recordings, as their stored rows, to a background
/// writer in batches: one transaction per run cost a third of the assistant
/// path's throughput at `sample: 1.0` (BENCHMARKS.md, "Recording").
#[derive(Clone)]
pub(super) struct RecordingWriter {
    rows: Batches<RecordingRow>,
    /// Bytes of JSON waiting.
    queued: Arc<AtomicUsize>,
}

impl RecordingWriter {
    /// Start the writer on `store`; it ends when every sender is gone.
    pub fn spawn(store: Arc<dyn SessionStore>) -> Self {
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let lost = "run recordings not kept: the session store refused them";
        let rows = Batches::spawn(SHAPE, lost, move |batch: Vec<RecordingRow>| {
            taken.fetch_sub(batch.iter().map(|r| r.body.len()).sum(), Ordering::Relaxed);
            store.put_recordings(batch)
        });
        Self { rows, queued }
    }

    /// Write the recordings queued so far now (graceful shutdown).
    pub async fn flush(&self) {
        self.rows.flush().await
    }

    fn push(&self, row: RecordingRow) {
        let bytes = row.body.len();
        let refused = if self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUED_BYTES {
            Err(row)
        } else {
            self.rows.push(row)
        };
        if let Err(row) = refused {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            let (id, agent) = (&row.summary.id, &row.summary.agent);
            tracing::warn!(run_id = id, %agent, "run recording not kept: too many are waiting to be written");
        }
    }
}

/// The stored row of a finished recording (`None`, logged, if it cannot be written as JSON).
fn row(mut rec: Recording, retain_days: u32) -> Option<RecordingRow> {
    let started_at = rec.started_at_ms as i64;
    // A truncated recording keeps its header only: it says what happened, not how.
    if rec.truncated {
        (rec.llm, rec.http, rec.memo, rec.output, rec.clocks) = Default::default();
        (rec.history, rec.state, rec.state_changes) = Default::default();
    }
    // The tape counted the JSON's length as it grew: one allocation, no regrowth.
    let mut body = Vec::with_capacity(rec.bytes + 64);
    let written = serde_json::to_writer(&mut body, &rec)
        .map_err(|e| e.to_string())
        .and_then(|()| String::from_utf8(body).map_err(|e| e.to_string()));
    let body = match written {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(run_id = rec.id, agent = rec.agent, %error, "run recording not kept");
            return None;
        }
    };
    let summary = RecordingSummary {
        id: rec.id,
        agent: rec.agent,
        digest: rec.digest,
        session_key: rec.request.session_key,
        owner: rec.owner,
        started_at,
        outcome: rec.outcome,
        truncated: rec.truncated,
    };
    let retain_ms = i64::from(retain_days) * 86_400_000;
    Some(RecordingRow { summary, expires_at: started_at.saturating_add(retain_ms), body })
}

impl Taping {
    /// Keep the recording through `writer`: its JSON is made here (a few
    /// microseconds before the run's end is reported), the store write
    /// happens later, in a batch the run never waits for.
    pub fn finish(self, writer: &RecordingWriter, error: Option<&RunError>) {
        let Some(mut rec) = self.tape.take_recording() else { return };
        if let Some(e) = error {
            rec.outcome = "error".into();
            rec.error = Some(e.to_string());
        }
        if let Some(shadow) = self.shadow {
            // Copied only when the recording is kept as well.
            match self.keep {
                true => compare_shadow(shadow, rec.clone()),
                false => return compare_shadow(shadow, rec),
            }
        }
        if !self.keep {
            return;
        }
        if rec.truncated {
            let (id, agent) = (&rec.id, &rec.agent);
            tracing::info!(
                run_id = id, %agent, bytes = rec.bytes,
                "run recording truncated: it reached agents.entries.{agent}.record.maxBytes and cannot be replayed"
            );
        }
        // Written as JSON here, on the run's own task, rather than on the
        // writer's: the recording's many small allocations are then freed by
        // the thread that made them, while they are still in its cache and
        // allocator cache, and the queue holds one string per run. Freed in
        // batches on the writer's thread they cost the whole gateway more
        // than the JSON itself (BENCHMARKS.md, "Recording").
        if let Some(row) = row(rec, self.retain_days) {
            writer.push(row);
        }
    }
}

/// Replay the candidate on the stable run's recording, one at a time, off the
/// response path; only its verdict is kept (in the rollout's shadow counts).
fn compare_shadow(shadow: Shadow, rec: Recording) {
    if rec.truncated {
        return shadow.stats.skipped();
    }
    let Some(permit) = shadow.stats.permit() else { return };
    tokio::spawn(async move {
        let _permit = permit;
        let verdict = super::replay::replay_recording(&shadow.candidate, rec, false).await;
        tracing::debug!(run_id = verdict.run_id, outcome = verdict.outcome, "shadow run of the rollout's candidate");
        shadow.stats.record(verdict);
    });
}
