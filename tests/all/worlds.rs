//! Contract versions side by side: components built for 0.1.0, 0.1.1 and
//! 0.2.0 (kept as bytes in `tests/compat/`, built with the SDKs of their day)
//! and for 0.2.1 (the shipped echo) are served by one gateway, each seeing the
//! request as its world describes it.

use crate::support::*;
use serde_json::json;

/// Echo built with the SDK of contract 0.1.1 (commit 15970fb), kept as bytes.
const ECHO_0_1_1_WASM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/compat/echo-0.1.1.wasm");
/// Echo built with the SDK of contract 0.2.0 (commit 566cd9d), before `memo` (0.2.1), kept as bytes.
const ECHO_0_2_0_WASM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/compat/echo-0.2.0.wasm");

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
        ("main", "wasmclaw:agent@0.2.1"),
        ("echo-010", "wasmclaw:agent@0.1.2"),
        ("echo-011", "wasmclaw:agent@0.1.2"),
        ("echo-020", "wasmclaw:agent@0.2.1"),
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
    assert!(message.contains("wasmclaw:agent@0.2.1") && message.contains("wasmclaw:agent@0.1.2"), "{message}");
    // The old worlds still serve after the refusal.
    let res = gw.chat(ask("openclaw", "fine")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "fine");
}
