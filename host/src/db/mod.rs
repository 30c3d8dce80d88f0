//! PostgreSQL for cluster mode: one [`Postgres`] per process holds a bounded
//! pool for queries and one long-lived *control connection* that LISTENs for
//! notifications from every instance and holds the session-level advisory
//! locks that serialize a session's turns across instances ([`LaneLock`]).
//!
//! Nothing here knows about sessions or agents: stores above build on the
//! pool, the lane lock and the notifications. The database URL is a secret:
//! no error, log line or metric here ever contains it.
//!
//! Every connection (pooled or control) is made with the one connector that
//! [`tls`] builds from the URL's `sslmode` and `sslrootcert`, and every wait
//! on the database is bounded by the URL's `connect_timeout`.

mod control;
mod lane;
pub mod migrations;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, Pool, PoolError, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

use crate::config::Secret;
use control::Control;

pub use lane::{LaneLock, key_hash};

/// Channels every instance LISTENs on (payloads are each channel's own business).
pub const CHANNELS: &[&str] = &["wasmclaw_agents", "wasmclaw_lanes", "wasmclaw_auth", "wasmclaw_devices"];

/// The channel a released lane lock is announced on, with its hash as payload.
const LANES_CHANNEL: &str = "wasmclaw_lanes";

/// How long opening a connection may take, unless the URL's `connect_timeout`
/// says otherwise; also how long a request waits for a pooled connection, a
/// lock or a probe. A database that is down must fail requests fast.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/ready` reports a starved pool after a request last waited in vain.
const STARVED_FOR: Duration = Duration::from_secs(5);

/// Something the database told every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A `NOTIFY` on one of [`CHANNELS`], from any instance, this one included.
    Message { channel: String, payload: String },
    /// The control connection came back after a loss: notifications may have
    /// been missed meanwhile, so listeners resync from the tables.
    Reconnected,
}

/// The database could not do what was asked. Messages never include the URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// Unreachable, shutting down, out of connections: retrying later may work.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement (a bug or a schema problem).
    #[error("the database refused a query: {0}")]
    Query(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let message = describe(&e);
        let Some(db) = e.as_db_error() else {
            // No server answer at all: a closed socket, a refused or timed-out connect.
            return Self::Unavailable(message);
        };
        let code = db.code();
        let class = &code.code()[..2];
        // 08: connection exception; 53: out of resources (e.g. too many
        // connections); 57P0x: shutting down or starting up.
        if class == "08" || class == "53" || *code == SqlState::ADMIN_SHUTDOWN || code.code().starts_with("57P0") {
            Self::Unavailable(message)
        } else {
            Self::Query(message)
        }
    }
}

impl DbError {
    /// A pool failure; `timeout` is the one the pool was built with.
    fn from_pool(e: PoolError, timeout: Duration) -> Self {
        match e {
            PoolError::Backend(e) => Self::from(e),
            PoolError::Timeout(_) => Self::Unavailable(too_slow(timeout)),
            PoolError::PostCreateHook(e) => Self::Unavailable(e.to_string()),
            PoolError::Closed | PoolError::NoRuntimeSpecified => Self::Unavailable("the pool is closed".into()),
        }
    }
}

/// What a wait that ran out of time says, with the setting that changes it.
fn too_slow(timeout: Duration) -> String {
    format!("no connection within {} s (connect_timeout in database.url)", timeout.as_secs_f32())
}

/// A PostgreSQL error with its cause (`db error` alone says nothing). The
/// driver's messages never repeat the connection string.
fn describe(e: &tokio_postgres::Error) -> String {
    let text = match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    };
    // The driver's one word for every TLS failure, from a refused upgrade to
    // an unknown certificate issuer.
    if text.starts_with("error performing TLS handshake") {
        format!("{text} (check sslmode and sslrootcert in database.url)")
    } else {
        text
    }
}

/// The shared database of a cluster; one per process.
pub struct Postgres {
    pool: Pool,
    /// One connection for background writes (batched counters), so that no
    /// amount of them can take a connection a request needs.
    background: Pool,
    /// When a request last waited `timeout` for a pooled connection in vain.
    starved_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// The URL's `connect_timeout`, or the default.
    timeout: Duration,
    control: Arc<Control>,
    /// The reconnecting supervisor and the probe; stopped with this value.
    tasks: Vec<JoinHandle<()>>,
}

