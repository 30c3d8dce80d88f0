//! Paired devices (OpenClaw's device identity, `auth/device.rs`): a browser
//! or app that proved its ed25519 key on a connect with a credential gets a
//! device token bound to that key and to the principal that paired it. Only
//! the token's SHA-256 is kept, so the table leaks no usable secret. It lives
//! in the sessions database so that every instance of a cluster sees a
//! pairing or a revocation at its next connect. The tables are SQLite's
//! [`SQLITE_MIGRATION`] and step 7 of `db/migrations.rs`.

use rusqlite::{Connection, OptionalExtension, params};

use super::store::StoreError;
use crate::db::Postgres;

/// One paired device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedDevice {
    /// Hex SHA-256 of the raw public key, as OpenClaw's clients name a device.
    pub id: String,
    /// The raw ed25519 public key, base64url as the client sent it.
    pub public_key: String,
    /// The principal (token name) that paired it; the device acts as it.
    pub principal: String,
    /// Scope names granted, never more than the pairing connection held.
    pub scopes: Vec<String>,
    /// The client that paired it (`openclaw-control-ui`, …), for the list.
    pub client_id: String,
    /// Hex SHA-256 of the current device token; `None` once revoked.
    pub token_digest: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

/// The SQLite schema step (appended to `sqlite.rs`'s migrations).
pub(super) const SQLITE_MIGRATION: &str = "CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        principal TEXT NOT NULL,
        scopes TEXT NOT NULL,
        client_id TEXT NOT NULL,
        token_digest TEXT UNIQUE,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
     );";

/// The channel a revoked or removed device is announced on (id as payload),
/// so that every instance of a cluster closes its connections.
pub const CHANNEL: &str = "wasmclaw_devices";

const COLUMNS: &str = "id, public_key, principal, scopes, client_id, token_digest, created_at, revoked_at";

/// Insert or replace: a device paired again gets a fresh token and the new
/// principal's scopes, and is no longer revoked.
const UPSERT: &str =
    "INSERT INTO devices (id, public_key, principal, scopes, client_id, token_digest, created_at, revoked_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
     ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, principal = excluded.principal,
        scopes = excluded.scopes, client_id = excluded.client_id, token_digest = excluded.token_digest,
        revoked_at = NULL";

const REVOKE: &str =
    "UPDATE devices SET token_digest = NULL, revoked_at = $2 WHERE id = $1 AND token_digest IS NOT NULL";

fn sqlite_sql(sql: &str) -> String {
    // `$n` placeholders are SQLite's `?n`.
    sql.replace('$', "?")
}

fn row_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<PairedDevice> {
    Ok(PairedDevice {
        id: r.get(0)?,
        public_key: r.get(1)?,
        principal: r.get(2)?,
        scopes: split(&r.get::<_, String>(3)?),
        client_id: r.get(4)?,
        token_digest: r.get(5)?,
        created_at: r.get::<_, i64>(6)? as u64,
        revoked_at: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
    })
}

fn split(scopes: &str) -> Vec<String> {
    scopes.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

pub(super) fn sqlite_pair(conn: &Connection, d: &PairedDevice) -> rusqlite::Result<()> {
    conn.execute(
        &sqlite_sql(UPSERT),
        params![d.id, d.public_key, d.principal, d.scopes.join(","), d.client_id, d.token_digest, d.created_at as i64],
    )?;
    Ok(())
}

pub(super) fn sqlite_by_token(conn: &Connection, digest: &str) -> rusqlite::Result<Option<PairedDevice>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM devices WHERE token_digest = ?1"), [digest], row_sqlite).optional()
}

pub(super) fn sqlite_list(conn: &Connection) -> rusqlite::Result<Vec<PairedDevice>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM devices ORDER BY created_at, id"))?;
    stmt.query_map([], row_sqlite)?.collect()
}

pub(super) fn sqlite_revoke(conn: &Connection, id: &str, at: u64) -> rusqlite::Result<bool> {
    Ok(conn.execute(&sqlite_sql(REVOKE), params![id, at as i64])? > 0)
}

pub(super) fn sqlite_remove(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM devices WHERE id = ?1", [id])? > 0)
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    crate::db::DbError::from(e).into()
}

