//! Contract versions side by side: components built for 0.1.0, 0.1.1, 0.2.0
//! and 0.2.1 (kept as bytes in `tests/compat/`, built with the SDKs of their
//! day) and for 0.2.2 (the shipped echo) are served by one gateway, each
//! seeing the request as its world describes it.

use crate::support::*;
use serde_json::json;

/// Echo built with the SDK of contract 0.1.1 (commit 15970fb), kept as bytes.
const ECHO_0_1_1_WASM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/compat/echo-0.1.1.wasm");
/// Echo built with the SDK of contract 0.2.0 (commit 566cd9d), before `memo` (0.2.1), kept as bytes.
const ECHO_0_2_0_WASM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/compat/echo-0.2.0.wasm");

/// The faults fixture built with the SDK of contract 0.2.1 (commit 8a1bc4e),
/// whose `http` went through `wasi:http`, kept as bytes.
const FAULTS_0_2_1_WASM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/compat/faults-0.2.1.wasm");

fn three_worlds_config() -> String {
    let old = crate::guest_log::ECHO_0_1_0_WASM;
    format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
             agents: {{ entries: {{
               main: {{ plugin: "echo" }},
               "echo-010": {{ plugin: "{old}" }},
               "echo-011": {{ plugin: "{ECHO_0_1_1_WASM}" }},
               "echo-020": {{ plugin: "{ECHO_0_2_0_WASM}" }},
             }} }} }}"#
    )
}

/// One user message: text, an image, more text.
fn with_image(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is"},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.png", "detail": "high"}},
        {"type": "input_text", "text": "in this picture?"},
    ]}]})
}

#[tokio::test]
async fn old_and_new_worlds_serve_side_by_side_each_seeing_its_own_content() {
    let gw = TestGateway::start(&three_worlds_config());
    let log = gw.wait_for_log("four agents installed", |log| log.matches("agent installed").count() >= 4).await;
    for (agent, world) in [
        ("main", "wasmclaw:agent@0.2.2"),
        ("echo-010", "wasmclaw:agent@0.1.2"),
        ("echo-011", "wasmclaw:agent@0.1.2"),
        ("echo-020", "wasmclaw:agent@0.2.2"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains("agent installed") && l.contains(&format!("agent={agent} ")))
            .unwrap_or_else(|| panic!("no install line for {agent}:\n{log}"));
        assert!(line.contains(world), "{agent} is served by {world}: {line}");
    }

    // Plain text: every world answers exactly as before 0.2.
    for agent in ["main", "echo-010", "echo-011", "echo-020"] {
        let res = gw.chat(ask(&format!("agent:{agent}"), "still speaking")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{agent}");
        assert_eq!(content(&res.json().await.unwrap()), "still speaking", "{agent}");
    }

    // Parts: 0.1 agents see the text parts joined, the image left out; the
    // 0.2 agent sees every part in order.
    for agent in ["echo-010", "echo-011"] {
        let res = gw.chat(with_image(&format!("agent:{agent}"))).send().await.unwrap();
        assert_eq!(res.status(), 200, "{agent}");
        assert_eq!(content(&res.json().await.unwrap()), "what is\nin this picture?", "{agent}");
    }
    for agent in ["main", "echo-020"] {
        let res = gw.chat(with_image(&format!("agent:{agent}"))).send().await.unwrap();
        assert_eq!(
            content(&res.json().await.unwrap()),
            "what is\n[image https://img.example/cat.png detail=high]\nin this picture?",
            "{agent}"
        );
    }
}

#[tokio::test]
async fn a_component_of_no_supported_world_is_refused_naming_every_world() {
    let gw = TestGateway::start(&chat_config());
    let res = reqwest::Client::new()
        .put(gw.url("/admin/agents/stranger"))
        .bearer_auth(TOKEN)
        .body(std::fs::read(NOT_AN_AGENT_WASM).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("wasmclaw:agent@0.2.2") && message.contains("wasmclaw:agent@0.1.2"), "{message}");
    // The old worlds still serve after the refusal.
    let res = gw.chat(ask("openclaw", "fine")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "fine");
}

/// Contract 0.2.2 added `http.fetch`, which the SDK's `http` now sends
/// through. An agent built before it sends through `wasi:http`: it keeps
/// loading, and gets the same answers under the same policy as one built now.
#[tokio::test]
async fn an_agent_built_before_http_fetch_fetches_as_one_built_with_it() {
    let name = |wasm: &str| std::fs::read(wasm).unwrap().windows(25).any(|w| w == b"wasmclaw:agent/http@0.2.2");
    assert!(name(FAULTS_WASM), "today's SDK imports http.fetch");
    assert!(!name(FAULTS_0_2_1_WASM), "the 0.2.1 fixture does not");
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { ([("x-kind", "greeting")], "hello") }))
        .route("/other", axum::routing::get(|| async { "other" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = format!(r#"config: {{ fault: "fetch" }}, http: {{ allow: ["http://{addr}/hello"] }}"#);
    let gw = TestGateway::start(&format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
             agents: {{ entries: {{
               main: {{ plugin: "echo" }},
               old: {{ plugin: "{FAULTS_0_2_1_WASM}", {http} }},
               new: {{ plugin: "{FAULTS_WASM}", {http} }},
             }} }} }}"#
    ));
    let urls = format!("http://{addr}/hello http://{addr}/other");
    let mut replies = Vec::new();
    for agent in ["old", "new"] {
        let res = gw.chat(ask(&format!("agent:{agent}"), &urls)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{agent}");
        replies.push(content(&res.json().await.unwrap()));
    }
    assert!(replies[0].contains(&format!("http://{addr}/hello -> 200 [x-kind: greeting] hello")), "{replies:?}");
    assert!(replies[0].contains("/other -> error: request denied by the gateway"), "{replies:?}");
    assert_eq!(replies[0], replies[1], "the same answers through either door");
    let log = gw.log();
    let installed = |agent: &str| {
        log.lines().any(|l| {
            l.contains("agent installed")
                && l.contains(&format!("agent={agent} "))
                && l.contains("wasmclaw:agent@0.2.2")
        })
    };
    assert!(installed("old") && installed("new"), "{log}");
    let metrics = gw.metrics().await;
    for agent in ["old", "new"] {
        let line =
            format!(r#"wasmclaw_agent_http_requests_total{{agent="{agent}",origin="http://{addr}",outcome="200"}} 1"#);
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}
