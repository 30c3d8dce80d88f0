//! OpenAI's Codex CLI (`codex exec`, pinned) with its default tools against
//! wasmclaw as a custom Responses provider (issue 27): Codex always sends a
//! `namespace` tool and `web_search`, and here runs a scripted shell call.
//! Installed with npm into `target/codex` on first use; it talks to nothing
//! but the gateway on loopback.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::responses_items::{ALICE, ScriptedProvider, start};

/// The pinned Codex CLI (its platform binary comes as an npm optional dependency).
const CODEX: &str = "@openai/codex@0.171.0";

/// `target/codex/node_modules/.bin/codex`; the first test to ask installs it.
fn codex() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/codex");
    let bin = dir.join("node_modules/.bin/codex");
    let version = || std::process::Command::new(&bin).arg("--version").output().ok();
    let wanted = CODEX.rsplit_once('@').unwrap().1;
    if !version().is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(wanted)) {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("package.json"), r#"{"private": true}"#).unwrap();
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--save-exact", "--prefix"])
            .arg(&dir)
            .arg(CODEX)
            .status()
            .expect("npm is required");
        assert!(status.success(), "npm install {CODEX} failed (needs the npm registry)");
    }
    bin
}

#[tokio::test]
async fn codex_exec_with_its_default_tools_answers_and_runs_a_scripted_shell_call() {
    let provider = ScriptedProvider::start(vec![
        json!({"content": "Running it.",
               "tool_calls": [["call_x1", "exec_command", "{\"cmd\": \"echo wasmclaw-tool-ran\"}"]]}),
        json!({"content": "The command printed its line."}),
    ]);
    let gw = start(&provider.url);
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        r#"model = "openclaw"
model_provider = "wasmclaw"

[model_providers.wasmclaw]
name = "wasmclaw"
base_url = "{}"
env_key = "WASMCLAW_TOKEN"
wire_api = "responses"
"#,
        gw.url("/v1")
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let out = tokio::process::Command::new(codex())
        .args(["exec", "--skip-git-repo-check", "run the echo"])
        .current_dir(work.path())
        .env("CODEX_HOME", home.path())
        .env("WASMCLAW_TOKEN", ALICE)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let context = || format!("stdout:\n{stdout}\nstderr:\n{stderr}\ngateway log:\n{}", gw.log());
    assert!(out.status.success(), "{}", context());
    assert!(stdout.contains("The command printed its line."), "{}", context());

    let requests = provider.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{}", context());
    let names: Vec<&str> =
        requests[0]["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"exec_command"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("multi_agent_v1__")), "the namespace's functions, flat: {names:?}");
    // The shell really ran: its output came back as the tool result.
    let messages = requests[1]["messages"].as_array().unwrap();
    let result = messages.last().unwrap();
    assert_eq!((result["role"].as_str(), result["tool_call_id"].as_str()), (Some("tool"), Some("call_x1")));
    assert!(result["content"].as_str().is_some_and(|c| c.contains("wasmclaw-tool-ran")), "{result}");
    let call = &messages[messages.len() - 2];
    assert_eq!(call["content"], Value::from("Running it."), "the text before the call is kept: {call}");
    assert!(gw.log().lines().any(|l| l.contains("left out tools") && l.contains("web_search")), "{}", gw.log());
}
