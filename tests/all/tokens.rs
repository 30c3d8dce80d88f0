//! Scoped tokens: named credentials with OpenClaw's scopes, an agent
//! allow-list and a rate limit, over HTTP and the WebSocket.

use crate::support::*;
use serde_json::{Value, json};

const APP: &str = "app-secret-5d1e";
const READER: &str = "reader-secret-77aa";
const LIMITED: &str = "limited-secret-03bc";
const MAIN_ADMIN: &str = "main-admin-secret-9e41";

fn tokens_config() -> String {
    r#"{
  gateway: {
    auth: { mode: "token", tokens: [
      { name: "web-app", tokenEnv: "WEB_APP_TOKEN", scopes: ["operator.read", "operator.write"], agents: ["main"] },
      { name: "reader", tokenEnv: "READER_TOKEN", scopes: ["operator.read"] },
      { name: "limited", tokenEnv: "LIMITED_TOKEN", scopes: ["operator.write"], rateLimit: { requestsPerMinute: 3 } },
      { name: "main-admin", tokenEnv: "MAIN_ADMIN_TOKEN", scopes: ["operator.admin"], agents: ["main"] },
    ] },
    http: { endpoints: { chatCompletions: { enabled: true } } },
  },
  agents: { entries: { main: { plugin: "echo" }, beta: { plugin: "echo" } } },
}"#
    .to_string()
}

fn start() -> TestGateway {
    TestGateway::start_with(
        &tokens_config(),
        &[
            ("OPENCLAW_GATEWAY_TOKEN", TOKEN),
            ("WEB_APP_TOKEN", APP),
            ("READER_TOKEN", READER),
            ("LIMITED_TOKEN", LIMITED),
            ("MAIN_ADMIN_TOKEN", MAIN_ADMIN),
        ],
    )
    .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

async fn chat_as(gw: &TestGateway, token: &str, model: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&ask(model, "hi"))
        .send()
        .await
        .unwrap()
}

