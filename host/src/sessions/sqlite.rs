//! The default session store: one SQLite file in WAL mode, with in-process
//! lanes. SQLite calls block, so each runs on the blocking pool here and
//! nowhere else.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use super::conversations::{self, Conversation, ConversationItem, ItemPage, ItemQuery};
use super::devices::{self, PairedDevice};
use super::lanes::{LaneTicket, Lanes};
use super::page::{SessionPage, SessionQuery};
use super::responses::{self, StoredResponse};
use super::store::{
    RunMark, SessionData, SessionOwner, SessionStore, SessionSummary, StateChanges, StoreError, StoreFuture,
    StoredMessage, Transcript, Turn, TurnWriter, now_ms, refused_write, role_from_name, role_name,
    tool_calls_from_json, tool_calls_json,
};
use super::{recordings, usage};
use crate::chat::Message;

/// Schema steps; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, their messages and plugin state.
    "CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );
     CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at);
     CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        name TEXT,
        tool_call_id TEXT,
        tool_calls TEXT NOT NULL DEFAULT '[]',
        created_at INTEGER NOT NULL
     );
     CREATE INDEX messages_by_session ON messages (session_key, id);
     CREATE TABLE state (
        session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (session_key, key)
     );",
    // 2: the agent registry (`registry::SqliteRegistry`) shares this file: it is
    // the gateway's one database on this machine.
    "CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        current_digest TEXT,
        current_source TEXT,
        previous_digest TEXT,
        previous_source TEXT,
        updated_at INTEGER NOT NULL,
        revision INTEGER NOT NULL
     );
     CREATE TABLE agent_origins (
        origin TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL
     );",
    // 3: stored `/v1/responses` objects.
    super::responses::SQLITE_MIGRATION,
    // 4: sessions have owners; those made before belong to the main secret.
    "ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT 'operator';
     CREATE INDEX sessions_by_owner ON sessions (owner, updated_at);
     CREATE INDEX sessions_by_activity ON sessions (updated_at, key);",
    // 5: stored responses keep their input items (`/v1/responses/{id}/input_items`).
    super::responses::SQLITE_INPUT_MIGRATION,
    // 6: conversations (`/v1/conversations`) and their items.
    super::conversations::SQLITE_MIGRATION,
    // 7: paired devices and their token digests.
    super::devices::SQLITE_MIGRATION,
    // 8: the usage ledger (`sessions/usage.rs`).
    super::usage::SQLITE_MIGRATION,
    // 9: an agent's rollout (`registry::RolloutRecord` as JSON) lives in its record.
    "ALTER TABLE agents ADD COLUMN rollout TEXT;",
    // 10: which run wrote each message (`store::RunMark`); older rows have none.
    "ALTER TABLE messages ADD COLUMN run_id TEXT;
     ALTER TABLE messages ADD COLUMN idempotency_key TEXT;",
    // 11: each run's budget reservation (`sessions/usage.rs`); unused since holds
    // on SQLite live in memory (`sqlite/budgets.rs`).
    super::usage::HOLDS_MIGRATION,
    // 12: recorded runs (`sessions/recordings.rs`).
    super::recordings::SQLITE_MIGRATION,
];

/// SQLite-backed [`SessionStore`].
pub struct SqliteStore {
    db: Arc<Db>,
    /// Budget windows: live holds in memory, spending written with the ledger.
    budgets: Arc<budgets::Budgets>,
    lanes: Lanes,
    /// History messages a turn loads.
    max_history: usize,
}

/// The connection and the blocking operations on it.
struct Db {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Open (creating if needed) and migrate; a corrupt or unwritable file is an error naming it.
    pub fn open(path: &Path, max_history: usize) -> Result<Self, StoreError> {
        let fail = |message: String| StoreError::Open { path: path.display().to_string(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create folder: {e}")))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            // WAL: readers never block the writer; NORMAL sync is durable at
            // each commit's checkpoint and survives process crashes.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if check != "ok" {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(check),
                ));
            }
            Ok(())
        };
        setup().map_err(|e| fail(e.to_string()))?;
        migrate(&conn).map_err(|e| fail(format!("migration failed: {e}")))?;
        let (db, budgets) = (Arc::new(Db { conn: Mutex::new(conn) }), Arc::default());
        Ok(Self { db, budgets, lanes: Lanes::default(), max_history })
    }

    /// Run `work` on the blocking pool with the database.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<T> {
        let db = self.db.clone();
        Box::pin(on_blocking_pool(move || work(&db)))
    }
}

