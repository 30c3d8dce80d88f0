//! The durable registry (issue 15): hot swap keeps what it was given across
//! restarts, and every source installs only what changed.

use std::time::{Duration, Instant};

use crate::hot_swap::{admin, folder_settled, reply, wait_for};
use crate::support::*;
use reqwest::Method;
use serde_json::Value;

/// Installs of `id` from `source` (a prefix such as `dir:` or `config:`).
fn installs(log: &str, id: &str, source: &str) -> usize {
    log.matches(&format!("agent installed agent={id} source={source}")).count()
}

async fn show(gw: &TestGateway, id: &str) -> Value {
    admin(gw, Method::GET, &format!("/{id}")).send().await.unwrap().json().await.unwrap()
}

fn chat_only() -> String {
    r#"{ gateway: { http: { endpoints: { chatCompletions: { enabled: true } } } } }"#.into()
}

#[tokio::test]
async fn a_folder_file_installs_once_and_an_upload_over_it_stays() {
    let gw = TestGateway::start(&chat_only());
    let file = gw.state_dir().join("agents").join("extra.wasm");
    std::fs::write(&file, std::fs::read(FAULTS_WASM).unwrap()).unwrap();
    wait_for(&gw, "extra", "faults:hi").await;
    // Reading the file (as the gateway itself does) raises open/access
    // events; none of them may install again.
    let until = Instant::now() + Duration::from_secs(3);
    holds_until("reading the file installs nothing", until, async || {
        let _ = std::fs::read(&file).unwrap();
        installs(&gw.log(), "extra", "dir:") == 1
    })
    .await;
    assert_eq!(installs(&folder_settled(&gw).await, "extra", "dir:"), 1, "{}", gw.log());

    // An upload over the folder agent wins and stays: the unchanged file does not take it back.
    let put = admin(&gw, Method::PUT, "/extra").body(std::fs::read(ECHO_WASM).unwrap()).send().await.unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(reply(&gw, "extra", "hi").await, (200, "hi".into()));
    let shown = show(&gw, "extra").await;
    assert_eq!(shown["source"], "admin-api", "{shown}");
    assert!(shown["previous"]["digest"].is_string(), "rollback points at the folder version: {shown}");
    assert_ne!(shown["previous"]["digest"], shown["digest"], "{shown}");
    let until = Instant::now() + Duration::from_secs(10);
    holds_until("the upload keeps serving", until, async || reply(&gw, "extra", "hi").await == (200, "hi".into()))
        .await;

    // Replacing the file by rename is one change, and it wins again.
    // New bytes (a custom section changes the digest, not the behaviour).
    let tmp = gw.state_dir().join("agents").join("extra.wasm.part");
    let mut bytes = std::fs::read(FAULTS_WASM).unwrap();
    bytes.extend_from_slice(&custom_section("revision", b"2"));
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_for(&gw, "extra", "faults:hi").await;
    assert_eq!(installs(&folder_settled(&gw).await, "extra", "dir:"), 2, "{}", gw.log());

    // Deleting the file removes the agent it installed, once.
    std::fs::remove_file(&file).unwrap();
    eventually("the removal", async || (reply(&gw, "extra", "hi").await.0 == 404).then_some(())).await;
    let log = folder_settled(&gw).await;
    assert_eq!(log.matches("agent removed agent=extra ").count(), 1, "{log}");
}

/// A custom section (id 0) holding `data`: valid to append to any component,
/// and it changes the digest without changing behaviour.
fn custom_section(name: &str, data: &[u8]) -> Vec<u8> {
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut section = vec![0u8, payload.len() as u8];
    section.extend(payload);
    section
}

