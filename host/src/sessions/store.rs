//! What the gateway needs from a session store: SQLite for one machine,
//! PostgreSQL for a cluster of gateways.
//! Every method is async: a backend that blocks keeps that inside itself.

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::future::BoxFuture;

use super::conversations::{Conversation, ConversationItem, ItemPage, ItemQuery};
use super::devices::PairedDevice;
use super::page::{SessionPage, SessionQuery};
use super::responses::StoredResponse;
use crate::chat::{Message, Role, ToolCall};

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
    /// The run whose turn wrote it; `None` for messages stored before runs were recorded.
    pub run: Option<RunMark>,
}

/// Which run wrote a turn's messages, so a client can match them to its request
/// (OpenClaw's Control UI matches its own copy of a sent message by `idempotencyKey`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMark {
    pub run_id: String,
    /// The `idempotencyKey` the request that started the run carried.
    pub idempotency_key: Option<String>,
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

/// Who a session belongs to: its agent and its owning principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub agent: String,
    /// The name of the principal whose turn created it.
    pub owner: String,
}

/// One row of a session listing.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub key: String,
    pub agent: String,
    /// The owning principal's name.
    pub owner: String,
    pub message_count: u64,
    /// Milliseconds since the Unix epoch.
    pub last_activity: u64,
}

/// A store that cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session {key:?} belongs to agent {owner:?}")]
    WrongAgent { key: String, owner: String },
    /// A turn tried to write into a session another principal owns.
    #[error("session {0:?} belongs to another principal")]
    WrongOwner(String),
    #[error("session store {path}: {message}")]
    Open { path: String, message: String },
    #[error("session store: {0}")]
    Backend(String),
    /// The shared database cannot be reached: retrying shortly may work.
    #[error("the session database is unavailable: {0}")]
    Unavailable(String),
}

/// A store operation in flight. Owned, so callers may move it into a task.
pub type StoreFuture<T> = BoxFuture<'static, Result<T, StoreError>>;

