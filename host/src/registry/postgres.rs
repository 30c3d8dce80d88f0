//! The registry in cluster mode: records and component bytes in PostgreSQL,
//! shared by every instance. Each change is one transaction that also sends
//! `NOTIFY wasmclaw_agents`, so the other instances follow within moments.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_postgres::Row;

use super::rollout::{self, Versions};
use super::{
    Change, Record, RegistryError, RegistryFuture, RegistryStore, RolloutEnd, RolloutRecord, StoredVersion, now_ms,
};
use crate::db::{DbError, Notice, Postgres};

/// The channel agent changes are announced on.
const CHANNEL: &str = "wasmclaw_agents";

/// PostgreSQL-backed [`RegistryStore`].
pub struct PostgresRegistry {
    db: Arc<Postgres>,
    /// Tells this instance's own announcements from the others'.
    instance: String,
    changes: broadcast::Sender<Change>,
}

impl From<DbError> for RegistryError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) => Self::Unavailable(m),
            DbError::Query(m) => Self::Backend(m),
        }
    }
}

impl From<tokio_postgres::Error> for RegistryError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::from(e).into()
    }
}

impl PostgresRegistry {
    /// A registry on `db`, following the other instances' announcements.
    pub fn new(db: Arc<Postgres>) -> Self {
        let instance = uuid::Uuid::new_v4().to_string();
        let changes = broadcast::channel(256).0;
        let (mut notices, tx, me) = (db.subscribe(), changes.clone(), instance.clone());
        tokio::spawn(async move {
            loop {
                let change = match notices.recv().await {
                    Ok(Notice::Message { channel, payload }) if channel == CHANNEL => match parse(&payload, &me) {
                        Some(change) => change,
                        None => continue,
                    },
                    Ok(Notice::Message { .. }) => continue,
                    Ok(Notice::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => Change::Resync,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let _ = tx.send(change);
            }
        });
        Self { db, instance, changes }
    }

    /// `work` on a pooled connection.
    fn run<T, F, Fut>(&self, work: F) -> RegistryFuture<T>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, RegistryError>> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move { work(db.client().await?).await })
    }

    /// Change `id` in one transaction under a per-id lock, then announce it.
    fn write(
        &self,
        id: &str,
        action: &'static str,
        change: impl FnOnce(Option<&Record>) -> Option<Versions> + Send + 'static,
    ) -> RegistryFuture<Option<Record>> {
        let (db, id, instance) = (self.db.clone(), id.to_string(), self.instance.clone());
        Box::pin(async move {
            let mut client = db.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&crate::db::key_hash(&format!("agent:{id}"))]).await?;
            let old = tx.query_opt(&format!("SELECT {COLUMNS} FROM agents WHERE id = $1"), &[&id]).await?;
            let old = old.as_ref().map(read_record);
            let Some(Versions { current, previous, rollout }) = change(old.as_ref()) else { return Ok(None) };
            let revision: i64 = tx.query_one("SELECT nextval('agent_revisions')", &[]).await?.get(0);
            let updated_at = now_ms();
            tx.execute(
                "INSERT INTO agents (id, current_digest, current_source, previous_digest, previous_source, updated_at, revision, rollout)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET current_digest = $2, current_source = $3, previous_digest = $4,
                   previous_source = $5, updated_at = $6, revision = $7, rollout = $8",
                &[
                    &id,
                    &current.as_ref().map(|v| &v.digest),
                    &current.as_ref().map(|v| &v.source),
                    &previous.as_ref().map(|v| &v.digest),
                    &previous.as_ref().map(|v| &v.source),
                    &(updated_at as i64),
                    &revision,
                    &rollout::to_text(rollout.as_ref()),
                ],
            )
            .await?;
            let payload = serde_json::json!({"id": id, "revision": revision, "action": action, "instance": instance});
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload.to_string()]).await?;
            tx.commit().await?;
            Ok(Some(Record { id, current, previous, updated_at, revision: revision as u64, rollout }))
        })
    }
}

/// Another instance's announcement; `None` for our own or a malformed one.
fn parse(payload: &str, me: &str) -> Option<Change> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    if v["instance"] == me {
        return None;
    }
    Some(Change::Agent {
        id: v["id"].as_str()?.to_string(),
        revision: v["revision"].as_u64()?,
        action: v["action"].as_str()?.to_string(),
    })
}

const COLUMNS: &str =
    "id, current_digest, current_source, previous_digest, previous_source, updated_at, revision, rollout";

fn read_record(row: &Row) -> Record {
    let version = |digest: Option<String>, source: Option<String>| {
        digest.map(|digest| StoredVersion { digest, source: source.unwrap_or_default() })
    };
    let id: String = row.get(0);
    Record {
        current: version(row.get(1), row.get(2)),
        previous: version(row.get(3), row.get(4)),
        updated_at: row.get::<_, i64>(5) as u64,
        revision: row.get::<_, i64>(6) as u64,
        rollout: rollout::from_text(&id, row.get(7)),
        id,
    }
}

