//! What an LLM agent sends the model: the session's history merged with the
//! client's messages, and completion requests built without JSON by hand.

use serde_json::{Map, Value};

use crate::llm::CompletionRequest;
use crate::{Message, Role, ToolSpec};

/// The conversation of a turn, as the shipped assistant builds it: the
/// client's system messages, then the session's `history`, then the client's
/// messages after its last assistant message. Clients that resend the whole
/// conversation are not duplicated, and clients that send only the new
/// message still get the context. With no history, the client's messages as they are.
pub fn merge(history: Vec<Message>, client: Vec<Message>) -> Vec<Message> {
    if history.is_empty() {
        return client;
    }
    let new_from = client.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    let mut messages = Vec::with_capacity(history.len() + client.len());
    messages.extend(client.iter().filter(|m| m.role == Role::System).cloned());
    messages.extend(history);
    messages.extend(client.into_iter().skip(new_from).filter(|m| m.role != Role::System));
    messages
}

impl CompletionRequest {
    /// A request for `messages` with no tools, no parameters and the configured model.
    pub fn new(messages: Vec<Message>) -> Self {
        Self { messages, tools: vec![], params: "{}".into(), model: None }
    }

    /// Offer these tools to the model.
    pub fn with_tools(mut self, tools: impl IntoIterator<Item = ToolSpec>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// Ask for `model` instead of the agent's configured one.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Set one parameter (`temperature`, `max_tokens`, `tool_choice`, …), keeping the others.
    ///
    /// ```
    /// # use wasmclaw_sdk::{llm::CompletionRequest, Message};
    /// let request = CompletionRequest::new(vec![Message::user("hi")]).with_param("temperature", 0.2).with_param("max_tokens", 50);
    /// assert_eq!(request.params_map()["max_tokens"], 50);
    /// ```
    pub fn with_param(mut self, name: &str, value: impl Into<Value>) -> Self {
        let mut params = self.params_map();
        params.insert(name.to_string(), value.into());
        self.params = Value::Object(params).to_string();
        self
    }

    /// Replace every parameter with `params`.
    pub fn with_params(mut self, params: Map<String, Value>) -> Self {
        self.params = Value::Object(params).to_string();
        self
    }

    /// The parameters as a map (empty when they are not a JSON object).
    pub fn params_map(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.params) {
            Ok(Value::Object(params)) => params,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles_and_texts(messages: &[Message]) -> Vec<(Role, String)> {
        messages.iter().map(|m| (m.role, m.text())).collect()
    }

    #[test]
    fn a_resent_conversation_is_not_duplicated_and_system_messages_lead() {
        let history = vec![Message::user("q1"), Message::assistant("a1")];
        let resent =
            vec![Message::system("be brief"), Message::user("q1"), Message::assistant("a1"), Message::user("q2")];
        let merged = merge(history.clone(), resent);
        let expected = [(Role::System, "be brief"), (Role::User, "q1"), (Role::Assistant, "a1"), (Role::User, "q2")];
        assert_eq!(roles_and_texts(&merged), expected.map(|(r, t)| (r, t.to_string())));
        // Only the new message: the history gives the context.
        let merged = merge(history, vec![Message::user("q2")]);
        assert_eq!(merged.len(), 3);
        // No history: the client's messages as sent, system messages in place.
        let client = vec![Message::user("x"), Message::system("s")];
        assert_eq!(merge(vec![], client.clone()), client);
    }

    #[test]
    fn params_are_a_map_that_keeps_what_was_set() {
        let request = CompletionRequest::new(vec![])
            .with_param("temperature", 0.5)
            .with_param("stop", serde_json::json!(["\n"]))
            .with_param("temperature", 0.7)
            .with_model("small");
        let params = request.params_map();
        assert_eq!((params["temperature"].as_f64(), params["stop"][0].as_str()), (Some(0.7), Some("\n")));
        assert_eq!(request.model.as_deref(), Some("small"));
        let replaced = request.with_params(Map::from_iter([("seed".to_string(), 7.into())]));
        assert_eq!(replaced.params, r#"{"seed":7}"#);
        let raw = CompletionRequest { params: "not json".into(), ..CompletionRequest::new(vec![]) };
        assert!(raw.params_map().is_empty());
    }
}