async fn get_as(gw: &TestGateway, token: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new().get(gw.url(path)).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn an_app_token_chats_with_its_agents_only_and_cannot_administer() {
    let gw = start();
    let res = chat_as(&gw, APP, "openclaw/main").await;
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "hi");
    // Another agent behaves as unknown, exactly as a missing one does.
    let res = chat_as(&gw, APP, "openclaw/beta").await;
    assert_eq!(res.status(), 404);
    assert_eq!(error_fields(&res.json().await.unwrap()).1.as_deref(), Some("model_not_found"));
    let models: Value = get_as(&gw, APP, "/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["openclaw", "openclaw/main"]);
    // The main secret still sees and uses everything.
    assert_eq!(chat_as(&gw, TOKEN, "openclaw/beta").await.status(), 200);
    // Administration needs operator.admin: 403 naming the scope, and nothing changes.
    let res = reqwest::Client::new()
        .put(gw.url("/admin/agents/main"))
        .bearer_auth(APP)
        .body(std::fs::read(FAULTS_WASM).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_fields(&body).1.as_deref(), Some("permission_denied"));
    assert!(body["error"]["message"].as_str().unwrap().contains("operator.admin"), "{body}");
    assert_eq!(gw.get_json("/admin/agents/main").await["name"], "echo", "the agent was not replaced");
    assert_eq!(get_as(&gw, APP, "/metrics").await.status(), 403);
}

#[tokio::test]
async fn a_read_token_reads_but_cannot_run() {
    let gw = start();
    let res = chat_as(&gw, READER, "openclaw/main").await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("operator.write"), "{body}");
    assert_eq!(get_as(&gw, READER, "/v1/models").await.status(), 200);
    assert_eq!(get_as(&gw, READER, "/sessions").await.status(), 200);
    let res = reqwest::Client::new().delete(gw.url("/sessions/agent:main:x")).bearer_auth(READER).send().await.unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_counted_by_name() {
    let gw = start();
    for i in 0..3 {
        assert_eq!(chat_as(&gw, LIMITED, "openclaw/main").await.status(), 200, "request {i} is within the rate");
    }
    let res = chat_as(&gw, LIMITED, "openclaw/main").await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(error_fields(&res.json().await.unwrap()).0, "rate_limit_error");
    // Other credentials are not slowed by it.
    assert_eq!(chat_as(&gw, APP, "openclaw/main").await.status(), 200);
    let metrics = gw
        .wait_for_metrics(&[
            r#"wasmclaw_token_requests_total{token="limited",outcome="allowed"} 3"#,
            r#"wasmclaw_token_requests_total{token="limited",outcome="rate_limited"} 1"#,
        ])
        .await;
    // Logs and metrics name the token; neither ever carries a secret.
    let log = gw.wait_for_log("the token's name in the request log", |l| l.contains("token=limited")).await;
    for secret in [APP, READER, LIMITED, TOKEN] {
        assert!(!metrics.contains(secret) && !log.contains(secret), "a secret leaked");
    }
}

#[test]
fn a_token_whose_variable_is_missing_stops_start_up_naming_it() {
    let err = TestGateway::start_with(&tokens_config(), &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WEB_APP_TOKEN", APP)])
        .err()
        .expect("start-up must fail");
    assert!(err.contains("READER_TOKEN") && err.contains("gateway.auth.tokens[1].tokenEnv"), "{err}");
}

/// Connect with `token` asking for `scopes`; returns the client and `hello-ok`.
async fn ws_connect(gw: &TestGateway, token: &str, scopes: Value) -> (Client, Value) {
    let (mut client, _) = Client::open(gw).await;
    let mut params = connect_params(token);
    params["scopes"] = scopes;
    let hello = client.call("connect", params).await;
    (client, hello)
}

#[tokio::test]
async fn a_websocket_client_gets_the_scopes_it_asked_for_and_its_token_holds() {
    let gw = start();
    let all = json!(["operator.read", "operator.write", "operator.admin", "operator.approvals"]);
    let (mut app, hello) = ws_connect(&gw, APP, all.clone()).await;
    assert_eq!(hello["payload"]["auth"]["scopes"], json!(["operator.read", "operator.write"]));
    let methods = hello["payload"]["features"]["methods"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "agents.install") && methods.iter().any(|m| m == "chat.send"));
    let res = app.call("agents.remove", json!({"agentId": "main"})).await;
    assert_eq!(res["ok"], false);
    assert!(res["error"]["message"].as_str().unwrap().contains("operator.admin"), "{res}");
    let listed = app.call("agents.list", json!({})).await;
    let ids: Vec<&str> =
        listed["payload"]["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["main"]);
    let res = app.call("agent", json!({"message": "hi", "agentId": "beta", "idempotencyKey": "b"})).await;
    assert_eq!(res["ok"], false, "another agent is unknown to this token: {res}");
    // The main secret asking only for read may read but not run.
    let (mut operator, hello) = ws_connect(&gw, TOKEN, json!(["operator.read"])).await;
    assert_eq!(hello["payload"]["auth"]["scopes"], json!(["operator.read"]));
    assert_eq!(operator.call("health", json!({})).await["ok"], true);
    let res = operator.call("agent", json!({"message": "hi", "idempotencyKey": "r"})).await;
    assert!(res["error"]["message"].as_str().unwrap().contains("operator.write"), "{res}");
    // Asking for nothing in particular grants what the credential holds.
    let (_, hello) = ws_connect(&gw, TOKEN, json!(null)).await;
    assert_eq!(hello["payload"]["auth"]["scopes"], json!(["operator.read", "operator.write", "operator.admin"]));
}

#[tokio::test]
async fn websocket_runs_count_against_the_token_rate_like_http_requests() {
    let gw = start();
    let (mut c, hello) = ws_connect(&gw, LIMITED, json!(["operator.write"])).await;
    assert_eq!(hello["ok"], true, "{hello}");
    // Three runs, whichever method starts them: the rate's minute's worth.
    for (i, method) in ["agent", "chat.send", "agent"].into_iter().enumerate() {
        let res = c
            .call(method, json!({"message": "hi", "sessionKey": format!("s{i}"), "idempotencyKey": format!("k{i}")}))
            .await;
        assert_eq!(res["ok"], true, "run {i} is within the rate: {res}");
    }
    // Past it: every method that starts work is refused with a retry hint, and keeps being refused.
    for (i, method) in ["agent", "chat.send", "agent"].into_iter().enumerate() {
        let res = c.call(method, json!({"message": "hi", "idempotencyKey": format!("over{i}")})).await;
        assert_eq!(res["ok"], false, "{method} past the rate: {res}");
        let e = &res["error"];
        assert_eq!(
            (e["code"].as_str(), e["details"]["code"].as_str()),
            (Some("UNAVAILABLE"), Some("RATE_LIMITED")),
            "{res}"
        );
        assert_eq!(e["retryable"], true, "{res}");
        let retry = e["details"]["retryAfterMs"].as_u64().unwrap();
        assert!((1000..=60_000).contains(&retry), "{res}");
        assert!(e["message"].as_str().unwrap().contains("rateLimit"), "the message names the setting: {res}");
    }
    // Methods that start nothing stay open, and HTTP shares the same rate.
    let waited = c.call("agent.wait", json!({"runId": "none", "timeoutMs": 1})).await;
    assert!(waited["error"]["details"]["code"] != "RATE_LIMITED", "{waited}");
    assert_eq!(chat_as(&gw, LIMITED, "openclaw/main").await.status(), 429);
    // Three runs ran, none past the rate.
    let ran = r#"wasmclaw_run_duration_seconds_count{agent="main"} 3"#;
    gw.wait_for_metrics(&[ran, r#"wasmclaw_token_requests_total{token="limited",outcome="rate_limited"} 4"#]).await;
    let res = c.call("agent", json!({"message": "hi", "idempotencyKey": "later"})).await;
    assert_eq!(res["error"]["details"]["code"], "RATE_LIMITED", "{res}");
    assert!(gw.metrics().await.lines().any(|l| l == ran), "a refused request ran");
}

#[tokio::test]
async fn a_token_limited_to_some_agents_sees_only_theirs_on_metrics_and_websocket_health() {
    let gw = start();
    // Runs on both agents, and requests by several credentials.
    for model in ["openclaw/main", "openclaw/beta"] {
        assert_eq!(chat_as(&gw, TOKEN, model).await.status(), 200);
    }
    assert_eq!(chat_as(&gw, APP, "openclaw/main").await.status(), 200);
    assert_eq!(get_as(&gw, READER, "/v1/models").await.status(), 200);
    let all = gw
        .wait_for_metrics(&[
            r#"wasmclaw_run_duration_seconds_count{agent="beta"} 1"#,
            r#"wasmclaw_run_duration_seconds_count{agent="main"} 2"#,
            r#"wasmclaw_token_requests_total{token="reader",outcome="allowed"} 1"#,
        ])
        .await;
    assert!(all.contains(r#"token="web-app""#), "the main secret sees every name:\n{all}");
    let res = get_as(&gw, MAIN_ADMIN, "/metrics").await;
    assert_eq!(res.status(), 200);
    let mine = res.text().await.unwrap();
    assert!(mine.contains(r#"wasmclaw_run_duration_seconds_count{agent="main"} 2"#), "its agent's lines:\n{mine}");
    assert!(mine.contains(r#"token="main-admin""#), "its own name:\n{mine}");
    for other in [r#"agent="beta""#, r#"token="web-app""#, r#"token="reader""#, r#"token="operator""#] {
        assert!(!mine.contains(other), "{other} shown to a token limited to main:\n{mine}");
    }
    // WebSocket health counts the agents the caller may use.
    let (mut app, _) = ws_connect(&gw, APP, json!(["operator.read"])).await;
    assert_eq!(app.call("health", json!({})).await["payload"]["agents"], 1);
    let (mut operator, _) = ws_connect(&gw, TOKEN, json!(["operator.read"])).await;
    assert_eq!(operator.call("health", json!({})).await["payload"]["agents"], 2);
}
