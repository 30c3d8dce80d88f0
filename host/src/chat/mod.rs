//! The vocabulary of a turn, shared by every module: agent ids, messages,
//! tools, the events an agent streams and the reply they add up to.
//!
//! These are the host's own types. Each contract version's generated bindings
//! (`runtime::wit`) convert to and from them at the runtime's edge, so doors,
//! providers and stores never depend on one WIT version.

mod agent_id;
mod reply;

pub use agent_id::{AgentId, agent_of_model};
pub use reply::{MAX_TOOL_CALLS, Reply, ToolRound, finish_reason, finish_reason_name};

/// Who said a message, as in OpenAI chat messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A complete tool call the assistant made earlier in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments, exactly as the model produced it.
    pub arguments: String,
}

/// One chat message.
///
/// `content` is always the text view: the text parts joined with "\n". A
/// message that also has other parts (images, audio, files) keeps all of its
/// parts, text included and in order, in `parts`; a text-only message has
/// none. Contract versions that only know strings (0.1) see `content`; the
/// provider wire and 0.2 agents see the parts. Build messages with parts
/// through [`Message::with_parts`] so both views agree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Every part in order when some part is not text; empty otherwise.
    pub parts: Vec<ContentPart>,
    pub name: Option<String>,
    /// Set on `tool` messages: which call this is the result of.
    pub tool_call_id: Option<String>,
    /// Set on `assistant` messages that called tools.
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    /// A plain message with no name and no tool calls.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self::with_parts(role, vec![ContentPart::Text(content.into())])
    }

    /// A message from content parts: text parts side by side join with
    /// "\n"; a message that turns out to be text only keeps no parts.
    pub fn with_parts(role: Role, parts: Vec<ContentPart>) -> Self {
        let content = joined_text(&parts);
        let parts = if parts.iter().all(|p| matches!(p, ContentPart::Text(_))) { Vec::new() } else { parts };
        Self { role, content, parts, name: None, tool_call_id: None, tool_calls: Vec::new() }
    }

    /// The content as parts: `parts`, or the text as one part (none when empty).
    pub fn content_parts(&self) -> Vec<ContentPart> {
        if !self.parts.is_empty() {
            self.parts.clone()
        } else if self.content.is_empty() {
            Vec::new()
        } else {
            vec![ContentPart::Text(self.content.clone())]
        }
    }
}

/// The text parts of `parts`, joined with "\n" (the one place that rule lives).
pub fn joined_text(parts: &[ContentPart]) -> String {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    texts.join("\n")
}

/// One piece of a message's content, as OpenAI's chat content parts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContentPart {
    Text(String),
    /// `image_url`: an `https:` or `data:` URL, and the detail the client asked for.
    Image {
        url: String,
        detail: Option<String>,
    },
    /// `input_audio`: base64 data and its format (`wav`, `mp3`, …).
    Audio {
        data: String,
        format: String,
    },
    /// `file`: an uploaded file's id, or the data itself, and a file name.
    File {
        file_id: Option<String>,
        file_data: Option<String>,
        filename: Option<String>,
    },
}

/// A tool the client offers the model, OpenAI function-tool shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the parameters, as JSON text.
    pub parameters: String,
}

/// Token counts reported by an agent or a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A piece of a tool call: the first piece for an `index` carries `id` and `name`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

/// What an agent streams while it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// A piece of the reply text.
    Text(String),
    /// A piece of model reasoning; not part of the reply text.
    Reasoning(String),
    ToolCall(ToolCallDelta),
    Usage(Usage),
    Finish(FinishReason),
    /// A tool the agent ran itself (contract 0.1.2 `tool-activity`). Kept in
    /// the transcript and shown to WebSocket clients, never to OpenAI clients.
    ServerTool(ToolActivity),
}

/// One step of a tool the agent runs itself, in stream order with its text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ToolActivity {
    /// The agent is about to run this call.
    Called(ToolCall),
    /// The result of an earlier call.
    Returned(ToolResult),
}

/// What a tool the agent ran itself returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolResult {
    pub call_id: String,
    /// The tool's output, or the error text when `is_error`.
    pub output: String,
    pub is_error: bool,
}

/// Everything an agent gets for one run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunRequest {
    pub run_id: String,
    pub agent_id: String,
    pub session_key: String,
    /// The messages the client sent for this turn.
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub user: Option<String>,
    /// The remaining model parameters as a JSON object, as text.
    pub params: String,
    /// A model the client chose for this run; the `llm` capability uses it
    /// instead of the entry's `model`. Never shown to the agent.
    pub model: Option<String>,
}

/// A run that failed in a way the agent understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentError {
    /// The request makes no sense to this agent (HTTP 400).
    InvalidRequest(String),
    /// Something the agent depends on is unavailable (HTTP 503).
    Unavailable(String),
    /// Anything else (HTTP 500).
    Failed(String),
}

/// An agent's self-description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}
