//! The gateway's side of every import when an agent runs natively: the fake
//! run a [`crate::testing::TestHost`] installs on the calling thread. Outside
//! such a run a call panics (an ordinary, unwinding panic) saying how to
//! unit-test an agent; log lines go to stderr.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::fake_web::{FakeWeb, HttpExchange};
use crate::http::{HttpError, Response};
use crate::llm::{CompletionRequest, LlmError};
use crate::log::Level;
use crate::tools::ToolReport;
use crate::{EmitError, Event, Message, ToolCall};

/// The host's limits on session state, as the gateway enforces them.
const MAX_STATE_KEY_BYTES: usize = 256;
const MAX_STATE_VALUE_BYTES: usize = 64 << 10;
const MAX_STATE_TOTAL_BYTES: usize = 1 << 20;
/// The host's limits on memo entries (the per-version share is not faked).
const MAX_MEMO_KEY_BYTES: usize = 256;
const MAX_MEMO_VALUE_BYTES: usize = 256 << 10;
const MAX_MEMO_TTL: Duration = Duration::from_secs(24 * 3600);

const NO_HOST: &str = "this wasmclaw-sdk call needs the gateway, and this code runs natively outside it. \
     In unit tests, enable the SDK's `testing` feature and run the agent with `wasmclaw_sdk::testing::TestHost`";

/// What the fake gateway holds and records for one run.
#[derive(Default)]
pub(crate) struct FakeRun {
    pub config: BTreeMap<String, String>,
    pub history: Vec<Message>,
    pub state: BTreeMap<String, Vec<u8>>,
    pub completions: VecDeque<Scripted>,
    pub emit_limit: Option<usize>,
    pub events: Vec<Event>,
    pub logs: Vec<(Level, String)>,
    pub requests: Vec<CompletionRequest>,
    /// Tool reports, each with how many events were emitted before it.
    pub tool_reports: Vec<(usize, ToolReport)>,
    /// What answers outbound HTTP.
    pub web: FakeWeb,
    /// Every outbound request, in order.
    pub http: Vec<HttpExchange>,
    /// The memo as the host keeps it across runs: value and expiry.
    pub memo: BTreeMap<String, (Vec<u8>, Instant)>,
}

/// One scripted answer of the model.
#[derive(Debug, Clone)]
pub(crate) enum Scripted {
    /// These events, then the end of the stream or this error.
    Stream(Vec<Event>, Option<LlmError>),
    /// `complete` itself fails.
    Refuse(LlmError),
}

thread_local! {
    static RUN: RefCell<Option<FakeRun>> = const { RefCell::new(None) };
}

/// Make `run` the fake gateway of this thread until [`take`].
pub(crate) fn install(run: FakeRun) {
    RUN.with(|r| *r.borrow_mut() = Some(run));
}

/// End the fake run on this thread and return what it recorded.
pub(crate) fn take() -> Option<FakeRun> {
    RUN.with(|r| r.borrow_mut().take())
}

fn with<T>(f: impl FnOnce(&mut FakeRun) -> T) -> T {
    RUN.with(|r| match r.borrow_mut().as_mut() {
        Some(run) => f(run),
        None => panic!("{NO_HOST}"),
    })
}

/// A scripted completion being read.
#[derive(Debug)]
pub struct Completion {
    items: RefCell<VecDeque<Result<Event, LlmError>>>,
}

/// `output.emit`: record the event, or refuse once the scripted client has gone.
pub fn emit(event: &Event) -> Result<(), EmitError> {
    with(|run| {
        if run.emit_limit.is_some_and(|limit| run.events.len() >= limit) {
            return Err(EmitError::Closed);
        }
        run.events.push(event.clone());
        Ok(())
    })
}

/// `config.get`.
pub fn config_get(key: &str) -> Option<String> {
    with(|run| run.config.get(key).cloned())
}

/// `session.history`.
pub fn history() -> Vec<Message> {
    with(|run| run.history.clone())
}

/// `session.get`.
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    with(|run| run.state.get(key).cloned())
}

