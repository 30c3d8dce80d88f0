//! `wasmclaw dev` as an author runs it: inside a project (Rust, Python,
//! JavaScript) it builds, serves, rebuilds on save and keeps the last good
//! build over a broken one; it takes the project's `gateway.json5` entry and
//! `--allow`/`--credential` flags for outbound HTTP; it binds before it builds.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::author::{as_author, dev_reply, new_project};
use crate::support::*;

/// A build on a busy 2-core machine (cargo, componentize-py or componentize-js
/// after a save) and the gateway compiling what it built: an interpreter
/// component (12–18 MB) took over 5 min for both under load 16 (2.5 min to build).
const BUILD_PATIENCE: Duration = Duration::from_secs(600);

/// Wait up to `within` until `probe` returns `Some`, panicking with `what` and `gw`'s log.
async fn within<T>(gw: &TestGateway, what: &str, within: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {within:?} for {what}:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `wasmclaw dev --port 0 [args]` in `dir`, its state in `state`.
fn dev_in(dir: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("dev").args(["--port", "0"]).args(args).current_dir(dir).env("WASMCLAW_STATE_DIR", state);
    cmd
}

/// Edit `path` as an editor does, replacing `from` with `to` (which must be there).
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} in {}", path.display());
    crate::author::replace(path, text.replacen(from, to, 1).as_bytes());
}

/// How many builds `dev` has started so far.
fn builds(log: &str) -> usize {
    log.matches("building command=").count()
}

/// Save `from` → `to` in `source`, wait until `dev` answers `reply`; the time it took.
async fn save_until(gw: &TestGateway, source: &Path, (from, to): (&str, &str), reply: &str) -> Duration {
    let saved = Instant::now();
    edit(source, from, to);
    within(gw, &format!("the rebuilt agent to answer {reply:?}"), BUILD_PATIENCE, async || {
        (dev_reply(gw, "Hello").await == reply).then_some(())
    })
    .await;
    saved.elapsed()
}

/// A broken save: the build fails, says so, and the last good version keeps
/// answering `serving` with no build after it (nothing loops); then the good
/// source with `fix` applied is built and answers `fixed`.
async fn broken_then_fixed(
    gw: &TestGateway,
    source: &Path,
    broken: (&str, &str),
    serving: &str,
    fix: (&str, &str),
    fixed: &str,
) {
    let good = std::fs::read_to_string(source).unwrap();
    let failed = |log: &str| log.matches("build failed; the last good version keeps serving").count();
    let failures = failed(&gw.log());
    edit(source, broken.0, broken.1);
    within(gw, "the failed build", BUILD_PATIENCE, async || (failed(&gw.log()) > failures).then_some(())).await;
    let before = builds(&gw.settled_log().await);
    let until = Instant::now() + Duration::from_secs(2);
    holds_until("the last good version keeps serving", until, async || dev_reply(gw, "Hello").await == serving).await;
    assert_eq!(builds(&gw.settled_log().await), before, "no build without a save");
    assert!(good.contains(fix.0));
    crate::author::replace(source, good.replacen(fix.0, fix.1, 1).as_bytes());
    within(gw, "the fixed build to serve", BUILD_PATIENCE, async || {
        (dev_reply(gw, "Hello").await == fixed).then_some(())
    })
    .await;
}

