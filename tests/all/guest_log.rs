//! What agents write to the gateway's log: levelled lines (contract 0.1.1),
//! stdout, panics, each with the agent, run and request ids; and components
//! built for contract 0.1.0 still loading.

use crate::support::*;
use serde_json::Value;

/// Echo built with the SDK of contract 0.1.0 (before `log` existed), kept as bytes.
pub const ECHO_0_1_0_WASM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/compat/echo-0.1.0.wasm");

/// The value of `key=` in a text log line, quotes removed.
fn field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..].split_whitespace().next().map(|v| v.trim_end_matches([':', '}']).trim_matches('"'))
}

#[tokio::test]
async fn guest_lines_have_levels_and_carry_agent_run_and_request_ids() {
    let config = faults_config(&["log"]);
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_LOG", "info,wasmclaw=debug,guest=debug")];
    let gw = TestGateway::start_with(&config, &env).unwrap_or_else(|log| panic!("{log}"));
    let res = gw.chat(ask("agent:fault-log", "ping")).header("x-request-id", "req-log-7").send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "ping");
    let log = gw.wait_for_log("the guest's stdout line", |log| log.contains("guest stdout line")).await;
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("guest ") && l.contains(" line")).collect();
    let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).copied();
    for (needle, level) in [
        ("guest debug line", "DEBUG"),
        ("guest info line for ping", "INFO"),
        ("guest warn line", "WARN"),
        ("guest error line", "ERROR"),
        ("guest stdout line", "INFO"),
    ] {
        let line = find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"));
        assert!(line.contains(&format!(" {level} ")), "{needle} at {level}: {line}");
        assert_eq!(field(line, "agent"), Some("fault-log"), "{line}");
        assert_eq!(field(line, "request_id"), Some("req-log-7"), "{line}");
        let run_id = field(line, "run_id").unwrap_or_else(|| panic!("no run id: {line}"));
        // The same run id as the gateway's own line about the run.
        let finished = log.lines().find(|l| l.contains("run finished") && l.contains(run_id));
        assert!(finished.is_some(), "run {run_id} must be the run that finished:\n{log}");
    }
    // Below the filter (guest=debug): not written at all.
    assert!(find("guest trace line").is_none(), "{log}");

    // A WebSocket run's lines carry the id of the frame that started it.
    let mut ws = Client::connect(&gw).await;
    let params = serde_json::json!({"message": "over ws", "agentId": "fault-log", "idempotencyKey": "k-1"});
    ws.send(serde_json::json!({"type": "req", "id": "ws-req-9", "method": "agent", "params": params})).await;
    let log = gw.wait_for_log("the WebSocket run's line", |log| log.contains("guest info line for over ws")).await;
    let line = log.lines().find(|l| l.contains("guest info line for over ws")).unwrap();
    assert_eq!(field(line, "request_id"), Some("ws-req-9"), "{line}");
    assert_eq!(field(line, "agent"), Some("fault-log"), "{line}");
}

#[tokio::test]
async fn a_panic_names_the_agent_and_its_message_to_the_client_and_the_log() {
    let gw = TestGateway::start(&faults_config(&["panic"]));
    let res = gw.chat(ask("agent:fault-panic", "hi")).header("x-request-id", "req-panic-3").send().await.unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    let (_, code, _) = error_fields(&body);
    assert_eq!(code.as_deref(), Some("agent_trapped"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#"agent "fault-panic" panicked: the faults agent panics on request (at "#),
        "{message}"
    );
    for internal in ["wasm", "trap", "backtrace", "unreachable"] {
        assert!(!message.contains(internal), "no host internals ({internal}): {message}");
    }
    let log = gw.wait_for_log("the panic in the log", |log| log.contains("agent panicked:")).await;
    let line = log.lines().find(|l| l.contains("agent panicked:")).unwrap();
    assert!(line.contains(" ERROR ") && line.contains("the faults agent panics on request"), "{line}");
    assert_eq!(field(line, "request_id"), Some("req-panic-3"), "{line}");
    assert_eq!(field(line, "agent"), Some("fault-panic"), "{line}");
    assert!(field(line, "run_id").is_some_and(|id| id.len() == 36), "{line}");
    // The metric tells panics from other traps.
    gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="fault-panic",kind="panic"} 1"#]).await;
}

#[tokio::test]
async fn components_built_for_contract_0_1_0_still_load_and_answer() {
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
             agents: {{ entries: {{ old: {{ plugin: "{ECHO_0_1_0_WASM}" }} }} }} }}"#
    );
    let gw = TestGateway::start(&config);
    let res = gw.chat(ask("agent:old", "still speaking 0.1.0")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "still speaking 0.1.0");
}
