//! Runs any door can find again by id: for `agent.wait`, `chat.abort`,
//! idempotent retries and (later) stored responses. Entries belong to the
//! principal that started them; another principal cannot see or stop them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::auth::Principal;
use crate::chat::Reply;
use crate::runtime::RunError;

/// How long a finished run's result answers retries and waits.
const KEEP_RESULTS: Duration = Duration::from_secs(600);

/// How a tracked run ended.
#[derive(Debug, Clone)]
pub enum RunEnd {
    Completed,
    /// Stopped by an abort request.
    Aborted,
    Failed(RunError),
}

/// A finished run's reply and ending, as every door reports it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub reply: Reply,
    pub end: RunEnd,
    /// When it ended; results are kept for a while after this.
    pub ended: Instant,
}

/// The result of a tracked run: `None` while it runs.
pub type RunResult = watch::Receiver<Option<Arc<Finished>>>;

struct Entry {
    owner: String,
    session_key: String,
    abort: Option<oneshot::Sender<()>>,
    result: RunResult,
}

/// Every tracked run of the gateway, across connections and doors.
#[derive(Default)]
pub struct RunBoard {
    runs: Mutex<HashMap<String, Entry>>,
    /// (owner, idempotency key) → (when, run id).
    idempotency: Mutex<HashMap<(String, String), (Instant, String)>>,
}

/// What the code driving a tracked run holds.
pub struct Tracking {
    /// Fires when someone asks the run to stop. A dropped sender is not a request.
    pub abort: oneshot::Receiver<()>,
    result: watch::Sender<Option<Arc<Finished>>>,
}

impl Tracking {
    /// Publish the ending to waiters and retries.
    pub fn finish(self, reply: Reply, end: RunEnd) -> Arc<Finished> {
        let finished = Arc::new(Finished { reply, end, ended: Instant::now() });
        let _ = self.result.send(Some(finished.clone()));
        finished
    }
}

impl RunBoard {
    /// Track a run that `owner` just started.
    pub fn track(&self, owner: &Principal, run_id: &str, session_key: &str, idempotency_key: Option<&str>) -> Tracking {
        self.prune(Instant::now());
        let (abort_tx, abort) = oneshot::channel();
        let (result, result_rx) = watch::channel(None);
        let now = Instant::now();
        let entry = Entry {
            owner: owner.name().to_string(),
            session_key: session_key.to_string(),
            abort: Some(abort_tx),
            result: result_rx,
        };
        lock(&self.runs).insert(run_id.to_string(), entry);
        if let Some(key) = idempotency_key {
            lock(&self.idempotency).insert((owner.name().to_string(), key.to_string()), (now, run_id.to_string()));
        }
        Tracking { abort, result }
    }

    /// The run `owner` started earlier with this idempotency key, if it is still known.
    pub fn by_idempotency_key(&self, owner: &Principal, key: &str) -> Option<(String, RunResult)> {
        self.prune(Instant::now());
        let run_id = lock(&self.idempotency).get(&(owner.name().to_string(), key.to_string()))?.1.clone();
        self.result(owner, &run_id).map(|result| (run_id, result))
    }

    /// The result of `owner`'s run `run_id`.
    pub fn result(&self, owner: &Principal, run_id: &str) -> Option<RunResult> {
        lock(&self.runs).get(run_id).filter(|e| e.owner == owner.name()).map(|e| e.result.clone())
    }

    /// Ask `owner`'s running runs on a session (or just `run_id`) to stop; returns their ids.
    pub fn abort(&self, owner: &Principal, session_key: &str, run_id: Option<&str>) -> Vec<String> {
        let mut aborted = Vec::new();
        for (id, entry) in lock(&self.runs).iter_mut() {
            if entry.owner == owner.name()
                && entry.session_key == session_key
                && run_id.is_none_or(|r| r == id)
                && let Some(abort) = entry.abort.take()
                && abort.send(()).is_ok()
            {
                aborted.push(id.clone());
            }
        }
        aborted
    }

    /// Forget runs that ended more than [`KEEP_RESULTS`] ago. Running runs
    /// stay whatever their age: dropping one would drop its abort sender.
    fn prune(&self, now: Instant) {
        let Some(cutoff) = now.checked_sub(KEEP_RESULTS) else { return };
        let mut runs = lock(&self.runs);
        runs.retain(|_, e| e.result.borrow().as_ref().is_none_or(|f| f.ended > cutoff));
        lock(&self.idempotency).retain(|_, (at, run_id)| *at > cutoff || runs.contains_key(run_id));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_longer_than_the_result_window_is_neither_forgotten_nor_aborted() {
        let board = RunBoard::default();
        let me = Principal::operator();
        let mut tracking = board.track(&me, "r1", "s", Some("k"));
        board.prune(Instant::now() + KEEP_RESULTS * 2);
        assert!(
            matches!(tracking.abort.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "a long run must not look aborted"
        );
        assert!(board.result(&me, "r1").is_some(), "a long run must stay findable");
        assert!(board.by_idempotency_key(&me, "k").is_some());
        tracking.finish(Reply::default(), RunEnd::Completed);
        board.prune(Instant::now() + KEEP_RESULTS * 2);
        assert!(board.result(&me, "r1").is_none(), "finished runs are forgotten after the window");
        assert!(board.by_idempotency_key(&me, "k").is_none());
    }

    #[test]
    fn aborts_reach_only_the_runs_asked_for() {
        let board = RunBoard::default();
        let me = Principal::operator();
        let mut a = board.track(&me, "a", "s1", None);
        let mut b = board.track(&me, "b", "s2", None);
        assert_eq!(board.abort(&me, "s1", None), ["a"]);
        assert!(a.abort.try_recv().is_ok());
        assert!(matches!(b.abort.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        assert!(board.abort(&me, "s1", None).is_empty(), "an abort is sent once");
    }
}