impl Postgres {
    /// Connect the pool, run migrations (versioned, serialized across
    /// instances starting at once), start the control connection.
    pub async fn connect(url: &Secret, max_connections: usize) -> Result<Arc<Self>, DbError> {
        let (mut config, tls) = tls::parse(url.expose()).map_err(DbError::Unavailable)?;
        let timeout = config.get_connect_timeout().copied().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        config.connect_timeout(timeout);
        // A peer that vanished without a FIN is noticed in seconds, not hours.
        config.keepalives_idle(Duration::from_secs(5));
        config.tcp_user_timeout(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("wasmclaw");
        }
        let pool = Pool::builder(Manager::new(config.clone(), tls.clone()))
            .max_size(max_connections.max(1))
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Unavailable(format!("cannot build the connection pool: {e}")))?;
        {
            let mut client = pool.get().await.map_err(|e| DbError::from_pool(e, timeout))?;
            migrations::run(&mut client).await?;
        }
        let background = background_pool(&config, &tls, timeout)?;
        let control = Arc::new(Control::new(config, tls, pool.clone(), timeout));
        let driver = control.open().await?;
        let tasks = vec![tokio::spawn(control.clone().supervise(driver)), tokio::spawn(control.clone().probe())];
        tracing::info!(migrations = migrations::POSTGRES.len(), "connected to the database");
        Ok(Arc::new(Self { pool, background, starved_at: Default::default(), timeout, control, tasks }))
    }

    /// A pooled connection; fails fast with `Unavailable` while the database is
    /// down, and after the connect timeout when every connection is busy.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        match self.pool.get().await {
            Ok(client) => Ok(client),
            Err(e) => {
                if matches!(e, PoolError::Timeout(_)) {
                    self.starved();
                }
                Err(DbError::from_pool(e, self.timeout))
            }
        }
    }

    /// The background connection (one, apart from the pool): for writes that
    /// may wait, so that they never take a connection from requests.
    pub async fn background_client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.background.get().await.map_err(|e| DbError::from_pool(e, self.timeout))
    }

    fn starved(&self) {
        let now = std::time::Instant::now();
        let before = self.starved_at.lock().unwrap_or_else(|p| p.into_inner()).replace(now);
        if before.is_none_or(|at| now - at >= STARVED_FOR) {
            let status = self.pool.status();
            tracing::warn!(
                max_connections = status.max_size,
                waiting = status.waiting,
                "no pooled database connection within {} s: all database.maxConnections are busy; reporting not ready",
                self.timeout.as_secs_f32()
            );
        }
    }

    /// True while requests recently waited for a pooled connection in vain
    /// (the pool is too small for the load, or its connections hang); drives `/ready`.
    pub fn is_starved(&self) -> bool {
        self.starved_at.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| at.elapsed() < STARVED_FOR)
    }

    /// NOTIFY payloads from every instance on [`CHANNELS`], plus
    /// [`Notice::Reconnected`] after the control connection came back.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.control.subscribe()
    }

    /// False while the database is unreachable (control connection down or
    /// the last probe failed); drives `/ready`.
    pub fn is_up(&self) -> bool {
        self.control.is_up()
    }

    /// The cross-instance lock on `key`'s lane; see [`LaneLock`].
    pub async fn lane_lock(&self, key: &str) -> Result<LaneLock, DbError> {
        lane::acquire(&self.control, key).await
    }
}

/// The pool of one [`Postgres::background_client`] connection.
fn background_pool(
    config: &tokio_postgres::Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    timeout: Duration,
) -> Result<Pool, DbError> {
    Pool::builder(Manager::new(config.clone(), tls.clone()))
        .max_size(1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Unavailable(format!("cannot build the background connection pool: {e}")))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_refused_without_repeating_it() {
        let url = Secret::new("postgres://user:hunter2@host:notaport/db".into());
        let err = Postgres::connect(&url, 1).await.err().expect("a bad URL must not connect").to_string();
        assert!(err.contains("the database") && !err.contains("hunter2") && !err.contains("notaport"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_and_fast() {
        // Port 9 (discard) on loopback: nothing listens, the connect is refused.
        let url = Secret::new("postgres://user:hunter2@127.0.0.1:9/db".into());
        let started = std::time::Instant::now();
        let err = Postgres::connect(&url, 1).await.err().expect("nothing listens there");
        assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
