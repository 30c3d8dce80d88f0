//! Agents in Python (componentize-py) and JavaScript (componentize-js) under
//! the same contract: the templates' unit tests pass, they build, and they
//! answer through the real gateway. componentize-py is installed from PyPI
//! into `target/componentize-py-venv` on first use (CI has `python3`+`venv`),
//! componentize-js from npm into `target/js-node-modules` (CI has `npm`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::author::{new_project, run_plugin};
use crate::support::*;
use wasmclaw_mock_provider::{MockProvider, Reply};

/// The componentize-py this repository's templates name.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The venv's `bin` folder; the first test to ask creates it, others wait.
pub fn python_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        python_venv("componentize-py-venv", COMPONENTIZE_PY, |bin| {
            let out = Command::new(bin.join("componentize-py")).arg("--version").output();
            out.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("0.25.1"))
        })
    })
    .clone()
}

/// Run a program of the venv in `dir`; panics with its output unless it succeeds.
fn venv(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(python_bin().join(program)).args(args).current_dir(dir).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} in {}:\n{stdout}\n{stderr}", dir.display());
    format!("{stdout}{stderr}")
}

/// Generate the bindings, run the unit tests, build `app` into `output`.
pub(crate) fn test_and_build_python(dir: &Path, wit: &Path, output: &str) -> PathBuf {
    let wit = wit.to_str().unwrap();
    venv(dir, "componentize-py", &["-d", wit, "-w", "agent", "bindings", "."]);
    let report = venv(dir, "python", &["-m", "unittest", "test_app"]);
    assert!(report.contains("OK"), "{report}");
    venv(dir, "componentize-py", &["-d", wit, "-w", "agent", "componentize", "app", "-o", output]);
    dir.join(output)
}

#[tokio::test]
async fn a_new_python_agent_on_contract_0_2_passes_its_tests_builds_and_asks_the_model_the_web_and_a_tool() {
    let (tmp, dir) = new_project("pyshout", "python");
    let wasm = tokio::task::spawn_blocking(move || test_and_build_python(&dir, &dir.join("wit"), "pyshout.wasm"))
        .await
        .unwrap();
    // The CLI's run also fills the compile cache the gateway below starts from.
    let state = tmp.path().join("state");
    assert_eq!(run_plugin(&state, &wasm, "hello", &["--set", "suffix=!!"]).unwrap(), "HELLO!!");

    asks_the_model_the_web_and_a_tool(&state, &wasm, "pyshout", false).await;
}

/// The Python example agent tested and built under `tmp`, with the compile
/// cache at the returned state dir filled: compiling 19 MB of Python takes long
/// in a debug build, so a first run with the CLI fills the cache a gateway then
/// starts from.
pub(crate) async fn python_example(tmp: &Path) -> (PathBuf, PathBuf) {
    let dir = tmp.join("calc");
    std::fs::create_dir(&dir).unwrap();
    for file in ["app.py", "test_app.py", "wasmclaw_testing.py"] {
        std::fs::copy(repo().join("examples/python-agent").join(file), dir.join(file)).unwrap();
    }
    let wasm = tokio::task::spawn_blocking(move || test_and_build_python(&dir, &repo().join("wit"), "calc.wasm"))
        .await
        .unwrap();
    let state = tmp.join("state");
    assert_eq!(run_plugin(&state, &wasm, "calc: 2 ** 10", &[]).unwrap(), "1024");
    (wasm, state)
}

#[tokio::test]
async fn the_python_example_answers_through_the_gateway_with_a_model_and_reports_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let (wasm, state) = python_example(tmp.path()).await;
    let mock = MockProvider::start();
    mock.push(Reply::text(&["Par", "is."]));
    let config = format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ entries: {{ calc: {{ plugin: "{}", provider: "mock", model: "m", config: {{ systemPrompt: "Be brief." }} }} }} }},
}}"#,
        mock.url(),
        wasm.display()
    );
    let gw = TestGateway::start_in(&state, &config);
    let reply = |text: &str| gw.chat(ask("agent:calc", text)).send();
    let res = reply("calc: 6 * (3 + 4)").await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "42");
    let res = reply("Capital of France?").await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "Paris.");
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][0]["content"], "Be brief.");
    assert_eq!(sent["model"], "m");
    // An exception: the client learns the agent panicked, and why.
    let res = reply("calc: 1 / 0").await.unwrap();
    assert_eq!(res.status(), 500);
    let body: serde_json::Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(r#"agent "calc" panicked: ZeroDivisionError: division by zero (at "#), "{message}");
    gw.wait_for_log("the panic", |log| log.contains("agent panicked: ZeroDivisionError")).await;
    assert!(gw.log().contains("cached=true"), "the gateway used the CLI's compiled code:\n{}", gw.log());
}

