//! Runs any door can find again by id: for `agent.wait`, `chat.abort`,
//! idempotent retries and (later) stored responses. Entries belong to the
//! principal that started them; another principal cannot see or stop them.
//!
//! A finished run keeps only what those need (its ending and reply text) for
//! [`kept::KEEP_RESULTS`], within byte caps per principal and in all
//! (`gateway.ws.maxResultBytes*`): past them the oldest reply text is dropped
//! first (its ending and idempotency key stay), then the oldest finished run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use tokio::sync::{oneshot, watch};

use crate::auth::Principal;
use crate::chat::Reply;
use crate::metrics::Metrics;
use crate::runtime::RunError;

mod kept;

pub use kept::ResultLimits;
use kept::{Kept, prune};

/// How a tracked run ended.
#[derive(Debug, Clone)]
pub enum RunEnd {
    Completed,
    /// Stopped by an abort request, or because the connection that started it closed.
    Aborted,
    Failed(RunError),
}

/// A finished run's reply text and ending, as every door reports it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub text: String,
    pub end: RunEnd,
    /// When it ended; results are kept for a while after this.
    pub ended: Instant,
    /// The text was dropped to keep the board within its byte caps.
    pub dropped: bool,
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
    /// Bytes charged to the owner once finished (text and [`kept::ENTRY_COST`]).
    charge: usize,
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
    kept: HashMap<String, Kept>,
    kept_bytes: usize,
    limits: ResultLimits,
    metrics: Arc<Metrics>,
}

/// Every tracked run of the gateway, across connections and doors.
#[derive(Default)]
pub struct RunBoard {
    /// One lock for runs and keys: a claim holds it from the lookup until its
    /// run is tracked, so two requests with one key cannot both start a run.
    state: Arc<Mutex<State>>,
}

/// What the code driving a tracked run holds.
pub struct Tracking {
    /// Fires when someone asks the run to stop. A dropped sender is not a request.
    pub abort: oneshot::Receiver<()>,
    result: watch::Sender<Option<Arc<Finished>>>,
    board: Weak<Mutex<State>>,
    run_id: String,
}

impl Tracking {
    /// Resolves when someone asks the run to stop; never if the board
    /// merely forgets the run (a dropped sender is not a request).
    pub async fn abort_requested(&mut self) {
        if (&mut self.abort).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Publish the ending to waiters and retries; the board keeps the reply
    /// text within its caps.
    pub fn finish(self, reply: Reply, end: RunEnd) -> Arc<Finished> {
        let finished = Arc::new(Finished { text: reply.text, end, ended: Instant::now(), dropped: false });
        let _ = self.result.send(Some(finished.clone()));
        if let Some(state) = self.board.upgrade() {
            lock(&state).keep(&self.run_id, finished.text.len());
        }
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
    board: Weak<Mutex<State>>,
    scope: IdempotencyScope,
    params: ParamsDigest,
}

impl Reservation<'_> {
    /// Track the run started for this key.
    pub fn track(mut self, owner: &Principal, run_id: &str, session_key: &str) -> Tracking {
        let tracking = insert_run(&mut self.state, self.board.clone(), owner, run_id, session_key);
        let remembered = Remembered { at: Instant::now(), run_id: run_id.to_string(), params: self.params };
        self.state.idempotency.insert(self.scope, remembered);
        tracking
    }
}

fn insert_run(
    state: &mut State,
    board: Weak<Mutex<State>>,
    owner: &Principal,
    run_id: &str,
    session_key: &str,
) -> Tracking {
    let (abort_tx, abort) = oneshot::channel();
    let (result, result_rx) = watch::channel(None);
    let entry = Entry {
        owner: owner.name().to_string(),
        session_key: session_key.to_string(),
        abort: Some(abort_tx),
        result: result_rx,
        charge: 0,
    };
    state.runs.insert(run_id.to_string(), entry);
    Tracking { abort, result, board, run_id: run_id.to_string() }
}

impl RunBoard {
    /// A board within `limits`, counting what it drops in `metrics`.
    pub fn new(limits: ResultLimits, metrics: Arc<Metrics>) -> Self {
        Self { state: Arc::new(Mutex::new(State { limits, metrics, ..State::default() })) }
    }

