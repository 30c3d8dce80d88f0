//! The `db` module's surface against a real PostgreSQL. Library calls rather
//! than the binary, because this is the API shared stores build on (the
//! agent registry, the auth lock-out) and the HTTP doors cannot show it:
//! notifications, resyncs after an outage, and lane locks.

use std::time::{Duration, Instant};

use wasmclaw::config::Secret;
use wasmclaw::db::{DbError, Notice, Postgres};

use crate::pg;
use crate::support::*;

/// Wait for a notice `want` accepts, skipping others.
async fn notice(rx: &mut tokio::sync::broadcast::Receiver<Notice>, want: impl Fn(&Notice) -> bool) -> Notice {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = tokio::time::timeout(left, rx.recv()).await.expect("no notice in time").unwrap();
        if want(&got) {
            return got;
        }
    }
}

#[tokio::test]
async fn notifications_reach_every_instance_and_an_outage_ends_with_a_resync() {
    let db = pg::Server::start();
    let url = Secret::new(db.database().await);
    let (a, b) = (Postgres::connect(&url, 2).await.unwrap(), Postgres::connect(&url, 2).await.unwrap());
    let (mut to_a, mut to_b) = (a.subscribe(), b.subscribe());
    a.client().await.unwrap().execute("SELECT pg_notify('wasmclaw_agents', 'main')", &[]).await.unwrap();
    let sent = Notice::Message { channel: "wasmclaw_agents".into(), payload: "main".into() };
    for rx in [&mut to_a, &mut to_b] {
        notice(rx, |n| *n == sent).await;
    }
    assert!(a.is_up() && b.is_up());

    db.stop();
    eventually("is_up to turn false", async || (!a.is_up() && !b.is_up()).then_some(())).await;
    let started = Instant::now();
    let err = a.client().await.expect_err("no connection while the database is down");
    assert!(matches!(err, DbError::Unavailable(_)) && err.to_string().contains("the database"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(a.lane_lock("k").await, Err(DbError::Unavailable(_))));

    db.start_again();
    for rx in [&mut to_a, &mut to_b] {
        notice(rx, |n| *n == Notice::Reconnected).await;
    }
    eventually("is_up again", async || (a.is_up() && b.is_up()).then_some(())).await;
    b.client().await.unwrap().execute("SELECT pg_notify('wasmclaw_auth', '1.2.3.4')", &[]).await.unwrap();
    notice(&mut to_a, |n| matches!(n, Notice::Message { channel, .. } if channel == "wasmclaw_auth")).await;
}

#[tokio::test]
async fn lane_locks_exclude_across_instances_without_pinning_pooled_connections() {
    let db = pg::Server::start();
    let url = Secret::new(db.database().await);
    let (a, b) = (Postgres::connect(&url, 1).await.unwrap(), Postgres::connect(&url, 1).await.unwrap());
    // B's only pooled connection is busy: its lane locks must not need one.
    let busy = b.client().await.unwrap();
    let held = a.lane_lock("k").await.unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lane_lock("k").await })
    };
    let other = tokio::time::timeout(PATIENCE, b.lane_lock("other")).await.expect("another key never waits").unwrap();
    holds_until("B waits while A holds the lock", Instant::now() + Duration::from_millis(300), async || {
        !waiter.is_finished()
    })
    .await;
    drop(held);
    let lock = tokio::time::timeout(PATIENCE, waiter).await.expect("B gets the lock once A lets go").unwrap().unwrap();
    drop((other, busy));

    // Held through an outage, the lock went with its connection: the holder finds out before it writes.
    let (mut to_a, mut to_b) = (a.subscribe(), b.subscribe());
    // Both calls block this test's only thread: the outage is noticed after them.
    db.stop();
    db.start_again();
    for rx in [&mut to_a, &mut to_b] {
        notice(rx, |n| *n == Notice::Reconnected).await;
    }
    let mut client = b.client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert!(matches!(lock.confirm(&tx).await, Err(DbError::Unavailable(_))), "a lost lock must not confirm");
    let again = a.lane_lock("k").await.unwrap();
    drop(tx);
    let mut client = a.client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    again.confirm(&tx).await.expect("a held lock confirms");
}
