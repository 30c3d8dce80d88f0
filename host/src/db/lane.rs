//! Lane locks: one turn at a time per session key across every instance.
//!
//! A lock is a session-level advisory lock held by this process's control
//! connection, so no pooled connection is pinned while a request waits or
//! runs, and a crashed instance's locks die with its connection. Waiters
//! retry `pg_try_advisory_lock` when a `wasmclaw_lanes` notification names
//! their hash (sent on every release) or after a short backoff, whichever
//! comes first. Advisory locks are re-entrant per connection, so callers
//! serialize one key inside the process first (`sessions::lanes`): at most one
//! waiter per key per process reaches the database.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, oneshot};

use super::control::{Control, Link};
use super::{DbError, LANES_CHANNEL, Notice};

/// Retry backoff while another instance holds the lock: a missed notification costs at most this.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(250);

/// A bigint advisory lock key for `key`: the first 8 bytes of SHA-256,
/// stable across processes, versions and platforms. Callers namespace their
/// keys (lanes hash `lane:<session key>`) so different locks never meet.
pub fn key_hash(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

/// A held lane lock. Dropping it releases the lock and tells waiting
/// instances, in a spawned task, so it happens even when the holder's task
/// was aborted.
pub struct LaneLock {
    hash: i64,
    /// The control connection holding it; if that connection has since been
    /// replaced, the server already released the lock.
    link: Link,
}

impl LaneLock {
    /// Fails unless the lock is still held, as seen from `tx`: the control
    /// connection may have dropped (the server then released the lock and
    /// another instance may have taken it). Call inside the transaction that
    /// writes what the lock protects.
    pub async fn confirm(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), DbError> {
        // A bigint advisory key shows in pg_locks as classid = high half,
        // objid = low half, objsubid = 1.
        let (high, low) = ((self.hash >> 32) as u32, self.hash as u32);
        let held: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = $1
                   AND classid = $2 AND objid = $3 AND objsubid = 1 AND granted)",
                &[&self.link.pid, &high, &low],
            )
            .await?
            .get(0);
        if held { Ok(()) } else { Err(DbError::Unavailable("the session lock was lost with its connection".into())) }
    }
}

impl Drop for LaneLock {
    fn drop(&mut self) {
        let (client, hash) = (self.link.client.clone(), self.hash);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            // Fails only if the connection is gone, and then the lock went with it;
            // waiters elsewhere fall back to their backoff.
            let payload = hash.to_string();
            let release = client
                .execute("SELECT pg_advisory_unlock($1), pg_notify($2, $3)", &[&hash, &LANES_CHANNEL, &payload])
                .await;
            if let Err(e) = release {
                tracing::debug!(error = %DbError::from(e), "lane lock release skipped");
            }
        });
    }
}

/// Take `key`'s lane lock, waiting while another instance holds it.
pub(super) async fn acquire(control: &Arc<Control>, key: &str) -> Result<LaneLock, DbError> {
    // Namespaced: a session may be called `agent:main`, which must not be
    // the lock another store takes on agent `main`.
    let hash = key_hash(&format!("lane:{key}"));
    let payload = hash.to_string();
    // Subscribed before the first try, so a release right after it is not missed.
    let mut notices = control.subscribe();
    let mut backoff = RETRY_FIRST;
    loop {
        let link = control.link()?;
        if try_lock(&link, hash).await? {
            return Ok(LaneLock { hash, link });
        }
        let released = async {
            loop {
                match notices.recv().await {
                    Ok(Notice::Message { channel, payload: p }) if channel == LANES_CHANNEL && p == payload => return,
                    Ok(Notice::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Ok(_) => {}
                    // The sender lives as long as `control`, which we hold.
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let _ = tokio::time::timeout(backoff, released).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// One `pg_try_advisory_lock`, run in its own task: if the answer comes after
/// the caller gave up (timeout, or its request was dropped), a lock it
/// granted is released rather than leaked on the control connection.
async fn try_lock(link: &Link, hash: i64) -> Result<bool, DbError> {
    let (answer, answered) = oneshot::channel();
    let client = link.client.clone();
    tokio::spawn(async move {
        let got = client.query_one("SELECT pg_try_advisory_lock($1)", &[&hash]).await.map(|row| row.get::<_, bool>(0));
        if let Err(Ok(true)) = answer.send(got.map_err(DbError::from)) {
            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&hash]).await;
        }
    });
    match tokio::time::timeout(link.timeout, answered).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(DbError::Unavailable("the lock request was lost".into())),
        Err(_) => Err(DbError::Unavailable("the database did not answer a lock request in time".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_stable() {
        // Pinned: every instance of every version must agree on a key's lock.
        assert_eq!(key_hash("agent:main:openai-user:0123"), key_hash("agent:main:openai-user:0123"));
        assert_eq!(key_hash(""), i64::from_be_bytes([0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14]));
        assert_ne!(key_hash("a"), key_hash("b"));
    }
}