/// `session.set`, within the gateway's limits.
pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
    with(|run| {
        if key.len() > MAX_STATE_KEY_BYTES {
            return Err(format!("state key is {} bytes; the limit is {MAX_STATE_KEY_BYTES}", key.len()));
        }
        if value.len() > MAX_STATE_VALUE_BYTES {
            return Err(format!("state value is {} bytes; the limit is {MAX_STATE_VALUE_BYTES}", value.len()));
        }
        let others: usize = run.state.iter().filter(|(k, _)| *k != key).map(|(k, v)| k.len() + v.len()).sum();
        let total = others + key.len() + value.len();
        if total > MAX_STATE_TOTAL_BYTES {
            return Err(format!("session state would be {total} bytes; the limit is {MAX_STATE_TOTAL_BYTES}"));
        }
        run.state.insert(key.to_string(), value.to_vec());
        Ok(())
    })
}

/// `session.delete`.
pub fn state_delete(key: &str) {
    with(|run| run.state.remove(key));
}

/// `llm.complete`: the next scripted answer.
pub fn complete(request: &CompletionRequest) -> Result<Completion, LlmError> {
    with(|run| {
        run.requests.push(request.clone());
        let script = run.completions.pop_front().unwrap_or_else(|| {
            Scripted::Refuse(LlmError::Unavailable(
                "no scripted model answer left: add one with TestHost::llm_reply (or llm_events, llm_error)".into(),
            ))
        });
        match script {
            Scripted::Refuse(e) => Err(e),
            Scripted::Stream(events, end) => {
                let items = events.into_iter().map(Ok).chain(end.map(Err)).collect();
                Ok(Completion { items: RefCell::new(items) })
            }
        }
    })
}

/// `completion.next`.
pub fn next(completion: &Completion) -> Result<Option<Event>, LlmError> {
    completion.items.borrow_mut().pop_front().transpose()
}

/// `log.write`: to stderr, and recorded during a run.
pub fn log(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
    RUN.with(|r| {
        if let Some(run) = r.borrow_mut().as_mut() {
            run.logs.push((level, message.to_string()));
        }
    });
}

/// `tool-activity.called`: recorded in order with the events.
pub fn tool_called(call: &ToolCall) {
    with(|run| run.tool_reports.push((run.events.len(), ToolReport::Called(call.clone()))));
}

/// `tool-activity.returned`: recorded in order with the events.
pub fn tool_returned(call_id: &str, output: &str, is_error: bool) {
    with(|run| {
        let report = ToolReport::Returned { call_id: call_id.into(), output: output.into(), is_error };
        run.tool_reports.push((run.events.len(), report));
    });
}

/// `http.fetch`: the answer the test set up, the exchange recorded.
pub fn http_send(
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Response, HttpError> {
    with(|run| {
        let (answer, exchange) = run.web.send(&method, &url, headers, body);
        run.http.push(exchange);
        answer
    })
}

/// `memo.get`: unless expired.
pub fn memo_get(key: &str) -> Option<Vec<u8>> {
    with(|run| run.memo.get(key).filter(|(_, expires)| *expires > Instant::now()).map(|(v, _)| v.clone()))
}

/// `memo.set`, within the gateway's limits for one entry.
pub fn memo_set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), String> {
    with(|run| {
        if key.len() > MAX_MEMO_KEY_BYTES {
            return Err(format!("memo key is {} bytes; the limit is {MAX_MEMO_KEY_BYTES}", key.len()));
        }
        if value.len() > MAX_MEMO_VALUE_BYTES {
            return Err(format!("memo value is {} bytes; the limit is {MAX_MEMO_VALUE_BYTES}", value.len()));
        }
        run.memo.remove(key);
        if ttl_ms > 0 {
            let expires = Instant::now() + Duration::from_millis(ttl_ms).min(MAX_MEMO_TTL);
            run.memo.insert(key.to_string(), (value.to_vec(), expires));
        }
        Ok(())
    })
}

/// `memo.remove`.
pub fn memo_remove(key: &str) {
    with(|run| run.memo.remove(key));
}
