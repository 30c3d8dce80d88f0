//! A revoked or removed device loses its open WebSocket connections on every
//! instance of a cluster, not only on the one that handled the call (the
//! sessions store announces it with `NOTIFY wasmclaw_devices`).

use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::json;
use sha2::Digest as _;

use crate::control_ui::{admin, key, open_with, ui_connect};
use crate::support::*;

/// Generous: two instances and PostgreSQL share a busy 2-core machine.
const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

fn id(k: &Ed25519KeyPair) -> String {
    hex::encode(sha2::Sha256::digest(k.public_key().as_ref()))
}

async fn closed_within(c: &mut Client) -> (u16, String) {
    tokio::time::timeout(CLOSE_WITHIN, c.closed()).await.expect("the connection stayed open")
}

#[tokio::test]
async fn on_postgres_revoking_or_removing_a_device_on_one_instance_closes_it_on_the_others() {
    let server = crate::pg::Server::start();
    let url = server.database().await;
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", url.as_str())];
    // Ticks keep frames coming while a test waits for a close (a read gives up after 15 s of silence).
    let config = "{ gateway: { ws: { tickIntervalMs: 1000 } } }";
    let start =
        || TestGateway::start_with(config, &env).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    let (a, b) = (start(), start());
    let (k1, k2) = (key(31), key(32));

    // Device 1 paired on A, with a tab on B by its device token; device 2 likewise on B.
    let (mut paired1, hello) = open_with(&a, |n| ui_connect(&k1, n, n, json!({"token": TOKEN}))).await;
    let token1 = hello["payload"]["auth"]["deviceToken"].as_str().unwrap().to_string();
    let (mut tab1_on_b, hello) = open_with(&b, |n| ui_connect(&k1, n, n, json!({"deviceToken": token1}))).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let (mut paired2, hello) = open_with(&a, |n| ui_connect(&k2, n, n, json!({"token": TOKEN}))).await;
    let token2 = hello["payload"]["auth"]["deviceToken"].as_str().unwrap().to_string();
    let (mut tab2_on_b, hello) = open_with(&b, |n| ui_connect(&k2, n, n, json!({"deviceToken": token2}))).await;
    assert_eq!(hello["ok"], true, "{hello}");

    // Revoked on A: its tab on B closes as OpenClaw closes it, 4001 "device removed".
    let revoked = admin(&a).await.call("device.token.revoke", json!({"deviceId": id(&k1)})).await;
    assert_eq!(revoked["payload"]["revoked"], true, "{revoked}");
    assert_eq!(closed_within(&mut tab1_on_b).await, (4001, "device removed".to_string()));
    assert_eq!(closed_within(&mut paired1).await, (4001, "device removed".to_string()));
    // Device 2 is left alone on both instances.
    assert_eq!(tab2_on_b.call("health", json!({})).await["ok"], true);
    assert_eq!(paired2.call("health", json!({})).await["ok"], true);
    // And the revoked token is refused on both.
    for gw in [&a, &b] {
        let (_, after) = open_with(gw, |n| ui_connect(&k1, n, n, json!({"deviceToken": token1}))).await;
        assert_eq!(after["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH", "{after}");
    }

    // Removed on B: its connection on A closes too.
    let removed = admin(&b).await.call("device.pair.remove", json!({"deviceId": id(&k2)})).await;
    assert_eq!(removed["payload"]["removed"], true, "{removed}");
    assert_eq!(closed_within(&mut paired2).await, (4001, "device removed".to_string()));
    assert_eq!(closed_within(&mut tab2_on_b).await, (4001, "device removed".to_string()));
    b.wait_for_log("the close logged on B", |log| log.contains("the device was revoked or removed")).await;
}