    /// Track a run that `owner` started without an idempotency key.
    pub fn track(&self, owner: &Principal, run_id: &str, session_key: &str) -> Tracking {
        let mut state = self.lock();
        prune(&mut state, Instant::now());
        insert_run(&mut state, Arc::downgrade(&self.state), owner, run_id, session_key)
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
        Claim::New(Reservation { state, board: Arc::downgrade(&self.state), scope, params })
    }

    /// The run an idempotency key names in its scope, while the board remembers it.
    pub fn run_of(&self, scope: &IdempotencyScope) -> Option<String> {
        self.lock().idempotency.get(scope).map(|known| known.run_id.clone())
    }

    /// The run `owner` knows as `name`: a run id, or the idempotency key it
    /// started a run with (the latest such run, while the board remembers it).
    pub fn run_named(&self, owner: &Principal, name: &str) -> Option<String> {
        let state = self.lock();
        if state.runs.get(name).is_some_and(|e| e.owner == owner.name()) {
            return Some(name.to_string());
        }
        let keyed = state.idempotency.iter().filter(|(scope, _)| scope.owner == owner.name() && scope.key == name);
        keyed.max_by_key(|(_, known)| known.at).map(|(_, known)| known.run_id.clone())
    }

    /// The result of `owner`'s run `run_id`.
    pub fn result(&self, owner: &Principal, run_id: &str) -> Option<RunResult> {
        self.lock().runs.get(run_id).filter(|e| e.owner == owner.name()).map(|e| e.result.clone())
    }

