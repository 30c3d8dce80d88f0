//! Cluster mode (issue 15): the agent registry and the auth lock-out are
//! shared by every instance on one PostgreSQL.

use std::time::{Duration, Instant};

use crate::hot_swap::{admin, reply};
use crate::pg;
use crate::support::*;

/// A gateway on database `url` with `config`.
fn instance(url: &str, config: &str) -> TestGateway {
    TestGateway::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", url)])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// How long until `gw` answers `text` with `expected` (panics after the test's patience).
async fn served_after(gw: &TestGateway, agent: &str, expected: (u16, &str), since: Instant) -> Duration {
    eventually(&format!("{agent} answering {expected:?}"), async || {
        let (status, text) = reply(gw, agent, "hi").await;
        (status == expected.0 && (status != 200 || text == expected.1)).then(|| since.elapsed())
    })
    .await
}

#[tokio::test]
async fn a_change_on_one_instance_is_served_by_every_instance_within_a_second() {
    let server = pg::Server::start();
    let url = server.database().await;
    let (a, b) = (instance(&url, &ws_config("")), instance(&url, &ws_config("")));
    let mut watcher = Client::connect(&b).await;

    // Both instances already have echo compiled (it serves `main`), so what
    // is measured is the fan-out, not a compiler.
    let started = Instant::now();
    let put = admin(&a, reqwest::Method::PUT, "/extra").body(std::fs::read(ECHO_WASM).unwrap()).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let took = served_after(&b, "extra", (200, "hi"), started).await;
    assert!(took < Duration::from_secs(1), "instance B served the upload after {took:?}\n{}", b.log());
    let changed = watcher.until(|f| f["event"] == "agents.changed").await;
    assert_eq!(
        (changed["payload"]["id"].as_str(), changed["payload"]["action"].as_str()),
        (Some("extra"), Some("installed"))
    );

    // A new component B has never compiled: served once B has compiled it.
    let put = admin(&a, reqwest::Method::PUT, "/extra").body(std::fs::read(FAULTS_WASM).unwrap()).send().await.unwrap();
    assert_eq!(put.status(), 200);
    served_after(&b, "extra", (200, "faults:hi"), Instant::now()).await;
    assert_eq!(watcher.until(|f| f["event"] == "agents.changed").await["payload"]["action"], "installed");

    // Rollback and removal made through B reach A.
    let started = Instant::now();
    assert_eq!(admin(&b, reqwest::Method::POST, "/extra/rollback").send().await.unwrap().status(), 200);
    let took = served_after(&a, "extra", (200, "hi"), started).await;
    assert!(took < Duration::from_secs(1), "instance A served the rollback after {took:?}");
    let started = Instant::now();
    assert_eq!(admin(&b, reqwest::Method::DELETE, "/extra").send().await.unwrap().status(), 200);
    let took = served_after(&a, "extra", (404, ""), started).await;
    assert!(took < Duration::from_secs(1), "instance A stopped serving after {took:?}");

    // The steady state: nothing echoes back and forth between the instances.
    let settled = |gw: &TestGateway| gw.log().matches("agent changed on another instance").count();
    let (seen_a, seen_b) = (settled(&a), settled(&b));
    holds_until("no change bounces between instances", Instant::now() + Duration::from_secs(2), async || {
        (settled(&a), settled(&b)) == (seen_a, seen_b)
    })
    .await;

    // A third instance started later serves what the cluster serves, bytes from the database.
    admin(&a, reqwest::Method::PUT, "/late").body(std::fs::read(FAULTS_WASM).unwrap()).send().await.unwrap();
    let c = instance(&url, &ws_config(""));
    assert_eq!(reply(&c, "late", "hi").await, (200, "faults:hi".into()));
    assert_eq!(reply(&c, "extra", "hi").await.0, 404, "the removal holds for a new instance");
}

#[tokio::test]
async fn failed_logins_lock_a_client_out_of_every_instance() {
    let server = pg::Server::start();
    let url = server.database().await;
    let config = ws_config(
        ", auth: { rateLimit: { maxAttempts: 4, windowMs: 60000, lockoutMs: 60000, exemptLoopback: false } }",
    );
    let (a, b) = (instance(&url, &config), instance(&url, &config));
    let wrong = |gw: &TestGateway| {
        reqwest::Client::new()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("wrong-token")
            .json(&ask("openclaw", "hi"))
    };
    // Two failures on each instance: neither alone reached four.
    for gw in [&a, &b] {
        for _ in 0..2 {
            assert_eq!(wrong(gw).send().await.unwrap().status(), 401);
        }
    }
    // The fourth failure, counted across both, locks the client out of both,
    // even with the right token.
    for gw in [&a, &b] {
        eventually("the lock-out to reach this instance", async || {
            (gw.chat(ask("openclaw", "hi")).send().await.unwrap().status() == 429).then_some(())
        })
        .await;
    }
    let res = b.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert!(res.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn a_damaged_component_row_is_reported_and_installing_it_again_repairs_it() {
    let server = pg::Server::start();
    let url = server.database().await;
    let faults = std::fs::read(FAULTS_WASM).unwrap();
    let a = instance(&url, &ws_config(""));
    assert_eq!(admin(&a, reqwest::Method::PUT, "/up").body(faults.clone()).send().await.unwrap().status(), 200);
    drop(a);
    // One flipped byte in the kept bytes: same length, wrong content.
    let db = pg::connect(&url).await;
    let damaged = db.execute(
        "UPDATE components SET bytes = set_byte(bytes, 100, get_byte(bytes, 100) # 1)
         WHERE digest = (SELECT current_digest FROM agents WHERE id = 'up')",
        &[],
    );
    assert_eq!(damaged.await.unwrap(), 1);

    let b = instance(&url, &ws_config(""));
    let reported = |log: &str| log.lines().any(|l| l.contains("agent=up") && l.contains("is damaged"));
    let log = b.wait_for_log("the damaged component reported", reported).await;
    let line = log.lines().find(|l| reported(l)).unwrap();
    assert!(line.contains("install the agent's component again"), "{line}");
    assert_eq!(reply(&b, "up", "hi").await.0, 404, "a damaged component is never served");
    assert_eq!(admin(&b, reqwest::Method::PUT, "/up").body(faults.clone()).send().await.unwrap().status(), 200);
    assert_eq!(reply(&b, "up", "hi").await, (200, "faults:hi".into()));
    drop(b);

    let c = instance(&url, &ws_config(""));
    assert_eq!(reply(&c, "up", "hi").await, (200, "faults:hi".into()), "the repaired bytes serve a new instance");
}
