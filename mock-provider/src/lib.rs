//! A scriptable OpenAI-compatible provider on loopback: `POST /v1/chat/completions`
//! with the streaming and non-streaming shapes real providers use.
//!
//! Tests queue [`Reply`]s (text, tool calls, HTTP errors, broken streams,
//! silence) and read back what the gateway sent with [`MockProvider::requests`];
//! [`MockProvider::closed_early`] counts replies the client hung up on.
//!
//! [`Reply::call_tools`] plays a model that uses the tools it is offered
//! (`mock-provider --tool-calls`), and [`script_from_json`] reads a list of
//! replies from JSON (`mock-provider --script FILE`).

mod pieces;
mod script;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{Value, json};

use pieces::{Pieces, ToolPieces, split_words};
pub use script::{sample_arguments, script_from_json};

/// What the mock answers one request with.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: ReplyKind,
    /// Wait before the first token (after the status line went out).
    pub first_token_delay: Duration,
    /// Wait before each later token.
    pub token_delay: Duration,
    /// `finish_reason` of a text reply.
    pub finish: &'static str,
    /// When set, the first token waits (after `first_token_delay`) until the
    /// test sets it: a reply timed by an event, not by a guess at the machine's speed.
    pub gate: Option<Arc<AtomicBool>>,
    /// What the reply says it used (`usage`, when the client asks for it).
    pub usage: UsageReport,
    /// The `model` the reply names; the request's when `None`.
    pub model: Option<String>,
}

/// The `usage` a reply reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageReport {
    /// Prompt words and reply pieces counted; `cached` of the prompt tokens
    /// reported as cached, `reasoning` added to the completion as reasoning.
    Counted { cached: u32, reasoning: u32 },
    /// Exactly these prompt and completion tokens.
    Exact { prompt: u32, completion: u32 },
    /// No usage at all, as a provider without `stream_options` support.
    Missing,
}

/// The shapes of reply.
#[derive(Debug, Clone)]
pub enum ReplyKind {
    /// `You said: <last user message>`, word by word.
    Echo,
    /// These tokens.
    Text(Vec<String>),
    /// Tool calls `(id, name, arguments)`, in order, each one's arguments in two pieces.
    ToolCalls(Vec<(String, String, String)>),
    /// An error status with an OpenAI error body.
    Status { code: u16, retry_after: Option<u32>, message: String },
    /// These tokens, then the connection is cut without `[DONE]`.
    BreakAfter(Vec<String>),
    /// Accept the request and never answer.
    Hang,
    /// A model that uses its tools: call the first tool offered (arguments
    /// from its schema) unless the last message is a tool result, then answer
    /// `tool said: <result>`; echo when no tool is offered.
    CallTools,
}

impl Reply {
    fn of(kind: ReplyKind) -> Self {
        Self {
            kind,
            first_token_delay: Duration::ZERO,
            token_delay: Duration::ZERO,
            finish: "stop",
            gate: None,
            usage: UsageReport::Counted { cached: 0, reasoning: 0 },
            model: None,
        }
    }

    /// Echo the last user message.
    pub fn echo() -> Self {
        Self::of(ReplyKind::Echo)
    }

    /// Exactly these tokens.
    pub fn text(tokens: &[&str]) -> Self {
        Self::of(ReplyKind::Text(tokens.iter().map(|t| t.to_string()).collect()))
    }

    /// `n` short tokens (`tok0 tok1 …`), for benchmarks.
    pub fn tokens(n: usize) -> Self {
        Self::of(ReplyKind::Text((0..n).map(|i| format!("tok{i} ")).collect()))
    }

    /// A call of `name` with JSON `arguments`.
    pub fn tool_call(id: &str, name: &str, arguments: &str) -> Self {
        Self::tool_calls(&[(id, name, arguments)])
    }

    /// Several tool calls in one reply, as a model calling tools in parallel does.
    pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Self {
        let calls = calls.iter().map(|(id, name, args)| (id.to_string(), name.to_string(), args.to_string()));
        Self::of(ReplyKind::ToolCalls(calls.collect()))
    }

    /// An HTTP error.
    pub fn status(code: u16, retry_after: Option<u32>, message: &str) -> Self {
        Self::of(ReplyKind::Status { code, retry_after, message: message.into() })
    }

    /// Some tokens, then a cut connection.
    pub fn break_after(tokens: &[&str]) -> Self {
        Self::of(ReplyKind::BreakAfter(tokens.iter().map(|t| t.to_string()).collect()))
    }

    /// Call the first tool offered, then say what it returned ([`ReplyKind::CallTools`]).
    pub fn call_tools() -> Self {
        Self::of(ReplyKind::CallTools)
    }

    /// No answer at all.
    pub fn hang() -> Self {
        Self::of(ReplyKind::Hang)
    }

    /// Wait before every token.
    pub fn with_token_delay(mut self, delay: Duration) -> Self {
        self.token_delay = delay;
        self
    }

    /// Wait before the first token.
    pub fn with_first_token_delay(mut self, delay: Duration) -> Self {
        self.first_token_delay = delay;
        self
    }

