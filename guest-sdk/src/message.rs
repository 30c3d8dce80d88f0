//! Constructors and typed accessors for the contract's records: messages,
//! the run request's `params`, completion requests and usage.

use serde::de::DeserializeOwned;

use crate::llm::CompletionRequest;
use crate::{AgentError, Message, Role, RunRequest, Usage};

impl Message {
    /// A message with `role` and text `content`, no name and no tool calls.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), name: None, tool_call_id: None, tool_calls: vec![] }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A `tool` message: the result of the tool call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(call_id.into()), ..Self::new(Role::Tool, content) }
    }
}

impl RunRequest {
    /// The request's `params` (temperature, max_tokens, …) as a type of yours;
    /// a mismatch is the client's mistake (`InvalidRequest`, HTTP 400).
    ///
    /// ```no_run
    /// # use wasmclaw_sdk::{AgentError, RunRequest};
    /// #[derive(serde::Deserialize)]
    /// struct Params {
    ///     #[serde(default)]
    ///     temperature: Option<f64>,
    /// }
    /// # fn run(req: RunRequest) -> Result<(), AgentError> {
    /// let params: Params = req.params_as()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn params_as<T: DeserializeOwned>(&self) -> Result<T, AgentError> {
        let text = if self.params.trim().is_empty() { "{}" } else { self.params.as_str() };
        serde_json::from_str(text).map_err(|e| AgentError::InvalidRequest(format!("params: {e}")))
    }

    /// One parameter by name, if present and of type `T`.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let params: serde_json::Value = serde_json::from_str(&self.params).ok()?;
        serde_json::from_value(params.get(name)?.clone()).ok()
    }
}

impl CompletionRequest {
    /// A request for `messages` with no tools, no parameters and the configured model.
    pub fn new(messages: Vec<Message>) -> Self {
        Self { messages, tools: vec![], params: "{}".into(), model: None }
    }
}

impl Usage {
    /// Prompt and completion tokens together.
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(other.completion_tokens);
    }
}

impl std::ops::Add for Usage {
    type Output = Self;

    fn add(mut self, other: Self) -> Self {
        self += other;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(params: &str) -> RunRequest {
        RunRequest {
            run_id: "r".into(),
            agent_id: "a".into(),
            session_key: "s".into(),
            messages: vec![Message::user("hi")],
            tools: vec![],
            user: None,
            params: params.into(),
        }
    }

    #[test]
    fn params_are_typed_and_a_mismatch_is_the_clients_fault() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct P {
            temperature: Option<f64>,
        }
        assert_eq!(request(r#"{"temperature":0.5}"#).params_as::<P>().unwrap(), P { temperature: Some(0.5) });
        assert_eq!(request("").params_as::<P>().unwrap(), P { temperature: None });
        let err = request(r#"{"temperature":"hot"}"#).params_as::<P>().unwrap_err();
        assert!(matches!(err, AgentError::InvalidRequest(m) if m.starts_with("params: ")));
        assert_eq!(request(r#"{"seed":7}"#).param::<u64>("seed"), Some(7));
        assert_eq!(request(r#"{"seed":7}"#).param::<u64>("top_p"), None);
    }

    #[test]
    fn constructors_set_role_and_call_id() {
        assert_eq!(Message::system("s").role, Role::System);
        assert_eq!(Message::assistant("a").role, Role::Assistant);
        let tool = Message::tool("call-1", "42");
        assert_eq!(
            (tool.role, tool.tool_call_id.as_deref(), tool.content.as_str()),
            (Role::Tool, Some("call-1"), "42")
        );
        let sum = Usage { prompt_tokens: 1, completion_tokens: 2 } + Usage { prompt_tokens: 3, completion_tokens: 4 };
        assert_eq!((sum.prompt_tokens, sum.completion_tokens, sum.total()), (4, 6, 10));
    }
}