/// Durable transcripts and plugin state, and the lanes that keep one turn at
/// a time per session.
pub trait SessionStore: Send + Sync {
    /// Begin a turn of `agent` on `key` for `owner` (who owns the session
    /// if this turn creates it): its place in the session's lane is taken
    /// when this is *called* (so calls order turns, whatever the scheduler
    /// does later); the future resolves once every earlier turn on the key
    /// has ended, with the history and state to run on and the session's
    /// current owner. The caller decides ([`super::access`]) whether to run;
    /// the commit refuses to write into a session of another owner or agent.
    fn begin_turn(&self, key: &str, agent: &str, owner: &str) -> StoreFuture<Turn>;
    /// A session's agent and owner, if it exists (one row; no transcript).
    fn owner(&self, key: &str) -> StoreFuture<Option<SessionOwner>>;
    /// The whole transcript, if the session exists.
    fn transcript(&self, key: &str) -> StoreFuture<Option<Transcript>>;
    /// One page of the sessions `query` selects, most recent first.
    fn list(&self, query: SessionQuery) -> StoreFuture<SessionPage>;
    /// Remove a session of `owner` with its transcript, state and stored
    /// responses; false if there is no such session of that owner.
    fn delete(&self, key: &str, owner: &str) -> StoreFuture<bool>;
    /// Remove sessions idle since before `cutoff`; returns how many.
    fn expire_idle(&self, cutoff: SystemTime) -> StoreFuture<usize>;
    /// Keep a response object; its session must exist (it is written after the turn).
    fn put_response(&self, response: StoredResponse) -> StoreFuture<()>;
    /// A stored response by id, whoever owns it (callers check the owner).
    fn response(&self, id: &str) -> StoreFuture<Option<StoredResponse>>;
    /// Forget a stored response (not its session); false if there was none.
    fn delete_response(&self, id: &str) -> StoreFuture<bool>;
    /// Keep a new conversation with its first items.
    fn create_conversation(&self, conversation: Conversation, items: Vec<ConversationItem>) -> StoreFuture<()>;
    /// A conversation by id, whoever owns it (callers check the owner).
    fn conversation(&self, id: &str) -> StoreFuture<Option<Conversation>>;
    /// Write a conversation's metadata, and its agent and session if it has none yet
    /// (they never change once set); false if there is no such conversation.
    fn update_conversation(&self, conversation: Conversation) -> StoreFuture<bool>;
    /// Forget a conversation and its items (not its session); false if there was none.
    fn delete_conversation(&self, id: &str) -> StoreFuture<bool>;
    /// Mark the pending items `settle` names as sent and append `items`, in one write.
    fn add_conversation_items(&self, id: &str, settle: Vec<String>, items: Vec<ConversationItem>) -> StoreFuture<()>;
    /// One page of a conversation's items.
    fn conversation_items(&self, id: &str, query: ItemQuery) -> StoreFuture<ItemPage>;
    /// Pair a device, or pair it again with a fresh token (`sessions/devices.rs`).
    fn pair_device(&self, device: PairedDevice) -> StoreFuture<()>;
    /// The device whose current token has this digest; none once revoked.
    fn device_by_token(&self, digest: &str) -> StoreFuture<Option<PairedDevice>>;
    /// Every paired device, revoked ones included.
    fn devices(&self) -> StoreFuture<Vec<PairedDevice>>;
    /// Revoke a device's token; false if it had none.
    fn revoke_device(&self, id: &str) -> StoreFuture<bool>;
    /// Forget a device; false if there was none.
    fn remove_device(&self, id: &str) -> StoreFuture<bool>;
    /// Add rows to the usage ledger, all or nothing; a row already there (same run and model) stays.
    fn record_usage(&self, rows: Vec<crate::usage::UsageRow>) -> StoreFuture<()>;
    /// The ledger's rows `query` selects, summed per group, ordered by key.
    fn usage_totals(&self, query: crate::usage::UsageQuery) -> StoreFuture<Vec<crate::usage::UsageTotals>>;
    /// Hold `hold` on a budget's window unless what was spent plus the live
    /// holds already reached a limit (holds past their expiry are dropped
    /// first); whether it was held.
    fn reserve_budget(&self, slot: crate::usage::BudgetSlot, hold: crate::usage::Hold) -> StoreFuture<bool>;
    /// What a budget's window has spent and has held (live holds only) now.
    fn budget_counters(
        &self,
        slot: crate::usage::BudgetSlot,
    ) -> StoreFuture<(crate::usage::Charge, crate::usage::Charge)>;
    /// Drop run `run_id`'s hold and count what it spent instead.
    fn settle_budget(
        &self,
        slot: crate::usage::BudgetSlot,
        run_id: String,
        spent: crate::usage::Charge,
    ) -> StoreFuture<()>;
    /// Keep recorded runs, in one transaction (`sessions/recordings.rs`).
    fn put_recordings(&self, rows: Vec<super::recordings::RecordingRow>) -> StoreFuture<()>;
    /// The recorded runs `query` selects, newest first, without their bodies.
    fn recordings(
        &self,
        query: super::recordings::RecordingQuery,
    ) -> StoreFuture<Vec<super::recordings::RecordingSummary>>;
    /// One recorded run, whoever owns it (callers check the owner).
    fn recording(&self, id: &str) -> StoreFuture<Option<super::recordings::RecordingRow>>;
    /// Remove recordings kept until before `now_ms`; how many.
    fn prune_recordings(&self, now_ms: i64) -> StoreFuture<usize>;
}

/// Writes a turn for the backend that began it.
pub trait TurnWriter: Send {
    /// Append `messages` and apply `state`, all or nothing. The session's
    /// lane stays taken until the write has ended, even if the returned
    /// future is dropped first.
    fn commit(self: Box<Self>, run: Option<RunMark>, messages: Vec<Message>, state: StateChanges) -> StoreFuture<()>;
}

/// A turn in progress: it holds the session's lane until committed or dropped.
pub struct Turn {
    /// What the run starts from.
    pub session: SessionData,
    /// The session's agent and owner; `None` when this turn creates it.
    pub existing: Option<SessionOwner>,
    writer: Box<dyn TurnWriter>,
}

impl Turn {
    /// A turn that `writer` will commit.
    pub fn new(session: SessionData, existing: Option<SessionOwner>, writer: Box<dyn TurnWriter>) -> Self {
        Self { session, existing, writer }
    }

    /// Keep the turn: the client's new messages and the reply, plus state writes.
    pub async fn commit(self, messages: Vec<Message>, state: StateChanges) -> Result<(), StoreError> {
        self.writer.commit(None, messages, state).await
    }

    /// [`Turn::commit`], recording which run wrote the messages.
    pub async fn commit_run(self, run: RunMark, messages: Vec<Message>, state: StateChanges) -> Result<(), StoreError> {
        self.writer.commit(Some(run), messages, state).await
    }
}

/// Why a turn of `turn` may not write into `key`, which `existing` holds.
pub(super) fn refused_write(key: &str, turn: &SessionOwner, existing: SessionOwner) -> StoreError {
    if existing.owner != turn.owner {
        StoreError::WrongOwner(key.into())
    } else {
        StoreError::WrongAgent { key: key.into(), owner: existing.agent }
    }
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
