//! Config errors stop start-up with the key and position; defaults serve echo.

use crate::support::*;

fn start_error(config: &str) -> String {
    TestGateway::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)]).err().expect("config must be rejected")
}

#[test]
fn unknown_key_names_key_and_position() {
    let log = start_error("{\n  gateway: {\n    prot: 1,\n  },\n}\n");
    assert!(log.contains("unknown field `prot`"), "{log}");
    assert!(log.contains("`gateway.prot`"), "the whole key path is named: {log}");
    assert!(log.contains("gateway.json5:3:5:"), "the file, line 3 and column 5 are named: {log}");
}

#[test]
fn bad_values_name_the_key() {
    for (config, key) in [
        (r#"{ gateway: { port: "high" } }"#, "gateway.port"),
        (r#"{ gateway: { auth: { mode: "magic" } } }"#, "gateway.auth.mode"),
        (r#"{ gateway: { bind: "localhost-ish" } }"#, "gateway.bind"),
        (r#"{ agents: { default: "Bad Id" } }"#, "agents.default"),
        (r#"{ agents: { entries: { main: { plugin: "no-such.wasm" } } } }"#, "agents.entries.main.plugin"),
        (r#"{ agents: { entries: { "a/b": { plugin: "echo" } } } }"#, "agents.entries.a/b"),
        (r#"{ agents: { entries: { main: { plugin: "echo", config: { n: 1 } } } } }"#, "agents.entries.main.config.n"),
        ("{ gateway: ", "(syntax)"),
    ] {
        let log = start_error(config);
        assert!(log.contains(key), "{config} should name {key}: {log}");
    }
}

#[test]
fn a_plugin_that_is_not_a_component_stops_start_up() {
    let (_dir, path) = temp_file("broken.wasm", "this is not wasm");
    let log = start_error(&format!(r#"{{ agents: {{ entries: {{ main: {{ plugin: "{}" }} }} }} }}"#, path.display()));
    assert!(log.contains("agents.entries.main") && log.contains("not a valid component"), "{log}");
}

#[test]
fn a_plugin_whose_info_traps_stops_start_up() {
    let log = start_error(&format!(
        r#"{{ agents: {{ entries: {{ main: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "info-trap" }} }} }} }} }}"#
    ));
    assert!(log.contains("info()"), "{log}");
}

#[tokio::test]
async fn embedded_defaults_serve_main_echo_with_chat_disabled() {
    // No --config at all: only the token is needed.
    let state = tempfile::tempdir().unwrap();
    let out = cli(state.path()).args(["agent", "--message", "defaults work"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "defaults work");
    let gw = TestGateway::start("{}");
    assert_eq!(reqwest::get(gw.url("/ready")).await.unwrap().status(), 200);
    assert_eq!(gw.chat(ask("openclaw", "hi")).send().await.unwrap().status(), 404);
    // A pool setting wasmtime rejects would silently fall back to the slower
    // on-demand allocator; on a normal 64-bit Linux box pooling must work.
    gw.wait_for_log("the pooling allocator", |log| log.contains("allocation=pooling")).await;
}

#[tokio::test]
async fn the_shipped_examples_start_as_the_readme_says() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for (file, plugin) in [("gateway.json5", "echo"), ("assistant.json5", "assistant")] {
        let config = std::fs::read_to_string(root.join(file)).unwrap();
        let gw = TestGateway::start(&config);
        let agents = gw.get_json("/admin/agents").await;
        let main = agents["agents"].as_array().unwrap().iter().find(|a| a["id"] == "main").unwrap().clone();
        assert_eq!(main["name"], plugin, "{file}: {agents}");
    }
}
