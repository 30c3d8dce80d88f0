//! Everything a running gateway shares between requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::runs::{Agents, Watcher, follow_registry, watch_agents_dir, watch_config};

/// Remove idle sessions in the background while the gateway lives.
fn spawn_retention(gw: std::sync::Weak<Gateway>, ttl: std::time::Duration) {
    let every = (ttl / 4).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(gw) = gw.upgrade() else { return };
            let cutoff = std::time::SystemTime::now() - ttl;
            match gw.agents.sessions().expire_idle(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, ttl_secs = ttl.as_secs(), "idle sessions removed"),
                Err(e) => tracing::warn!(error = %e, "idle session cleanup failed"),
            }
        }
    });
}

/// How often recordings past their `record.retainDays` are removed (and once at start).
const RECORDING_PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Remove recorded runs past their retention while the gateway lives.
fn spawn_recording_prune(gw: std::sync::Weak<Gateway>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECORDING_PRUNE_EVERY);
        loop {
            tick.tick().await;
            let Some(gw) = gw.upgrade() else { return };
            match gw.agents.sessions().prune_recordings(crate::sessions::now_ms() as i64).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(removed = n, "recorded runs past agents.entries.<id>.record.retainDays removed")
                }
                Err(e) => tracing::warn!(error = %e, "recorded run cleanup failed"),
            }
        }
    });
}

/// A device lost its right to be connected ([`Gateway::devices_gone`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceGone {
    /// This device (by id) was revoked or removed.
    Device(String),
    /// Announcements may have been missed (the database connection came back,
    /// or a connection fell behind): each connection checks its device against the store.
    Unknown,
}

/// Forward the revocations and removals every instance announces
/// (`NOTIFY wasmclaw_devices`, this instance's own included) to this
/// instance's connections, so a device loses them on every instance.
fn spawn_device_announcements(db: &Arc<crate::db::Postgres>, gw: std::sync::Weak<Gateway>) {
    use crate::db::Notice;
    use tokio::sync::broadcast::error::RecvError;
    let mut notices = db.subscribe();
    tokio::spawn(async move {
        loop {
            let gone = match notices.recv().await {
                Ok(Notice::Message { channel, payload }) if channel == crate::sessions::DEVICES_CHANNEL => {
                    DeviceGone::Device(payload)
                }
                Ok(Notice::Message { .. }) => continue,
                Ok(Notice::Reconnected) | Err(RecvError::Lagged(_)) => DeviceGone::Unknown,
                Err(RecvError::Closed) => return,
            };
            let Some(gw) = gw.upgrade() else { return };
            // No receiver (no connection of any device) is not an error.
            let _ = gw.devices_gone.send(gone);
        }
    });
}

/// State shared by every connection of one gateway.
pub struct Gateway {
    pub config: Config,
    pub auth: Authenticator,
    /// Failed-auth lock-out per client, shared by every door; check it
    /// here, count through [`Gateway::auth_failed`].
    pub lockout: Arc<crate::auth::Lockout>,
    /// In cluster mode, the same counts shared by every instance.
    shared_lockout: Option<Arc<crate::auth::SharedLockout>>,
    pub agents: Arc<Agents>,
    /// One place per WebSocket connection that has not completed `connect`
    /// (`gateway.ws.maxPendingHandshakes`, per client `…PerClient`).
    pub ws_handshakes: Arc<crate::auth::ClientPlaces>,
    /// When this gateway started serving (for its uptime).
    pub started: std::time::Instant,
    /// Devices whose token was revoked or that were removed, here or (in
    /// cluster mode) on any instance: their WebSocket connections close (`ws`).
    pub devices_gone: tokio::sync::broadcast::Sender<DeviceGone>,
    ready: AtomicBool,
    draining: tokio::sync::watch::Sender<bool>,
    grace_over: tokio::sync::watch::Sender<bool>,
    _watchers: Vec<Watcher>,
}

