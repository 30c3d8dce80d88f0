//! Unit tests without a gateway: run an agent natively against a fake host
//! (feature `testing`). Config values, session history and state, the
//! model's answers, HTTP answers ([`TestHost::http_response`]) and MCP
//! servers ([`TestHost::mcp_server`], [`FakeMcpServer`]) are scripted; what
//! the agent emitted, logged, stored, asked the model and sent out
//! ([`TestRun::http_requests`], with the credentials the gateway would add
//! shown as added) is recorded, and so are the tools it ran itself
//! ([`crate::tools`]: `TestRun::tool_reports`, `server_tool_calls`, `transcript`).
//! The [`crate::memo`] lives across the runs of one host, as it lives across
//! the runs of one agent version in the gateway ([`TestHost::memo`],
//! [`TestHost::clear_memo`]).
//!
//! ```
//! use wasmclaw_sdk::testing::TestHost;
//! use wasmclaw_sdk::{config, Agent, AgentError, AgentInfo, Output, RunRequest};
//!
//! #[derive(Default)]
//! struct Shout;
//!
//! impl Agent for Shout {
//!     fn info() -> AgentInfo {
//!         AgentInfo::new("shout", "0.1.0", "Repeats the last message, louder")
//!     }
//!     fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
//!         let suffix = config::get("suffix").unwrap_or_else(|| "!".into());
//!         out.text(req.last_user_text().unwrap_or_default().to_uppercase())?;
//!         out.text(&suffix)?;
//!         Ok(())
//!     }
//! }
//!
//! let mut host = TestHost::new().config("suffix", "!!!");
//! let run = host.run::<Shout>("hello");
//! assert_eq!(run.text(), "HELLO!!!");
//! ```
//!
//! A host keeps its session like the gateway does for a client with a
//! session: after a run that succeeded, the turn and the reply join the
//! history and the state writes are kept; after a failed run, nothing is.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fake_web::FakeWeb;
pub use crate::fake_web::{FakeMcpServer, HttpExchange};
use crate::http::{HttpError, Response};
use crate::llm::{CompletionRequest, LlmError, TextCompletion};
use crate::log::Level;
use crate::native::{FakeRun, Scripted};
use crate::tools::ToolReport;
use crate::{Agent, AgentError, ContentPart, Event, FinishReason, Message, Output, Role, RunRequest, ToolCall, Usage};

/// A fake gateway for one agent's session.
#[derive(Debug, Clone)]
pub struct TestHost {
    config: BTreeMap<String, String>,
    history: Vec<Message>,
    state: BTreeMap<String, Vec<u8>>,
    completions: VecDeque<Scripted>,
    emit_limit: Option<usize>,
    web: FakeWeb,
    /// What the gateway keeps across runs of the agent version (`memo`).
    memo: BTreeMap<String, (Vec<u8>, Instant)>,
    runs: u32,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// An empty session, no config, no scripted model answers.
    pub fn new() -> Self {
        Self {
            config: BTreeMap::new(),
            history: vec![],
            state: BTreeMap::new(),
            completions: VecDeque::new(),
            emit_limit: None,
            web: FakeWeb::default(),
            memo: BTreeMap::new(),
            runs: 0,
        }
    }

    /// A config value, as `agents.entries.<id>.config` would set it.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Earlier messages of the session.
    pub fn history(mut self, messages: impl IntoIterator<Item = Message>) -> Self {
        self.history.extend(messages);
        self
    }

    /// A state value stored earlier in the session.
    pub fn state(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.state.insert(key.into(), value.into());
        self
    }

    /// A state value stored earlier, as JSON (what `session::set_json` writes).
    pub fn state_json(self, key: &str, value: &impl Serialize) -> Self {
        let bytes = serde_json::to_vec(value).expect("a state value that serializes");
        self.state(key, bytes)
    }

    /// The model's next answer: `text`, streamed a word at a time.
    pub fn llm_reply(self, text: &str) -> Self {
        self.llm_events(text.split_inclusive(' ').map(|w| Event::Text(w.into())))
    }

    /// The model's next answer: `text`, then a usage report.
    pub fn llm_reply_with_usage(self, text: &str, prompt_tokens: u32, completion_tokens: u32) -> Self {
        let words = text.split_inclusive(' ').map(|w| Event::Text(w.into()));
        self.llm_events(words.chain([Event::Usage(Usage { prompt_tokens, completion_tokens })]))
    }

    /// The model's next answer, event by event (tool calls, reasoning, usage, finish).
    pub fn llm_events(mut self, events: impl IntoIterator<Item = Event>) -> Self {
        self.completions.push_back(Scripted::Stream(events.into_iter().collect(), None));
        self
    }

    /// The next model call fails at once with `error` (rate limited, timeout, …).
    pub fn llm_error(mut self, error: LlmError) -> Self {
        self.completions.push_back(Scripted::Refuse(error));
        self
    }

