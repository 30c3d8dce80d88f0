//! Write wasmclaw agents in Rust.
//!
//! An agent is a type that implements [`Agent`], exported with
//! [`export_agent!`]. Build the crate as a `cdylib` for `wasm32-wasip2` and the
//! resulting `.wasm` file is a component the gateway loads.
//!
//! ```no_run
//! use wasmclaw_sdk::{export_agent, Agent, AgentError, AgentInfo, Output, RunRequest};
//!
//! #[derive(Default)]
//! struct Shout;
//!
//! impl Agent for Shout {
//!     fn info() -> AgentInfo {
//!         AgentInfo::new("shout", env!("CARGO_PKG_VERSION"), "Repeats the last message, louder")
//!     }
//!
//!     fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
//!         let text = req.last_user_text().unwrap_or_default().to_uppercase();
//!         out.text(text)?;
//!         Ok(())
//!     }
//! }
//!
//! export_agent!(Shout);
//! ```
//!
//! `wasmclaw new agent NAME` writes such a crate with this SDK (and the WIT
//! it is built from) beside it as a path dependency, a unit test on
//! `testing::TestHost` (feature `testing`) and a gateway config;
//! `cargo build --target wasm32-wasip2 --release` yields
//! `target/wasm32-wasip2/release/<crate>.wasm`.

#[doc(hidden)]
// Generated code: its shape follows the WIT, not our lint preferences.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.2",
        world: "agent",
        pub_export_macro: true,
        export_macro_name: "__export_agent_bindings",
        default_bindings_module: "wasmclaw_sdk::bindings",
        // So agents' unit tests can compare messages and events.
        additional_derives: [PartialEq, Eq],
    });
}

mod conversation;
#[cfg(not(target_arch = "wasm32"))]
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
mod fake_web;
mod host;
mod llm_text;
pub mod log;
pub mod mcp;
pub mod memo;
mod message;
#[cfg(not(target_arch = "wasm32"))]
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
mod native;
mod state;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;
pub mod tools;

pub use bindings::wasmclaw::agent::types::{
    AgentError, AgentInfo, Audio, ContentPart, EmitError, Event, File, FinishReason, Image, Message, Role, RunRequest,
    ToolCall, ToolCallDelta, ToolSpec, Usage,
};

/// An agent: one value is created per run, so `&self` state lives for one turn.
pub trait Agent: Default {
    /// Name, version and description shown to operators.
    fn info() -> AgentInfo;

    /// Handle one turn, streaming the reply through `out`.
    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError>;
}

/// The stream a run writes its reply to.
///
/// Every method fails with [`EmitError`] once the client is gone or the run's
/// output budget is spent; returning that error with `?` ends the run quietly.
#[derive(Debug, Default)]
pub struct Output {
    _private: (),
}

impl Output {
    #[doc(hidden)]
    pub fn new() -> Self {
        Self { _private: () }
    }

    /// Send any event.
    pub fn emit(&self, event: &Event) -> Result<(), EmitError> {
        host::emit(event)
    }

    /// Send a piece of reply text. A `String` is handed over as it is (no
    /// copy, e.g. a piece streamed from the model); a `&str` is copied once.
    pub fn text(&self, text: impl Into<String>) -> Result<(), EmitError> {
        self.emit(&Event::Text(text.into()))
    }

    /// Send a piece of reasoning (not part of the reply text); like [`Output::text`].
    pub fn reasoning(&self, text: impl Into<String>) -> Result<(), EmitError> {
        self.emit(&Event::Reasoning(text.into()))
    }

    /// Send a whole tool call as one piece.
    pub fn tool_call(&self, index: u32, id: &str, name: &str, arguments: &str) -> Result<(), EmitError> {
        self.emit(&Event::ToolCall(ToolCallDelta {
            index,
            id: Some(id.to_string()),
            name: Some(name.to_string()),
            arguments: arguments.to_string(),
        }))
    }

    /// Report token usage for the run.
    pub fn usage(&self, prompt_tokens: u32, completion_tokens: u32) -> Result<(), EmitError> {
        self.emit(&Event::Usage(Usage { prompt_tokens, completion_tokens }))
    }

    /// Report the tokens every model call of this run used, summed ([`llm::usage`]).
    pub fn llm_usage(&self) -> Result<(), EmitError> {
        self.emit(&Event::Usage(llm::usage()))
    }

    /// Say why the reply ended (default: `stop`, or `tool-calls` after tool calls).
    pub fn finish(&self, reason: FinishReason) -> Result<(), EmitError> {
        self.emit(&Event::Finish(reason))
    }
}

pub mod http;

/// Per-agent settings the operator configured under `agents.entries.<id>.config`.
pub mod config {
    /// The value of `key`, if the operator set it.
    pub fn get(key: &str) -> Option<String> {
        crate::host::config_get(key)
    }
}

/// The conversation this run belongs to.
///
/// Requests without a `user` or session key get a fresh session each time:
/// then `history()` is empty and state does not outlive the run.
pub mod session {
    pub use crate::conversation::merge as merge_history;
    pub use crate::state::{StateError, get_json, set, set_json};
    use crate::{Message, Role};

    /// The transcript before this turn, oldest first.
    pub fn history() -> Vec<Message> {
        crate::host::history()
    }

