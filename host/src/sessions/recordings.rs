//! Recorded runs (`tape::Recording`, kept here as its JSON text): one row
//! per run with the columns a listing filters on, pruned after the agent's
//! `record.retainDays`. The PostgreSQL table is step 11 of
//! `db/migrations.rs`; SQLite's is [`SQLITE_MIGRATION`].

use rusqlite::{Connection, OptionalExtension, params};

use super::store::StoreError;
use crate::db::Postgres;

/// The SQLite schema step (appended to `sqlite.rs`'s migrations).
pub(super) const SQLITE_MIGRATION: &str = "CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        session_key TEXT NOT NULL,
        owner TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        truncated INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX recordings_by_agent ON recordings (agent_id, started_at);
     CREATE INDEX recordings_by_expiry ON recordings (expires_at);";

/// What a listing shows of a recorded run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSummary {
    pub id: String,
    pub agent: String,
    /// sha256 of the component, hex (`sha256:<hex>` in JSON, as every digest on the wire).
    #[serde(serialize_with = "sha256_prefixed")]
    pub digest: String,
    pub session_key: String,
    /// The principal that made the run.
    #[serde(skip)]
    pub owner: String,
    pub started_at: i64,
    pub outcome: String,
    pub truncated: bool,
}

fn sha256_prefixed<S: serde::Serializer>(digest: &str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("sha256:{digest}"))
}

/// A recorded run as stored.
#[derive(Debug, Clone)]
pub struct RecordingRow {
    pub summary: RecordingSummary,
    /// When it may be pruned, ms since the epoch.
    pub expires_at: i64,
    /// The recording's JSON form.
    pub body: String,
}

/// Which recordings a listing selects, newest first.
#[derive(Debug, Clone, Default)]
pub struct RecordingQuery {
    pub agent: Option<String>,
    /// Only this owner's (`None`: everyone's).
    pub owner: Option<String>,
    /// Only runs started at or after this, ms since the epoch.
    pub since: i64,
    pub limit: usize,
}

const COLUMNS: &str = "id, agent_id, digest, session_key, owner, started_at, outcome, truncated";

const LIST: &str = "SELECT id, agent_id, digest, session_key, owner, started_at, outcome, truncated FROM recordings \
     WHERE ($1 IS NULL OR agent_id = $1) AND ($2 IS NULL OR owner = $2) AND started_at >= $3 \
     ORDER BY started_at DESC, id DESC LIMIT $4";

pub(super) fn sqlite_put(conn: &mut Connection, rows: &[RecordingRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO recordings ({COLUMNS}, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        for row in rows {
            let s = &row.summary;
            insert.execute(params![
                s.id,
                s.agent,
                s.digest,
                s.session_key,
                s.owner,
                s.started_at,
                s.outcome,
                s.truncated,
                row.expires_at,
                row.body
            ])?;
        }
    }
    tx.commit()
}

fn sqlite_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordingSummary> {
    Ok(RecordingSummary {
        id: r.get(0)?,
        agent: r.get(1)?,
        digest: r.get(2)?,
        session_key: r.get(3)?,
        owner: r.get(4)?,
        started_at: r.get(5)?,
        outcome: r.get(6)?,
        truncated: r.get(7)?,
    })
}

pub(super) fn sqlite_list(conn: &Connection, q: &RecordingQuery) -> rusqlite::Result<Vec<RecordingSummary>> {
    let mut stmt = conn.prepare_cached(&LIST.replace('$', "?"))?;
    let rows = stmt.query_map(params![q.agent, q.owner, q.since, q.limit as i64], sqlite_summary)?;
    rows.collect()
}

pub(super) fn sqlite_get(conn: &Connection, id: &str) -> rusqlite::Result<Option<RecordingRow>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS}, expires_at, body FROM recordings WHERE id = ?1"))?
        .query_row(params![id], |r| {
            Ok(RecordingRow { summary: sqlite_summary(r)?, expires_at: r.get(8)?, body: r.get(9)? })
        })
        .optional()
}

pub(super) fn sqlite_prune(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM recordings WHERE expires_at <= ?1")?.execute(params![now_ms])
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    crate::db::DbError::from(e).into()
}

fn pg_summary(r: &tokio_postgres::Row) -> RecordingSummary {
    RecordingSummary {
        id: r.get(0),
        agent: r.get(1),
        digest: r.get(2),
        session_key: r.get(3),
        owner: r.get(4),
        started_at: r.get(5),
        outcome: r.get(6),
        truncated: r.get(7),
    }
}

pub(super) async fn postgres_put(pg: &Postgres, rows: &[RecordingRow]) -> Result<(), StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let insert = tx
        .prepare(&format!(
            "INSERT INTO recordings ({COLUMNS}, expires_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .await
        .map_err(pg_error)?;
    for row in rows {
        let s = &row.summary;
        let values: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &s.id,
            &s.agent,
            &s.digest,
            &s.session_key,
            &s.owner,
            &s.started_at,
            &s.outcome,
            &s.truncated,
            &row.expires_at,
            &row.body,
        ];
        tx.execute(&insert, &values).await.map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn postgres_list(pg: &Postgres, q: &RecordingQuery) -> Result<Vec<RecordingSummary>, StoreError> {
    let client = pg.client().await?;
    let sql = LIST.replace("$1 IS NULL", "$1::TEXT IS NULL").replace("$2 IS NULL", "$2::TEXT IS NULL");
    let rows = client.query(&sql, &[&q.agent, &q.owner, &q.since, &(q.limit as i64)]).await.map_err(pg_error)?;
    Ok(rows.iter().map(pg_summary).collect())
}

pub(super) async fn postgres_get(pg: &Postgres, id: &str) -> Result<Option<RecordingRow>, StoreError> {
    let client = pg.client().await?;
    let sql = format!("SELECT {COLUMNS}, expires_at, body FROM recordings WHERE id = $1");
    let row = client.query_opt(&sql, &[&id]).await.map_err(pg_error)?;
    Ok(row.map(|r| RecordingRow { summary: pg_summary(&r), expires_at: r.get(8), body: r.get(9) }))
}

pub(super) async fn postgres_prune(pg: &Postgres, now_ms: i64) -> Result<usize, StoreError> {
    let client = pg.client().await?;
    let n = client.execute("DELETE FROM recordings WHERE expires_at <= $1", &[&now_ms]).await.map_err(pg_error)?;
    Ok(n as usize)
}
