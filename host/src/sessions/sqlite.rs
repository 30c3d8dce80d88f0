//! The default session store: one SQLite file in WAL mode, with in-process
//! lanes. SQLite calls block, so each runs on the blocking pool here and
//! nowhere else.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use super::lanes::{LaneTicket, Lanes};
use super::responses::{self, StoredResponse};
use super::store::{
    SessionData, SessionStore, SessionSummary, StateChanges, StoreError, StoreFuture, StoredMessage, Transcript, Turn,
    TurnWriter, now_ms, role_from_name, role_name, tool_calls_from_json, tool_calls_json,
};
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
];

/// SQLite-backed [`SessionStore`].
pub struct SqliteStore {
    db: Arc<Db>,
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
        Ok(Self { db: Arc::new(Db { conn: Mutex::new(conn) }), lanes: Lanes::default(), max_history })
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
    fn begin_turn(&self, key: &str, agent: &str) -> StoreFuture<Turn> {
        // Taken now, synchronously: the order of calls is the order of turns.
        let mut ticket = self.lanes.enter(key);
        let (db, key, agent, max) = (self.db.clone(), key.to_string(), agent.to_string(), self.max_history);
        Box::pin(async move {
            ticket.wait().await;
            let load = {
                let (db, key, agent) = (db.clone(), key.clone(), agent.clone());
                on_blocking_pool(move || db.load(&key, &agent, max))
            };
            let session = load.await?;
            Ok(Turn::new(session, Box::new(SqliteTurn { db, key, agent, ticket })))
        })
    }

    fn transcript(&self, key: &str) -> StoreFuture<Option<Transcript>> {
        let key = key.to_string();
        self.blocking(move |db| db.transcript(&key))
    }

    fn list(&self, agent: Option<&str>) -> StoreFuture<Vec<SessionSummary>> {
        let agent = agent.map(str::to_string);
        self.blocking(move |db| db.list(agent.as_deref()))
    }

