//! The cluster session store: transcripts and plugin state in PostgreSQL,
//! shared by every instance. Lanes are two-level: the in-process [`Lanes`]
//! order turns of one key inside this process (and keep the database to one
//! waiter per key per process), then the database's lane lock orders them
//! across instances. A pooled connection is held only while a query runs.

use std::sync::Arc;
use std::time::SystemTime;

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
use crate::chat::{Message, Role};
use crate::db::{DbError, LaneLock, Postgres};

/// PostgreSQL-backed [`SessionStore`].
pub struct PostgresStore {
    pg: Arc<Postgres>,
    lanes: Lanes,
    /// History messages a turn loads.
    max_history: usize,
}

impl PostgresStore {
    /// A store on `pg`, whose migrations have already run.
    pub fn new(pg: Arc<Postgres>, max_history: usize) -> Self {
        Self { pg, lanes: Lanes::default(), max_history }
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) => Self::Unavailable(m),
            DbError::Query(m) => Self::Backend(format!("the database refused a query: {m}")),
        }
    }
}

/// A driver error as a store error (through [`DbError`], which classifies it).
fn db(e: tokio_postgres::Error) -> StoreError {
    DbError::from(e).into()
}

/// Query parameters, bound before pipelined queries borrow them.
type Params<'a, const N: usize> = [&'a (dyn tokio_postgres::types::ToSql + Sync); N];

const MESSAGE_COLUMNS: &str = "role, content, name, tool_call_id, tool_calls, created_at, run_id, idempotency_key";

fn read_message(row: &tokio_postgres::Row) -> StoredMessage {
    let role: String = row.get(0);
    let tool_calls: String = row.get(4);
    StoredMessage {
        message: Message {
            role: role_from_name(&role).unwrap_or(Role::User),
            content: row.get(1),
            // The transcript keeps the text view only.
            parts: Vec::new(),
            name: row.get(2),
            tool_call_id: row.get(3),
            tool_calls: tool_calls_from_json(&tool_calls),
        },
        created_at: row.get::<_, i64>(5) as u64,
        run: row.get::<_, Option<String>>(6).map(|run_id| RunMark { run_id, idempotency_key: row.get(7) }),
    }
}

impl SessionStore for PostgresStore {
    fn begin_turn(&self, key: &str, agent: &str, owner: &str) -> StoreFuture<Turn> {
        // Taken now, synchronously: the order of calls is the order of turns.
        // Only the ticket at the front of the line goes on to the database
        // lock, so this process never asks for a lock it already holds (the
        // advisory lock is re-entrant on the one control connection).
        let mut ticket = self.lanes.enter(key);
        let (pg, key, max) = (self.pg.clone(), key.to_string(), self.max_history);
        let session = SessionOwner { agent: agent.to_string(), owner: owner.to_string() };
        Box::pin(async move {
            ticket.wait().await;
            let lock = pg.lane_lock(&key).await?;
            let (existing, data) = load(&pg, &key, max).await?;
            Ok(Turn::new(data, existing, Box::new(PostgresTurn { pg, key, session, ticket, lock })))
        })
    }

    fn owner(&self, key: &str) -> StoreFuture<Option<SessionOwner>> {
        let (pg, key) = (self.pg.clone(), key.to_string());
        Box::pin(async move {
            let client = pg.client().await?;
            let row =
                client.query_opt("SELECT agent_id, owner FROM sessions WHERE key = $1", &[&key]).await.map_err(db)?;
            Ok(row.map(|r| SessionOwner { agent: r.get(0), owner: r.get(1) }))
        })
    }

    fn transcript(&self, key: &str) -> StoreFuture<Option<Transcript>> {
        let (pg, key) = (self.pg.clone(), key.to_string());
        Box::pin(async move {
            let client = pg.client().await?;
            let messages = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_key = $1 ORDER BY id");
            let by_key: Params<1> = [&key];
            // Pipelined: one round trip.
            let (owner, messages) = futures::try_join!(
                client.query_opt("SELECT agent_id FROM sessions WHERE key = $1", &by_key),
                client.query(&messages, &by_key),
            )
            .map_err(db)?;
            Ok(owner.map(|row| Transcript {
                key: key.clone(),
                agent: row.get(0),
                messages: messages.iter().map(read_message).collect(),
            }))
        })
    }

