//! A run in flight as its door holds it: its events, how it ended, and
//! cancellation when the door lets go.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chat::{Event, Reply};
use crate::runtime::{AgentVersion, Delivery, RunError};
use crate::sessions::SessionKey;

/// A run in flight. Dropping it cancels the run.
pub struct RunHandle {
    pub run_id: String,
    pub session: SessionKey,
    /// The version this run is pinned to, whatever is swapped in meanwhile.
    pub agent: Arc<AgentVersion>,
    pub(super) events: mpsc::Receiver<Event>,
    /// Shared with the run's outbox: how this door takes the events.
    pub(super) delivery: Delivery,
    pub(super) task: Option<JoinHandle<Result<(), RunError>>>,
}

impl RunHandle {
    /// The next event, or `None` once the agent has returned.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// An event the run has already sent, without waiting: a door drains
    /// these into one frame. `None` when there is none yet (or no more).
    pub fn try_next(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// This door takes the reply only whole (it streams nothing before the
    /// end): the run need not wake it whenever it waits, only at the
    /// channel's bound and when it returns.
    pub fn whole(&self) {
        self.delivery.whole();
    }

    /// How the run ended. Call after [`next`](Self::next) returned `None`.
    pub async fn finish(mut self) -> Result<(), RunError> {
        let task = self.task.take().expect("finish called once");
        match task.await {
            Ok(result) => result,
            Err(e) => Err(RunError::Internal(format!("run task failed: {e}"))),
        }
    }

    /// Drain the run into a complete reply, delivered [whole](Self::whole).
    pub async fn collect(mut self) -> Result<Reply, RunError> {
        self.whole();
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
