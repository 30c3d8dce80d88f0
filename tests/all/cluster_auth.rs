//! Cluster mode under a flood of failed logins (issue 24, item 12): the
//! lock-out's counts must not take the connections stored sessions need, the
//! table of counts stays bounded, and `/ready` tells a starved pool.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::pg;
use crate::support::*;

/// The chat endpoint and echo as `main`, on database `url` with `max_connections` pooled,
/// and a lock-out that counts (loopback too) but never locks within the test.
fn instance(url: &str, max_connections: usize, window_ms: u64) -> TestGateway {
    let config = format!(
        r#"{{
  gateway: {{
    http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }},
    auth: {{ rateLimit: {{ maxAttempts: 1000000, windowMs: {window_ms}, lockoutMs: 60000, exemptLoopback: false }} }},
  }},
  database: {{ maxConnections: {max_connections} }},
  agents: {{ entries: {{ main: {{ plugin: "echo" }} }} }},
}}"#
    );
    TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", url)])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// A chat turn in the stored session `key`; its status.
async fn stored_turn(gw: &TestGateway, key: &str) -> u16 {
    let res = gw.chat(ask("openclaw", "hi")).header("x-openclaw-session-key", key).send().await.unwrap();
    res.status().as_u16()
}

async fn ready(gw: &TestGateway) -> (u16, String) {
    let res = reqwest::get(gw.url("/ready")).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn rows(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM auth_failures", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_flood_of_bad_logins_leaves_stored_sessions_working_and_the_table_bounded() {
    let server = pg::Server::start();
    let url = server.database().await;
    let gw = Arc::new(instance(&url, 2, 3000));
    let db = pg::connect(&url).await;
    assert_eq!(stored_turn(&gw, "before").await, 200);

    // 100 addresses, 40 wrong tokens each, all at once.
    const ADDRESSES: u8 = 100;
    let flood: Vec<_> = (0..ADDRESSES)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let local: IpAddr = format!("127.0.1.{}", i + 1).parse().unwrap();
                let client = reqwest::Client::builder().local_address(local).build().unwrap();
                let mut refused = 0;
                for n in 0..40 {
                    let res = client.get(gw.url("/v1/models")).bearer_auth(format!("guess-{i}-{n}")).send().await;
                    refused += res.is_ok_and(|r| r.status() == 401) as u32;
                }
                refused
            })
        })
        .collect();
    // Meanwhile: stored-session turns, and the table's size.
    let most_rows = Arc::new(AtomicI64::new(0));
    let watch = tokio::spawn({
        let (url, most_rows) = (url.clone(), most_rows.clone());
        async move {
            let db = pg::connect(&url).await;
            loop {
                most_rows.fetch_max(rows(&db).await, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let flood = tokio::spawn(async move {
        let mut refused = 0;
        for task in flood {
            refused += task.await.unwrap();
        }
        refused
    });
    // Turns for as long as the flood lasts (at least 20).
    let mut turns = Vec::new();
    while turns.len() < 20 || !flood.is_finished() {
        turns.push(stored_turn(&gw, &format!("during-{}", turns.len())).await);
    }
    let refused = flood.await.unwrap();
    assert_eq!(refused, 40 * ADDRESSES as u32, "every wrong token is refused");
    assert!(turns.iter().all(|s| *s == 200), "stored-session turns during the flood: {turns:?}\n{}", gw.log());
    assert_eq!(ready(&gw).await.0, 200);
    // The failures reached the database, one row per client at most …
    eventually("the counts to reach the database", async || (most_rows.load(Ordering::Relaxed) > 0).then_some(()))
        .await;
    watch.abort();
    let most = most_rows.load(Ordering::Relaxed);
    assert!(most <= ADDRESSES as i64, "{most} rows for {ADDRESSES} clients");
    // … and rows whose window ended are pruned: nothing keeps growing.
    eventually("the counts to be pruned", async || (rows(&db).await == 0).then_some(())).await;
    assert_eq!(stored_turn(&gw, "after").await, 200);
}

#[tokio::test]
async fn ready_reports_a_starved_pool_and_recovers() {
    let server = pg::Server::start();
    let url = server.database().await;
    let gw = Arc::new(instance(&url, 1, 60_000));
    assert_eq!(stored_turn(&gw, "first").await, 200);
    assert_eq!(ready(&gw).await.0, 200);

    // Someone holds the sessions table: a turn takes the one pooled connection and waits on it.
    let mut locker = pg::connect(&url).await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let held = tokio::spawn({
        let gw = gw.clone();
        async move { stored_turn(&gw, "held").await }
    });
    let observer = pg::connect(&url).await;
    eventually("the held turn to wait on the lock", async || {
        let waiting: i64 = observer
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", &[])
            .await
            .unwrap()
            .get(0);
        (waiting > 0).then_some(())
    })
    .await;
    // The next turn finds no connection: 503, and /ready says why.
    assert_eq!(stored_turn(&gw, "starved").await, 503);
    let (status, body) = ready(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("pool"), "{body}");
    gw.wait_for_log("the warning naming the setting", |log| log.contains("database.maxConnections")).await;

    tx.rollback().await.unwrap();
    assert_eq!(held.await.unwrap(), 200, "the held turn completes once the lock is gone");
    eventually("ready again", async || (ready(&gw).await.0 == 200).then_some(())).await;
    assert_eq!(stored_turn(&gw, "after").await, 200);
}