    fn list(&self, query: SessionQuery) -> StoreFuture<SessionPage> {
        let pg = self.pg.clone();
        Box::pin(async move {
            let client = pg.client().await?;
            let (after_at, after_key) = match &query.after {
                Some(c) => (Some(c.last_activity as i64), c.key.clone()),
                None => (None, String::new()),
            };
            let limit = query.limit as i64 + 1;
            // COLLATE "C": keys sort by bytes, as in SQLite, whatever the server's locale.
            let rows = client
                .query(
                    "SELECT s.key, s.agent_id, s.owner, s.updated_at,
                            (SELECT COUNT(*) FROM messages m WHERE m.session_key = s.key)
                     FROM sessions s
                     WHERE ($1::text IS NULL OR s.agent_id = $1)
                       AND ($2::text IS NULL OR s.owner = $2)
                       AND ($3::text[] IS NULL OR s.agent_id = ANY($3))
                       AND ($4::bigint IS NULL OR s.updated_at < $4
                            OR (s.updated_at = $4 AND s.key COLLATE \"C\" > $5::text COLLATE \"C\"))
                     ORDER BY s.updated_at DESC, s.key COLLATE \"C\" LIMIT $6",
                    &[&query.agent, &query.visible.owner, &query.visible.agents, &after_at, &after_key, &limit],
                )
                .await
                .map_err(db)?;
            let rows = rows
                .iter()
                .map(|r| SessionSummary {
                    key: r.get(0),
                    agent: r.get(1),
                    owner: r.get(2),
                    last_activity: r.get::<_, i64>(3) as u64,
                    message_count: r.get::<_, i64>(4) as u64,
                })
                .collect();
            Ok(SessionPage::of(rows, query.limit))
        })
    }

    fn delete(&self, key: &str, owner: &str) -> StoreFuture<bool> {
        let (pg, key, owner) = (self.pg.clone(), key.to_string(), owner.to_string());
        Box::pin(async move {
            let client = pg.client().await?;
            let deleted = client
                .execute("DELETE FROM sessions WHERE key = $1 AND owner = $2", &[&key, &owner])
                .await
                .map_err(db)?;
            Ok(deleted > 0)
        })
    }

    fn expire_idle(&self, cutoff: SystemTime) -> StoreFuture<usize> {
        let pg = self.pg.clone();
        let cutoff = cutoff.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Box::pin(async move {
            let client = pg.client().await?;
            Ok(client.execute("DELETE FROM sessions WHERE updated_at < $1", &[&cutoff]).await.map_err(db)? as usize)
        })
    }

    fn put_response(&self, response: StoredResponse) -> StoreFuture<()> {
        let pg = self.pg.clone();
        Box::pin(async move { responses::postgres_put(&pg, &response).await })
    }

    fn response(&self, id: &str) -> StoreFuture<Option<StoredResponse>> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { responses::postgres_get(&pg, &id).await })
    }

