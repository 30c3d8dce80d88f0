//! The registry on one machine: records in the gateway's SQLite file (the
//! tables come with the session store's migrations), bytes as files under
//! `<stateDir>/components`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::files::Blobs;
use super::rollout::{self, Versions};
use super::{Record, RegistryError, RegistryFuture, RegistryStore, RolloutEnd, RolloutRecord, StoredVersion, now_ms};

/// SQLite-backed [`RegistryStore`].
pub struct SqliteRegistry {
    conn: Arc<Mutex<Connection>>,
    blobs: Arc<Blobs>,
}

impl SqliteRegistry {
    /// Open the database at `path` (already migrated by the session store)
    /// and keep components under `components`.
    pub fn open(path: &Path, components: PathBuf) -> Result<Self, RegistryError> {
        let fail = |e: rusqlite::Error| RegistryError::Backend(format!("{}: {e}", path.display()));
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), blobs: Arc::new(Blobs::new(components)) })
    }

    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> RegistryFuture<T> {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                work(&mut conn).map_err(|e| RegistryError::Backend(e.to_string()))
            })
            .await
            .map_err(|e| RegistryError::Backend(format!("registry task failed: {e}")))?
        })
    }
}

const COLUMNS: &str =
    "id, current_digest, current_source, previous_digest, previous_source, updated_at, revision, rollout";

fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let version = |digest: Option<String>, source: Option<String>| {
        digest.map(|digest| StoredVersion { digest, source: source.unwrap_or_default() })
    };
    let id: String = row.get(0)?;
    Ok(Record {
        current: version(row.get(1)?, row.get(2)?),
        previous: version(row.get(3)?, row.get(4)?),
        updated_at: row.get::<_, i64>(5)? as u64,
        revision: row.get::<_, i64>(6)? as u64,
        rollout: rollout::from_text(&id, row.get(7)?),
        id,
    })
}

fn record(conn: &Connection, id: &str) -> rusqlite::Result<Option<Record>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"), [id], read_record).optional()
}

/// Write `id`'s new state with the next revision, in one transaction.
fn write(
    conn: &mut Connection,
    id: &str,
    change: impl FnOnce(Option<&Record>) -> Option<Versions>,
) -> rusqlite::Result<Option<Record>> {
    let tx = conn.transaction()?;
    let Some(Versions { current, previous, rollout }) = change(record(&tx, id)?.as_ref()) else { return Ok(None) };
    let revision: i64 = tx.query_row("SELECT COALESCE(MAX(revision), 0) + 1 FROM agents", [], |r| r.get(0))?;
    let updated_at = now_ms();
    tx.execute(
        "INSERT INTO agents (id, current_digest, current_source, previous_digest, previous_source, updated_at, revision, rollout)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET current_digest = ?2, current_source = ?3, previous_digest = ?4,
           previous_source = ?5, updated_at = ?6, revision = ?7, rollout = ?8",
        params![
            id,
            current.as_ref().map(|v| &v.digest),
            current.as_ref().map(|v| &v.source),
            previous.as_ref().map(|v| &v.digest),
            previous.as_ref().map(|v| &v.source),
            updated_at as i64,
            revision,
            rollout::to_text(rollout.as_ref()),
        ],
    )?;
    tx.commit()?;
    Ok(Some(Record { id: id.to_string(), current, previous, updated_at, revision: revision as u64, rollout }))
}