async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Backend(format!("session store task failed: {e}"))),
    }
}

impl SessionStore for SqliteStore {
    fn begin_turn(&self, key: &str, agent: &str, owner: &str) -> StoreFuture<Turn> {
        // Taken now, synchronously: the order of calls is the order of turns.
        let mut ticket = self.lanes.enter(key);
        let (db, key, agent, max) = (self.db.clone(), key.to_string(), agent.to_string(), self.max_history);
        let owner = owner.to_string();
        Box::pin(async move {
            ticket.wait().await;
            let load = {
                let (db, key) = (db.clone(), key.clone());
                on_blocking_pool(move || db.load(&key, max))
            };
            let (existing, session) = load.await?;
            Ok(Turn::new(session, existing, Box::new(SqliteTurn { db, key, agent, owner, ticket })))
        })
    }

    fn owner(&self, key: &str) -> StoreFuture<Option<SessionOwner>> {
        let key = key.to_string();
        self.blocking(move |db| db.with(|conn| owner(conn, &key)))
    }

    fn transcript(&self, key: &str) -> StoreFuture<Option<Transcript>> {
        let key = key.to_string();
        self.blocking(move |db| db.transcript(&key))
    }

    fn list(&self, query: SessionQuery) -> StoreFuture<SessionPage> {
        self.blocking(move |db| db.list(&query))
    }

    fn delete(&self, key: &str, owner: &str) -> StoreFuture<bool> {
        let (key, owner) = (key.to_string(), owner.to_string());
        self.blocking(move |db| db.delete(&key, &owner))
    }

    fn expire_idle(&self, cutoff: SystemTime) -> StoreFuture<usize> {
        self.blocking(move |db| db.expire_idle(cutoff))
    }

    fn put_response(&self, response: StoredResponse) -> StoreFuture<()> {
        self.blocking(move |db| db.with(|conn| responses::sqlite_put(conn, &response)))
    }

    fn response(&self, id: &str) -> StoreFuture<Option<StoredResponse>> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| responses::sqlite_get(conn, &id)))
    }

    fn delete_response(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| responses::sqlite_delete(conn, &id)))
    }

    fn create_conversation(&self, conversation: Conversation, items: Vec<ConversationItem>) -> StoreFuture<()> {
        self.blocking(move |db| db.with(|conn| conversations::sqlite_create(conn, &conversation, &items)))
    }

    fn conversation(&self, id: &str) -> StoreFuture<Option<Conversation>> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| conversations::sqlite_get(conn, &id)))
    }

    fn update_conversation(&self, conversation: Conversation) -> StoreFuture<bool> {
        self.blocking(move |db| db.with(|conn| conversations::sqlite_update(conn, &conversation)))
    }

    fn delete_conversation(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| conversations::sqlite_delete(conn, &id)))
    }

    fn add_conversation_items(&self, id: &str, settle: Vec<String>, items: Vec<ConversationItem>) -> StoreFuture<()> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| conversations::sqlite_add_items(conn, &id, &settle, &items)))
    }

    fn conversation_items(&self, id: &str, query: ItemQuery) -> StoreFuture<ItemPage> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| conversations::sqlite_items(conn, &id, &query)))
    }

    fn pair_device(&self, device: PairedDevice) -> StoreFuture<()> {
        self.blocking(move |db| db.with(|conn| devices::sqlite_pair(conn, &device)))
    }

    fn device_by_token(&self, digest: &str) -> StoreFuture<Option<PairedDevice>> {
        let digest = digest.to_string();
        self.blocking(move |db| db.with(|conn| devices::sqlite_by_token(conn, &digest)))
    }

    fn devices(&self) -> StoreFuture<Vec<PairedDevice>> {
        self.blocking(move |db| db.with(|conn| devices::sqlite_list(conn)))
    }

    fn revoke_device(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| devices::sqlite_revoke(conn, &id, now_ms())))
    }

    fn remove_device(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| devices::sqlite_remove(conn, &id)))
    }

    fn record_usage(&self, rows: Vec<crate::usage::UsageRow>) -> StoreFuture<()> {
        self.record_with_spending(rows)
    }

    fn usage_totals(&self, query: crate::usage::UsageQuery) -> StoreFuture<Vec<crate::usage::UsageTotals>> {
        self.blocking(move |db| db.with(|conn| usage::sqlite_totals(conn, &query)))
    }

    fn reserve_budget(&self, slot: crate::usage::BudgetSlot, hold: crate::usage::Hold) -> StoreFuture<bool> {
        self.reserve_in_memory(slot, hold)
    }

    fn budget_counters(
        &self,
        slot: crate::usage::BudgetSlot,
    ) -> StoreFuture<(crate::usage::Charge, crate::usage::Charge)> {
        self.counters_in_memory(slot)
    }

    fn settle_budget(
        &self,
        slot: crate::usage::BudgetSlot,
        run_id: String,
        spent: crate::usage::Charge,
    ) -> StoreFuture<()> {
        self.settle_in_memory(slot, run_id, spent)
    }

    fn put_recordings(&self, rows: Vec<recordings::RecordingRow>) -> StoreFuture<()> {
        self.blocking(move |db| db.with(|conn| recordings::sqlite_put(conn, &rows)))
    }

    fn recordings(&self, query: recordings::RecordingQuery) -> StoreFuture<Vec<recordings::RecordingSummary>> {
        self.blocking(move |db| db.with(|conn| recordings::sqlite_list(conn, &query)))
    }

    fn recording(&self, id: &str) -> StoreFuture<Option<recordings::RecordingRow>> {
        let id = id.to_string();
        self.blocking(move |db| db.with(|conn| recordings::sqlite_get(conn, &id)))
    }

    fn prune_recordings(&self, now_ms: i64) -> StoreFuture<usize> {
        self.blocking(move |db| db.with(|conn| recordings::sqlite_prune(conn, now_ms)))
    }
}