    fn delete_response(&self, id: &str) -> StoreFuture<bool> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { responses::postgres_delete(&pg, &id).await })
    }

    fn create_conversation(&self, conversation: Conversation, items: Vec<ConversationItem>) -> StoreFuture<()> {
        let pg = self.pg.clone();
        Box::pin(async move { conversations::postgres_create(&pg, &conversation, &items).await })
    }

    fn conversation(&self, id: &str) -> StoreFuture<Option<Conversation>> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { conversations::postgres_get(&pg, &id).await })
    }

    fn update_conversation(&self, conversation: Conversation) -> StoreFuture<bool> {
        let pg = self.pg.clone();
        Box::pin(async move { conversations::postgres_update(&pg, &conversation).await })
    }

    fn delete_conversation(&self, id: &str) -> StoreFuture<bool> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { conversations::postgres_delete(&pg, &id).await })
    }

    fn add_conversation_items(&self, id: &str, settle: Vec<String>, items: Vec<ConversationItem>) -> StoreFuture<()> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { conversations::postgres_add_items(&pg, &id, &settle, &items).await })
    }

    fn conversation_items(&self, id: &str, query: ItemQuery) -> StoreFuture<ItemPage> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { conversations::postgres_items(&pg, &id, &query).await })
    }

    fn pair_device(&self, device: PairedDevice) -> StoreFuture<()> {
        let pg = self.pg.clone();
        Box::pin(async move { devices::postgres_pair(&pg, &device).await })
    }

    fn device_by_token(&self, digest: &str) -> StoreFuture<Option<PairedDevice>> {
        let (pg, digest) = (self.pg.clone(), digest.to_string());
        Box::pin(async move { devices::postgres_by_token(&pg, &digest).await })
    }

    fn devices(&self) -> StoreFuture<Vec<PairedDevice>> {
        let pg = self.pg.clone();
        Box::pin(async move { devices::postgres_list(&pg).await })
    }

    fn revoke_device(&self, id: &str) -> StoreFuture<bool> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { devices::postgres_revoke(&pg, &id, now_ms()).await })
    }

    fn remove_device(&self, id: &str) -> StoreFuture<bool> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { devices::postgres_remove(&pg, &id).await })
    }

    fn record_usage(&self, rows: Vec<crate::usage::UsageRow>) -> StoreFuture<()> {
        let pg = self.pg.clone();
        Box::pin(async move { super::usage::postgres_record(&pg, &rows).await })
    }

    fn usage_totals(&self, query: crate::usage::UsageQuery) -> StoreFuture<Vec<crate::usage::UsageTotals>> {
        let pg = self.pg.clone();
        Box::pin(async move { super::usage::postgres_totals(&pg, &query).await })
    }

    fn reserve_budget(&self, slot: crate::usage::BudgetSlot, hold: crate::usage::Hold) -> StoreFuture<bool> {
        let pg = self.pg.clone();
        let now = super::now_ms() as i64;
        Box::pin(async move { super::usage::postgres_reserve(&pg, &slot, &hold, now).await })
    }

    fn budget_counters(
        &self,
        slot: crate::usage::BudgetSlot,
    ) -> StoreFuture<(crate::usage::Charge, crate::usage::Charge)> {
        let pg = self.pg.clone();
        let now = super::now_ms() as i64;
        Box::pin(async move { super::usage::postgres_counters(&pg, &slot, now).await })
    }

    fn settle_budget(
        &self,
        slot: crate::usage::BudgetSlot,
        run_id: String,
        spent: crate::usage::Charge,
    ) -> StoreFuture<()> {
        let pg = self.pg.clone();
        Box::pin(async move { super::usage::postgres_settle(&pg, &slot, &run_id, &spent).await })
    }

    fn put_recordings(&self, rows: Vec<super::recordings::RecordingRow>) -> StoreFuture<()> {
        let pg = self.pg.clone();
        Box::pin(async move { super::recordings::postgres_put(&pg, &rows).await })
    }

    fn recordings(
        &self,
        query: super::recordings::RecordingQuery,
    ) -> StoreFuture<Vec<super::recordings::RecordingSummary>> {
        let pg = self.pg.clone();
        Box::pin(async move { super::recordings::postgres_list(&pg, &query).await })
    }

    fn recording(&self, id: &str) -> StoreFuture<Option<super::recordings::RecordingRow>> {
        let (pg, id) = (self.pg.clone(), id.to_string());
        Box::pin(async move { super::recordings::postgres_get(&pg, &id).await })
    }

    fn prune_recordings(&self, now_ms: i64) -> StoreFuture<usize> {
        let pg = self.pg.clone();
        Box::pin(async move { super::recordings::postgres_prune(&pg, now_ms).await })
    }
}