#[tokio::test]
async fn dev_builds_a_rust_project_serves_it_and_rebuilds_on_save() {
    let (tmp, dir) = new_project("saver", "rust");
    // The project's entry is what dev serves: its config, not dev's defaults.
    edit(&dir.join("gateway.json5"), r#"config: { suffix: "!" }"#, r#"config: { suffix: "?!" }"#);
    // Dependencies once, outside the timings (the same command dev runs).
    crate::author::author_cargo(&dir, &["build", "--target", "wasm32-wasip2", "--release"]);
    let mut cmd = dev_in(&dir, tmp.path(), &[]);
    as_author(&mut cmd);
    let gw = TestGateway::start_prepared(cmd, tmp.path(), BUILD_PATIENCE).unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(dev_reply(&gw, "Hello").await, "HELLO?!");
    let log = gw.log();
    assert!(log.contains("serving with the project's entry") && builds(&log) == 1, "{log}");
    // What the description says, the answer above does: the message repeated, louder.
    let agent = gw.get_json("/admin/agents/saver").await;
    assert_eq!(agent["description"], "Repeats the last message, louder", "{agent}");

    let source = dir.join("src/lib.rs");
    let took = save_until(&gw, &source, ("to_uppercase()", "to_lowercase()"), "hello?!").await;
    eprintln!("rust: save to answer {:.1} s", took.as_secs_f64());
    let log = gw.settled_log().await;
    assert_eq!(builds(&log), 2, "one build per save: {log}");
    assert!(log.contains("saved=src/lib.rs"), "{log}");

    let broken = ("Ok(())\n    }\n}", "Ok(())\n    }\n} broken");
    broken_then_fixed(&gw, &source, broken, "hello?!", ("to_lowercase()", "to_uppercase()"), "HELLO?!").await;
}

#[tokio::test]
async fn dev_builds_a_python_project_and_rebuilds_on_save() {
    let (tmp, dir) = new_project("snake", "python");
    let bin = crate::languages::python_bin();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = dev_in(&dir, tmp.path(), &[]);
    cmd.env("PATH", path);
    let gw = TestGateway::start_prepared(cmd, tmp.path(), BUILD_PATIENCE).unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(dev_reply(&gw, "Hello").await, "HELLO!");
    let source = dir.join("app.py");
    let took = save_until(&gw, &source, ("say(text.upper())", "say(text.lower())"), "hello!").await;
    eprintln!("python: save to answer {:.1} s", took.as_secs_f64());
    let broken = ("import json\n", "import json\ndef broken(:\n    pass\n");
    broken_then_fixed(&gw, &source, broken, "hello!", ("say(text.lower())", "say(text.upper())"), "HELLO!").await;
}

#[tokio::test]
async fn dev_builds_a_js_project_and_rebuilds_on_save() {
    let (tmp, dir) = new_project("jsdev", "js");
    let linked = dir.clone();
    tokio::task::spawn_blocking(move || crate::languages::link_node_modules(&linked)).await.unwrap();
    let gw = TestGateway::start_prepared(dev_in(&dir, tmp.path(), &[]), tmp.path(), BUILD_PATIENCE)
        .unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(dev_reply(&gw, "Hello").await, "HELLO!");
    assert!(gw.log().contains("building command=npm run build"), "{}", gw.log());
    let source = dir.join("logic.js");
    let took = save_until(&gw, &source, ("val: text.toUpperCase()", "val: text.toLowerCase()"), "hello!").await;
    eprintln!("js: save to answer {:.1} s", took.as_secs_f64());
    let log = gw.settled_log().await;
    assert_eq!(builds(&log), 2, "one build per save: {log}");
    assert!(log.contains("saved=logic.js"), "{log}");
    // A syntax error fails componentize-js; the last good version keeps serving.
    let failed = |log: &str| log.matches("build failed; the last good version keeps serving").count();
    edit(&source, "function shout(", "function shout((");
    within(&gw, "the failed build", BUILD_PATIENCE, async || (failed(&gw.log()) > 0).then_some(())).await;
    let before = builds(&gw.settled_log().await);
    let until = Instant::now() + Duration::from_secs(2);
    holds_until("the last good version keeps serving", until, async || dev_reply(&gw, "Hello").await == "hello!").await;
    assert_eq!(builds(&gw.settled_log().await), before, "no build without a save");
}

/// A loopback server answering every path with the `authorization` it got.
async fn echo_auth_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Default::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| async move {
        let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        record.lock().unwrap().push(auth.clone());
        format!("auth={auth}")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test]
async fn dev_reaches_what_allow_names_with_the_credential_and_names_the_flag_when_denying() {
    let (allowed, seen) = echo_auth_server().await;
    let (other, other_seen) = echo_auth_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let (allow, credential) = (format!("http://{allowed}"), format!("http://{allowed}=Authorization:Bearer DEV_KEY"));
    let mut cmd = dev_in(tmp.path(), tmp.path(), &[FAULTS_WASM, "--set", "fault=fetch", "--allow", &allow]);
    cmd.args(["--credential", &credential]).env("DEV_KEY", "sk-dev-81c2");
    let gw =
        TestGateway::start_prepared(cmd, tmp.path(), Duration::from_secs(60)).unwrap_or_else(|log| panic!("{log}"));

    let reply = dev_reply(&gw, &format!("http://{allowed}/x http://{other}/y")).await;
    assert!(reply.contains(&format!("http://{allowed}/x -> 200 [] auth=Bearer [REDACTED]")), "{reply}");
    assert!(reply.contains(&format!("http://{other}/y -> error: request denied by the gateway")), "{reply}");
    assert_eq!(*seen.lock().unwrap(), ["Bearer sk-dev-81c2"], "the credential was injected");
    assert!(other_seen.lock().unwrap().is_empty(), "nothing reached the server --allow does not name");
    let log = gw.wait_for_log("the denial", |l| l.contains("outbound HTTP denied")).await;
    let denial = log.lines().find(|l| l.contains("outbound HTTP denied")).unwrap();
    assert!(denial.contains(&format!("key=\"wasmclaw dev --allow http://{other}\"")), "{denial}");
    assert!(!log.contains("sk-dev-81c2"), "the secret is never logged");

    // Without --allow, nothing gets out.
    drop(gw);
    let cmd = dev_in(tmp.path(), tmp.path(), &[FAULTS_WASM, "--set", "fault=fetch"]);
    let gw =
        TestGateway::start_prepared(cmd, tmp.path(), Duration::from_secs(60)).unwrap_or_else(|log| panic!("{log}"));
    let reply = dev_reply(&gw, &format!("http://{allowed}/x")).await;
    assert!(reply.contains("error: request denied by the gateway"), "{reply}");
    assert_eq!(seen.lock().unwrap().len(), 1, "the second dev sent nothing");
}

#[test]
fn a_busy_port_fails_at_once_naming_port_and_dev_binds_before_it_builds() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("p");
    std::fs::create_dir(&project).unwrap();
    // A project whose build would take a while and print "building".
    std::fs::write(project.join("Cargo.toml"), "[dependencies]\nwasmclaw-sdk = { path = \"nowhere\" }\n").unwrap();
    let runs: [(&Path, Vec<&str>); 3] = [
        (tmp.path(), vec!["gateway", "--port", &port]),
        (tmp.path(), vec!["dev", ECHO_WASM, "--port", &port]),
        (&project, vec!["dev", "--port", &port]),
    ];
    for (dir, args) in runs {
        let started = Instant::now();
        let out = cli(tmp.path()).args(&args).current_dir(dir).env("OPENCLAW_GATEWAY_TOKEN", TOKEN).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("127.0.0.1:{port}: the port is in use")), "{args:?}: {stderr}");
        assert!(stderr.contains("--port N"), "{args:?}: {stderr}");
        assert!(!stderr.contains("building"), "{args:?} built before binding: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(30), "{args:?} took {:?}", started.elapsed());
    }
    drop(busy);
}
