//! The lock-out shared by every instance of a cluster: failures per client
//! address are counted in the database (`auth_failures`), and the instance
//! whose count locks an address out tells the others with
//! `NOTIFY wasmclaw_auth`. A success clears only this instance's count: the
//! shared one runs out with its window, so a success on one instance cannot
//! wipe failures another is still counting. Checks stay local and cost
//! nothing; only failures touch the database, and a locked-out address is
//! refused before that.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Lockout;
use crate::db::{DbError, Notice, Postgres};

const CHANNEL: &str = "wasmclaw_auth";

/// Counts failures in the database for the whole cluster.
pub struct SharedLockout {
    db: Arc<Postgres>,
    local: Arc<Lockout>,
}

impl SharedLockout {
    /// Share `local`'s counts through `db`, and apply other instances' lock-outs to it.
    pub fn new(db: Arc<Postgres>, local: Arc<Lockout>) -> Arc<Self> {
        let shared = Arc::new(Self { db: db.clone(), local: local.clone() });
        let mut notices = db.subscribe();
        let weak = Arc::downgrade(&local);
        tokio::spawn(async move {
            loop {
                let payload = match notices.recv().await {
                    Ok(Notice::Message { channel, payload }) if channel == CHANNEL => payload,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(local) = weak.upgrade() else { return };
                let v: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
                if let (Some(ip), Some(ms)) = (v["addr"].as_str().and_then(|a| a.parse().ok()), v["ms"].as_u64()) {
                    local.lock_for(ip, Duration::from_millis(ms));
                }
            }
        });
        shared
    }

    /// Count a failure of `ip` for the cluster, in the background: a slow or
    /// absent database must not slow the refusal (the local count holds meanwhile).
    pub fn fail(self: &Arc<Self>, ip: IpAddr) {
        let config = self.local.config();
        if config.exempt_loopback && ip.is_loopback() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.count(ip).await {
                tracing::debug!(%ip, error = %e, "auth failure not shared with the cluster");
            }
        });
    }

    async fn count(&self, ip: IpAddr) -> Result<(), DbError> {
        let config = self.local.config();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let count: i32 = tx
            .query_one(
                "INSERT INTO auth_failures AS f (addr, window_start, count) VALUES ($1, $2, 1)
                 ON CONFLICT (addr) DO UPDATE SET
                   count = CASE WHEN f.window_start <= $2 - $3 THEN 1 ELSE f.count + 1 END,
                   window_start = CASE WHEN f.window_start <= $2 - $3 THEN $2 ELSE f.window_start END
                 RETURNING count",
                &[&ip.to_string(), &now, &(config.window_ms as i64)],
            )
            .await?
            .get(0);
        if count as u32 >= config.max_attempts {
            let until = now + config.lockout_ms as i64;
            tx.execute(
                "UPDATE auth_failures SET count = 0, window_start = $2, locked_until = $3 WHERE addr = $1",
                &[&ip.to_string(), &now, &until],
            )
            .await?;
            let payload = serde_json::json!({"addr": ip.to_string(), "ms": config.lockout_ms}).to_string();
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await?;
            tracing::warn!(%ip, lockout_secs = config.lockout_ms / 1000, "client locked out on every instance after repeated auth failures");
        }
        tx.commit().await?;
        Ok(())
    }
}
