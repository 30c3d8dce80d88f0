//! Constructors and typed accessors for the contract's records: messages,
//! the run request's `params` and usage.

use serde::de::DeserializeOwned;

use crate::{AgentError, ContentPart, Image, Message, Role, RunRequest, Usage};

impl Message {
    /// A message with `role` and text `content` (one text part, none when
    /// empty), no name and no tool calls.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        let content: String = content.into();
        let parts = if content.is_empty() { vec![] } else { vec![ContentPart::Text(content)] };
        Self::with_parts(role, parts)
    }

    /// A message with `role` and these content parts, in order.
    ///
    /// ```
    /// # use wasmclaw_sdk::{ContentPart, Message, Role};
    /// let question = Message::with_parts(
    ///     Role::User,
    ///     vec![ContentPart::text("What is in this picture?"), ContentPart::image("https://example.com/cat.png")],
    /// );
    /// assert_eq!(question.text(), "What is in this picture?");
    /// ```
    pub fn with_parts(role: Role, content: Vec<ContentPart>) -> Self {
        Self { role, content, name: None, tool_call_id: None, tool_calls: vec![] }
    }

    /// The text parts joined with "\n": what the message says, without its
    /// images, audio or files.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }

    /// The image parts, in order.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.content.iter().filter_map(|p| match p {
            ContentPart::Image(image) => Some(image),
            _ => None,
        })
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

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// An image part from an `https:` or `data:` URL, with no detail level.
    pub fn image(url: impl Into<String>) -> Self {
        Self::Image(Image { url: url.into(), detail: None })
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
    fn text_joins_text_parts_and_skips_the_rest() {
        let message = Message::with_parts(
            Role::User,
            vec![ContentPart::text("a"), ContentPart::image("https://x.test/i.png"), ContentPart::text("b")],
        );
        assert_eq!(message.text(), "a\nb");
        assert_eq!(message.images().map(|i| i.url.as_str()).collect::<Vec<_>>(), ["https://x.test/i.png"]);
        let request = RunRequest { messages: vec![Message::assistant("no"), message], ..request("{}") };
        assert_eq!(request.last_user_text().as_deref(), Some("a\nb"));
    }

    #[test]
    fn constructors_set_role_and_call_id() {
        assert_eq!(Message::system("s").role, Role::System);
        assert_eq!(Message::assistant("a").role, Role::Assistant);
        let tool = Message::tool("call-1", "42");
        assert_eq!((tool.role, tool.tool_call_id.as_deref(), tool.text()), (Role::Tool, Some("call-1"), "42".into()));
        assert!(Message::assistant("").content.is_empty());
        let sum = Usage { prompt_tokens: 1, completion_tokens: 2 } + Usage { prompt_tokens: 3, completion_tokens: 4 };
        assert_eq!((sum.prompt_tokens, sum.completion_tokens, sum.total()), (4, 6, 10));
    }
}
