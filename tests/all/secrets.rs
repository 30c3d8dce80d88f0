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
