//! WebSocket errors while PostgreSQL is down: `UNAVAILABLE`, retryable, in
//! words a client can show, with the request id that finds the details in
//! the log. The database driver's own words (addresses, errno, settings)
//! never reach a client, as on the HTTP doors.

use serde_json::{Value, json};

use crate::pg;
use crate::support::*;

/// The error of a failed `res`, checked to be the generic one for `what`.
fn assert_generic(res: &Value, what: &str) {
    assert_eq!(res["ok"], false, "{res}");
    let error = &res["error"];
    assert_eq!((error["code"].as_str(), error["retryable"].as_bool()), (Some("UNAVAILABLE"), Some(true)), "{res}");
    let message = error["message"].as_str().unwrap();
    let expected =
        format!("The {what} is unavailable; retry shortly; the gateway logged the details under request id ");
    assert!(message.starts_with(&expected), "not the generic message: {message}");
}

#[tokio::test]
async fn websocket_errors_of_a_stopped_database_keep_the_driver_s_words_in_the_log() {
    let db = pg::Server::start();
    let url = db.database().await;
    let gw =
        TestGateway::start_with(&ws_config(""), &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", &url)])
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    let (mut ws, _) = Client::open(&gw).await;
    let mut params = connect_params(TOKEN);
    params["scopes"] = json!(["operator.admin"]);
    assert_eq!(ws.call("connect", params).await["ok"], true);
    let key = "agent:main:outage";
    let sent = ws.call("chat.send", json!({"sessionKey": key, "message": "before", "idempotencyKey": "k-1"})).await;
    assert_eq!(sent["ok"], true, "{sent}");
    ws.until(|f| f["event"] == "chat" && f["payload"]["state"] == "final").await;

    db.stop();
    // A read of the session store.
    let history = ws.call("chat.history", json!({"sessionKey": key})).await;
    assert_generic(&history, "session database");
    // A run that cannot load its session: its error event.
    let sent = ws.call("chat.send", json!({"sessionKey": key, "message": "during", "idempotencyKey": "k-2"})).await;
    assert_eq!(sent["ok"], true, "{sent}");
    let failed = ws.until(|f| f["event"] == "chat" && f["payload"]["state"] == "error").await;
    assert_eq!(
        failed["payload"]["errorMessage"],
        "The session database is unavailable; retry shortly (the gateway logged the details)",
        "{failed}"
    );
    // A write to the agent registry (on the same database).
    let removed = ws.call("agents.remove", json!({"agentId": "slow"})).await;
    assert_generic(&removed, "agent registry's database");

    // The details are in the log, under the request id the client was given.
    let id = history["error"]["message"].as_str().unwrap().rsplit(' ').next().unwrap().to_string();
    let log =
        gw.wait_for_log("the outage's details", |log| log.contains("the client was sent only the request id")).await;
    assert!(log.lines().any(|l| l.contains(&id) && l.contains("detail")), "no detail logged under {id}:\n{log}");
    assert!(log.contains("run failed"), "the failed run is logged with its reason:\n{log}");
}
