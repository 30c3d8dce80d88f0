//! A run in flight as its door holds it: its events, how it ended, and
//! cancellation when the door lets go.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chat::{Event, Reply};
use crate::runtime::{AgentVersion, RunError};
use crate::sessions::SessionKey;

/// A run in flight. Dropping it cancels the run.
pub struct RunHandle {
    pub run_id: String,
    pub session: SessionKey,
    /// The version this run is pinned to, whatever is swapped in meanwhile.
    pub agent: Arc<AgentVersion>,
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) task: Option<JoinHandle<Result<(), RunError>>>,
    pub(super) started: std::time::Instant,
    /// Taken when the first event is recorded.
    pub(super) meter: Option<Arc<crate::metrics::AgentMeter>>,
}

impl RunHandle {
    /// The next event, or `None` once the agent has returned.
    pub async fn next(&mut self) -> Option<Event> {
        let event = self.events.recv().await;
        self.seen(event.is_some());
        event
    }

    /// An event the run has already sent, without waiting: a door drains
    /// these into one frame. `None` when there is none yet (or no more).
    pub fn try_next(&mut self) -> Option<Event> {
        let event = self.events.try_recv().ok();
        self.seen(event.is_some());
        event
    }

    fn seen(&mut self, event: bool) {
        if event && let Some(meter) = self.meter.take() {
            meter.first_event(self.started.elapsed());
        }
    }

    /// How the run ended. Call after [`next`](Self::next) returned `None`.
    pub async fn finish(mut self) -> Result<(), RunError> {
        let task = self.task.take().expect("finish called once");
        match task.await {
            Ok(result) => result,
            Err(e) => Err(RunError::Internal(format!("run task failed: {e}"))),
        }
    }

    /// Drain the run into a complete reply.
    pub async fn collect(mut self) -> Result<Reply, RunError> {
        let mut reply = Reply::default();
        while let Some(event) = self.next().await {
            reply.push(&event);
        }
        self.finish().await.map(|()| reply)
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        // Abort rather than wait for the guest's next emit: it may be blocked
        // in a host call; dropping its Store frees the instance either way.
        if let Some(task) = self.task.take().filter(|t| !t.is_finished()) {
            task.abort();
            tracing::info!(run_id = self.run_id, agent = %self.agent.id, "run cancelled: its consumer went away");
        }
    }
}