impl Gateway {
    /// Resolve credentials and load every agent; fails with a message an operator can act on.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let auth = Authenticator::from_config(&config.gateway.auth, |k| std::env::var(k).ok())?;
        let agents = Arc::new(Agents::from_config(&config).await?);
        let mut watchers = vec![watch_agents_dir(&agents, config.agents_dir()).await?];
        watchers.extend(watch_config(&agents, &config)?);
        follow_registry(&agents);
        let lockout = Arc::new(crate::auth::Lockout::new(config.gateway.auth.rate_limit.clone()));
        let shared_lockout = agents.database().map(|db| crate::auth::SharedLockout::new(db.clone(), lockout.clone()));
        let ws = &config.gateway.ws;
        let ws_handshakes =
            crate::auth::ClientPlaces::new(ws.max_pending_handshakes, ws.pending_handshakes_per_client());
        let gw = Arc::new(Self {
            ws_handshakes,
            started: std::time::Instant::now(),
            devices_gone: tokio::sync::broadcast::channel(16).0,
            lockout,
            shared_lockout,
            config,
            auth,
            agents,
            ready: AtomicBool::new(true),
            draining: tokio::sync::watch::channel(false).0,
            grace_over: tokio::sync::watch::channel(false).0,
            _watchers: watchers,
        });
        if let Some(ttl) = gw.config.sessions.idle_ttl.as_deref().and_then(crate::config::parse_duration) {
            spawn_retention(Arc::downgrade(&gw), ttl);
        }
        spawn_recording_prune(Arc::downgrade(&gw));
        if let Some(db) = gw.agents.database() {
            spawn_device_announcements(db, Arc::downgrade(&gw));
        }
        Ok(gw)
    }

    /// Count a failed authentication of `ip` (on every instance, in cluster
    /// mode); returns the lock-out length when this failure triggered one here.
    pub fn auth_failed(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        self.agents.metrics().auth_failure();
        if let Some(shared) = &self.shared_lockout {
            shared.fail(ip);
        }
        let lockout = self.lockout.fail(ip);
        if let Some(length) = lockout {
            tracing::warn!(%ip, lockout_secs = length.as_secs(), "client locked out after repeated auth failures");
        }
        lockout
    }

    /// True once agents are loaded and until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Report not-ready from now on (shutdown has begun).
    pub fn begin_drain(self: &Arc<Self>) {
        self.ready.store(false, Ordering::Relaxed);
        if self.draining.send_replace(true) {
            return;
        }
        let grace = self.shutdown_grace();
        let gw = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(gw) = gw.upgrade() {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace over; ending open streams");
                gw.grace_over.send_replace(true);
            }
        });
    }

    /// How long open work may take after shutdown begins.
    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.gateway.shutdown_grace_ms)
    }

    /// Becomes `true` when the shutdown grace period has run out.
    pub fn grace_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.grace_over.subscribe()
    }

    /// Resolves to `true` once shutdown has begun; WebSocket connections close on it.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.draining.subscribe()
    }
}

/// The request id a client sent, if it may be used as given: 1 to 128 bytes
/// of `[A-Za-z0-9._:-]`. Ids reach log lines and the `x-request-id` header;
/// anything else in them could add a field or a line to the log, so the
/// doors replace such an id with a fresh one. The one rule for both doors.
pub fn request_id(sent: Option<&str>) -> Option<&str> {
    sent.filter(|id| {
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_of_a_safe_charset_and_length_are_kept() {
        for kept in ["abc-123_x.y:z", "0f8fad5b-d9cb-469f-a165-70867728950e", &"a".repeat(128)] {
            assert_eq!(super::request_id(Some(kept)), Some(kept));
        }
        for refused in ["", "r1 forged=yes", "r1\nFORGED", "a\"b", "é", &"a".repeat(129)] {
            assert_eq!(super::request_id(Some(refused)), None, "{refused:?}");
        }
    }
}