    /// The next model call streams `events`, then breaks off with `error`.
    pub fn llm_broken_stream(mut self, events: impl IntoIterator<Item = Event>, error: LlmError) -> Self {
        self.completions.push_back(Scripted::Stream(events.into_iter().collect(), Some(error)));
        self
    }

    /// Answer `method url` (exactly that URL, query included) with `status`
    /// and `body`. Answers scripted for one URL go out in order; the last repeats.
    /// Any request nothing was set up for is denied, as outside `http.allow`.
    pub fn http_response(self, method: &str, url: &str, status: u16, body: impl Into<Vec<u8>>) -> Self {
        self.http_answer(method, url, Response { status, headers: vec![], body: body.into() })
    }

    /// Answer `method url` with `response` (headers included).
    pub fn http_answer(mut self, method: &str, url: &str, response: Response) -> Self {
        self.web.route(method, url, Ok(response));
        self
    }

    /// `method url` fails with `error` (a timeout, a response too large, …).
    pub fn http_error(mut self, method: &str, url: &str, error: HttpError) -> Self {
        self.web.route(method, url, Err(error));
        self
    }

    /// The gateway adds `header: value` to every request under `url_match`
    /// (as `http.credentials` with `match`); the agent never reads the value
    /// back (answers have it `[REDACTED]`). The recorded request shows it, named in `injected`.
    pub fn http_credential(mut self, url_match: &str, header: &str, value: &str) -> Self {
        self.web.credential(url_match, header, value);
        self
    }

    /// An MCP server at `url` (Streamable HTTP, JSON answers) whose tools
    /// are Rust closures: `wasmclaw_sdk::mcp::McpClient::connect(url)` works against it.
    pub fn mcp_server(mut self, url: &str, server: FakeMcpServer) -> Self {
        self.web.server(url, server);
        self
    }

    /// The client goes away after `events` events: later emits fail with `Closed`.
    /// (Tool reports do not count: the gateway drops them once the client is gone.)
    pub fn close_output_after(mut self, events: usize) -> Self {
        self.emit_limit = Some(events);
        self
    }

    /// Empty the memo, as a new version of the agent (or an expiry of
    /// everything) would. Runs of one host otherwise share it, like runs of
    /// one agent version in the gateway.
    pub fn clear_memo(&mut self) {
        self.memo.clear();
    }

    /// A memo entry as the host keeps it now (expired ones included).
    pub fn memo(&self, key: &str) -> Option<&[u8]> {
        self.memo.get(key).map(|(v, _)| v.as_slice())
    }

    /// The session's messages so far, oldest first.
    pub fn session(&self) -> &[Message] {
        &self.history
    }

    /// A state value as the session holds it now.
    pub fn stored(&self, key: &str) -> Option<&[u8]> {
        self.state.get(key).map(Vec::as_slice)
    }

    /// The request a client sending one user message would produce.
    pub fn request(&self, message: &str) -> RunRequest {
        RunRequest {
            run_id: format!("test-run-{}", self.runs + 1),
            agent_id: "test".into(),
            session_key: "agent:test:unit".into(),
            messages: vec![Message::user(message)],
            tools: vec![],
            user: None,
            params: "{}".into(),
        }
    }

    /// Run agent `A` on one user message.
    pub fn run<A: Agent>(&mut self, message: &str) -> TestRun {
        let request = self.request(message);
        self.run_request::<A>(request)
    }

    /// Run agent `A` on one user message made of `parts` (text, images, audio, files).
    pub fn run_parts<A: Agent>(&mut self, parts: Vec<ContentPart>) -> TestRun {
        let request = RunRequest { messages: vec![Message::with_parts(Role::User, parts)], ..self.request("") };
        self.run_request::<A>(request)
    }

    /// Run agent `A` on `request` (tools, params, several messages …). A
    /// panic in the agent fails the test, as it fails the run in the gateway.
    pub fn run_request<A: Agent>(&mut self, request: RunRequest) -> TestRun {
        self.runs += 1;
        let turn = new_turn(&request.messages);
        crate::native::install(FakeRun {
            config: self.config.clone(),
            history: self.history.clone(),
            state: self.state.clone(),
            completions: std::mem::take(&mut self.completions),
            emit_limit: self.emit_limit,
            web: std::mem::take(&mut self.web),
            memo: std::mem::take(&mut self.memo),
            ..FakeRun::default()
        });
        crate::llm_text::reset_usage();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| A::default().run(request, &Output::new())));
        let fake = crate::native::take().expect("the fake run is still installed");
        self.completions = fake.completions;
        self.web = fake.web;
        // Kept whether the run succeeded or not: a cache, not session state.
        self.memo = fake.memo;
        let result = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let run = TestRun {
            result,
            events: fake.events,
            logs: fake.logs,
            llm_requests: fake.requests,
            state: fake.state,
            tool_reports: fake.tool_reports,
            http_requests: fake.http,
        };
        if run.result.is_ok() {
            self.history.extend(turn);
            self.history.extend(run.transcript());
            self.state.clone_from(&run.state);
        }
        run
    }
}

