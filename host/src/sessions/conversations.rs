//! Conversations (`/v1/conversations`): a list of items a principal keeps and
//! runs responses in. A conversation is a session: its first response binds
//! it to an agent and a session key, and every later response continues that
//! session. Items added by the client (at creation or with `POST …/items`)
//! are *pending* until the next response, which sends them to the agent
//! before its own input and then settles them, so the agent sees every item
//! once, in order. The tables are SQLite's [`SQLITE_MIGRATION`] and step 5
//! of `db/migrations.rs`.

use rusqlite::{Connection, OptionalExtension, params};

use super::store::StoreError;
use crate::db::Postgres;

/// One conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// `conv_…`
    pub id: String,
    /// The principal that created it; for anyone else it does not exist.
    pub owner: String,
    /// The client's `metadata` object as JSON text.
    pub metadata: String,
    /// The agent its first response ran; later responses must use it.
    pub agent: Option<String>,
    /// The session its responses run in, once one has.
    pub session_key: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// One item of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationItem {
    /// `msg_…`, `fc_…`, … as the client sees it.
    pub id: String,
    /// The item as JSON text.
    pub body: String,
    /// Added by the client and not yet sent to the agent.
    pub pending: bool,
}

/// Which items a listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemQuery {
    /// Only items after (in `order`) the item with this id.
    pub after: Option<String>,
    /// Newest first (OpenAI's default).
    pub descending: bool,
    pub limit: usize,
    /// Only the pending items.
    pub pending_only: bool,
}

/// One page of items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemPage {
    pub items: Vec<ConversationItem>,
    pub has_more: bool,
}

impl ItemPage {
    /// A page from up to `limit + 1` rows (the extra one says there are more).
    fn of(mut items: Vec<ConversationItem>, limit: usize) -> Self {
        let has_more = items.len() > limit;
        items.truncate(limit);
        Self { items, has_more }
    }
}

/// The SQLite schema step (appended to `sqlite.rs`'s migrations).
pub(super) const SQLITE_MIGRATION: &str = "CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        metadata TEXT NOT NULL,
        agent_id TEXT,
        session_key TEXT,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE conversation_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        pending INTEGER NOT NULL
     );
     CREATE INDEX conversation_items_by_conversation ON conversation_items (conversation_id, seq);";

const COLUMNS: &str = "id, owner, metadata, agent_id, session_key, created_at";

/// The listing query; `$1` conversation, `$2` after, `$3` pending only, `$4` limit.
fn list_sql(descending: bool, placeholder: fn(usize) -> String, truth: &str) -> String {
    let (cmp, order) = if descending { ("<", "DESC") } else { (">", "ASC") };
    let p = placeholder;
    format!(
        "SELECT id, body, pending FROM conversation_items WHERE conversation_id = {p1}
           AND ({p2} IS NULL OR seq {cmp} (SELECT seq FROM conversation_items WHERE conversation_id = {p1} AND id = {p2}))
           AND (NOT {p3} OR pending = {truth})
         ORDER BY seq {order} LIMIT {p4}",
        p1 = p(1),
        p2 = p(2),
        p3 = p(3),
        p4 = p(4),
    )
}

pub(super) fn sqlite_create(
    conn: &mut Connection,
    c: &Conversation,
    items: &[ConversationItem],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        &format!("INSERT INTO conversations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![c.id, c.owner, c.metadata, c.agent, c.session_key, c.created_at as i64],
    )?;
    sqlite_insert_items(&tx, &c.id, items)?;
    tx.commit()
}

fn sqlite_insert_items(conn: &Connection, id: &str, items: &[ConversationItem]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO conversation_items (conversation_id, id, body, pending) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for item in items {
        stmt.execute(params![id, item.id, item.body, item.pending])?;
    }
    Ok(())
}

pub(super) fn sqlite_get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Conversation>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM conversations WHERE id = ?1"), [id], |r| {
        Ok(Conversation {
            id: r.get(0)?,
            owner: r.get(1)?,
            metadata: r.get(2)?,
            agent: r.get(3)?,
            session_key: r.get(4)?,
            created_at: r.get::<_, i64>(5)? as u64,
        })
    })
    .optional()
}