fn row_pg(r: &tokio_postgres::Row) -> PairedDevice {
    PairedDevice {
        id: r.get(0),
        public_key: r.get(1),
        principal: r.get(2),
        scopes: split(r.get(3)),
        client_id: r.get(4),
        token_digest: r.get(5),
        created_at: r.get::<_, i64>(6) as u64,
        revoked_at: r.get::<_, Option<i64>>(7).map(|t| t as u64),
    }
}

pub(super) async fn postgres_pair(pg: &Postgres, d: &PairedDevice) -> Result<(), StoreError> {
    let client = pg.client().await?;
    let (scopes, created_at) = (d.scopes.join(","), d.created_at as i64);
    client
        .execute(UPSERT, &[&d.id, &d.public_key, &d.principal, &scopes, &d.client_id, &d.token_digest, &created_at])
        .await
        .map_err(pg_error)?;
    Ok(())
}

pub(super) async fn postgres_by_token(pg: &Postgres, digest: &str) -> Result<Option<PairedDevice>, StoreError> {
    let client = pg.client().await?;
    let sql = format!("SELECT {COLUMNS} FROM devices WHERE token_digest = $1");
    Ok(client.query_opt(&sql, &[&digest]).await.map_err(pg_error)?.as_ref().map(row_pg))
}

pub(super) async fn postgres_list(pg: &Postgres) -> Result<Vec<PairedDevice>, StoreError> {
    let client = pg.client().await?;
    let sql = format!("SELECT {COLUMNS} FROM devices ORDER BY created_at, id");
    Ok(client.query(&sql, &[]).await.map_err(pg_error)?.iter().map(row_pg).collect())
}

/// Run `change` (which returns the id of the device it changed, if any) and,
/// in the same statement, tell every instance (`NOTIFY` [`CHANNEL`]) so each
/// closes that device's connections; true when a device changed.
async fn postgres_change_and_announce(
    pg: &Postgres,
    change: &str,
    id: &str,
    at: Option<i64>,
) -> Result<bool, StoreError> {
    let client = pg.client().await?;
    let sql = format!("WITH changed AS ({change} RETURNING id) SELECT pg_notify('{CHANNEL}', id)::text FROM changed");
    let rows = match at {
        Some(at) => client.query(&sql, &[&id, &at]).await,
        None => client.query(&sql, &[&id]).await,
    };
    Ok(!rows.map_err(pg_error)?.is_empty())
}

pub(super) async fn postgres_revoke(pg: &Postgres, id: &str, at: u64) -> Result<bool, StoreError> {
    postgres_change_and_announce(pg, REVOKE, id, Some(at as i64)).await
}

pub(super) async fn postgres_remove(pg: &Postgres, id: &str) -> Result<bool, StoreError> {
    postgres_change_and_announce(pg, "DELETE FROM devices WHERE id = $1", id, None).await
}

#[cfg(test)]
mod tests {
    use super::super::{SessionStore, SqliteStore};
    use super::*;

    fn device(id: &str, digest: &str) -> PairedDevice {
        PairedDevice {
            id: id.into(),
            public_key: "pk".into(),
            principal: "web-app".into(),
            scopes: vec!["operator.read".into(), "operator.write".into()],
            client_id: "openclaw-control-ui".into(),
            token_digest: Some(digest.into()),
            created_at: 7,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn a_device_is_found_by_its_token_until_revoked_and_pairing_again_replaces_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), 10).unwrap();
        store.pair_device(device("d1", "t1")).await.unwrap();
        assert_eq!(store.device_by_token("t1").await.unwrap(), Some(device("d1", "t1")));
        assert_eq!(store.device_by_token("t2").await.unwrap(), None);
        store.pair_device(device("d1", "t2")).await.unwrap();
        assert_eq!(store.device_by_token("t1").await.unwrap(), None, "the old token is replaced");
        assert!(store.revoke_device("d1").await.unwrap());
        assert!(!store.revoke_device("d1").await.unwrap(), "already revoked");
        assert_eq!(store.device_by_token("t2").await.unwrap(), None);
        let listed = store.devices().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].token_digest.is_none() && listed[0].revoked_at.is_some());
        assert!(store.remove_device("d1").await.unwrap());
        assert!(store.devices().await.unwrap().is_empty());
    }
}