/// The session's owner and the history and state for a turn (nothing for a
/// new session); the connection goes back to the pool at once.
async fn load(pg: &Postgres, key: &str, max: usize) -> Result<(Option<SessionOwner>, SessionData), StoreError> {
    let client = pg.client().await?;
    let history = format!(
        "SELECT {MESSAGE_COLUMNS} FROM
           (SELECT * FROM messages WHERE session_key = $1 ORDER BY id DESC LIMIT $2) recent
         ORDER BY id"
    );
    let limit = max as i64;
    let (by_key, by_key_limited): (Params<1>, Params<2>) = ([&key], [&key, &limit]);
    // Pipelined: one round trip.
    let (owner, history, state) = futures::try_join!(
        client.query_opt("SELECT agent_id, owner FROM sessions WHERE key = $1", &by_key),
        client.query(&history, &by_key_limited),
        client.query("SELECT key, value FROM session_state WHERE session_key = $1", &by_key),
    )
    .map_err(db)?;
    Ok(match owner {
        None => (None, SessionData::default()),
        Some(row) => (
            Some(SessionOwner { agent: row.get(0), owner: row.get(1) }),
            SessionData {
                history: history.iter().map(|r| read_message(r).message).collect(),
                state: state.iter().map(|r| (r.get(0), r.get(1))).collect(),
            },
        ),
    })
}

/// A begun turn: the lane ticket and the lane lock travel with the write.
struct PostgresTurn {
    pg: Arc<Postgres>,
    key: String,
    /// The agent writing, and the owner a new session gets.
    session: SessionOwner,
    ticket: LaneTicket,
    lock: LaneLock,
}

impl TurnWriter for PostgresTurn {
    fn commit(self: Box<Self>, run: Option<RunMark>, messages: Vec<Message>, state: StateChanges) -> StoreFuture<()> {
        let Self { pg, key, session, ticket, lock } = *self;
        // Spawned: the write runs to its end even if the run's task is
        // aborted, and the lane is released only after it.
        let write = tokio::spawn(async move {
            let written = append_turn(&pg, &lock, &key, &session, run.as_ref(), &messages, &state).await;
            drop(lock);
            drop(ticket);
            written
        });
        Box::pin(async move {
            write.await.unwrap_or_else(|e| Err(StoreError::Backend(format!("session store task failed: {e}"))))
        })
    }
}

/// The turn's messages and state changes in one transaction: all or nothing.
async fn append_turn(
    pg: &Postgres,
    lock: &LaneLock,
    key: &str,
    session: &SessionOwner,
    run: Option<&RunMark>,
    turn: &[Message],
    state: &StateChanges,
) -> Result<(), StoreError> {
    let (run_id, idempotency_key) = (run.map(|r| &r.run_id), run.and_then(|r| r.idempotency_key.as_ref()));
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(db)?;
    // Still ours? If the control connection dropped, another instance may be
    // writing this session now: write nothing rather than interleave.
    lock.confirm(&tx).await?;
    let existing = tx.query_opt("SELECT agent_id, owner FROM sessions WHERE key = $1", &[&key]).await.map_err(db)?;
    let existing = existing.map(|r| SessionOwner { agent: r.get(0), owner: r.get(1) });
    if let Some(existing) = existing.filter(|e| e != session) {
        return Err(refused_write(key, session, existing));
    }
    let now = now_ms() as i64;
    tx.execute(
        "INSERT INTO sessions (key, agent_id, owner, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
        &[&key, &session.agent, &session.owner, &now],
    )
    .await
    .map_err(db)?;
    if !turn.is_empty() {
        let insert = tx
            .prepare(
                "INSERT INTO messages (session_key, role, content, name, tool_call_id, tool_calls, created_at,
                                       run_id, idempotency_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await
            .map_err(db)?;
        // One at a time: ids follow the order of the turn.
        for m in turn {
            let tool_calls = tool_calls_json(&m.tool_calls);
            let params: Params<9> = [
                &key,
                &role_name(m.role),
                &m.content,
                &m.name,
                &m.tool_call_id,
                &tool_calls,
                &now,
                &run_id,
                &idempotency_key,
            ];
            tx.execute(&insert, &params).await.map_err(db)?;
        }
    }
    for (k, v) in state {
        match v {
            Some(v) => {
                tx.execute(
                    "INSERT INTO session_state (session_key, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (session_key, key) DO UPDATE SET value = excluded.value",
                    &[&key, k, v],
                )
                .await
            }
            None => tx.execute("DELETE FROM session_state WHERE session_key = $1 AND key = $2", &[&key, k]).await,
        }
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(())
}