pub(super) fn sqlite_update(conn: &Connection, c: &Conversation) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE conversations SET metadata = ?2, agent_id = COALESCE(agent_id, ?3), session_key = COALESCE(session_key, ?4) WHERE id = ?1",
        params![c.id, c.metadata, c.agent, c.session_key],
    )?;
    Ok(changed > 0)
}

pub(super) fn sqlite_delete(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM conversations WHERE id = ?1", [id])? > 0)
}

pub(super) fn sqlite_add_items(
    conn: &mut Connection,
    id: &str,
    settle: &[String],
    items: &[ConversationItem],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for item in settle {
        tx.execute("UPDATE conversation_items SET pending = 0 WHERE conversation_id = ?1 AND id = ?2", [id, item])?;
    }
    sqlite_insert_items(&tx, id, items)?;
    tx.commit()
}

pub(super) fn sqlite_items(conn: &Connection, id: &str, q: &ItemQuery) -> rusqlite::Result<ItemPage> {
    let sql = list_sql(q.descending, |n| format!("?{n}"), "1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![id, q.after, q.pending_only, (q.limit + 1) as i64], |r| {
        Ok(ConversationItem { id: r.get(0)?, body: r.get(1)?, pending: r.get(2)? })
    })?;
    Ok(ItemPage::of(rows.collect::<rusqlite::Result<Vec<_>>>()?, q.limit))
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    crate::db::DbError::from(e).into()
}

async fn pg_insert_items(
    client: &tokio_postgres::Transaction<'_>,
    id: &str,
    items: &[ConversationItem],
) -> Result<(), StoreError> {
    let stmt = client
        .prepare("INSERT INTO conversation_items (conversation_id, id, body, pending) VALUES ($1, $2, $3, $4)")
        .await
        .map_err(pg_error)?;
    for item in items {
        client.execute(&stmt, &[&id, &item.id, &item.body, &item.pending]).await.map_err(pg_error)?;
    }
    Ok(())
}

