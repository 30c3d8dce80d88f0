//! Runs any door can find again by id: for `agent.wait`, `chat.abort`,
//! idempotent retries and (later) stored responses. Entries belong to the
//! principal that started them; another principal cannot see or stop them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Stopped by an abort request, or because the connection that started it closed.
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

/// A digest of the parameters that define a request (e.g. SHA-256 of them).
pub type ParamsDigest = [u8; 32];

struct Entry {
    owner: String,
    session_key: String,
    abort: Option<oneshot::Sender<()>>,
    result: RunResult,
}

/// Where an idempotency key counts: one caller, one agent, one session. The
/// same key elsewhere is another key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyScope {
    owner: String,
    agent: String,
    session: String,
    key: String,
}

impl IdempotencyScope {
    /// `key` as sent by `owner` for a run of `agent` in `session`.
    pub fn new(owner: &Principal, agent: &str, session: &str, key: &str) -> Self {
        Self {
            owner: owner.name().to_string(),
            agent: agent.to_string(),
            session: session.to_string(),
            key: key.to_string(),
        }
    }
}

/// What the board remembers of an idempotency key.
struct Remembered {
    at: Instant,
    run_id: String,
    params: ParamsDigest,
}

#[derive(Default)]
struct State {
    runs: HashMap<String, Entry>,
    idempotency: HashMap<IdempotencyScope, Remembered>,
}

/// Every tracked run of the gateway, across connections and doors.
#[derive(Default)]
pub struct RunBoard {
    /// One lock for runs and keys: a claim holds it from the lookup until its
    /// run is tracked, so two requests with one key cannot both start a run.
    state: Mutex<State>,
}

/// What the code driving a tracked run holds.
pub struct Tracking {
    /// Fires when someone asks the run to stop. A dropped sender is not a request.
    pub abort: oneshot::Receiver<()>,
    result: watch::Sender<Option<Arc<Finished>>>,
}

impl Tracking {
    /// Resolves when someone asks the run to stop; never if the board
    /// merely forgets the run (a dropped sender is not a request).
    pub async fn abort_requested(&mut self) {
        if (&mut self.abort).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Publish the ending to waiters and retries.
    pub fn finish(self, reply: Reply, end: RunEnd) -> Arc<Finished> {
        let finished = Arc::new(Finished { reply, end, ended: Instant::now() });
        let _ = self.result.send(Some(finished.clone()));
        finished
    }
}

/// The board's answer to a request that carries an idempotency key.
pub enum Claim<'a> {
    /// The key is new in its scope: start the run, then [`Reservation::track`] it.
    New(Reservation<'a>),
    /// The same request came before: its run, running or finished.
    Replay { run_id: String, result: RunResult },
    /// The key was used in this scope for a request with other parameters.
    Conflict,
}

/// A claimed idempotency key. Holds the board until the run is tracked, or
/// until it is dropped because the run could not start (the key stays free).
pub struct Reservation<'a> {
    state: MutexGuard<'a, State>,
    scope: IdempotencyScope,
    params: ParamsDigest,
}

impl Reservation<'_> {
    /// Track the run started for this key.
    pub fn track(mut self, owner: &Principal, run_id: &str, session_key: &str) -> Tracking {
        let tracking = insert_run(&mut self.state, owner, run_id, session_key);
        let remembered = Remembered { at: Instant::now(), run_id: run_id.to_string(), params: self.params };
        self.state.idempotency.insert(self.scope, remembered);
        tracking
    }
}

fn insert_run(state: &mut State, owner: &Principal, run_id: &str, session_key: &str) -> Tracking {
    let (abort_tx, abort) = oneshot::channel();
    let (result, result_rx) = watch::channel(None);
    let entry = Entry {
        owner: owner.name().to_string(),
        session_key: session_key.to_string(),
        abort: Some(abort_tx),
        result: result_rx,
    };
    state.runs.insert(run_id.to_string(), entry);
    Tracking { abort, result }
}

impl RunBoard {
    /// Track a run that `owner` started without an idempotency key.
    pub fn track(&self, owner: &Principal, run_id: &str, session_key: &str) -> Tracking {
        let mut state = self.lock();
        prune(&mut state, Instant::now());
        insert_run(&mut state, owner, run_id, session_key)
    }