    /// Hold the first token until `gate` is set.
    pub fn with_gate(mut self, gate: Arc<AtomicBool>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Report `cached` of the prompt tokens as cached and `reasoning`
    /// completion tokens spent reasoning (added to the completion).
    pub fn with_details(mut self, cached: u32, reasoning: u32) -> Self {
        self.usage = UsageReport::Counted { cached, reasoning };
        self
    }

    /// Name `model` as the model that answered (as a provider names a snapshot).
    pub fn with_model(mut self, model: &str) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Report exactly these token counts.
    pub fn with_usage(mut self, prompt: u32, completion: u32) -> Self {
        self.usage = UsageReport::Exact { prompt, completion };
        self
    }

    /// Report no usage, even when asked.
    pub fn without_usage(mut self) -> Self {
        self.usage = UsageReport::Missing;
        self
    }

    /// End with this `finish_reason` (e.g. `length`).
    pub fn with_finish(mut self, finish: &'static str) -> Self {
        self.finish = finish;
        self
    }
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub body: Value,
    pub authorization: Option<String>,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    closed_early: AtomicUsize,
    completed: AtomicUsize,
}

/// A running mock; stops when dropped.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockProvider {
    /// Start on a free loopback port, on a thread of its own (usable from sync and async code).
    pub fn start() -> Self {
        Self::start_on(0, 1)
    }

    /// Start on `port` with `threads` worker threads.
    pub fn start_on(port: u16, threads: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()
                .expect("mock runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("mock bind");
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/v1/chat/completions", axum::routing::post(completions))
                    .with_state(state);
                // Streams of small chunks: no Nagle delay, like a real provider's edge.
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let addr = ready_rx.recv().expect("mock provider failed to start");
        Self { addr, shared, stop: Some(stop) }
    }

    /// Base URL to configure as a provider's `baseUrl` (ends in `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Answer the next request with `reply` (queued replies go first, in order).
    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// Answer unscripted requests with `reply` (initially: echo).
    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = Some(reply);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Streams the client hung up on before they were finished.
    pub fn closed_early(&self) -> usize {
        self.shared.closed_early.load(Ordering::SeqCst)
    }

    /// Streams sent to the end.
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn completions(State(shared): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    shared.requests.lock().unwrap().push(Recorded { body: body.clone(), authorization, headers });
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| shared.default.lock().unwrap().clone())
        .unwrap_or_else(Reply::echo);
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("mock");
    let model = reply.model.clone().unwrap_or_else(|| asked.to_string());
    let prompt_tokens = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.split_whitespace().count() as u32)
        .sum::<u32>();
    let kind = match &reply.kind {
        ReplyKind::CallTools => script::use_tools(&body),
        other => other.clone(),
    };
    let pieces = match &kind {
        ReplyKind::Status { code, retry_after, message } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response =
                (status, Json(json!({"error": {"message": message, "type": "mock_error", "code": null}})))
                    .into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", (*seconds).into());
            }
            return response;
        }
        ReplyKind::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        ReplyKind::Echo => {
            let last = body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .unwrap_or("")
                .to_string();
            let text = format!("You said: {last}");
            Pieces::Text(split_words(&text), true)
        }
        ReplyKind::Text(tokens) => Pieces::Text(tokens.clone(), true),
        ReplyKind::BreakAfter(tokens) => Pieces::Text(tokens.clone(), false),
        ReplyKind::CallTools => unreachable!("resolved above"),
        ReplyKind::ToolCalls(calls) => Pieces::Tools(
            calls
                .iter()
                .map(|(id, name, arguments)| {
                    let half = arguments.len() / 2;
                    let split = (0..=half).rev().find(|i| arguments.is_char_boundary(*i)).unwrap_or(0);
                    let (a, b) = arguments.split_at(split);
                    ToolPieces { id: id.clone(), name: name.clone(), parts: vec![a.to_string(), b.to_string()] }
                })
                .collect(),
        ),
    };
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let chunks = pieces.chunks(&model, &reply, prompt_tokens, include_usage);
    if !streaming {
        return Json(pieces.whole(&model, &reply, prompt_tokens)).into_response();
    }
    Sse::new(paced(chunks, reply, pieces.completes(), shared)).into_response()
}

/// Counts the stream as closed early if it is dropped before its end.
struct Guard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Guard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let counter = if self.finished { &self.shared.completed } else { &self.shared.closed_early };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// The chunks at the reply's pace; a reply that does not complete ends in an error, which cuts the connection.
fn paced(
    chunks: Vec<String>,
    reply: Reply,
    completes: bool,
    shared: Arc<Shared>,
) -> impl Stream<Item = Result<Event, std::io::Error>> {
    let guard = Guard { shared, finished: false };
    futures::stream::unfold((chunks.into_iter().enumerate(), guard, false), move |(mut it, mut guard, ended)| {
        let reply = reply.clone();
        async move {
            if ended {
                return None;
            }
            match it.next() {
                Some((i, data)) => {
                    // The role chunk goes out at once; the first token after `first_token_delay`.
                    let delay = match i {
                        0 => Duration::ZERO,
                        1 => reply.first_token_delay + reply.token_delay,
                        _ => reply.token_delay,
                    };
                    if !delay.is_zero() && !data.starts_with("[DONE]") {
                        tokio::time::sleep(delay).await;
                    }
                    if let (1, Some(gate)) = (i, &reply.gate) {
                        while !gate.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Some((Ok(Event::default().data(data)), (it, guard, false)))
                }
                None if completes => {
                    guard.finish();
                    None
                }
                None => {
                    // Let the last token leave the buffers before the cut.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((Err(std::io::Error::other("mock: connection cut")), (it, guard, true)))
                }
            }
        }
    })
}
