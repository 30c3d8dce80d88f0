//! Limits that must hold against hostile inputs: agent files, the compile
//! cache, the compiler, memory per run.

use crate::support::*;

#[tokio::test]
async fn a_huge_file_in_the_agents_folder_is_refused_before_it_is_read() {
    let gw = TestGateway::start(r#"{ agents: { entries: { main: { plugin: "echo" } } } }"#);
    let before = gw.rss_kib();
    // 1 GiB, sparse: it costs no disk, but reading it would cost the memory.
    let file = std::fs::File::create(gw.state_dir().join("agents").join("huge.wasm")).unwrap();
    file.set_len(1 << 30).unwrap();
    drop(file);
    let log = gw.wait_for_log("the refusal", |l| l.contains("agent file refused")).await;
    assert!(log.contains("agents.maxComponentBytes"), "the refusal names the limit: {log}");
    let after = gw.rss_kib();
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
    let res = reqwest::Client::new().get(gw.url("/admin/agents/huge")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 404, "nothing was installed");
}

/// The compiled artifact of each agent in `dir`'s compile cache.
fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

const TWO_AGENTS: &str = r#"{ gateway: { http: { endpoints: { chatCompletions: { enabled: true } } } },
  agents: { entries: { main: { plugin: "echo" }, other: { plugin: "assistant" } } } }"#;

#[tokio::test]
async fn a_damaged_or_swapped_cache_entry_is_recompiled_not_run() {
    let state = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_in(state.path(), TWO_AGENTS);
    let main_digest = gw.get_json("/admin/agents/main").await["digest"].as_str().unwrap().to_string();
    drop(gw);
    let files = artifacts(state.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let (main, other): (Vec<_>, Vec<_>) =
        files.iter().partition(|f| f.file_name().unwrap().to_str().unwrap().starts_with(&main_digest));
    // Another component's native code under main's name: it must never run as main.
    std::fs::copy(other[0], main[0]).unwrap();
    let gw = TestGateway::start_in(state.path(), TWO_AGENTS);
    let res = gw.chat(ask("openclaw/main", "still echo")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "still echo", "main runs its own code");
    let log = gw.wait_for_log("the untrusted entry", |l| l.contains("compile cache entry not trusted")).await;
    assert!(log.contains("does not match"), "{log}");
    assert_eq!(gw.get_json("/admin/agents/main").await["fromCache"], false, "it was recompiled");
    drop(gw);
    // A zeroed artifact: the gateway starts and serves instead of crashing on every start.
    let zeroed = artifacts(state.path()).into_iter().next().unwrap();
    let len = std::fs::metadata(&zeroed).unwrap().len() as usize;
    std::fs::write(&zeroed, vec![0u8; len]).unwrap();
    let gw = TestGateway::start_in(state.path(), TWO_AGENTS);
    assert_eq!(gw.chat(ask("openclaw/main", "up")).send().await.unwrap().status(), 200);
    drop(gw);
    // The next start trusts the recompiled entries again.
    let gw = TestGateway::start_in(state.path(), TWO_AGENTS);
    assert_eq!(gw.get_json("/admin/agents/main").await["fromCache"], true);
    assert_eq!(gw.get_json("/admin/agents/other").await["fromCache"], true);
}

/// Compiling happens in a child process of the gateway's binary: installing a
/// large agent leaves the gateway's own memory about where it was (the
/// compiler's working memory stays in the child), and a component the
/// compiler refuses is answered with the compiler's own message.
#[tokio::test]
async fn components_are_compiled_outside_the_gateway_process() {
    let gw = TestGateway::start(r#"{ agents: { entries: { main: { plugin: "echo" } } } }"#);
    let log = gw.wait_for_log("the shipped agent's compile", |l| l.contains("compiled in a worker process")).await;
    assert!(log.contains("ms="), "{log}");
    let put = async |id: &str, body: Vec<u8>| {
        let res = reqwest::Client::new()
            .put(gw.url(&format!("/admin/agents/{id}")))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        (res.status(), res.json::<serde_json::Value>().await.unwrap())
    };
    let before = gw.rss_kib();
    let assistant = std::fs::read(env!("WASMCLAW_PLUGIN_ASSISTANT")).unwrap();
    let (status, body) = put("other", assistant).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fromCache"], false, "{body}");
    let after = gw.rss_kib();
    // Compiled in the gateway itself this grew it by ~18 MB (debug build).
    assert!(after < before + 12 * 1024, "installing grew the gateway from {before} KiB to {after} KiB");
    let (status, body) = put("broken", b"\0asm\x0d\0\x01\0\x07\x05junk!".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("not a valid component: failed to parse WebAssembly module"), "{message}");
    let (status, _) = put("again", std::fs::read(ECHO_WASM).unwrap()).await;
    assert_eq!(status, 200, "the gateway installs after a refused compile");
}

/// The gateway runs with its allocator's server settings (freed pages back at
/// once, arenas committed as used: without them it held ~65 MB after a load it
/// otherwise ends at ~35 MB), set by re-executing itself; an operator's own
/// value is kept.
#[tokio::test]
async fn the_gateway_runs_with_the_allocators_settings() {
    let environ = |gw: &TestGateway| {
        let bytes = std::fs::read(format!("/proc/{}/environ", gw.pid())).unwrap();
        bytes.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect::<Vec<_>>()
    };
    let config = r#"{ agents: { entries: { main: { plugin: "echo" } } } }"#;
    let gw = TestGateway::start(config);
    let env = environ(&gw);
    for setting in ["MIMALLOC_PURGE_DELAY=0", "MIMALLOC_ARENA_EAGER_COMMIT=0"] {
        assert!(env.iter().any(|v| v == setting), "{setting} not in the gateway's environment: {env:?}");
    }
    assert!(gw.get_json("/healthz").await.is_object(), "serves after re-executing");
    let env = environ(
        &TestGateway::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("MIMALLOC_PURGE_DELAY", "5")]).unwrap(),
    );
    assert!(env.iter().any(|v| v == "MIMALLOC_PURGE_DELAY=5"), "the operator's value is kept: {env:?}");
    assert!(env.iter().any(|v| v == "MIMALLOC_ARENA_EAGER_COMMIT=0"), "{env:?}");
}
