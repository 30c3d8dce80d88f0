//! The control connection: one connection per process, driven here so
//! its notifications can be read, reopened with backoff whenever it drops.
//! It LISTENs on every channel and holds the lane locks (session-level
//! advisory locks die with the connection, so a crashed instance's locks are
//! released by the server).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{CHANNELS, DbError, Notice, describe, too_slow};

/// How often the probe asks the control connection for `SELECT 1` (a probe
/// may take the connect timeout before the database counts as down).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Failed probes on a connection that looks open before it is replaced (it hangs).
const PROBES_BEFORE_RESET: u32 = 3;
/// Reconnect backoff: first wait, then doubling up to the cap.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// The control connection as handed out: a lock taken through it belongs to it.
#[derive(Clone)]
pub(super) struct Link {
    pub client: Arc<Client>,
    /// Its server process id, to find its locks in `pg_locks`.
    pub pid: i32,
    /// How long an answer on it may take (the URL's `connect_timeout`).
    pub timeout: Duration,
}

/// Shared between [`super::Postgres`], its lane locks and the background tasks.
pub(super) struct Control {
    config: tokio_postgres::Config,
    /// The same TLS as the pool's.
    tls: MakeRustlsConnect,
    /// Bounds connecting, LISTEN and each probe.
    timeout: Duration,
    /// The query pool, emptied of idle connections around an outage.
    pool: Pool,
    /// `None` while reconnecting.
    link: Mutex<Option<Link>>,
    notices: broadcast::Sender<Notice>,
    probe_ok: AtomicBool,
    /// Asks the supervisor to drop a connection that stopped answering …
    reset: Notify,
    /// … the one with this server pid: a request that arrives after that
    /// connection was replaced anyway must not drop its healthy successor.
    condemned: AtomicI32,
}

impl Control {
    pub fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect, pool: Pool, timeout: Duration) -> Self {
        Self {
            config,
            tls,
            timeout,
            pool,
            link: Mutex::new(None),
            notices: broadcast::channel(1024).0,
            probe_ok: AtomicBool::new(false),
            reset: Notify::new(),
            condemned: AtomicI32::new(0),
        }
    }

    /// The live control connection, or `Unavailable` while it is being reopened.
    pub fn link(&self) -> Result<Link, DbError> {
        self.current()
            .ok_or_else(|| DbError::Unavailable("the connection to the database is being re-established".into()))
    }

    fn current(&self) -> Option<Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_link(&self, link: Option<Link>) {
        self.probe_ok.store(link.is_some(), Ordering::Relaxed);
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = link;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub fn is_up(&self) -> bool {
        self.probe_ok.load(Ordering::Relaxed) && self.current().is_some_and(|l| !l.client.is_closed())
    }

    /// Connect, LISTEN on every channel and make the connection current;
    /// returns the task driving it, which ends when the connection does.
    pub async fn open(&self) -> Result<JoinHandle<String>, DbError> {
        let connect = self.config.connect(self.tls.clone());
        let (client, mut connection) = match tokio::time::timeout(self.timeout, connect).await {
            Ok(connected) => connected?,
            Err(_) => return Err(DbError::Unavailable(too_slow(self.timeout))),
        };
        let notices = self.notices.clone();
        // Polled by hand rather than spawned as a future: only poll_message
        // hands out the notifications.
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let (channel, payload) = (n.channel().to_string(), n.payload().to_string());
                        let _ = notices.send(Notice::Message { channel, payload });
                    }
                    Some(Ok(_notice)) => {}
                    Some(Err(e)) => return describe(&e),
                    None => return "connection closed".to_string(),
                }
            }
        });
        let listen: String = CHANNELS.iter().map(|c| format!("LISTEN {c};")).collect();
        let setup = async {
            client.batch_execute(&listen).await?;
            let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
            Ok::<_, tokio_postgres::Error>(pid)
        };
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(Ok(pid)) => {
                // Before counting as up: no request may draw a connection from before an outage.
                self.purge_pool();
                self.set_link(Some(Link { client: Arc::new(client), pid, timeout: self.timeout }));
                Ok(driver)
            }
            Ok(Err(e)) => {
                driver.abort();
                Err(e.into())
            }
            Err(_) => {
                driver.abort();
                Err(DbError::Unavailable("the database did not answer LISTEN in time".into()))
            }
        }
    }

    /// Reopen the control connection whenever it ends, for ever.
    pub async fn supervise(self: Arc<Self>, mut driver: JoinHandle<String>) {
        loop {
            let why = loop {
                tokio::select! {
                    ended = &mut driver => break ended.unwrap_or_else(|e| e.to_string()),
                    () = self.reset.notified() => {
                        let condemned = self.condemned.load(Ordering::Relaxed);
                        if self.current().is_some_and(|l| l.pid == condemned) {
                            driver.abort();
                            break "the database stopped answering".to_string();
                        }
                    }
                }
            };
            self.set_link(None);
            self.purge_pool();
            tracing::warn!(reason = %why, "lost the control connection to the database; reconnecting");
            let mut backoff = RECONNECT_FIRST;
            driver = loop {
                tokio::time::sleep(backoff).await;
                match self.open().await {
                    Ok(driver) => break driver,
                    Err(e) => {
                        tracing::debug!(error = %e, "database still unreachable");
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                    }
                }
            };
            tracing::info!("control connection to the database re-established");
            let _ = self.notices.send(Notice::Reconnected);
        }
    }

    /// Drop the pool's idle connections. One whose server vanished without a
    /// word (a partition, a failover) looks open until a query on it fails
    /// or times out, so after an outage requests would draw those first.
    /// Called when the control connection drops and again just before it
    /// counts as up.
    fn purge_pool(&self) {
        let purged = self.pool.retain(|_, _| false).removed.len();
        if purged > 0 {
            tracing::debug!(purged, "idle pooled connections dropped after an outage");
        }
    }

    /// Keep [`is_up`](Self::is_up) honest: a connection that looks open may
    /// hang (a network partition sends no FIN).
    pub async fn probe(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0;
        loop {
            tick.tick().await;
            let Some(link) = self.current() else {
                failures = 0;
                continue;
            };
            let answered = tokio::time::timeout(self.timeout, link.client.simple_query("SELECT 1")).await;
            if self.current().is_none_or(|l| l.pid != link.pid) {
                // Replaced meanwhile: this answer says nothing about the new one.
                failures = 0;
                continue;
            }
            let ok = matches!(answered, Ok(Ok(_)));
            self.probe_ok.store(ok, Ordering::Relaxed);
            if ok {
                failures = 0;
                continue;
            }
            failures += 1;
            if failures == 1 {
                tracing::warn!("the database did not answer a probe; reporting not ready");
            }
            if failures >= PROBES_BEFORE_RESET {
                failures = 0;
                self.condemned.store(link.pid, Ordering::Relaxed);
                self.reset.notify_one();
            }
        }
    }
}