    /// Ask `owner`'s running runs on a session (or just `run_id`) to stop;
    /// returns each one's id and the idempotency key it was started with.
    pub fn abort(&self, owner: &Principal, session_key: &str, run_id: Option<&str>) -> Vec<(String, Option<String>)> {
        let mut state = self.lock();
        let mut aborted = Vec::new();
        for (id, entry) in state.runs.iter_mut() {
            if entry.owner == owner.name()
                && entry.session_key == session_key
                && run_id.is_none_or(|r| r == id)
                && let Some(abort) = entry.abort.take()
                && abort.send(()).is_ok()
            {
                aborted.push(id.clone());
            }
        }
        let key_of = |id: &str| {
            let mut keys = state.idempotency.iter();
            keys.find(|(scope, known)| known.run_id == id && scope.owner == owner.name()).map(|(s, _)| s.key.clone())
        };
        aborted
            .into_iter()
            .map(|id| {
                let key = key_of(&id);
                (id, key)
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::kept::{ENTRY_COST, KEEP_RESULTS};
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

    fn reply(bytes: usize) -> Reply {
        Reply { text: "x".repeat(bytes), ..Reply::default() }
    }

    fn text_of(board: &RunBoard, owner: &Principal, run_id: &str) -> Option<(usize, bool)> {
        let result = board.result(owner, run_id)?;
        let finished = result.borrow().clone()?;
        Some((finished.text.len(), finished.dropped))
    }

    #[test]
    fn finished_replies_stay_within_the_caps_oldest_text_first() {
        let limits = ResultLimits { total: 10_000, per_principal: 4_000 };
        let board = RunBoard::new(limits, Arc::default());
        let (me, other) = (Principal::operator(), Principal::token("other", vec![], None, None));
        for i in 0..5 {
            board.track(&me, &format!("m{i}"), "s").finish(reply(1_000), RunEnd::Completed);
        }
        // Each costs 1000 + 256 bytes: of 4000, the oldest texts went, their endings stay.
        for dropped in ["m0", "m1", "m2"] {
            assert_eq!(text_of(&board, &me, dropped), Some((0, true)), "{dropped}");
        }
        for kept in ["m3", "m4"] {
            assert_eq!(text_of(&board, &me, kept), Some((1_000, false)), "{kept}");
        }
        // Another principal has its own cap; the total takes from the largest first.
        for i in 0..3 {
            board.track(&other, &format!("o{i}"), "s").finish(reply(1_000), RunEnd::Completed);
        }
        assert_eq!(text_of(&board, &other, "o0"), Some((1_000, false)), "within both caps");
        let state = board.lock();
        assert!(state.kept_bytes <= limits.total && state.kept.values().all(|k| k.bytes <= limits.per_principal));
        drop(state);
        // Only endings left and still over: the oldest runs are forgotten, keys too.
        let tiny = RunBoard::new(ResultLimits { total: 600, per_principal: 600 }, Arc::default());
        let tracking = match tiny.claim(scope("s", "k"), [1; 32]) {
            Claim::New(reservation) => reservation.track(&me, "t0", "s"),
            _ => panic!("new key"),
        };
        tracking.finish(reply(10), RunEnd::Completed);
        for i in 1..4 {
            tiny.track(&me, &format!("t{i}"), "s").finish(Reply::default(), RunEnd::Completed);
        }
        assert!(tiny.result(&me, "t0").is_none() && tiny.result(&me, "t1").is_none());
        assert!(tiny.result(&me, "t3").is_some());
        assert!(matches!(tiny.claim(scope("s", "k"), [1; 32]), Claim::New(_)), "the forgotten run's key is free");
    }

    #[test]
    fn pruning_gives_the_bytes_back() {
        let board = RunBoard::new(ResultLimits { total: 1 << 20, per_principal: 1 << 20 }, Arc::default());
        let me = Principal::operator();
        board.track(&me, "r", "s").finish(reply(5_000), RunEnd::Completed);
        let running = board.track(&me, "still", "s");
        assert_eq!(board.lock().kept_bytes, 5_000 + ENTRY_COST);
        prune(&mut board.lock(), Instant::now() + KEEP_RESULTS * 2);
        let state = board.lock();
        assert_eq!((state.kept_bytes, state.kept.len()), (0, 0));
        drop(state);
        running.finish(reply(1), RunEnd::Completed);
        assert_eq!(board.lock().kept_bytes, 1 + ENTRY_COST);
    }

    #[test]
    fn aborts_reach_only_the_runs_asked_for() {
        let board = RunBoard::default();
        let me = Principal::operator();
        let mut a = board.track(&me, "a", "s1");
        let mut b = board.track(&me, "b", "s2");
        assert_eq!(board.abort(&me, "s1", None), [("a".to_string(), None)]);
        assert!(a.abort.try_recv().is_ok());
        assert!(matches!(b.abort.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        assert!(board.abort(&me, "s1", None).is_empty(), "an abort is sent once");
    }

    #[test]
    fn a_keyed_run_is_found_and_reported_by_its_key() {
        let board = RunBoard::default();
        let _run = start(&board, "r1", scope("s", "k"), [1; 32]);
        assert_eq!(board.run_of(&scope("s", "k")).as_deref(), Some("r1"));
        assert_eq!(board.run_of(&scope("other", "k")), None, "a key counts in its scope only");
        let me = Principal::operator();
        assert_eq!(board.run_named(&me, "k").as_deref(), Some("r1"), "by its key, in any session");
        assert_eq!(board.run_named(&me, "r1").as_deref(), Some("r1"), "and by its id");
        assert_eq!(
            board.run_named(&Principal::token("other", vec![], None, None), "k"),
            None,
            "not by another principal"
        );
        let aborted = board.abort(&Principal::operator(), "s", Some("r1"));
        assert_eq!(aborted, [("r1".to_string(), Some("k".to_string()))]);
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
