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
