//! The lock-out shared by every instance of a cluster: failures per client
//! (IPv4 address, IPv6 /64) are counted in memory, written in batches to the
//! database (`auth_failures`) on the background connection, never on the
//! pool requests use, and the batch whose counts lock a client out tells the
//! others with `NOTIFY wasmclaw_auth`. A flood of failures therefore costs
//! one statement per batch, not a transaction each, and cannot starve the
//! requests that need the database. Rows whose window and lock-out have both
//! ended are pruned. Checks stay local and cost nothing; a locked-out client
//! is refused before anything is counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Lockout, client_key};
use crate::db::{DbError, Notice, Postgres};

const CHANNEL: &str = "wasmclaw_auth";
/// How often counted failures are written (the delay before another instance sees them).
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Clients with unwritten failures at most; past this a new client's failures
/// are only counted locally until the next batch.
const MAX_PENDING: usize = 10_000;

/// Counts failures in the database for the whole cluster.
pub struct SharedLockout {
    local: Arc<Lockout>,
    /// Failures per client not yet written.
    pending: Mutex<HashMap<IpAddr, u32>>,
}

impl SharedLockout {
    /// Share `local`'s counts through `db`, and apply other instances' lock-outs to it.
    pub fn new(db: Arc<Postgres>, local: Arc<Lockout>) -> Arc<Self> {
        let shared = Arc::new(Self { local: local.clone(), pending: Mutex::default() });
        tokio::spawn(follow(db.subscribe(), Arc::downgrade(&local)));
        tokio::spawn(flush(db, Arc::downgrade(&shared)));
        shared
    }

    /// Count a failure of `ip` for the cluster: written with the next batch,
    /// so neither a slow database nor a flood slows the refusal (the local
    /// count holds meanwhile).
    pub fn fail(&self, ip: IpAddr) {
        let config = self.local.config();
        if config.exempt_loopback && ip.is_loopback() {
            return;
        }
        let client = client_key(ip);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let full = pending.len() >= MAX_PENDING;
        match pending.get_mut(&client) {
            Some(n) => *n = n.saturating_add(1),
            None if !full => {
                pending.insert(client, 1);
            }
            None => tracing::debug!(%client, "auth failure counted on this instance only: batch full"),
        }
    }

    /// Write one batch: add each client's failures to its count in the
    /// window, lock out (and announce) the clients that reached the limit.
    async fn write(&self, db: &Postgres, batch: HashMap<IpAddr, u32>) -> Result<(), DbError> {
        let config = self.local.config();
        let now = now_ms();
        // Sorted: instances writing overlapping batches take row locks in one order.
        let mut batch: Vec<(String, i32)> =
            batch.into_iter().map(|(client, n)| (client.to_string(), n.min(i32::MAX as u32) as i32)).collect();
        batch.sort_unstable();
        let (addrs, counts): (Vec<String>, Vec<i32>) = batch.into_iter().unzip();
        let mut client = db.background_client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "INSERT INTO auth_failures AS f (addr, window_start, count)
                 SELECT b.addr, $3::bigint, b.n FROM unnest($1::text[], $2::int[]) AS b(addr, n)
                 ON CONFLICT (addr) DO UPDATE SET
                   count = CASE WHEN f.window_start <= $3::bigint - $4::bigint THEN EXCLUDED.count
                                ELSE f.count + EXCLUDED.count END,
                   window_start = CASE WHEN f.window_start <= $3::bigint - $4::bigint THEN $3::bigint
                                       ELSE f.window_start END
                 RETURNING addr, count",
                &[&addrs, &counts, &now, &(config.window_ms as i64)],
            )
            .await?;
        let locked: Vec<String> =
            rows.iter().filter(|r| r.get::<_, i32>(1) as u32 >= config.max_attempts).map(|r| r.get(0)).collect();
        if !locked.is_empty() {
            let until = now + config.lockout_ms as i64;
            tx.execute(
                "UPDATE auth_failures SET count = 0, window_start = $2, locked_until = $3 WHERE addr = ANY($1)",
                &[&locked, &now, &until],
            )
            .await?;
            let payloads: Vec<String> = locked
                .iter()
                .map(|addr| serde_json::json!({"addr": addr, "ms": config.lockout_ms}).to_string())
                .collect();
            tx.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", &[&CHANNEL, &payloads]).await?;
        }
        tx.commit().await?;
        for addr in &locked {
            tracing::warn!(client = %addr, lockout_secs = config.lockout_ms / 1000, "client locked out on every instance after repeated auth failures");
        }
        Ok(())
    }

    /// Delete rows whose window and lock-out have both ended.
    async fn prune(&self, db: &Postgres) -> Result<u64, DbError> {
        let now = now_ms();
        let client = db.background_client().await?;
        let window = self.local.config().window_ms as i64;
        let removed = client
            .execute(
                "DELETE FROM auth_failures
                 WHERE window_start <= $1::bigint - $2::bigint AND (locked_until IS NULL OR locked_until <= $1::bigint)",
                &[&now, &window],
            )
            .await?;
        Ok(removed)
    }
}

/// Apply the lock-outs every instance announces to `local`.
async fn follow(mut notices: tokio::sync::broadcast::Receiver<Notice>, local: std::sync::Weak<Lockout>) {
    loop {
        let payload = match notices.recv().await {
            Ok(Notice::Message { channel, payload }) if channel == CHANNEL => payload,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(local) = local.upgrade() else { return };
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        if let (Some(ip), Some(ms)) = (v["addr"].as_str().and_then(|a| a.parse().ok()), v["ms"].as_u64()) {
            local.lock_for(ip, Duration::from_millis(ms));
        }
    }
}

/// Write the pending failures every [`FLUSH_EVERY`], and prune once a window.
async fn flush(db: Arc<Postgres>, shared: std::sync::Weak<SharedLockout>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let batch = std::mem::take(&mut *shared.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            let clients = batch.len();
            if let Err(e) = shared.write(&db, batch).await {
                tracing::debug!(clients, error = %e, "auth failures not shared with the cluster");
            }
        }
        let prune_every =
            Duration::from_millis(shared.local.config().window_ms).clamp(FLUSH_EVERY, Duration::from_secs(60));
        if last_prune.elapsed() >= prune_every {
            last_prune = tokio::time::Instant::now();
            match shared.prune(&db).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "expired auth failure counts pruned"),
                Err(e) => tracing::debug!(error = %e, "auth failure counts not pruned"),
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
