//! Secrets stay secret: provider header values and config errors.

use crate::support::*;
use serde_json::Value;
use wasmclaw_mock_provider::{MockProvider, Reply};

const AZURE_KEY: &str = "az-key-9c2e71";
const ORG: &str = "org-literal-44d0";

#[tokio::test]
async fn every_provider_header_value_is_redacted_like_the_key() {
    let mock = MockProvider::start();
    let config = format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ azure: {{ baseUrl: "{}", headers: {{ "api-key": {{ valueEnv: "AZURE_KEY" }}, "x-org": "{ORG}" }} }} }},
  agents: {{ entries: {{ main: {{ plugin: "assistant", provider: "azure", model: "m" }} }} }},
}}"#,
        mock.url()
    );
    let gw = TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("AZURE_KEY", AZURE_KEY)])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    // A provider that quotes the credentials it was sent, as some do in errors.
    mock.push(Reply::status(400, None, &format!("bad api-key {AZURE_KEY} for {ORG}")));
    let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("[redacted]"), "{message}");
    let sent = &mock.requests()[0].headers;
    assert_eq!((sent["api-key"].to_str().unwrap(), sent["x-org"].to_str().unwrap()), (AZURE_KEY, ORG));
    let log = gw.settled_log().await;
    for secret in [AZURE_KEY, ORG] {
        assert!(!message.contains(secret), "a header value reached the client: {message}");
        assert!(!log.contains(secret), "a header value reached the log");
    }
}

#[test]
fn a_missing_header_variable_stops_start_up_naming_it() {
    let config = r#"{ providers: { p: { baseUrl: "http://127.0.0.1:9/v1", headers: { "api-key": { valueEnv: "NOPE_KEY" } } } } }"#;
    let err = TestGateway::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)]).err().expect("must not start");
    assert!(err.contains("NOPE_KEY") && err.contains("providers.p.headers.api-key"), "{err}");
}

#[tokio::test]
async fn config_errors_at_start_and_on_reload_never_print_the_secret_line() {
    let secret = "tok-5a7e0c1d";
    let broken = format!("{{\n  gateway: {{ auth: {{ token: \"{secret}\" mode: \"token\" }} }}\n}}");
    let err = TestGateway::start_with(&broken, &[]).err().expect("a syntax error must stop start-up");
    assert!(err.contains("gateway.json5:2:"), "the error names file and line: {err}");
    assert!(!err.contains(secret), "the secret reached the start-up error: {err}");

    let gw = TestGateway::start(r#"{ agents: { entries: { main: { plugin: "echo" } } } }"#);
    std::fs::write(gw.state_dir().join("gateway.json5"), &broken).unwrap();
    let log = gw.wait_for_log("the rejected reload", |l| l.contains("config change rejected")).await;
    assert!(log.contains("gateway.json5:2:"), "{log}");
    assert!(!gw.settled_log().await.contains(secret), "the secret reached the reload log");
}

const KEY: &str = "sk-mock-77f1c0";

/// A gateway whose provider `p` at `url` has the key in `P_KEY` and `extra` (JSON5 fields).
fn with_provider(url: &str, extra: &str, key: &str) -> Result<TestGateway, String> {
    let config = format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ p: {{ baseUrl: "{url}", apiKeyEnv: "P_KEY", {extra} }} }},
  agents: {{ entries: {{ main: {{ plugin: "assistant", provider: "p", model: "m" }} }} }},
}}"#
    );
    TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("P_KEY", key)])
}

