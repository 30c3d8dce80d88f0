//! What the gateway needs from a session store. SQLite implements it today; a
//! networked store (PostgreSQL) for several gateways can implement it later.
//! Methods block: callers run them on the blocking pool.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::runtime::{Message, Role, ToolCall};

/// Longest state key a plugin may use.
pub const MAX_STATE_KEY_BYTES: usize = 256;
/// Largest single state value.
pub const MAX_STATE_VALUE_BYTES: usize = 64 << 10;
/// Largest total of keys and values per session.
pub const MAX_STATE_TOTAL_BYTES: usize = 1 << 20;

/// One transcript entry with its time.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: Message,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// What a run needs before it starts.
#[derive(Debug, Clone, Default)]
pub struct SessionData {
    /// Oldest first, at most the configured number of messages.
    pub history: Vec<Message>,
    pub state: BTreeMap<String, Vec<u8>>,
}

/// Plugin state writes of one run: `None` deletes.
pub type StateChanges = BTreeMap<String, Option<Vec<u8>>>;

/// A whole transcript for the history API.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub key: String,
    pub agent: String,
    pub messages: Vec<StoredMessage>,
}

/// One row of a session listing.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub key: String,
    pub agent: String,
    pub message_count: u64,
    /// Milliseconds since the Unix epoch.
    pub last_activity: u64,
}

/// A store that cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session {key:?} belongs to agent {owner:?}")]
    WrongAgent { key: String, owner: String },
    #[error("session store {path}: {message}")]
    Open { path: String, message: String },
    #[error("session store: {0}")]
    Backend(String),
}

/// Durable transcripts and plugin state.
pub trait SessionStore: Send + Sync {
    /// History (last `max_messages`) and state of `key`, checking it belongs to `agent`.
    fn load(&self, key: &str, agent: &str, max_messages: usize) -> Result<SessionData, StoreError>;
    /// Append one turn and apply state changes, all or nothing.
    fn append_turn(&self, key: &str, agent: &str, turn: &[Message], state: &StateChanges) -> Result<(), StoreError>;
    /// The whole transcript, if the session exists.
    fn transcript(&self, key: &str) -> Result<Option<Transcript>, StoreError>;
    /// Sessions, optionally of one agent, most recent first.
    fn list(&self, agent: Option<&str>) -> Result<Vec<SessionSummary>, StoreError>;
    /// Remove a session's transcript and state; false if it did not exist.
    fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Remove sessions idle since before `cutoff`; returns how many.
    fn expire_idle(&self, cutoff: SystemTime) -> Result<usize, StoreError>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The text name of a role, as stored and as the history API shows it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// Inverse of [`role_name`].
pub fn role_from_name(name: &str) -> Option<Role> {
    Some(match name {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => return None,
    })
}

/// Tool calls as stored (a JSON array).
pub fn tool_calls_json(calls: &[ToolCall]) -> String {
    serde_json::Value::Array(
        calls.iter().map(|c| serde_json::json!({"id": c.id, "name": c.name, "arguments": c.arguments})).collect(),
    )
    .to_string()
}

/// Inverse of [`tool_calls_json`]; tolerant of an empty column.
pub fn tool_calls_from_json(text: &str) -> Vec<ToolCall> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(text) else { return Vec::new() };
    items
        .iter()
        .map(|v| ToolCall {
            id: v["id"].as_str().unwrap_or_default().into(),
            name: v["name"].as_str().unwrap_or_default().into(),
            arguments: v["arguments"].as_str().unwrap_or_default().into(),
        })
        .collect()
}