pub(super) async fn postgres_create(
    pg: &Postgres,
    c: &Conversation,
    items: &[ConversationItem],
) -> Result<(), StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let created_at = c.created_at as i64;
    tx.execute(
        &format!("INSERT INTO conversations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[&c.id, &c.owner, &c.metadata, &c.agent, &c.session_key, &created_at],
    )
    .await
    .map_err(pg_error)?;
    pg_insert_items(&tx, &c.id, items).await?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn postgres_get(pg: &Postgres, id: &str) -> Result<Option<Conversation>, StoreError> {
    let client = pg.client().await?;
    let sql = format!("SELECT {COLUMNS} FROM conversations WHERE id = $1");
    let row = client.query_opt(&sql, &[&id]).await.map_err(pg_error)?;
    Ok(row.map(|r| Conversation {
        id: r.get(0),
        owner: r.get(1),
        metadata: r.get(2),
        agent: r.get(3),
        session_key: r.get(4),
        created_at: r.get::<_, i64>(5) as u64,
    }))
}

pub(super) async fn postgres_update(pg: &Postgres, c: &Conversation) -> Result<bool, StoreError> {
    let client = pg.client().await?;
    let changed = client
        .execute(
            "UPDATE conversations SET metadata = $2, agent_id = COALESCE(agent_id, $3), session_key = COALESCE(session_key, $4) WHERE id = $1",
            &[&c.id, &c.metadata, &c.agent, &c.session_key],
        )
        .await
        .map_err(pg_error)?;
    Ok(changed > 0)
}

pub(super) async fn postgres_delete(pg: &Postgres, id: &str) -> Result<bool, StoreError> {
    let client = pg.client().await?;
    Ok(client.execute("DELETE FROM conversations WHERE id = $1", &[&id]).await.map_err(pg_error)? > 0)
}

pub(super) async fn postgres_add_items(
    pg: &Postgres,
    id: &str,
    settle: &[String],
    items: &[ConversationItem],
) -> Result<(), StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    for item in settle {
        tx.execute(
            "UPDATE conversation_items SET pending = FALSE WHERE conversation_id = $1 AND id = $2",
            &[&id, item],
        )
        .await
        .map_err(pg_error)?;
    }
    pg_insert_items(&tx, id, items).await?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn postgres_items(pg: &Postgres, id: &str, q: &ItemQuery) -> Result<ItemPage, StoreError> {
    let client = pg.client().await?;
    let sql = list_sql(q.descending, |n| format!("${n}"), "TRUE").replace("$2 IS NULL", "$2::TEXT IS NULL");
    let limit = (q.limit + 1) as i64;
    let rows = client.query(&sql, &[&id, &q.after, &q.pending_only, &limit]).await.map_err(pg_error)?;
    let items = rows.iter().map(|r| ConversationItem { id: r.get(0), body: r.get(1), pending: r.get(2) }).collect();
    Ok(ItemPage::of(items, q.limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{SessionStore, SqliteStore};

    fn item(id: &str, pending: bool) -> ConversationItem {
        ConversationItem { id: id.into(), body: format!(r#"{{"id":"{id}"}}"#), pending }
    }

    fn query(after: Option<&str>, descending: bool, limit: usize, pending_only: bool) -> ItemQuery {
        ItemQuery { after: after.map(str::to_string), descending, limit, pending_only }
    }

    fn ids(page: &ItemPage) -> Vec<&str> {
        page.items.iter().map(|i| i.id.as_str()).collect()
    }

    #[tokio::test]
    async fn items_page_both_ways_and_pending_ones_settle_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite"), 10).unwrap();
        let conv = Conversation {
            id: "conv_a".into(),
            owner: "app".into(),
            metadata: "{}".into(),
            agent: None,
            session_key: None,
            created_at: 1,
        };
        store.create_conversation(conv.clone(), vec![item("a", true), item("b", true)]).await.unwrap();
        assert_eq!(store.conversation("conv_a").await.unwrap(), Some(conv.clone()));
        store
            .add_conversation_items("conv_a", vec!["a".into()], vec![item("c", false), item("d", false)])
            .await
            .unwrap();
        store.add_conversation_items("conv_a", vec![], vec![item("e", true)]).await.unwrap();

        let all = store.conversation_items("conv_a", query(None, false, 10, false)).await.unwrap();
        assert_eq!((ids(&all), all.has_more), (vec!["a", "b", "c", "d", "e"], false));
        let newest = store.conversation_items("conv_a", query(None, true, 2, false)).await.unwrap();
        assert_eq!((ids(&newest), newest.has_more), (vec!["e", "d"], true));
        let next = store.conversation_items("conv_a", query(Some("d"), true, 2, false)).await.unwrap();
        assert_eq!((ids(&next), next.has_more), (vec!["c", "b"], true));
        let after = store.conversation_items("conv_a", query(Some("b"), false, 10, false)).await.unwrap();
        assert_eq!(ids(&after), vec!["c", "d", "e"]);
        let pending = store.conversation_items("conv_a", query(None, false, 10, true)).await.unwrap();
        assert_eq!(ids(&pending), vec!["b", "e"], "a response settles only the items it sent");

        let bound = Conversation { agent: Some("main".into()), session_key: Some("k".into()), ..conv };
        assert!(store.update_conversation(bound.clone()).await.unwrap());
        assert_eq!(store.conversation("conv_a").await.unwrap(), Some(bound.clone()));
        // A metadata update that loaded the conversation before it was bound
        // keeps the binding: a conversation's agent and session never change.
        let stale = Conversation { metadata: r#"{"a":"b"}"#.into(), agent: None, session_key: None, ..bound.clone() };
        assert!(store.update_conversation(stale.clone()).await.unwrap());
        let rebound = Conversation { agent: Some("beta".into()), session_key: Some("other".into()), ..stale.clone() };
        assert!(store.update_conversation(rebound).await.unwrap());
        let expected = Conversation { metadata: r#"{"a":"b"}"#.into(), ..bound };
        assert_eq!(store.conversation("conv_a").await.unwrap(), Some(expected));
        assert!(store.delete_conversation("conv_a").await.unwrap());
        assert!(!store.delete_conversation("conv_a").await.unwrap());
        let gone = store.conversation_items("conv_a", query(None, false, 10, false)).await.unwrap();
        assert!(gone.items.is_empty(), "items go with their conversation");
    }
}