#[tokio::test]
async fn every_call_sends_the_key_and_json_whatever_the_configured_headers_say() {
    let mock = MockProvider::start();
    let headers = format!(
        r#"headers: {{ authorization: "Bearer not-the-key", "content-type": "text/plain", "x-org": "{ORG}" }}"#
    );
    let gw = with_provider(&mock.url(), &headers, KEY).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    for n in 1..=2 {
        let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
        assert_eq!(res.status(), 200, "call {n}");
    }
    let sent = mock.requests();
    assert_eq!(sent.len(), 2);
    for (n, request) in sent.iter().enumerate() {
        let all =
            |name: &str| -> Vec<&str> { request.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect() };
        assert_eq!(all("authorization"), [format!("Bearer {KEY}")], "call {n}: the key, once");
        assert_eq!(all("content-type"), ["application/json"], "call {n}");
        assert_eq!(all("x-org"), [ORG], "call {n}");
        let agent = all("user-agent");
        assert!(agent.len() == 1 && agent[0].starts_with("wasmclaw/"), "call {n}: {agent:?}");
    }
}

#[test]
fn provider_values_that_cannot_be_sent_stop_start_up_naming_their_key() {
    let bad_key = "sk-line\nbreak-31c9";
    let err = with_provider("http://127.0.0.1:9/v1", "", bad_key).err().expect("a key no header can carry");
    assert!(err.contains("providers.p.apiKey"), "{err}");
    assert!(!err.contains("break-31c9"), "the key reached the error: {err}");
    let err = with_provider("http://exa mple.test/v1", "", KEY).err().expect("a base URL that does not parse");
    assert!(err.contains("providers.p.baseUrl"), "{err}");
}

/// A provider that redirects: `/same/…` to `/final/…` on itself (which answers
/// a 400 naming the headers it got), `/away/…` to `elsewhere`.
async fn redirecting_provider(
    elsewhere: String,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode, header::LOCATION};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (log, away) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/same/chat/completions",
            axum::routing::post(|| async { (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, "/final/chat/completions")]) }),
        )
        .route(
            "/away/chat/completions",
            axum::routing::post(move || async move {
                away.lock().unwrap().push("away".to_string());
                (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, elsewhere)])
            }),
        )
        .route(
            "/final/chat/completions",
            axum::routing::post(move |headers: HeaderMap| async move {
                let got = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                log.lock().unwrap().push(format!("{} {}", got("authorization"), got("api-key")));
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": {"message": "followed within the origin"}})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test]
async fn redirects_are_followed_only_within_the_providers_origin() {
    let elsewhere = MockProvider::start();
    let (addr, seen) = redirecting_provider(format!("{}/chat/completions", elsewhere.url())).await;
    // Retries allowed: a refused redirect must not use them (the configuration cannot change meanwhile).
    let extra = format!(r#"maxRetries: 2, headers: {{ "api-key": "{AZURE_KEY}" }}"#);

    // Elsewhere: refused, so neither the api-key nor the messages go there.
    let gw = with_provider(&format!("http://{addr}/away"), &extra, KEY).unwrap_or_else(|log| panic!("{log}"));
    let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    let status = res.status();
    assert_eq!(res.headers().get("x-should-retry").map(|v| v.to_str().unwrap()), Some("false"));
    let body: Value = res.json().await.unwrap();
    let sent: Vec<_> = elsewhere.requests().iter().map(|r| r.headers.get("api-key").cloned()).collect();
    assert!(sent.is_empty(), "the other origin was sent the call (api-key: {sent:?})");
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("redirect") && message.contains("providers.p.baseUrl"), "{message}");
    assert!(!message.contains(AZURE_KEY) && !message.contains(KEY), "{message}");
    let log = gw.settled_log().await;
    assert!(!log.contains(AZURE_KEY), "a header value reached the log");
    assert_eq!(seen.lock().unwrap().iter().filter(|s| s.as_str() == "away").count(), 1, "asked once, not retried");
    assert!(!log.contains("retrying"), "{log}");

    // Within the origin: followed as before, with every header.
    let gw = with_provider(&format!("http://{addr}/same"), &extra, KEY).unwrap_or_else(|log| panic!("{log}"));
    let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("followed within the origin"), "{body}");
    let followed: Vec<String> = seen.lock().unwrap().iter().filter(|s| s.as_str() != "away").cloned().collect();
    assert_eq!(followed, [format!("Bearer {KEY} {AZURE_KEY}")]);
}