impl RegistryStore for SqliteRegistry {
    fn put_component(&self, digest: &str, bytes: Arc<[u8]>) -> RegistryFuture<()> {
        let (blobs, digest) = (self.blobs.clone(), digest.to_string());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || blobs.put(&digest, &bytes))
                .await
                .map_err(|e| RegistryError::Backend(format!("registry task failed: {e}")))?
        })
    }

    fn component(&self, digest: &str) -> RegistryFuture<Option<Arc<[u8]>>> {
        let (blobs, digest) = (self.blobs.clone(), digest.to_string());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || blobs.get(&digest))
                .await
                .map_err(|e| RegistryError::Backend(format!("registry task failed: {e}")))?
        })
    }

    fn install(&self, id: &str, version: StoredVersion) -> RegistryFuture<Record> {
        let id = id.to_string();
        let write = self.blocking(move |conn| write(conn, &id, |old| super::installed_over(old, version)));
        Box::pin(async move { write.await.map(|r| r.expect("an install always writes")) })
    }

    fn rollback(&self, id: &str) -> RegistryFuture<Option<Record>> {
        let id = id.to_string();
        self.blocking(move |conn| {
            write(conn, &id, |old| {
                let old = old?;
                Some(Versions {
                    current: Some(old.previous.clone()?),
                    previous: Some(old.current.clone()?),
                    rollout: None,
                })
            })
        })
    }

    fn remove(&self, id: &str) -> RegistryFuture<Option<Record>> {
        let id = id.to_string();
        self.blocking(move |conn| {
            write(conn, &id, |old| {
                old.and_then(|r| r.current.as_ref()).map(|_| Versions { current: None, previous: None, rollout: None })
            })
        })
    }

    fn records(&self) -> RegistryFuture<Vec<Record>> {
        self.blocking(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM agents ORDER BY id"))?;
            stmt.query_map([], read_record)?.collect()
        })
    }

    fn record(&self, id: &str) -> RegistryFuture<Option<Record>> {
        let id = id.to_string();
        self.blocking(move |conn| record(conn, &id))
    }

    fn origin(&self, origin: &str) -> RegistryFuture<Option<String>> {
        let origin = origin.to_string();
        self.blocking(move |conn| {
            conn.query_row("SELECT fingerprint FROM agent_origins WHERE origin = ?1", [origin], |r| r.get(0)).optional()
        })
    }

    fn origins(&self, prefix: &str) -> RegistryFuture<Vec<(String, String)>> {
        let prefix = prefix.to_string();
        self.blocking(move |conn| {
            let mut stmt = conn.prepare("SELECT origin, fingerprint FROM agent_origins ORDER BY origin")?;
            let rows: rusqlite::Result<Vec<(String, String)>> =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
            Ok(rows?.into_iter().filter(|(o, _)| o.starts_with(&prefix)).collect())
        })
    }

    fn start_rollout(&self, id: &str, started: RolloutRecord) -> RegistryFuture<Option<Record>> {
        let id = id.to_string();
        self.blocking(move |conn| write(conn, &id, |old| rollout::started(old, started)))
    }

    fn end_rollout(&self, id: &str, only: Option<&str>, end: RolloutEnd) -> RegistryFuture<Option<Record>> {
        let (id, only) = (id.to_string(), only.map(str::to_string));
        self.blocking(move |conn| write(conn, &id, |old| rollout::ended(old, only.as_deref(), end)))
    }

    fn set_origin(&self, origin: &str, fingerprint: Option<&str>) -> RegistryFuture<()> {
        let (origin, fingerprint) = (origin.to_string(), fingerprint.map(str::to_string));
        self.blocking(move |conn| {
            match fingerprint {
                Some(f) => conn.execute(
                    "INSERT INTO agent_origins (origin, fingerprint) VALUES (?1, ?2)
                     ON CONFLICT (origin) DO UPDATE SET fingerprint = ?2",
                    params![origin, f],
                )?,
                None => conn.execute("DELETE FROM agent_origins WHERE origin = ?1", [origin])?,
            };
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(digest: &str, source: &str) -> StoredVersion {
        StoredVersion { digest: digest.into(), source: source.into() }
    }

    #[tokio::test]
    async fn installs_rollbacks_and_removals_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gateway.sqlite");
        crate::sessions::SqliteStore::open(&db, 10).unwrap();
        let open = || SqliteRegistry::open(&db, dir.path().join("components")).unwrap();
        let store = open();
        let a = store.install("main", version("a", "admin-api")).await.unwrap();
        let b = store.install("main", version("b", "dir:/x/main.wasm")).await.unwrap();
        assert!(b.revision > a.revision);
        assert_eq!(b.previous, Some(version("a", "admin-api")));
        let back = store.rollback("main").await.unwrap().unwrap();
        assert_eq!((back.current.unwrap().digest, back.previous.unwrap().digest), ("a".into(), "b".into()));
        assert!(store.rollback("other").await.unwrap().is_none());
        // The same bytes again keep the rollback target on another version.
        let again = store.install("main", version("a", "admin-api")).await.unwrap();
        assert_eq!(again.previous.unwrap().digest, "b");
        store.install("gone", version("c", "websocket")).await.unwrap();
        assert!(store.remove("gone").await.unwrap().is_some());
        assert!(store.remove("gone").await.unwrap().is_none(), "removing twice changes nothing");
        store.set_origin("entry:main", Some("f1")).await.unwrap();
        drop(store);

        let store = open();
        let records = store.records().await.unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].id, "gone");
        assert!(records[0].current.is_none(), "a removal is kept");
        assert_eq!(records[1].current.as_ref().unwrap().digest, "a");
        assert_eq!(store.origin("entry:main").await.unwrap().as_deref(), Some("f1"));
        assert_eq!(store.origins("entry:").await.unwrap().len(), 1);
        store.set_origin("entry:main", None).await.unwrap();
        assert!(store.origin("entry:main").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_rollout_is_kept_with_its_record_and_ended_by_an_install_of_another_version() {
        use crate::registry::{RolloutEnd, RolloutRecord, RolloutState};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gateway.sqlite");
        crate::sessions::SqliteStore::open(&db, 10).unwrap();
        let open = || SqliteRegistry::open(&db, dir.path().join("components")).unwrap();
        let store = open();
        let rollout = RolloutRecord {
            id: "r1".into(),
            candidate: version("b", "admin-api"),
            weight: 30,
            sticky: crate::config::Sticky::Session,
            auto_rollback: Some(crate::config::AutoRollback {
                min_runs: 5,
                max_error_rate: Some(0.1),
                max_p95_ratio: None,
            }),
            state: RolloutState::Running,
            reason: None,
            source: "admin-api".into(),
            started_at: 7,
            shadow: None,
        };
        assert!(store.start_rollout("main", rollout.clone()).await.unwrap().is_none(), "nothing serves main yet");
        let a = store.install("main", version("a", "admin-api")).await.unwrap();
        let started = store.start_rollout("main", rollout.clone()).await.unwrap().unwrap();
        assert!(started.revision > a.revision);
        drop(store);

        let store = open();
        assert_eq!(store.record("main").await.unwrap().unwrap().rollout, Some(rollout.clone()));
        let back = store.end_rollout("main", Some("r1"), RolloutEnd::RollBack("slow".into())).await.unwrap().unwrap();
        assert_eq!(back.rollout.as_ref().map(|r| r.state), Some(RolloutState::RolledBack));
        assert_eq!(back.current.as_ref().unwrap().digest, "a");
        // Reinstalling the version serving keeps the rollout; another version ends it.
        let same = store.install("main", version("a", "admin-api")).await.unwrap();
        assert!(same.rollout.is_some());
        let other = store.install("main", version("c", "admin-api")).await.unwrap();
        assert!(other.rollout.is_none());
    }
}