impl RegistryStore for PostgresRegistry {
    fn put_component(&self, digest: &str, bytes: Arc<[u8]>) -> RegistryFuture<()> {
        let digest = digest.to_string();
        self.run(move |client| async move {
            client
                .execute(
                    // A kept row is rewritten only when its bytes no longer match its
                    // digest: installing the component again repairs it.
                    "INSERT INTO components (digest, bytes, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (digest) DO UPDATE SET bytes = EXCLUDED.bytes
                     WHERE encode(sha256(components.bytes), 'hex') <> components.digest",
                    &[&digest, &&bytes[..], &(now_ms() as i64)],
                )
                .await?;
            Ok(())
        })
    }

    fn component(&self, digest: &str) -> RegistryFuture<Option<Arc<[u8]>>> {
        let digest = digest.to_string();
        self.run(move |client| async move {
            let row = client.query_opt("SELECT bytes FROM components WHERE digest = $1", &[&digest]).await?;
            let Some(bytes) = row.map(|r| r.get::<_, Vec<u8>>(0)) else { return Ok(None) };
            // Hashing megabytes is blocking work: never on an async worker.
            let (bytes, actual) = tokio::task::spawn_blocking(move || {
                let actual = super::digest(&bytes);
                (bytes, actual)
            })
            .await
            .map_err(|e| RegistryError::Backend(format!("registry task failed: {e}")))?;
            if actual != digest {
                return Err(RegistryError::Backend(format!(
                    "component {digest} in the database is damaged (its bytes do not match its digest); install \
                     the agent's component again (e.g. `PUT /admin/agents/<id>` with the same file) to repair it"
                )));
            }
            Ok(Some(bytes.into()))
        })
    }

    fn install(&self, id: &str, version: StoredVersion) -> RegistryFuture<Record> {
        let write = self.write(id, "installed", |old| super::installed_over(old, version));
        Box::pin(async move { write.await.map(|r| r.expect("an install always writes")) })
    }

    fn rollback(&self, id: &str) -> RegistryFuture<Option<Record>> {
        self.write(id, "rolled-back", |old| {
            let old = old?;
            Some(Versions { current: Some(old.previous.clone()?), previous: Some(old.current.clone()?), rollout: None })
        })
    }

    fn remove(&self, id: &str) -> RegistryFuture<Option<Record>> {
        self.write(id, "removed", |old| {
            old.and_then(|r| r.current.as_ref()).map(|_| Versions { current: None, previous: None, rollout: None })
        })
    }

    fn records(&self) -> RegistryFuture<Vec<Record>> {
        self.run(move |client| async move {
            let rows = client.query(&format!("SELECT {COLUMNS} FROM agents ORDER BY id"), &[]).await?;
            Ok(rows.iter().map(read_record).collect())
        })
    }

    fn record(&self, id: &str) -> RegistryFuture<Option<Record>> {
        let id = id.to_string();
        self.run(move |client| async move {
            let row = client.query_opt(&format!("SELECT {COLUMNS} FROM agents WHERE id = $1"), &[&id]).await?;
            Ok(row.as_ref().map(read_record))
        })
    }

    fn origin(&self, origin: &str) -> RegistryFuture<Option<String>> {
        let origin = origin.to_string();
        self.run(move |client| async move {
            let row = client.query_opt("SELECT fingerprint FROM agent_origins WHERE origin = $1", &[&origin]).await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn origins(&self, prefix: &str) -> RegistryFuture<Vec<(String, String)>> {
        let prefix = prefix.to_string();
        self.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT origin, fingerprint FROM agent_origins WHERE starts_with(origin, $1) ORDER BY origin",
                    &[&prefix],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn start_rollout(&self, id: &str, started: RolloutRecord) -> RegistryFuture<Option<Record>> {
        self.write(id, "rollout-started", |old| rollout::started(old, started))
    }

    fn end_rollout(&self, id: &str, only: Option<&str>, end: RolloutEnd) -> RegistryFuture<Option<Record>> {
        let only = only.map(str::to_string);
        self.write(id, end.action(), move |old| rollout::ended(old, only.as_deref(), end))
    }

    fn set_origin(&self, origin: &str, fingerprint: Option<&str>) -> RegistryFuture<()> {
        let (origin, fingerprint) = (origin.to_string(), fingerprint.map(str::to_string));
        self.run(move |client| async move {
            match fingerprint {
                Some(f) => {
                    client
                        .execute(
                            "INSERT INTO agent_origins (origin, fingerprint) VALUES ($1, $2)
                             ON CONFLICT (origin) DO UPDATE SET fingerprint = $2",
                            &[&origin, &f],
                        )
                        .await?
                }
                None => client.execute("DELETE FROM agent_origins WHERE origin = $1", &[&origin]).await?,
            };
            Ok(())
        })
    }

    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }
}