/// A begun turn: the lane ticket travels with the write.
struct SqliteTurn {
    db: Arc<Db>,
    key: String,
    agent: String,
    owner: String,
    ticket: LaneTicket,
}

impl TurnWriter for SqliteTurn {
    fn commit(self: Box<Self>, run: Option<RunMark>, messages: Vec<Message>, state: StateChanges) -> StoreFuture<()> {
        // Blocking work runs to its end even if the awaiting task is aborted,
        // and the ticket is dropped only after it: the lane stays taken until
        // the write is committed.
        let Self { db, key, agent, owner, ticket } = *self;
        Box::pin(on_blocking_pool(move || {
            let _ticket = ticket;
            db.append_turn(&key, &SessionOwner { agent, owner }, run.as_ref(), &messages, &state)
        }))
    }
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn owner(conn: &Connection, key: &str) -> rusqlite::Result<Option<SessionOwner>> {
    conn.query_row("SELECT agent_id, owner FROM sessions WHERE key = ?1", [key], |r| {
        Ok(SessionOwner { agent: r.get(0)?, owner: r.get(1)? })
    })
    .optional()
}

fn read_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let role: String = row.get(0)?;
    let tool_calls: String = row.get(4)?;
    Ok(StoredMessage {
        message: Message {
            role: role_from_name(&role).unwrap_or(crate::chat::Role::User),
            content: row.get(1)?,
            // The transcript keeps the text view only.
            parts: Vec::new(),
            name: row.get(2)?,
            tool_call_id: row.get(3)?,
            tool_calls: tool_calls_from_json(&tool_calls),
        },
        created_at: row.get::<_, i64>(5)? as u64,
        run: row
            .get::<_, Option<String>>(6)?
            .map(|run_id| Ok::<_, rusqlite::Error>(RunMark { run_id, idempotency_key: row.get(7)? }))
            .transpose()?,
    })
}

impl Db {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// The session's owner and what a turn runs on; nothing for a new session.
    fn load(&self, key: &str, max_messages: usize) -> Result<(Option<SessionOwner>, SessionData), StoreError> {
        self.with(|conn| {
            let Some(existing) = owner(conn, key)? else { return Ok((None, SessionData::default())) };
            let mut stmt = conn.prepare_cached(
                "SELECT role, content, name, tool_call_id, tool_calls, created_at, run_id, idempotency_key FROM
                   (SELECT * FROM messages WHERE session_key = ?1 ORDER BY id DESC LIMIT ?2)
                 ORDER BY id ASC",
            )?;
            let history = stmt
                .query_map(params![key, max_messages as i64], read_message)?
                .map(|m| m.map(|m| m.message))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = conn.prepare_cached("SELECT key, value FROM state WHERE session_key = ?1")?;
            let state = stmt.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            Ok((Some(existing), SessionData { history, state }))
        })
    }