/// Agent `id` (a template's component, contract 0.2) through the gateway:
/// `ask: …` reaches the model with the system prompt, `fetch: URL` the web
/// within the agent's `http.allow`, and a URL outside it is refused;
/// `tool: NAME {…}` calls a tool of a real MCP server (the official SDK's,
/// answering as an SSE stream unless `json`). Every command the agent's
/// description names is one of these, and anything else is shouted back.
async fn asks_the_model_the_web_and_a_tool(state: &Path, wasm: &Path, id: &str, json: bool) {
    let app = axum::Router::new().route("/today", axum::routing::get(|| async { "sunny" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}/today", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tools = tokio::task::spawn_blocking(move || crate::mcp::McpServer::start(json)).await.unwrap();
    let mock = MockProvider::start();
    mock.push(Reply::text(&["Par", "is."]));
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          providers: {{ mock: {{ baseUrl: "{}" }} }},
          agents: {{ entries: {{ {id}: {{ plugin: "{}", provider: "mock", model: "m",
            config: {{ systemPrompt: "Be brief.", mcpServer: "{mcp}" }},
            http: {{ allow: ["{web}", "{mcp}"] }} }} }} }} }}"#,
        mock.url(),
        wasm.display(),
        mcp = tools.url(),
    );
    let gw = TestGateway::start_in(state, &config);
    let reply = async |text: &str| {
        let res = gw.chat(ask(&format!("agent:{id}"), text)).send().await.unwrap();
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{text:?}: {body}");
        content(&body)
    };
    assert_eq!(reply("ask: Capital of France?").await, "Paris.");
    let sent = &mock.requests()[0].body;
    assert_eq!(
        (sent["messages"][0]["content"].as_str(), sent["messages"][1]["content"].as_str()),
        (Some("Be brief."), Some("Capital of France?"))
    );
    assert_eq!(reply(&format!("fetch: {web}")).await, "200 sunny");
    let elsewhere = web.replace("/today", "/other");
    let refused = reply(&format!("fetch: {elsewhere}")).await;
    assert!(refused.starts_with(&format!("cannot fetch {elsewhere}: ")), "{refused}");
    gw.wait_for_log("the denial", |l| l.contains("outbound HTTP denied") && l.contains(&format!("agent={id}"))).await;

    assert_eq!(reply(r#"tool: add {"a": 2, "b": 3}"#).await, "the sum is 5", "{}", gw.log());
    assert_eq!(
        reply(r#"tool: divide {"a": 1, "b": 0}"#).await,
        "divide failed: Error executing tool divide: cannot divide by zero"
    );
    let calls = tools.seen().iter().filter(|r| r["rpc"] == "tools/call").count();
    assert_eq!(calls, 2, "both calls reached the server");

    // The description says what the agent does: each command it names is
    // answered by something other than the shout every other message gets.
    let agent = gw.get_json(&format!("/admin/agents/{id}")).await;
    let description = agent["description"].as_str().unwrap_or_default();
    assert_eq!(commands_named(description), ["ask:", "fetch:", "tool:"], "{description}");
    assert!(description.starts_with("Shouts back"), "{description}");
    assert_eq!(reply("hello").await, "HELLO!");
    mock.push(Reply::text(&["a model answer"]));
    for command in commands_named(description) {
        let answer = reply(&format!("{command} x")).await;
        assert_ne!(answer, format!("{} X!", command.to_uppercase()), "{command} is not handled");
    }
}

/// The commands (`ask:` …) a template's description names, in parentheses.
fn commands_named(description: &str) -> Vec<&str> {
    description.split('(').skip(1).filter_map(|rest| rest.split_once(')')).map(|(inside, _)| inside).collect()
}

/// `npm` in `dir`; panics with its output unless it succeeds.
fn npm(dir: &Path, args: &[&str]) {
    let out = Command::new("npm").args(args).current_dir(dir).output().expect("npm is required");
    assert!(
        out.status.success(),
        "npm {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Link `dir/node_modules` to the modules its `package.json`'s
/// `devDependencies` install, installed once under
/// `target/js-node-modules/<hash of them>`: `npm install` of componentize-js
/// (~400 MB) is the same for every project and was most of a JS test's time.
pub fn link_node_modules(dir: &Path) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let wanted = manifest["devDependencies"].to_string();
    let mut hasher = std::collections::hash_map::DefaultHasher::new(); // fixed keys: the same name every run
    std::hash::Hash::hash(&wanted, &mut hasher);
    let key = std::hash::Hasher::finish(&hasher);
    let cache = repo().join("target/js-node-modules").join(format!("{key:016x}"));
    let _one_install = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.join("node_modules/.bin/componentize-js").exists() {
        let staging = cache.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        let package = serde_json::json!({"name": "js-node-modules", "private": true, "devDependencies": manifest["devDependencies"]});
        std::fs::write(staging.join("package.json"), package.to_string()).unwrap();
        npm(&staging, &["install", "--no-audit", "--no-fund"]);
        // Another test process may have finished first: keep its copy.
        if std::fs::rename(&staging, &cache).is_err() {
            std::fs::remove_dir_all(&staging).unwrap();
        }
    }
    std::os::unix::fs::symlink(cache.join("node_modules"), dir.join("node_modules")).unwrap();
}

#[tokio::test]
async fn a_new_js_agent_on_contract_0_2_passes_its_tests_builds_and_asks_the_model_the_web_and_a_tool() {
    let (tmp, dir) = new_project("jsshout", "js");
    let built = dir.clone();
    tokio::task::spawn_blocking(move || {
        link_node_modules(&built);
        npm(&built, &["test"]);
        npm(&built, &["run", "build"]);
    })
    .await
    .unwrap();
    let wasm = dir.join("jsshout.wasm");
    // The CLI's run also fills the compile cache the gateway below starts from.
    let state = tmp.path().join("state");
    assert_eq!(run_plugin(&state, &wasm, "hello", &["--set", "suffix=!!"]).unwrap(), "HELLO!!");
    asks_the_model_the_web_and_a_tool(&state, &wasm, "jsshout", true).await;
}

#[tokio::test]
async fn the_js_example_stays_on_contract_0_1_and_still_tests_builds_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let example = tmp.path().join("examples/js-agent");
    std::fs::create_dir_all(&example).unwrap();
    for file in ["agent.js", "logic.js", "logic.test.js", "package.json"] {
        std::fs::copy(repo().join("examples/js-agent").join(file), example.join(file)).unwrap();
    }
    std::fs::create_dir_all(tmp.path().join("wit")).unwrap();
    std::fs::copy(repo().join("wit/agent.wit"), tmp.path().join("wit/agent.wit")).unwrap();
    let built = example.clone();
    tokio::task::spawn_blocking(move || {
        link_node_modules(&built);
        npm(&built, &["test"]);
        npm(&built, &["run", "build"]);
    })
    .await
    .unwrap();
    let reply = run_plugin(tmp.path(), &example.join("wordcount.wasm"), "one two three", &[]).unwrap();
    assert_eq!(reply, "3 words (3 in this session)");
}

/// Copy `from` into `to` recursively, following symlinks (the example's
/// `wit/deps/agent.wit` links to the repository's contract).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_dir(&path, &target) } else { std::fs::copy(&path, &target).map(drop).unwrap() }
    }
}

