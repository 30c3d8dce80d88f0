//! Limits that must hold against hostile inputs: agent files, the compile
//! cache, memory per run.

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
