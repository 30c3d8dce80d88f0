//! `wasmclaw agent` runs the same path as the HTTP endpoint.

use crate::support::*;
use serde_json::Value;

fn agent_cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    cli(config.parent().unwrap()).arg("agent").arg("--config").arg(config).args(args).output().unwrap()
}

#[tokio::test]
async fn cli_prints_what_http_returns() {
    let (_dir, config) = temp_file("gw.json5", &chat_config());
    let gw = TestGateway::start(&chat_config());
    for (agent, text) in [("main", "hello  wide\tworld"), ("beta", "routed")] {
        let res = gw.chat(ask(&format!("agent:{agent}"), text)).send().await.unwrap();
        let http_text = content(&res.json().await.unwrap());

        let out = agent_cli(&config, &["--agent", agent, "--message", text]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.strip_suffix('\n').unwrap(), http_text);

        let out = agent_cli(&config, &["--agent", agent, "--message", text, "--json"]);
        assert!(out.status.success());
        let events: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let (done, texts) = events.split_last().unwrap();
        let joined: String = texts.iter().map(|e| e["text"].as_str().unwrap()).collect();
        assert_eq!(joined, http_text);
        assert_eq!(done["type"], "done");
        assert_eq!(done["finishReason"], "stop");
    }
}

#[test]
fn cli_reports_unknown_agents_and_failures() {
    let (_dir, config) = temp_file("gw.json5", &faults_config(&["trap"]));
    let out = agent_cli(&config, &["--agent", "nobody", "--message", "hi"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nobody\" not found"));
    let out = agent_cli(&config, &["--agent", "fault-trap", "--message", "hi", "--json"]);
    assert!(!out.status.success());
    let last: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("trapped"));
}

/// The `package` of each contract this repository publishes, newest first.
fn published_worlds() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut worlds: Vec<String> = ["v0.2/agent.wit", "agent.wit"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            text.lines().find_map(|l| l.strip_prefix("package ")).unwrap().trim_end_matches(';').to_string()
        })
        .collect();
    worlds.dedup();
    worlds
}

#[test]
fn version_names_the_agent_contracts_served() {
    let out = cli(std::path::Path::new(".")).arg("--version").output().unwrap();
    assert!(out.status.success());
    let expected =
        format!("wasmclaw {} (agent contracts: {})\n", env!("CARGO_PKG_VERSION"), published_worlds().join(", "));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[tokio::test]
async fn an_upload_that_is_not_a_component_says_so_in_one_line() {
    let gw = TestGateway::start(&chat_config());
    let put = async |body: &[u8]| {
        let res = reqwest::Client::new()
            .put(gw.url("/admin/agents/main"))
            .bearer_auth(TOKEN)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_component", "{body}");
        body["error"]["message"].as_str().unwrap().to_string()
    };
    let message = put(b"<html><body>404 not found</body></html>").await;
    assert!(message.starts_with("not a valid component: not a WebAssembly file"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    let message = put(b"\0asm\x01\0\0\0").await;
    assert!(message.contains("a core WebAssembly module, not a component"), "{message}");
    assert!(!message.contains('\n'), "{message}");

    let (_dir, file) = temp_file("agent.wasm", "just text");
    let out = cli(gw.state_dir())
        .args(["agents", "install", "main"])
        .arg(&file)
        .args(["--url", &gw.base])
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");
    // The agent it would have replaced still serves.
    let res = gw.chat(ask("openclaw", "still echo")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "still echo");
}

#[tokio::test]
async fn the_state_directory_is_printed_at_start_and_the_shared_default_says_so() {
    let home = tempfile::tempdir().unwrap();
    let (_dir, config) = temp_file("gw.json5", &chat_config());
    let mut cmd = std::process::Command::new(binary());
    cmd.args(["gateway", "--port", "0", "--config"]).arg(&config);
    cmd.env("HOME", home.path()).env_remove("WASMCLAW_STATE_DIR").env("OPENCLAW_GATEWAY_TOKEN", TOKEN);
    let gw = TestGateway::start_prepared(cmd, home.path(), std::time::Duration::from_secs(60))
        .unwrap_or_else(|log| panic!("{log}"));
    let default = home.path().join(".wasmclaw");
    let log = gw.wait_for_log("the state directory", |l| l.contains("state directory")).await;
    let line = log.lines().find(|l| l.contains("state directory")).unwrap();
    assert!(line.contains(&format!("state_dir={}", default.display())), "{line}");
    assert!(line.contains("shared by every gateway") && line.contains("WASMCLAW_STATE_DIR"), "{line}");

    // A chosen one is printed without the warning.
    let gw = TestGateway::start(&chat_config());
    let log = gw.wait_for_log("the state directory", |l| l.contains("state directory")).await;
    let line = log.lines().find(|l| l.contains("state directory")).unwrap();
    assert!(line.contains(&format!("state_dir={}", gw.state_dir().display())), "{line}");
    assert!(!line.contains("shared by every gateway"), "{line}");
}