    /// Look an idempotency key up in its scope. Keep the returned
    /// reservation only while starting the run: it holds the board.
    pub fn claim(&self, scope: IdempotencyScope, params: ParamsDigest) -> Claim<'_> {
        let mut state = self.lock();
        prune(&mut state, Instant::now());
        if let Some(known) = state.idempotency.get(&scope)
            && let Some(run) = state.runs.get(&known.run_id)
        {
            if known.params != params {
                return Claim::Conflict;
            }
            return Claim::Replay { run_id: known.run_id.clone(), result: run.result.clone() };
        }
        Claim::New(Reservation { state, scope, params })
    }

    /// The result of `owner`'s run `run_id`.
    pub fn result(&self, owner: &Principal, run_id: &str) -> Option<RunResult> {
        self.lock().runs.get(run_id).filter(|e| e.owner == owner.name()).map(|e| e.result.clone())
    }

    /// Ask `owner`'s running runs on a session (or just `run_id`) to stop; returns their ids.
    pub fn abort(&self, owner: &Principal, session_key: &str, run_id: Option<&str>) -> Vec<String> {
        let mut aborted = Vec::new();
        for (id, entry) in self.lock().runs.iter_mut() {
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Forget runs that ended more than [`KEEP_RESULTS`] ago, and their keys.
/// Running runs stay whatever their age: dropping one would drop its abort sender.
fn prune(state: &mut State, now: Instant) {
    let Some(cutoff) = now.checked_sub(KEEP_RESULTS) else { return };
    state.runs.retain(|_, e| e.result.borrow().as_ref().is_none_or(|f| f.ended > cutoff));
    let runs = &state.runs;
    state.idempotency.retain(|_, r| r.at > cutoff || runs.contains_key(&r.run_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(session: &str, key: &str) -> IdempotencyScope {
        IdempotencyScope::new(&Principal::operator(), "main", session, key)
    }

    fn start(board: &RunBoard, run_id: &str, scope: IdempotencyScope, params: ParamsDigest) -> Tracking {
        match board.claim(scope, params) {
            Claim::New(reservation) => reservation.track(&Principal::operator(), run_id, "s"),
            _ => panic!("{run_id}: the key should be new"),
        }
    }

    #[test]
    fn a_run_longer_than_the_result_window_is_neither_forgotten_nor_aborted() {
        let board = RunBoard::default();
        let me = Principal::operator();
        let mut tracking = start(&board, "r1", scope("s", "k"), [1; 32]);
        prune(&mut board.lock(), Instant::now() + KEEP_RESULTS * 2);
        assert!(
            matches!(tracking.abort.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "a long run must not look aborted"
        );
        assert!(board.result(&me, "r1").is_some(), "a long run must stay findable");
        assert!(matches!(board.claim(scope("s", "k"), [1; 32]), Claim::Replay { .. }));
        tracking.finish(Reply::default(), RunEnd::Completed);
        prune(&mut board.lock(), Instant::now() + KEEP_RESULTS * 2);
        assert!(board.result(&me, "r1").is_none(), "finished runs are forgotten after the window");
        assert!(matches!(board.claim(scope("s", "k"), [1; 32]), Claim::New(_)));
    }

    #[test]
    fn aborts_reach_only_the_runs_asked_for() {
        let board = RunBoard::default();
        let me = Principal::operator();
        let mut a = board.track(&me, "a", "s1");
        let mut b = board.track(&me, "b", "s2");
        assert_eq!(board.abort(&me, "s1", None), ["a"]);
        assert!(a.abort.try_recv().is_ok());
        assert!(matches!(b.abort.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        assert!(board.abort(&me, "s1", None).is_empty(), "an abort is sent once");
    }

    #[test]
    fn a_key_is_its_scope_and_remembers_its_parameters() {
        let board = RunBoard::default();
        let _first = start(&board, "r1", scope("s1", "k"), [1; 32]);
        match board.claim(scope("s1", "k"), [1; 32]) {
            Claim::Replay { run_id, .. } => assert_eq!(run_id, "r1"),
            _ => panic!("the same request is a replay"),
        }
        assert!(matches!(board.claim(scope("s1", "k"), [2; 32]), Claim::Conflict), "other params: refused");
        assert!(matches!(board.claim(scope("s2", "k"), [2; 32]), Claim::New(_)), "another session: another key");
        let other_agent = IdempotencyScope::new(&Principal::operator(), "beta", "s1", "k");
        assert!(matches!(board.claim(other_agent, [1; 32]), Claim::New(_)), "another agent: another key");
        // A claim dropped because its run could not start leaves the key free.
        drop(board.claim(scope("s3", "k"), [3; 32]));
        assert!(matches!(board.claim(scope("s3", "k"), [4; 32]), Claim::New(_)));
    }
}
