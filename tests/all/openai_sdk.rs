//! The official `openai` Python SDK against a real gateway (WIRE.md's promise).
//!
//! The SDK is installed into `target/openai-sdk-venv` on first use, so the
//! test needs only `python3` with `venv` and access to PyPI, like CI has.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use wasmclaw_mock_provider::{MockProvider, Reply};

/// Both tests need the venv; the first one to ask creates it, the other waits.
fn python_with_openai() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(install_sdk).clone()
}

fn install_sdk() -> PathBuf {
    python_venv("openai-sdk-venv", OPENAI_SDK, |bin| imports(bin, "openai")).join("python")
}

#[test]
fn official_python_sdk_works() {
    let gw = TestGateway::start(&chat_config());
    run_sdk_script(&gw, "openai_check.py");
}

#[test]
fn python_sdk_streams_remembers_and_runs_a_tool_loop_through_the_assistant() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["Hel", "lo", " world"]).with_token_delay(Duration::from_millis(150)));
    mock.push(Reply::echo());
    mock.push(Reply::tool_call("call_w1", "get_weather", r#"{"city": "Paris"}"#));
    mock.push(Reply::text(&["It is sunny", " in Paris."]));
    let config = format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "mock-model" }} }} }},
}}"#,
        mock.url()
    );
    let gw = TestGateway::start(&config);
    run_sdk_script(&gw, "assistant_check.py");

    let sent: Vec<serde_json::Value> = mock.requests().into_iter().map(|r| r.body).collect();
    let roles = |body: &serde_json::Value| -> Vec<String> {
        body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(roles(&sent[1]), ["user", "assistant", "user"], "the second call carried the first turn");
    assert_eq!(sent[1]["messages"][1]["content"], "Hello world");
    assert_eq!(roles(&sent[3]), ["user", "assistant", "tool"], "the tool loop's turn, nothing twice");
    assert_eq!(sent[3]["messages"][1]["tool_calls"][0]["id"], "call_w1");
    assert_eq!(sent[3]["messages"][2]["tool_call_id"], "call_w1");
    assert_eq!(sent[3]["tools"][0]["function"]["name"], "get_weather");
}

#[test]
fn python_sdk_uses_legacy_completions_models_retrieve_and_every_chat_parameter() {
    let mock = MockProvider::start();
    let gw = TestGateway::start(&crate::chat_surface::assistant_config(&mock, ""));
    run_sdk_script(&gw, "surface_check.py");

    let sent: Vec<serde_json::Value> = mock.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 2, "only the assistant calls reach the provider: {sent:?}");
    let expected = serde_json::json!({
        "max_completion_tokens": 7, "presence_penalty": 0.5, "frequency_penalty": -0.25,
        "logit_bias": {"50256": -100}, "logprobs": true, "top_logprobs": 2, "reasoning_effort": "low",
        "metadata": {"team": "qa"}, "a_parameter_from_next_year": {"deep": [1, "two"]},
    });
    for (name, value) in expected.as_object().unwrap() {
        assert_eq!(&sent[0][name], value, "{name}: {}", sent[0]);
    }
    assert!(sent[0].get("max_tokens").is_none(), "not renamed: {}", sent[0]);
    assert_eq!((sent[0]["model"].as_str(), sent[1]["model"].as_str()), (Some("small"), Some("large")));
}

pub fn run_sdk_script(gw: &TestGateway, script: &str) {
    let python = python_with_openai();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk").join(script);
    let out = Command::new(python).arg(script).arg(gw.url("/v1")).arg(TOKEN).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert!(stdout.contains("all checks passed"));
}