#[tokio::test]
async fn a_restart_keeps_uploads_removals_and_the_rollback_target() {
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          agents: {{ entries: {{ main: {{ plugin: "echo" }}, beta: {{ plugin: "{FAULTS_WASM}" }} }} }} }}"#
    );
    let gw = TestGateway::start_in(state.path(), &config);
    let faults = std::fs::read(FAULTS_WASM).unwrap();
    for id in ["up", "main"] {
        let put = admin(&gw, Method::PUT, &format!("/{id}")).body(faults.clone()).send().await.unwrap();
        assert_eq!(put.status(), 200, "{id}");
    }
    let ws = admin(&gw, Method::PUT, "/sock").body(std::fs::read(ECHO_WASM).unwrap()).send().await.unwrap();
    assert_eq!(ws.status(), 200);
    assert_eq!(admin(&gw, Method::DELETE, "/beta").send().await.unwrap().status(), 200);
    assert_eq!(admin(&gw, Method::DELETE, "/sock").send().await.unwrap().status(), 200);
    let before = show(&gw, "main").await;
    drop(gw);

    let gw = TestGateway::start_in(state.path(), &config);
    assert_eq!(reply(&gw, "up", "hi").await, (200, "faults:hi".into()), "an upload survives a restart");
    assert_eq!(reply(&gw, "main", "hi").await, (200, "faults:hi".into()), "an upload beats an unchanged config entry");
    assert_eq!(reply(&gw, "beta", "hi").await.0, 404, "removing a config agent survives a restart");
    assert_eq!(reply(&gw, "sock", "hi").await.0, 404, "removing an upload survives a restart");
    let after = show(&gw, "main").await;
    assert_eq!((&after["digest"], &after["source"]), (&before["digest"], &before["source"]), "{after}");
    assert_eq!(after["previous"]["digest"], before["previous"]["digest"], "{after}");
    let log = gw.settled_log().await;
    assert_eq!(log.matches("agent installed").count(), 0, "a restart installs nothing new:\n{log}");
    // The rollback target survived too.
    assert_eq!(admin(&gw, Method::POST, "/main/rollback").send().await.unwrap().status(), 200);
    assert_eq!(reply(&gw, "main", "hi").await, (200, "hi".into()));
    drop(gw);

    // A config entry changed while the gateway was down is the later change: it wins.
    let changed = config.replace(r#"main: { plugin: "echo" }"#, r#"main: { plugin: "echo", config: { x: "1" } }"#);
    let changed = changed.replace(
        &format!(r#"beta: {{ plugin: "{FAULTS_WASM}" }}"#),
        &format!(r#"beta: {{ plugin: "{FAULTS_WASM}", config: {{ prefix: "b:" }} }}"#),
    );
    let gw = TestGateway::start_in(state.path(), &changed);
    assert_eq!(show(&gw, "main").await["source"], "shipped:echo");
    assert_eq!(reply(&gw, "beta", "hi").await, (200, "b:hi".into()));
    assert_eq!(reply(&gw, "up", "hi").await, (200, "faults:hi".into()), "an upload with no entry is untouched");
}

#[tokio::test]
async fn a_component_file_named_by_the_config_reloads_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("beta.wasm");
    std::fs::write(&plugin, std::fs::read(FAULTS_WASM).unwrap()).unwrap();
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          agents: {{ entries: {{ main: {{ plugin: "echo" }}, beta: {{ plugin: "{}" }} }} }} }}"#,
        plugin.display()
    );
    let gw = TestGateway::start(&config);
    assert_eq!(reply(&gw, "beta", "hi").await, (200, "faults:hi".into()));
    // Edited in place (truncate and write): reloaded once.
    std::fs::write(&plugin, std::fs::read(ECHO_WASM).unwrap()).unwrap();
    wait_for(&gw, "beta", "hi").await;
    let until = Instant::now() + Duration::from_secs(3);
    holds_until("one edit, one reload", until, async || {
        let _ = std::fs::read(&plugin).unwrap();
        installs(&gw.log(), "beta", "config:") == 2
    })
    .await;
    assert_eq!(show(&gw, "beta").await["source"], format!("config:{}", plugin.display()));
}

#[tokio::test]
async fn a_damaged_component_file_is_reported_at_start_and_installing_it_again_repairs_it() {
    let state = tempfile::tempdir().unwrap();
    let faults = std::fs::read(FAULTS_WASM).unwrap();
    let gw = TestGateway::start_in(state.path(), &chat_only());
    assert_eq!(admin(&gw, Method::PUT, "/up").body(faults.clone()).send().await.unwrap().status(), 200);
    let digest = show(&gw, "up").await["digest"].as_str().unwrap().to_string();
    drop(gw);

    // One flipped byte: same length, wrong content.
    let file = state.path().join("components").join(format!("{digest}.wasm"));
    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&file, &damaged).unwrap();

    let gw = TestGateway::start_in(state.path(), &chat_only());
    let reported = |log: &str| log.lines().any(|l| l.contains("agent=up") && l.contains("is damaged"));
    let log = gw.wait_for_log("the damaged file reported", reported).await;
    let line = log.lines().find(|l| reported(l)).unwrap();
    assert!(line.contains(&format!("{digest}.wasm")) && line.contains("install the agent's component again"), "{line}");
    assert_eq!(reply(&gw, "up", "hi").await.0, 404, "a damaged component is never served");

    // Installing the same bytes again repairs the file, for this run and the next.
    assert_eq!(admin(&gw, Method::PUT, "/up").body(faults.clone()).send().await.unwrap().status(), 200);
    assert_eq!(reply(&gw, "up", "hi").await, (200, "faults:hi".into()));
    assert_eq!(std::fs::read(&file).unwrap(), faults, "the file holds the component again");
    drop(gw);
    let gw = TestGateway::start_in(state.path(), &chat_only());
    assert_eq!(reply(&gw, "up", "hi").await, (200, "faults:hi".into()), "served after a restart");
    let log = gw.settled_log().await;
    assert!(!log.contains("is damaged"), "nothing damaged any more:\n{log}");
}