    fn delete(&self, key: &str) -> StoreFuture<bool> {
        let key = key.to_string();
        self.blocking(move |db| db.delete(&key))
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
}

/// A begun turn: the lane ticket travels with the write.
struct SqliteTurn {
    db: Arc<Db>,
    key: String,
    agent: String,
    ticket: LaneTicket,
}

impl TurnWriter for SqliteTurn {
    fn commit(self: Box<Self>, messages: Vec<Message>, state: StateChanges) -> StoreFuture<()> {
        // Blocking work runs to its end even if the awaiting task is aborted,
        // and the ticket is dropped only after it: the lane stays taken until
        // the write is committed.
        let Self { db, key, agent, ticket } = *self;
        Box::pin(on_blocking_pool(move || {
            let _ticket = ticket;
            db.append_turn(&key, &agent, &messages, &state)
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

fn owner(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT agent_id FROM sessions WHERE key = ?1", [key], |r| r.get(0)).optional()
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
    })
}

impl Db {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| StoreError::Backend(e.to_string()))
    }

    fn load(&self, key: &str, agent: &str, max_messages: usize) -> Result<SessionData, StoreError> {
        let loaded = self.with(|conn| {
            let Some(owner) = owner(conn, key)? else { return Ok(Err(())) };
            if owner != agent {
                return Ok(Ok(Err(owner)));
            }
            let mut stmt = conn.prepare_cached(
                "SELECT role, content, name, tool_call_id, tool_calls, created_at FROM
                   (SELECT * FROM messages WHERE session_key = ?1 ORDER BY id DESC LIMIT ?2)
                 ORDER BY id ASC",
            )?;
            let history = stmt
                .query_map(params![key, max_messages as i64], read_message)?
                .map(|m| m.map(|m| m.message))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = conn.prepare_cached("SELECT key, value FROM state WHERE session_key = ?1")?;
            let state = stmt.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            Ok(Ok(Ok(SessionData { history, state })))
        })?;
        match loaded {
            Err(()) => Ok(SessionData::default()),
            Ok(Err(owner)) => Err(StoreError::WrongAgent { key: key.into(), owner }),
            Ok(Ok(data)) => Ok(data),
        }
    }

    fn append_turn(&self, key: &str, agent: &str, turn: &[Message], state: &StateChanges) -> Result<(), StoreError> {
        let outcome = self.with(|conn| {
            let tx = conn.transaction()?;
            let now = now_ms() as i64;
            if let Some(owner) = owner(&tx, key)?.filter(|o| o != agent) {
                return Ok(Err(owner));
            }
            tx.execute(
                "INSERT INTO sessions (key, agent_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
                params![key, agent, now],
            )?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (session_key, role, content, name, tool_call_id, tool_calls, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for m in turn {
                    insert.execute(params![
                        key,
                        role_name(m.role),
                        m.content,
                        m.name,
                        m.tool_call_id,
                        tool_calls_json(&m.tool_calls),
                        now
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
        outcome.map_err(|owner| StoreError::WrongAgent { key: key.into(), owner })
    }

    fn transcript(&self, key: &str) -> Result<Option<Transcript>, StoreError> {
        self.with(|conn| {
            let Some(agent) = owner(conn, key)? else { return Ok(None) };
            let mut stmt = conn.prepare_cached(
                "SELECT role, content, name, tool_call_id, tool_calls, created_at FROM messages
                 WHERE session_key = ?1 ORDER BY id",
            )?;
            let messages = stmt.query_map([key], read_message)?.collect::<rusqlite::Result<_>>()?;
            Ok(Some(Transcript { key: key.into(), agent, messages }))
        })
    }

    fn list(&self, agent: Option<&str>) -> Result<Vec<SessionSummary>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.key, s.agent_id, s.updated_at, (SELECT COUNT(*) FROM messages m WHERE m.session_key = s.key)
                 FROM sessions s WHERE ?1 IS NULL OR s.agent_id = ?1 ORDER BY s.updated_at DESC, s.key",
            )?;
            stmt.query_map([agent], |r| {
                Ok(SessionSummary {
                    key: r.get(0)?,
                    agent: r.get(1)?,
                    last_activity: r.get::<_, i64>(2)? as u64,
                    message_count: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect()
        })
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.with(|conn| Ok(conn.execute("DELETE FROM sessions WHERE key = ?1", [key])? > 0))
    }

    fn expire_idle(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        let cutoff = cutoff.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.with(|conn| conn.execute("DELETE FROM sessions WHERE updated_at < ?1", [cutoff]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;

    fn msg(role: Role, content: &str) -> Message {
        Message::text(role, content)
    }

    fn open(path: &Path) -> SqliteStore {
        SqliteStore::open(path, 2).unwrap()
    }

    #[tokio::test]
    async fn turns_state_and_ownership_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.sqlite"));
        let turn = store.begin_turn("k", "main").await.unwrap();
        assert!(turn.session.history.is_empty());
        let state = StateChanges::from([("n".to_string(), Some(b"1".to_vec()))]);
        turn.commit(vec![msg(Role::User, "hi"), msg(Role::Assistant, "hi")], state).await.unwrap();
        let turn = store.begin_turn("k", "main").await.unwrap();
        assert_eq!(turn.session.state.get("n").map(Vec::as_slice), Some(&b"1"[..]));
        turn.commit(vec![msg(Role::User, "again")], StateChanges::from([("n".into(), None)])).await.unwrap();
        let data = store.begin_turn("k", "main").await.unwrap().session;
        assert_eq!(data.history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hi", "again"]);
        assert!(data.state.is_empty());
        assert!(matches!(store.begin_turn("k", "beta").await, Err(StoreError::WrongAgent { .. })));
        assert_eq!(store.list(Some("main")).await.unwrap()[0].message_count, 3);
        assert!(store.delete("k").await.unwrap());
        assert!(store.transcript("k").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_turn_waits_for_the_turn_begun_before_it_on_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.sqlite"));
        let first = store.begin_turn("k", "main").await.unwrap();
        // Begun (lane taken) before the first commits: it must see that commit.
        let mut second = store.begin_turn("k", "main");
        let other = store.begin_turn("other", "main").await.unwrap();
        assert!(other.session.history.is_empty(), "another key never waits");
        assert!(futures::poll!(&mut second).is_pending(), "the second turn must wait for the first");
        first.commit(vec![msg(Role::User, "one")], StateChanges::new()).await.unwrap();
        let second = tokio::time::timeout(std::time::Duration::from_secs(10), second).await.unwrap().unwrap();
        assert_eq!(second.session.history.len(), 1);
        // A dropped turn (a failed run) frees the lane without writing.
        drop(second);
        let third = tokio::time::timeout(std::time::Duration::from_secs(10), store.begin_turn("k", "main"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.session.history.len(), 1);
    }

    #[tokio::test]
    async fn migrations_run_once_and_reopen_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let turn = open(&path).begin_turn("k", "a").await.unwrap();
        turn.commit(vec![msg(Role::User, "x")], StateChanges::new()).await.unwrap();
        let store = open(&path);
        assert_eq!(store.transcript("k").await.unwrap().unwrap().messages.len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.sqlite");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = SqliteStore::open(&path, 10).err().expect("corrupt file must not open").to_string();
        assert!(err.contains("bad.sqlite"), "{err}");
    }
}