#[tokio::test]
async fn the_python_fetch_example_calls_out_through_wasi_http_within_its_allow_list() {
    // The server the agent calls; it counts what reaches it.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    let app =
        axum::Router::new().route("/public", axum::routing::get(|| async { "body from the loopback server" })).route(
            "/private",
            axum::routing::get(move || async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "must not be read"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fetch");
    copy_dir(&repo().join("examples/python-fetch"), &dir);
    let wasm = tokio::task::spawn_blocking(move || {
        venv(&dir, "componentize-py", &["-d", "wit", "-w", "fetch-agent", "componentize", "app", "-o", "fetch.wasm"]);
        dir.join("fetch.wasm")
    })
    .await
    .unwrap();
    let (public, private) = (format!("http://{addr}/public"), format!("http://{addr}/private"));
    // The CLI's agent has no `http` block: denied, reported, and the compile
    // cache filled for the gateway below.
    let state = tmp.path().join("state");
    let reply = run_plugin(&state, &wasm, &public, &[]).unwrap();
    assert_eq!(
        reply,
        format!("{public} -> error: the gateway does not allow this URL (add it to the agent's http.allow)")
    );

    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          agents: {{ entries: {{ fetch: {{ plugin: "{}", http: {{ allow: ["{public}"] }} }} }} }} }}"#,
        wasm.display()
    );
    let gw = TestGateway::start_in(&state, &config);
    let res = gw.chat(ask("agent:fetch", &format!("{public} {private}"))).send().await.unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    let reply = content(&body);
    assert!(reply.contains(&format!("{public} -> 200 body from the loopback server")), "{reply}");
    assert!(reply.contains(&format!("{private} -> error: the gateway does not allow this URL")), "{reply}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the refused request never left the gateway");
    gw.wait_for_log("the denial", |l| l.contains("outbound HTTP denied") && l.contains("agent=fetch")).await;
}