    /// What to send the model this turn: the session's history merged with
    /// the client's `messages` ([`merge_history`]), the way the shipped assistant does.
    pub fn conversation(messages: Vec<Message>) -> Vec<Message> {
        merge_history(history(), messages)
    }

    /// How many user turns the session has had before this one.
    pub fn user_turns() -> usize {
        history().iter().filter(|m| m.role == Role::User).count()
    }

    /// A value this agent stored in this session.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        crate::host::state_get(key)
    }

    /// Remove a value.
    pub fn delete(key: &str) {
        crate::host::state_delete(key)
    }
}

/// Model completions through the provider the operator configured for this
/// agent. The host holds the provider's address and key; the agent only sees events.
///
/// ```no_run
/// # use wasmclaw_sdk::{llm, session, AgentError, Output, RunRequest};
/// # fn run(req: RunRequest, out: &Output) -> Result<(), AgentError> {
/// let request = llm::CompletionRequest::new(session::conversation(req.messages))
///     .with_tools(req.tools)
///     .with_param("temperature", 0.3);
/// for event in llm::stream(&request)? {
///     out.emit(&event?)?;
/// }
/// # Ok(())
/// # }
/// ```
pub mod llm {
    pub use crate::bindings::wasmclaw::agent::llm::{CompletionRequest, LlmError};
    pub use crate::llm_text::{TextCompletion, ToolCallAssembly, complete_text, usage};

    /// Start a streaming completion. Iterate the result for its events.
    pub fn stream(request: &CompletionRequest) -> Result<Completion, LlmError> {
        crate::host::complete(request).map(|inner| Completion { inner, done: false, reported: None })
    }

    /// A completion in progress; dropping it closes the upstream request.
    #[derive(Debug)]
    pub struct Completion {
        inner: crate::host::Completion,
        done: bool,
        /// The last usage this completion reported (counted in [`usage`]).
        reported: Option<crate::Usage>,
    }

    impl Iterator for Completion {
        type Item = Result<crate::Event, LlmError>;

        fn next(&mut self) -> Option<Self::Item> {
            if self.done {
                return None;
            }
            match crate::host::next(&self.inner) {
                Ok(Some(event)) => {
                    if let crate::Event::Usage(now) = event {
                        crate::llm_text::count_usage(self.reported.replace(now), now);
                    }
                    Some(Ok(event))
                }
                Ok(None) => {
                    self.done = true;
                    None
                }
                Err(e) => {
                    self.done = true;
                    Some(Err(e))
                }
            }
        }
    }

    impl From<LlmError> for crate::AgentError {
        /// Returning an llm error with `?` is enough: the host reports the
        /// provider's failure to the client with the right status.
        fn from(e: LlmError) -> Self {
            let message = match e {
                LlmError::RateLimited(Some(s)) => format!("model provider rate limited; retry after {s}s"),
                LlmError::RateLimited(None) => "model provider rate limited".to_string(),
                LlmError::BadRequest(m) => return crate::AgentError::InvalidRequest(m),
                LlmError::Unauthorized(m) | LlmError::Unavailable(m) | LlmError::Timeout(m) => m,
            };
            crate::AgentError::Unavailable(message)
        }
    }
}

impl AgentInfo {
    /// Build an [`AgentInfo`] from borrowed strings.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self { name: name.into(), version: version.into(), description: description.into() }
    }
}

impl RunRequest {
    /// The last `user` message, if there is one (its parts: text, images, …).
    pub fn last_user_message(&self) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.role == Role::User)
    }

    /// The text of the last `user` message (text parts joined with "\n"), if there is one.
    pub fn last_user_text(&self) -> Option<String> {
        self.last_user_message().map(Message::text)
    }
}

impl From<EmitError> for AgentError {
    fn from(e: EmitError) -> Self {
        // The client is gone or the budget is spent: nobody reads this message,
        // but it keeps `?` usable inside `Agent::run`.
        AgentError::Failed(format!("output closed: {e:?}"))
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::__export_agent_bindings as export;
    pub use crate::bindings::Guest;

    /// Entry point the export macro wires to the component's `run` export.
    pub fn run<A: crate::Agent>(req: crate::RunRequest) -> Result<(), crate::AgentError> {
        #[cfg(target_arch = "wasm32")]
        crate::log::report_panics();
        crate::llm_text::reset_usage();
        A::default().run(req, &crate::Output::new())
    }

    /// Entry point the export macro wires to the component's `info` export.
    pub fn info<A: crate::Agent>() -> crate::AgentInfo {
        #[cfg(target_arch = "wasm32")]
        crate::log::report_panics();
        A::info()
    }
}

/// Export a type implementing [`Agent`] as the component's agent. Only a
/// wasm build exports anything: natively (`cargo test`) the agent is run by
/// `testing::TestHost` (feature `testing`) instead.
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmclawAgentExport;
            impl $crate::__private::Guest for __WasmclawAgentExport {
                fn info() -> $crate::AgentInfo {
                    $crate::__private::info::<$agent>()
                }
                fn run(req: $crate::RunRequest) -> ::core::result::Result<(), $crate::AgentError> {
                    $crate::__private::run::<$agent>(req)
                }
            }
    $crate::__private::export!(__WasmclawAgentExport with_types_in $crate::bindings);
        };
        // Natively the agent is only run by tests: keep it from counting as unused.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::AgentInfo = <$agent as $crate::Agent>::info;
    };
}
