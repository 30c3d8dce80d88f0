//! The durable agent registry: which component serves each agent id, the one
//! before it (the rollback target), where each came from, and the component
//! bytes themselves, content-addressed. The live, compiled set is
//! `runtime::AgentRegistry`; this is what it is rebuilt from after a restart
//! and, in cluster mode, what every instance follows.

mod files;
mod postgres;
mod rollout;
mod sqlite;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use postgres::PostgresRegistry;
pub use rollout::{RolloutEnd, RolloutRecord, RolloutState};
pub use sqlite::SqliteRegistry;

use crate::config::Config;

/// The registry `config` names: PostgreSQL when a database is given, else
/// the gateway's SQLite file with bytes under `<stateDir>/components`.
pub fn open(config: &Config, db: Option<&Arc<crate::db::Postgres>>) -> Result<Arc<dyn RegistryStore>, RegistryError> {
    Ok(match db {
        Some(db) => Arc::new(PostgresRegistry::new(db.clone())),
        None => Arc::new(SqliteRegistry::open(&config.sessions_path(), config.state_dir().join("components"))?),
    })
}

/// A component and where it came from (`AgentSource` as text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredVersion {
    /// sha256 of the bytes, hex.
    pub digest: String,
    pub source: String,
}

/// One agent id's durable state. `current: None` is a removal, kept so it
/// outlives a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub current: Option<StoredVersion>,
    pub previous: Option<StoredVersion>,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// Grows with every change of any id; newer wins.
    pub revision: u64,
    /// A candidate beside `current`, running or ended.
    pub rollout: Option<RolloutRecord>,
}

/// A change another instance made (cluster mode).
#[derive(Debug, Clone)]
pub enum Change {
    /// `id` changed to `revision` by `action` (`installed`, `rolled-back`, `removed`).
    Agent { id: String, revision: u64, action: String },
    /// Changes may have been missed (the database connection came back): reread all.
    Resync,
}

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the agent registry's database is unavailable: {0}")]
    Unavailable(String),
    #[error("agent registry: {0}")]
    Backend(String),
}

/// A registry operation in flight.
pub type RegistryFuture<T> = BoxFuture<'static, Result<T, RegistryError>>;

/// Durable agent records, component bytes and the fingerprints of what each
/// source (a config entry, a folder file) last installed.
pub trait RegistryStore: Send + Sync {
    /// Keep `bytes` under their digest; a no-op when already kept.
    fn put_component(&self, digest: &str, bytes: Arc<[u8]>) -> RegistryFuture<()>;
    /// The bytes kept under `digest`, checked against it.
    fn component(&self, digest: &str) -> RegistryFuture<Option<Arc<[u8]>>>;
    /// Make `version` current for `id`; the old current becomes the previous.
    fn install(&self, id: &str, version: StoredVersion) -> RegistryFuture<Record>;
    /// Swap current and previous; `None` when there is no previous.
    fn rollback(&self, id: &str) -> RegistryFuture<Option<Record>>;
    /// Stop serving `id`; `None` when nothing served it.
    fn remove(&self, id: &str) -> RegistryFuture<Option<Record>>;
    /// Every record, removals included.
    fn records(&self) -> RegistryFuture<Vec<Record>>;
    /// One id's record.
    fn record(&self, id: &str) -> RegistryFuture<Option<Record>>;
    /// What the source named `origin` last installed (its fingerprint).
    fn origin(&self, origin: &str) -> RegistryFuture<Option<String>>;
    /// Origins starting with `prefix`, with their fingerprints.
    fn origins(&self, prefix: &str) -> RegistryFuture<Vec<(String, String)>>;
    /// Record (or with `None` forget) what `origin` installed.
    fn set_origin(&self, origin: &str, fingerprint: Option<&str>) -> RegistryFuture<()>;
    /// Start `rollout` beside `id`'s current version (replacing any rollout);
    /// `None` when nothing serves `id`.
    fn start_rollout(&self, id: &str, rollout: RolloutRecord) -> RegistryFuture<Option<Record>>;
    /// End `id`'s rollout (only the one named `only`, if given); `None` when
    /// there is no such rollout, or `end` needs it running and it is not.
    fn end_rollout(&self, id: &str, only: Option<&str>, end: RolloutEnd) -> RegistryFuture<Option<Record>>;
    /// Changes made by other instances; `None` when this is the only one.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }
}

/// An id's record after installing `version` over `old`: the old current
/// becomes the rollback target, unless it is the very same version (a
/// re-upload, or instances starting at once with the same config), which
/// keeps the rollback target pointing at something else and any rollout
/// going. A new version ends a rollout: it was measured against the old one.
fn installed_over(old: Option<&Record>, version: StoredVersion) -> Option<rollout::Versions> {
    let old_current = old.and_then(|r| r.current.clone());
    let same = old_current.as_ref().is_some_and(|c| c.digest == version.digest);
    let previous = match old_current {
        Some(_) if same => old.and_then(|r| r.previous.clone()),
        current => current,
    };
    let rollout = old.and_then(|r| r.rollout.clone()).filter(|_| same);
    Some(rollout::Versions { current: Some(version), previous, rollout })
}

/// sha256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
