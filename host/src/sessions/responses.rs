//! Stored responses (`/v1/responses` with `store: true`): the response object
//! a client can fetch again, and the session it continues. A row belongs to
//! the principal that created it and to its session: it goes when the
//! session is reset or expires (`ON DELETE CASCADE`), so an id never points
//! at a conversation that is gone. The PostgreSQL table is step 3 of
//! `db/migrations.rs`; SQLite's is [`SQLITE_MIGRATION`].

use rusqlite::{Connection, OptionalExtension, params};

use super::store::StoreError;
use crate::db::Postgres;

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// `resp_…`
    pub id: String,
    /// The principal that created it; no one else may read, continue or delete it.
    pub owner: String,
    pub agent: String,
    /// The session that `previous_response_id` continues.
    pub session_key: String,
    /// The response object as JSON text, exactly as the client received it.
    pub body: String,
    /// The input items it answered (references resolved, each with an `id`),
    /// as a JSON array; `[]` for rows stored before input was kept.
    pub input: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// The SQLite schema step (appended to `sqlite.rs`'s migrations).
pub(super) const SQLITE_MIGRATION: &str = "CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE INDEX responses_by_session ON responses (session_key);";

/// The SQLite step that keeps each response's input items (`input_items`).
pub(super) const SQLITE_INPUT_MIGRATION: &str = "ALTER TABLE responses ADD COLUMN input TEXT NOT NULL DEFAULT '[]';";

const COLUMNS: &str = "id, owner, agent_id, session_key, body, created_at, input";

pub(super) fn sqlite_put(conn: &Connection, r: &StoredResponse) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO responses (id, owner, agent_id, session_key, body, created_at, input) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![r.id, r.owner, r.agent, r.session_key, r.body, r.created_at as i64, r.input],
    )?;
    Ok(())
}

pub(super) fn sqlite_get(conn: &Connection, id: &str) -> rusqlite::Result<Option<StoredResponse>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM responses WHERE id = ?1"), [id], |r| {
        Ok(StoredResponse {
            id: r.get(0)?,
            owner: r.get(1)?,
            agent: r.get(2)?,
            session_key: r.get(3)?,
            body: r.get(4)?,
            created_at: r.get::<_, i64>(5)? as u64,
            input: r.get(6)?,
        })
    })
    .optional()
}

pub(super) fn sqlite_delete(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM responses WHERE id = ?1", [id])? > 0)
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    crate::db::DbError::from(e).into()
}

pub(super) async fn postgres_put(pg: &Postgres, r: &StoredResponse) -> Result<(), StoreError> {
    let client = pg.client().await?;
    let created_at = r.created_at as i64;
    client
        .execute(
            "INSERT INTO responses (id, owner, agent_id, session_key, body, created_at, input) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&r.id, &r.owner, &r.agent, &r.session_key, &r.body, &created_at, &r.input],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

pub(super) async fn postgres_get(pg: &Postgres, id: &str) -> Result<Option<StoredResponse>, StoreError> {
    let client = pg.client().await?;
    let row =
        client.query_opt(&format!("SELECT {COLUMNS} FROM responses WHERE id = $1"), &[&id]).await.map_err(pg_error)?;
    Ok(row.map(|r| StoredResponse {
        id: r.get(0),
        owner: r.get(1),
        agent: r.get(2),
        session_key: r.get(3),
        body: r.get(4),
        created_at: r.get::<_, i64>(5) as u64,
        input: r.get(6),
    }))
}

pub(super) async fn postgres_delete(pg: &Postgres, id: &str) -> Result<bool, StoreError> {
    let client = pg.client().await?;
    Ok(client.execute("DELETE FROM responses WHERE id = $1", &[&id]).await.map_err(pg_error)? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Message, Role};
    use crate::sessions::{SessionStore, SqliteStore, StateChanges};

    fn response(id: &str, session: &str) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            owner: "operator".into(),
            agent: "main".into(),
            session_key: session.into(),
            body: format!(r#"{{"id":"{id}"}}"#),
            created_at: 1,
            input: r#"[{"type":"message","id":"msg_1","role":"user","content":[]}]"#.into(),
        }
    }

    #[tokio::test]
    async fn responses_round_trip_and_go_with_their_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite"), 10).unwrap();
        let turn = store.begin_turn("k", "main", "operator").await.unwrap();
        turn.commit(vec![Message::text(Role::User, "hi")], StateChanges::new()).await.unwrap();
        store.put_response(response("resp_a", "k")).await.unwrap();
        store.put_response(response("resp_b", "k")).await.unwrap();
        assert_eq!(store.response("resp_a").await.unwrap(), Some(response("resp_a", "k")));
        assert!(store.put_response(response("resp_c", "no-such-session")).await.is_err(), "the session must exist");
        assert!(store.delete_response("resp_a").await.unwrap());
        assert!(!store.delete_response("resp_a").await.unwrap());
        assert_eq!(store.response("resp_a").await.unwrap(), None);
        assert!(store.delete("k", "operator").await.unwrap());
        assert_eq!(store.response("resp_b").await.unwrap(), None, "a reset session takes its responses along");
    }
}
