//! Failures inside the gateway (issue 24, item 19): a store's SQL error
//! never reaches a client, over HTTP or the WebSocket. The client gets a
//! generic message naming the request id; the log has the detail under it.

use serde_json::{Value, json};

use crate::sessions::as_user;
use crate::support::*;

/// What SQLite says once the sessions table is gone.
const SQL_TEXT: &str = "no such table";

/// A gateway whose session store fails every query on `sessions` (the
/// table is renamed underneath it, as a broken disk or a bad migration might).
async fn broken_store() -> TestGateway {
    let gw = TestGateway::start(&ws_config(""));
    // One stored turn first, so the store is open and the table in use.
    let res = gw.chat(as_user("openclaw", "alice", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let db = rusqlite::Connection::open(gw.state_dir().join("sessions.sqlite")).unwrap();
    db.execute_batch("ALTER TABLE sessions RENAME TO sessions_gone").unwrap();
    gw
}

/// The message names `id`, holds no SQL, and the log has the SQL under `id`.
async fn assert_hidden(gw: &TestGateway, message: &str, id: &str) {
    assert!(!message.contains(SQL_TEXT) && !message.contains("sessions"), "internals sent: {message}");
    assert!(message.contains(id), "the request id is named: {message}");
    let logged = |log: &str| log.lines().any(|l| l.contains(id) && l.contains(SQL_TEXT));
    gw.wait_for_log("the detail logged under the request id", logged).await;
}

#[tokio::test]
async fn a_store_error_over_http_names_the_request_id_and_logs_the_detail() {
    let gw = broken_store().await;
    let id = uuid::Uuid::new_v4().to_string();
    let res =
        reqwest::Client::new().get(gw.url("/sessions")).bearer_auth(TOKEN).header("x-request-id", &id).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    assert_hidden(&gw, body["error"]["message"].as_str().unwrap(), &id).await;

    // A run whose store fails under it: the same, through the run path.
    let id = uuid::Uuid::new_v4().to_string();
    let res = gw.chat(as_user("openclaw", "alice", "again")).header("x-request-id", &id).send().await.unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_hidden(&gw, body["error"]["message"].as_str().unwrap(), &id).await;

    // Streaming: the failure arrives before any output, still with the id.
    let id = uuid::Uuid::new_v4().to_string();
    let mut stream = as_user("openclaw", "alice", "streamed");
    stream["stream"] = json!(true);
    let res = gw.chat(stream).header("x-request-id", &id).send().await.unwrap();
    let text = res.text().await.unwrap();
    assert!(!text.contains(SQL_TEXT), "internals sent: {text}");
    assert!(text.contains(&id), "the request id is named: {text}");
}

#[tokio::test]
async fn a_store_error_over_the_websocket_names_the_request_id_and_logs_the_detail() {
    let gw = broken_store().await;
    let mut c = Client::connect(&gw).await;
    let id = c.request("sessions.list", Some(json!({}))).await;
    let res = c.response(&id).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "INTERNAL_ERROR", "{res}");
    assert_hidden(&gw, res["error"]["message"].as_str().unwrap(), &id).await;

    // A run on a stored session: its ending says what failed by id only.
    let params = json!({"message": "hi", "agentId": "main", "sessionKey": "agent:main:broken", "idempotencyKey": "k1"});
    let id = c.request("agent", Some(params)).await;
    let accepted = c.response(&id).await;
    if accepted["ok"] == false {
        // Refused before it started (the store is asked who owns the session).
        return assert_hidden(&gw, accepted["error"]["message"].as_str().unwrap(), &id).await;
    }
    let done = c.response(&id).await;
    assert_eq!(done["payload"]["status"], "error", "{done}");
    assert_hidden(&gw, done["payload"]["summary"].as_str().unwrap(), &id).await;
    let event = c.until(|f| f["event"] == "agent" && f["payload"]["data"]["phase"] == "error").await;
    let shown = event["payload"]["data"]["error"].as_str().unwrap();
    assert!(!shown.contains(SQL_TEXT) && shown.contains(&id), "{shown}");
}
