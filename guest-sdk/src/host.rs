//! Every call into the gateway goes through here: the component's imports
//! when built for wasm, the fake gateway of [`crate::testing`] when an agent's
//! unit tests run natively. The public modules (`config`, `session`, `llm`,
//! `log`, [`crate::Output`]) never call the generated bindings directly, so
//! `cargo test` on an agent crate never reaches an import that cannot run.

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings::wasmclaw::agent::{config, http, llm, log, memo, output, session, tool_activity};
    use crate::http::{HttpError, Response};
    use crate::{EmitError, Event, Message, ToolCall};

    /// A model completion in progress: the host's resource.
    pub type Completion = llm::Completion;

    /// `output.emit`.
    pub fn emit(event: &Event) -> Result<(), EmitError> {
        output::emit(event)
    }

    /// `config.get`.
    pub fn config_get(key: &str) -> Option<String> {
        config::get(key)
    }

    /// `session.history`.
    pub fn history() -> Vec<Message> {
        session::history()
    }

    /// `session.get`.
    pub fn state_get(key: &str) -> Option<Vec<u8>> {
        session::get(key)
    }

    /// `session.set`.
    pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
        session::set(key, value)
    }

    /// `session.delete`.
    pub fn state_delete(key: &str) {
        session::delete(key)
    }

    /// `llm.complete`.
    pub fn complete(request: &llm::CompletionRequest) -> Result<Completion, llm::LlmError> {
        llm::complete(request)
    }

    /// `completion.next`.
    pub fn next(completion: &Completion) -> Result<Option<Event>, llm::LlmError> {
        completion.next()
    }

    /// `log.write`.
    pub fn log(level: crate::log::Level, message: &str) {
        log::write(level, message)
    }

    /// `log.panicked`.
    pub fn panicked(message: &str) {
        log::panicked(message)
    }

    /// `tool-activity.called`.
    pub fn tool_called(call: &ToolCall) {
        tool_activity::called(call)
    }

    /// `tool-activity.returned`.
    pub fn tool_returned(call_id: &str, output: &str, is_error: bool) {
        tool_activity::returned(call_id, output, is_error)
    }

    /// `memo.get`.
    pub fn memo_get(key: &str) -> Option<Vec<u8>> {
        memo::get(key)
    }

    /// `memo.set`.
    pub fn memo_set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), String> {
        memo::set(key, value, ttl_ms)
    }

    /// `memo.remove`.
    pub fn memo_remove(key: &str) {
        memo::remove(key)
    }

    /// `http.fetch`.
    pub fn http_send(
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let headers = headers.into_iter().map(|(name, value)| (name, value.into_bytes())).collect();
        match http::fetch(&http::Request { method, url, headers, body }) {
            Ok(r) => {
                let headers = r
                    .headers
                    .into_iter()
                    .map(|(name, value)| {
                        let value = String::from_utf8(value)
                            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                        (name, value)
                    })
                    .collect();
                Ok(Response { status: r.status, headers, body: r.body })
            }
            Err(e) => Err(match e {
                http::HttpError::Denied => HttpError::Denied(
                    "no rule of the agent's http.allow list holds this origin and path (the log says which)".into(),
                ),
                http::HttpError::InternalAddress => {
                    HttpError::Denied("the name resolves to an internal address".into())
                }
                http::HttpError::Timeout => HttpError::Timeout,
                http::HttpError::TooLarge => HttpError::TooLarge,
                http::HttpError::Failed(message) => HttpError::Failed(message),
            }),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use crate::native::{
    Completion, complete, config_get, emit, history, http_send, log, memo_get, memo_remove, memo_set, next,
    state_delete, state_get, state_set, tool_called, tool_returned,
};
#[cfg(target_arch = "wasm32")]
pub use imp::*;
