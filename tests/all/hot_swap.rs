//! Hot swap (issue 5): replace agents while traffic flows, never serve a broken one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

pub(crate) fn admin(gw: &TestGateway, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, gw.url(&format!("/admin/agents{path}"))).bearer_auth(TOKEN)
}

pub(crate) async fn reply(gw: &TestGateway, agent: &str, text: &str) -> (u16, String) {
    let res = gw.chat(ask(&format!("agent:{agent}"), text)).send().await.unwrap();
    let status = res.status().as_u16();
    (status, content(&res.json().await.unwrap_or_default()))
}

pub(crate) async fn wait_for(gw: &TestGateway, agent: &str, expected: &str) -> Duration {
    let started = Instant::now();
    loop {
        if reply(gw, agent, "hi").await.1 == expected {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{agent} never answered {expected:?}:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drop a file whose name is not an agent id into the agents folder and wait
/// for the warning that names it; returns the log at that point.
async fn ignored_file(gw: &TestGateway, name: &str) -> String {
    std::fs::write(gw.state_dir().join("agents").join(name), std::fs::read(FAULTS_WASM).unwrap()).unwrap();
    let reported = |log: &str| log.lines().any(|l| l.contains("not a valid agent id") && l.contains(name));
    gw.wait_for_log(&format!("{name:?} reported"), reported).await
}

/// Wait until the agents-folder watcher has handled every file event that
/// happened before this call; returns the log. The watcher handles events
/// in batches, one batch after the other: an event from before the call
/// lands in the batch of the first barrier file or an earlier one, and the
/// second barrier file, dropped once the first was reported, in a later one.
pub(crate) async fn folder_settled(gw: &TestGateway) -> String {
    ignored_file(gw, &format!("Barrier {}.wasm", uuid::Uuid::new_v4())).await;
    ignored_file(gw, &format!("Barrier {}.wasm", uuid::Uuid::new_v4())).await
}

fn main_is_echo() -> String {
    r#"{ gateway: { http: { endpoints: { chatCompletions: { enabled: true } } } }, agents: { entries: { main: { plugin: "echo" } } } }"#.into()
}

#[tokio::test]
async fn bad_components_are_rejected_and_the_old_version_keeps_serving() {
    let config = r#"{ gateway: { http: { endpoints: { chatCompletions: { enabled: true } } } },
      agents: { entries: { main: { plugin: "echo" }, picky: { plugin: "echo", config: { fault: "info-trap" } } } } }"#;
    let gw = TestGateway::start(config);
    let faults = std::fs::read(FAULTS_WASM).unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("main", b"definitely not wasm".to_vec(), 400, "invalid_component"),
        ("main", std::fs::read(NOT_AN_AGENT_WASM).unwrap(), 422, "incompatible_component"),
        // `picky` keeps echo's settings, under which the faults agent's info() traps.
        ("picky", faults, 422, "info_failed"),
    ];
    for (agent, bytes, status, code) in cases {
        let res = admin(&gw, reqwest::Method::PUT, &format!("/{agent}")).body(bytes).send().await.unwrap();
        assert_eq!(res.status(), status, "{code}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 20, "the error explains itself: {body}");
        assert_eq!(reply(&gw, agent, "still echo").await, (200, "still echo".into()));
    }
    gw.wait_for_log("the rejections", |log| {
        log.matches("agent rejected; the running version keeps serving").count() >= 3
    })
    .await;
}

#[tokio::test]
async fn swaps_under_load_fail_no_request_and_never_mix_versions() {
    let gw = Arc::new(TestGateway::start(&main_is_echo()));
    let agents_dir = gw.state_dir().join("agents");
    // Compile the faults component once up front, so the 2 s bounds below
    // time the swaps rather than a cold compile on a busy machine.
    let res = admin(&gw, reqwest::Method::PUT, "/warm").body(std::fs::read(FAULTS_WASM).unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed, mixed) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    let load_started = Instant::now();
    for w in 0..8 {
        let (gw, stop, served, failed, mixed) =
            (gw.clone(), stop.clone(), served.clone(), failed.clone(), mixed.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let stream = (i + w).is_multiple_of(2);
                let mut body = ask("openclaw", "a b c");
                body["stream"] = json!(stream);
                let res = client.post(gw.url("/v1/chat/completions")).bearer_auth(TOKEN).json(&body).send().await;
                let Ok(res) = res.map_err(|e| eprintln!("request error: {e}")) else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if res.status() != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let text = res.text().await.unwrap();
                // echo: one chunk per word; faults: one chunk with its name.
                let consistent = if stream {
                    let chunks: Vec<String> = sse_payloads(&text)
                        .iter()
                        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
                        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
                        .filter(|c| !c.is_empty())
                        .collect();
                    chunks == ["a ", "b ", "c"] || chunks == ["faults:a b c"]
                } else {
                    let c = content(&serde_json::from_str(&text).unwrap());
                    c == "a b c" || c == "faults:a b c"
                };
                if !consistent {
                    mixed.fetch_add(1, Ordering::Relaxed);
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Swaps happen under load: wait until it flows, not for a guessed time.
    let more_served = async |more: usize| {
        let from = served.load(Ordering::Relaxed);
        eventually("more requests served", async || (served.load(Ordering::Relaxed) >= from + more).then_some(())).await
    };
    more_served(50).await;
    let before_swaps = served.load(Ordering::Relaxed);

    // 1. File drop (write, then rename into place).
    let tmp = agents_dir.join(".main.wasm.part");
    std::fs::write(&tmp, std::fs::read(FAULTS_WASM).unwrap()).unwrap();
    std::fs::rename(&tmp, agents_dir.join("main.wasm")).unwrap();
    let by_file = wait_for(&gw, "main", "faults:hi").await;
    // 2. Admin upload.
    let changed = Instant::now();
    let res = admin(&gw, reqwest::Method::PUT, "/main").body(std::fs::read(ECHO_WASM).unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let by_put = changed.elapsed() + wait_for(&gw, "main", "hi").await;
    // The upload stays: nothing the folder saw before it puts the file back.
    folder_settled(&gw).await;
    assert_eq!(reply(&gw, "main", "hi").await.1, "hi", "the uploaded version was replaced by the folder's file");
    // 3. Rollback to the dropped file's version.
    let changed = Instant::now();
    assert_eq!(admin(&gw, reqwest::Method::POST, "/main/rollback").send().await.unwrap().status(), 200);
    let by_rollback = changed.elapsed() + wait_for(&gw, "main", "faults:hi").await;
    let during_swaps = served.load(Ordering::Relaxed) - before_swaps;
    // And it keeps flowing after them.
    more_served(50).await;

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let seconds = load_started.elapsed().as_secs_f64();
    let served = served.load(Ordering::Relaxed);
    println!(
        "served {served} requests ({:.0}/s); new version served after: file drop {by_file:?}, PUT {by_put:?}, rollback {by_rollback:?}",
        served as f64 / seconds
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request may fail during a swap");
    assert_eq!(mixed.load(Ordering::Relaxed), 0, "every response comes from one version");
    assert!(during_swaps > 0, "no request was served while swapping");
    for (how, took) in [("file drop", by_file), ("PUT", by_put), ("rollback", by_rollback)] {
        assert!(took < Duration::from_secs(2), "{how} took {took:?} to serve the new version");
    }
}

#[tokio::test]
async fn a_restart_with_unchanged_plugins_loads_from_the_cache() {
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          agents: {{ entries: {{ main: {{ plugin: "echo" }}, beta: {{ plugin: "{FAULTS_WASM}" }} }} }} }}"#
    );
    let gw = TestGateway::start_in(state.path(), &config);
    let first = gw.settled_log().await;
    assert_eq!(first.matches("cached=false").count(), 2, "{first}");
    drop(gw);
    let gw = TestGateway::start_in(state.path(), &config);
    let second = gw.settled_log().await;
    assert_eq!(second.matches("cached=true").count(), 2, "no recompilation on restart: {second}");
    assert_eq!(reply(&gw, "beta", "x").await, (200, "faults:x".into()));
    let listed: Value = admin(&gw, reqwest::Method::GET, "").send().await.unwrap().json().await.unwrap();
    assert!(listed["agents"].as_array().unwrap().iter().all(|a| a["fromCache"] == true), "{listed}");
}

#[tokio::test]
async fn the_agents_folder_adds_replaces_and_removes_agents() {
    let gw = TestGateway::start(&main_is_echo());
    let dir = gw.state_dir().join("agents");
    std::fs::write(dir.join("extra.wasm"), std::fs::read(FAULTS_WASM).unwrap()).unwrap();
    wait_for(&gw, "extra", "faults:hi").await;
    let models: Value =
        reqwest::Client::new().get(gw.url("/v1/models")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "openclaw/extra"), "{models}");

    // A name that is not an agent id is ignored, with a reason.
    ignored_file(&gw, "Not An Id.wasm").await;
    // One write, one install; nothing keeps firing: once every event up to
    // now (the install's own included) is handled, a second install would be
    // in the log.
    let log = folder_settled(&gw).await;
    assert_eq!(log.matches("agent installed agent=extra").count(), 1, "the folder re-installs on its own:\n{log}");

    // A broken replacement is refused; the working one stays.
    std::fs::write(dir.join("extra.wasm"), b"garbage").unwrap();
    gw.wait_for_log("the rejection", |log| log.contains("agent rejected")).await;
    assert_eq!(reply(&gw, "extra", "hi").await, (200, "faults:hi".into()));

    std::fs::remove_file(dir.join("extra.wasm")).unwrap();
    let started = Instant::now();
    while reply(&gw, "extra", "hi").await.0 != 404 {
        assert!(started.elapsed() < Duration::from_secs(10), "removal was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reply(&gw, "main", "hi").await, (200, "hi".into()), "a config agent is untouched");
}

#[tokio::test]
async fn config_changes_to_agents_apply_live_and_bad_edits_are_kept_out() {
    let gw = TestGateway::start(&main_is_echo());
    let config_path = gw.state_dir().join("gateway.json5");
    let with_beta = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          agents: {{ entries: {{ main: {{ plugin: "echo" }}, beta: {{ plugin: "{FAULTS_WASM}", config: {{ prefix: "b:" }} }} }} }} }}"#
    );
    std::fs::write(&config_path, &with_beta).unwrap();
    wait_for(&gw, "beta", "b:hi").await;
    // Changing an entry's settings reloads that agent.
    std::fs::write(&config_path, with_beta.replace("b:", "B:")).unwrap();
    wait_for(&gw, "beta", "B:hi").await;
    // An invalid file changes nothing.
    std::fs::write(&config_path, "{ agents: { entries: { beta: { plugin: 5 } } } }").unwrap();
    gw.wait_for_log("the rejection", |log| log.contains("config change rejected; keeping the running config")).await;
    assert_eq!(reply(&gw, "beta", "hi").await, (200, "B:hi".into()));
    // Removing the entry removes the agent.
    std::fs::write(&config_path, main_is_echo()).unwrap();
    let started = Instant::now();
    while reply(&gw, "beta", "hi").await.0 != 404 {
        assert!(started.elapsed() < Duration::from_secs(10), "removal was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_api_limits_ids_digests_and_auth() {
    let config = r#"{ gateway: { http: { endpoints: { chatCompletions: { enabled: true } } } },
      agents: { maxComponentBytes: 100000, entries: { main: { plugin: "echo" } } } }"#;
    let gw = TestGateway::start(config);
    let echo = std::fs::read(ECHO_WASM).unwrap();
    let code = |res: Value| res["error"]["code"].as_str().unwrap_or_default().to_string();

    let res = admin(&gw, reqwest::Method::PUT, "/big").body(vec![0u8; 200_000]).send().await.unwrap();
    assert_eq!(res.status(), 413);
    let res = admin(&gw, reqwest::Method::PUT, "/..%2Fetc").body(echo.clone()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = admin(&gw, reqwest::Method::PUT, "/new")
        .header("x-wasmclaw-sha256", "00".repeat(32))
        .body(echo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["param"], "x-wasmclaw-sha256");
    let res = admin(&gw, reqwest::Method::POST, "/main/rollback").send().await.unwrap();
    assert_eq!((res.status().as_u16(), code(res.json().await.unwrap())), (409, "no_previous_version".into()));
    let res = admin(&gw, reqwest::Method::DELETE, "/nobody").send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = admin(&gw, reqwest::Method::PATCH, "/main").send().await.unwrap();
    assert_eq!(res.status(), 405);
    let res = reqwest::Client::new().put(gw.url("/admin/agents/main")).body(echo.clone()).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = reqwest::Client::new().get(gw.url("/admin/agents")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(res.status(), 401);

    // A good upload with a matching digest creates a new agent; details show it.
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&echo))
    };
    let res = admin(&gw, reqwest::Method::PUT, "/fresh")
        .header("x-wasmclaw-sha256", &digest)
        .body(echo)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shown: Value = admin(&gw, reqwest::Method::GET, "/fresh").send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (shown["digest"].as_str(), shown["name"].as_str(), shown["source"].as_str()),
        (Some(digest.as_str()), Some("echo"), Some("admin-api"))
    );
    assert_eq!(reply(&gw, "fresh", "yo").await, (200, "yo".into()));
    let res = admin(&gw, reqwest::Method::DELETE, "/fresh").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(reply(&gw, "fresh", "yo").await.0, 404);
}

#[tokio::test]
async fn cli_manages_agents_of_a_running_gateway() {
    let gw = TestGateway::start(&main_is_echo());
    let run = |args: &[&str], token: &str| {
        let out = cli(gw.state_dir())
            .arg("agents")
            .args(args)
            .arg("--url")
            .arg(&gw.base)
            .env("OPENCLAW_GATEWAY_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = run(&["install", "main", FAULTS_WASM], TOKEN);
    assert!(ok, "{err}");
    assert!(out.starts_with("main\tfaults "), "{out}");
    assert_eq!(reply(&gw, "main", "hi").await.1, "faults:hi");
    let (ok, out, _) = run(&["list"], TOKEN);
    assert!(ok && out.contains("main\tfaults"), "{out}");
    assert!(run(&["rollback", "main"], TOKEN).0);
    assert_eq!(reply(&gw, "main", "hi").await.1, "hi");
    let (ok, _, err) = run(&["install", "main", NOT_AN_AGENT_WASM], TOKEN);
    assert!(!ok && err.contains("422"), "{err}");
    let (ok, _, err) = run(&["list"], "wrong-token");
    assert!(!ok && err.contains("401"), "{err}");
    assert!(run(&["remove", "main"], TOKEN).0);
    assert_eq!(reply(&gw, "main", "hi").await.0, 404);
}