/// The messages a client adds in a turn: those after its last assistant
/// message, minus system prompts, with their text only (the gateway's rule
/// for the transcript: images, audio and files are not kept).
fn new_turn(messages: &[Message]) -> Vec<Message> {
    let start = messages.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    messages[start..]
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| Message { content: Message::new(m.role, m.text()).content, ..m.clone() })
        .collect()
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// What `run` returned.
    pub result: Result<(), AgentError>,
    /// Every event the agent emitted, in order.
    pub events: Vec<Event>,
    /// Every line the agent logged, with its level.
    pub logs: Vec<(Level, String)>,
    /// Every completion the agent asked the model for.
    pub llm_requests: Vec<CompletionRequest>,
    /// The session state at the end of the run (kept only if it succeeded).
    pub state: BTreeMap<String, Vec<u8>>,
    /// Tools the agent ran itself (`tools::called`/`returned`), each with how
    /// many events it had emitted before the report.
    pub tool_reports: Vec<(usize, ToolReport)>,
    /// Every outbound HTTP request (MCP's included), in order.
    pub http_requests: Vec<HttpExchange>,
}

impl TestRun {
    /// The reply folded from the events, as a client would see it.
    pub fn reply(&self) -> TextCompletion {
        let mut reply = TextCompletion::default();
        for event in &self.events {
            reply.push(event);
        }
        reply
    }

    /// The calls of tools the agent ran itself, in order.
    pub fn server_tool_calls(&self) -> Vec<ToolCall> {
        let calls = self.tool_reports.iter().filter_map(|(_, r)| match r {
            ToolReport::Called(call) => Some(call.clone()),
            ToolReport::Returned { .. } => None,
        });
        calls.collect()
    }

    /// The reply as the gateway stores it in the transcript: for each round
    /// of tools the agent ran itself (calls with no text between them), an
    /// assistant message with the text before and the calls, and a `tool`
    /// message per result; then the rest of the text with the client's tool calls.
    pub fn transcript(&self) -> Vec<Message> {
        let mut messages = Vec::new();
        let mut text = String::new();
        // Whether the last message is an assistant round no text has followed yet.
        let mut round_open = false;
        let mut reports = self.tool_reports.iter().peekable();
        for at in 0..=self.events.len() {
            while let Some((_, report)) = reports.next_if(|(before, _)| *before == at) {
                match report {
                    ToolReport::Called(call) => {
                        if round_open && text.is_empty() {
                            let round = messages.iter_mut().rev().find(|m: &&mut Message| m.role == Role::Assistant);
                            round.expect("an open round").tool_calls.push(call.clone());
                        } else {
                            let content = std::mem::take(&mut text);
                            messages.push(Message { tool_calls: vec![call.clone()], ..Message::assistant(content) });
                            round_open = true;
                        }
                    }
                    ToolReport::Returned { call_id, output, .. } => {
                        messages.push(Message::tool(call_id.clone(), output.clone()));
                    }
                }
            }
            if let Some(Event::Text(t)) = self.events.get(at) {
                text.push_str(t);
                round_open &= t.is_empty();
            }
        }
        let reply = self.reply();
        messages.push(Message { tool_calls: reply.tool_calls, ..Message::assistant(text) });
        messages
    }

    /// The MCP tools the agent called: each server URL, tool name and arguments, in order.
    pub fn mcp_calls(&self) -> Vec<(String, String, serde_json::Value)> {
        let calls = self.http_requests.iter().filter_map(|exchange| {
            let request = exchange.json().filter(|r| r["method"] == "tools/call")?;
            let name = request.pointer("/params/name")?.as_str()?.to_string();
            Some((exchange.url.clone(), name, request.pointer("/params/arguments").cloned().unwrap_or_default()))
        });
        calls.collect()
    }

    /// The reply text.
    pub fn text(&self) -> String {
        self.reply().text
    }

    /// The tool calls the agent emitted, assembled.
    pub fn tool_calls(&self) -> Vec<ToolCall> {
        self.reply().tool_calls
    }

    /// The last usage the agent reported (what the client gets).
    pub fn usage(&self) -> Option<Usage> {
        self.reply().usage
    }

    /// The finish reason the agent emitted, if it emitted one.
    pub fn finish(&self) -> Option<FinishReason> {
        self.reply().finish
    }

    /// A state value at the end of the run, decoded from JSON.
    pub fn state_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_slice(self.state.get(key)?).ok()
    }

    /// True when a line at `level` containing `needle` was logged.
    pub fn logged(&self, level: Level, needle: &str) -> bool {
        self.logs.iter().any(|(l, m)| *l == level && m.contains(needle))
    }

    /// This run, after checking it succeeded; panics with the agent's error otherwise.
    #[track_caller]
    pub fn ok(self) -> Self {
        if let Err(e) = &self.result {
            panic!("the agent failed: {e:?}");
        }
        self
    }
}