    fn append_turn(
        &self,
        key: &str,
        session: &SessionOwner,
        run: Option<&RunMark>,
        turn: &[Message],
        state: &StateChanges,
    ) -> Result<(), StoreError> {
        let (run_id, idempotency_key) = (run.map(|r| &r.run_id), run.and_then(|r| r.idempotency_key.as_ref()));
        let outcome = self.with(|conn| {
            let tx = conn.transaction()?;
            let now = now_ms() as i64;
            if let Some(existing) = owner(&tx, key)?.filter(|e| e != session) {
                return Ok(Err(existing));
            }
            tx.execute(
                "INSERT INTO sessions (key, agent_id, owner, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
                params![key, session.agent, session.owner, now],
            )?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (session_key, role, content, name, tool_call_id, tool_calls, created_at,
                                           run_id, idempotency_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for m in turn {
                    insert.execute(params![
                        key,
                        role_name(m.role),
                        m.content,
                        m.name,
                        m.tool_call_id,
                        tool_calls_json(&m.tool_calls),
                        now,
                        run_id,
                        idempotency_key
                    ])?;
                }
                let mut put = tx.prepare_cached(
                    "INSERT INTO state (session_key, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (session_key, key) DO UPDATE SET value = excluded.value",
                )?;
                let mut remove = tx.prepare_cached("DELETE FROM state WHERE session_key = ?1 AND key = ?2")?;
                for (k, v) in state {
                    match v {
                        Some(v) => put.execute(params![key, k, v])?,
                        None => remove.execute(params![key, k])?,
                    };
                }
            }
            tx.commit()?;
            Ok(Ok(()))
        })?;
        outcome.map_err(|existing| refused_write(key, session, existing))
    }

    fn transcript(&self, key: &str) -> Result<Option<Transcript>, StoreError> {
        self.with(|conn| {
            let Some(SessionOwner { agent, .. }) = owner(conn, key)? else { return Ok(None) };
            let mut stmt = conn.prepare_cached(
                "SELECT role, content, name, tool_call_id, tool_calls, created_at, run_id, idempotency_key
                 FROM messages WHERE session_key = ?1 ORDER BY id",
            )?;
            let messages = stmt.query_map([key], read_message)?.collect::<rusqlite::Result<_>>()?;
            Ok(Some(Transcript { key: key.into(), agent, messages }))
        })
    }

    fn list(&self, query: &SessionQuery) -> Result<SessionPage, StoreError> {
        let agents = query.visible.agents.as_ref().map(|a| serde_json::Value::from(a.clone()).to_string());
        let (after_at, after_key) = match &query.after {
            Some(c) => (Some(c.last_activity as i64), c.key.as_str()),
            None => (None, ""),
        };
        let rows = self.with(|conn| {
            // Keys compare as bytes (BINARY), like PostgreSQL's COLLATE "C".
            let mut stmt = conn.prepare_cached(
                "SELECT s.key, s.agent_id, s.owner, s.updated_at,
                        (SELECT COUNT(*) FROM messages m WHERE m.session_key = s.key)
                 FROM sessions s
                 WHERE (?1 IS NULL OR s.agent_id = ?1)
                   AND (?2 IS NULL OR s.owner = ?2)
                   AND (?3 IS NULL OR s.agent_id IN (SELECT value FROM json_each(?3)))
                   AND (?4 IS NULL OR s.updated_at < ?4 OR (s.updated_at = ?4 AND s.key > ?5))
                 ORDER BY s.updated_at DESC, s.key LIMIT ?6",
            )?;
            let limit = query.limit as i64 + 1;
            stmt.query_map(params![query.agent, query.visible.owner, agents, after_at, after_key, limit], |r| {
                Ok(SessionSummary {
                    key: r.get(0)?,
                    agent: r.get(1)?,
                    owner: r.get(2)?,
                    last_activity: r.get::<_, i64>(3)? as u64,
                    message_count: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect()
        })?;
        Ok(SessionPage::of(rows, query.limit))
    }

    fn delete(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        self.with(|conn| Ok(conn.execute("DELETE FROM sessions WHERE key = ?1 AND owner = ?2", [key, owner])? > 0))
    }

    fn expire_idle(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        let cutoff = cutoff.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.with(|conn| conn.execute("DELETE FROM sessions WHERE updated_at < ?1", [cutoff]))
    }
}

mod budgets;
#[cfg(test)]
mod tests;
