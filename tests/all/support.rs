//! Starts the real `wasmclaw` binary on a loopback port for black-box tests.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a test waits for something the gateway should do soon. Generous:
/// a condition that holds returns at once, so only a failure waits this long.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Token most tests authenticate with.
pub const TOKEN: &str = "test-token-7f3a9c";

/// Path of the test-only faults agent component.
pub const FAULTS_WASM: &str = env!("WASMCLAW_FIXTURE_FAULTS");

/// The shipped echo component (for uploads in tests).
pub const ECHO_WASM: &str = env!("WASMCLAW_PLUGIN_ECHO");

/// A WASI command component: valid, but not an agent.
pub const NOT_AN_AGENT_WASM: &str = env!("WASMCLAW_FIXTURE_NOT_AN_AGENT");

/// The `bin` folder of the Python venv `target/<name>`, made on first use:
/// created and given `requirement` unless `ready` already holds. Tests that
/// share a venv call this through one `OnceLock`, so one test installs and
/// the others wait. Needs only `python3` with `venv` and PyPI, like CI has.
pub fn python_venv(name: &str, requirement: &str, ready: impl Fn(&Path) -> bool) -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join(name);
    let bin = venv.join("bin");
    if !ready(&bin) || !pinned(&bin, requirement) {
        let status = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 is required");
        assert!(status.success(), "python3 -m venv failed (Debian: apt-get install python3-venv)");
        let status = Command::new(bin.join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", requirement])
            .status()
            .unwrap();
        assert!(status.success(), "pip install {requirement} failed (needs access to PyPI)");
    }
    bin
}

// The Python clients the tests install and drive, pinned; README's "Clients" table names them.
/// The official `openai` SDK (tests/all/openai_sdk.rs, conversations.rs, background.rs).
pub const OPENAI_SDK: &str = "openai==2.54.0";
/// The OpenAI Agents SDK (tests/all/responses.rs).
pub const OPENAI_AGENTS: &str = "openai-agents==0.24.0";
/// The MCP Python SDK the test servers run on (tests/all/mcp.rs, mcp_versions.rs).
pub const MCP_PACKAGE: &str = "mcp==2.3.0";
/// Playwright, driving headless Chromium (tests/all/ui.rs).
pub const PLAYWRIGHT: &str = "playwright==1.65.3";

/// Whether a `name==version` requirement is what the venv has; a range is taken as met.
fn pinned(bin: &Path, requirement: &str) -> bool {
    let Some((name, version)) = requirement.split_once("==") else { return true };
    let code = format!("import importlib.metadata as m; assert m.version({name:?}) == {version:?}");
    Command::new(bin.join("python")).args(["-c", &code]).output().is_ok_and(|o| o.status.success())
}

/// Whether the venv `bin`'s Python can `import` the given modules.
pub fn imports(bin: &Path, modules: &str) -> bool {
    let code = format!("import {modules}");
    Command::new(bin.join("python")).args(["-c", &code]).output().is_ok_and(|o| o.status.success())
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_wasmclaw")
}

/// A gateway process; killed on drop.
pub struct TestGateway {
    child: Child,
    pub base: String,
    stderr: Arc<Mutex<String>>,
    state_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// Config with the chat endpoint on, `main` = echo and `beta` = faults with a prefix.
pub fn chat_config() -> String {
    format!(
        r#"{{
  gateway: {{ auth: {{ mode: "token" }}, http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    beta: {{ plugin: "{FAULTS_WASM}", config: {{ prefix: "beta:" }} }},
  }} }},
}}"#
    )
}

/// Faults agents by name: `fault-<kind>` for each kind the fixture knows.
pub fn faults_config(kinds: &[&str]) -> String {
    let entries: Vec<String> = kinds
        .iter()
        .map(|k| format!(r#"  "fault-{k}": {{ plugin: "{FAULTS_WASM}", config: {{ fault: "{k}" }} }},"#))
        .collect();
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
{}
  }} }},
}}"#,
        entries.join("\n")
    )
}

impl TestGateway {
    /// Start with `config` and the token in the environment; panics with the log if it fails.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)])
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    }

    /// Start with exactly `env` as the credential environment; `Err` carries stderr.
    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        Self::spawn(config, &state, env, Some(dir))
    }

    /// Start with `dir` as the state folder, which outlives the process (restart tests).
    pub fn start_in(dir: &Path, config: &str) -> Self {
        Self::spawn(config, dir, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)], None)
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    }

    /// Start with `dir` as the state folder and exactly `env` as the credential environment.
    pub fn start_in_with(dir: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(config, dir, env, None).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    }

    /// Start with extra command-line arguments (e.g. `--log-format json`).
    pub fn start_args(config: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        Self::spawn_args(config, &state, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)], Some(dir), args)
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    }

    fn spawn(config: &str, state: &Path, env: &[(&str, &str)], dir: Option<tempfile::TempDir>) -> Result<Self, String> {
        Self::spawn_args(config, state, env, dir, &[])
    }

    fn spawn_args(
        config: &str,
        state: &Path,
        env: &[(&str, &str)],
        dir: Option<tempfile::TempDir>,
        args: &[&str],
    ) -> Result<Self, String> {
        let path = state.join("gateway.json5");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(binary());
        cmd.args(args).args(["gateway", "--port", "0", "--config"]).arg(&path);
        cmd.env("WASMCLAW_STATE_DIR", state)
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_GATEWAY_PASSWORD")
            .env("WASMCLAW_LOG", "info,wasmclaw=debug,tower_http=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::launch(cmd, state, dir)
    }

    /// Run another serving command (`wasmclaw dev …`) with `state` as its
    /// state folder and `env` set; `Err` carries stderr if it never listens.
    pub fn start_command(args: &[&std::ffi::OsStr], state: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("WASMCLAW_STATE_DIR", state)
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env("WASMCLAW_LOG", "info,wasmclaw=debug,tower_http=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::launch(cmd, state, None)
    }

    /// Run `cmd` as prepared by the caller (its folder, its environment),
    /// with `state` as where its files are; `Err` carries stderr if it never listens.
    /// Waits up to `wait` for it to listen (`dev` builds a project first).
    pub fn start_prepared(mut cmd: Command, state: &Path, wait: Duration) -> Result<Self, String> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if cmd.get_envs().all(|(k, _)| k != "WASMCLAW_LOG") {
            cmd.env("WASMCLAW_LOG", "info,wasmclaw=debug,tower_http=debug");
        }
        Self::launch_within(cmd, state, None, wait)
    }

    /// Spawn `cmd`, collect its stderr, and wait for its "listening" line.
    fn launch(cmd: Command, state: &Path, dir: Option<tempfile::TempDir>) -> Result<Self, String> {
        Self::launch_within(cmd, state, dir, Duration::from_secs(60))
    }

    fn launch_within(
        mut cmd: Command,
        state: &Path,
        dir: Option<tempfile::TempDir>,
        wait: Duration,
    ) -> Result<Self, String> {
        let mut child = cmd.spawn().expect("spawn wasmclaw");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("wasmclaw listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        match rx.recv_timeout(wait) {
            Ok(base) => Ok(Self { child, base, stderr, state_dir: state.to_path_buf(), _dir: dir }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                Err(stderr.lock().unwrap().clone())
            }
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gateway's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/<pid>/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The gateway's state folder (sessions database lives here).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// SIGKILL, no shutdown: what a crash looks like.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: the graceful shutdown an operator or orchestrator asks for.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything the gateway logged so far. Lines reach this buffer through
    /// a pipe and a reader thread, so a line the gateway wrote a moment ago
    /// may not be here yet: wait with [`wait_for_log`](Self::wait_for_log)
    /// for lines that should appear, and read [`settled_log`](Self::settled_log)
    /// to check that a line is absent.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until `ready(log)` holds; panics with `what` and the log after [`PATIENCE`].
    pub async fn wait_for_log(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if ready(&log) {
                return log;
            }
            assert!(Instant::now() < deadline, "waited {PATIENCE:?} for the log to show {what}:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The log with everything the gateway wrote before this call: a request
    /// with a fresh id goes through, and the log is read once that id is in
    /// it (stderr is one ordered pipe). For checks that a line is absent.
    pub async fn settled_log(&self) -> String {
        // A connection cap may still count a connection the test just closed:
        // a refused barrier is sent again, each time under a fresh id.
        let deadline = Instant::now() + PATIENCE;
        let id = loop {
            let id = format!("log-barrier-{}", uuid::Uuid::new_v4());
            match reqwest::Client::new().get(self.url("/health")).header("x-request-id", &id).send().await {
                Ok(res) if res.status().is_success() => break id,
                other => assert!(Instant::now() < deadline, "the barrier request never went through: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.wait_for_log(&format!("the barrier request {id}"), |log| log.contains(&id)).await
    }

    /// The Prometheus text of `/metrics`, with the test token.
    pub async fn metrics(&self) -> String {
        let res = reqwest::Client::new().get(self.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    /// Wait until `/metrics` has every line of `lines` exactly; returns the text.
    pub async fn wait_for_metrics(&self, lines: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let metrics = self.metrics().await;
            if lines.iter().all(|line| metrics.lines().any(|l| l == *line)) {
                return metrics;
            }
            if Instant::now() >= deadline {
                let missing: Vec<&&str> = lines.iter().filter(|line| !metrics.lines().any(|l| l == **line)).collect();
                panic!("waited {PATIENCE:?} for metrics {missing:?}:\n{metrics}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An authorised GET of `path`, parsed as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = reqwest::Client::new().get(self.url(path)).bearer_auth(TOKEN).send().await.unwrap();
        res.json().await.unwrap()
    }

    /// `GET /sessions/<key>/history` with the test token.
    pub async fn session_history(&self, key: &str) -> reqwest::Response {
        let path = format!("/sessions/{}/history", urlencode(key));
        reqwest::Client::new().get(self.url(&path)).bearer_auth(TOKEN).send().await.unwrap()
    }

    /// `(role, content)` of each message in `key`'s transcript; panics unless it exists.
    pub async fn transcript(&self, key: &str) -> Vec<(String, String)> {
        let res = self.session_history(key).await;
        assert_eq!(res.status(), 200, "no transcript for {key:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap_or_default().to_string()))
            .collect()
    }

    /// The keys `GET /sessions` lists, most recent first.
    pub async fn session_keys(&self) -> Vec<String> {
        let list = self.get_json("/sessions").await;
        list["sessions"].as_array().unwrap().iter().map(|s| s["sessionKey"].as_str().unwrap().to_string()).collect()
    }

    /// A POST to the chat endpoint with the test token.
    pub fn chat(&self, body: serde_json::Value) -> reqwest::RequestBuilder {
        reqwest::Client::new().post(self.url("/v1/chat/completions")).bearer_auth(TOKEN).json(&body)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The session a chat response names in `x-openclaw-session-key`.
pub fn session_key(res: &reqwest::Response) -> String {
    let value = res.headers().get("x-openclaw-session-key").unwrap_or_else(|| panic!("no session key: {res:?}"));
    value.to_str().unwrap().to_string()
}

/// `(role, content)` pairs from string literals, to compare with a transcript.
pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect()
}

/// Wait until `probe` returns `Some`; panics with `what` after [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Check `holds` again and again until `until`, failing the moment it does
/// not. For promises that something never happens, where there is no event
/// to wait for: the check runs throughout the window, not once at its end.
pub async fn holds_until(what: &str, until: Instant, mut holds: impl AsyncFnMut() -> bool) {
    loop {
        assert!(holds().await, "{what}");
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A one-message chat body.
pub fn ask(model: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Content of a non-streaming completion.
pub fn content(body: &serde_json::Value) -> String {
    body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}

/// Assert the OpenAI error shape and return `(type, code, param)`.
pub fn error_fields(body: &serde_json::Value) -> (String, Option<String>, Option<String>) {
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "error.message missing: {body}");
    for key in ["type", "param", "code"] {
        assert!(e.get(key).is_some(), "error.{key} missing: {body}");
    }
    let s = |k: &str| e[k].as_str().map(str::to_string);
    (s("type").unwrap(), s("code"), s("param"))
}

/// The `data:` payloads of an SSE body, checking the framing on the way.
pub fn sse_payloads(raw: &str) -> Vec<String> {
    assert!(raw.ends_with("\n\n"), "stream must end with a blank line: {raw:?}");
    raw.trim_end_matches("\n\n")
        .split("\n\n")
        .filter(|event| !event.starts_with(':'))
        .map(|event| {
            assert!(!event.contains('\n'), "one line per event, no `event:` lines: {event:?}");
            event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data line: {event:?}")).to_string()
        })
        .collect()
}

/// A CLI command with its own state folder, so tests never touch `~/.wasmclaw`.
pub fn cli(state: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env("WASMCLAW_STATE_DIR", state).env_remove("OPENCLAW_GATEWAY_TOKEN");
    cmd
}

/// Temp dir with a path inside it, for tests that write files.
pub fn temp_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// Percent-encode a session key for a path segment.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---- WebSocket protocol client -------------------------------------------

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A tokio-tungstenite client socket.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client of the gateway protocol, reading frames as a client would.
pub struct Client {
    pub socket: Socket,
    next_id: u64,
    /// Frames read while waiting for something else.
    pub backlog: Vec<Value>,
}

/// What closed the socket.
#[derive(Debug)]
pub struct Closed(pub Option<(u16, String)>);

impl Client {
    /// Upgrade and read the challenge.
    pub async fn open(gw: &TestGateway) -> (Self, Value) {
        let url = gw.base.replace("http://", "ws://");
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = Self { socket, next_id: 0, backlog: Vec::new() };
        let challenge = c.read().await.unwrap();
        (c, challenge)
    }

    /// Open and connect the way OpenClaw's CLI 2026.9 does.
    pub async fn connect(gw: &TestGateway) -> Self {
        let (mut c, _) = Self::open(gw).await;
        let hello = c.call("connect", connect_params(TOKEN)).await;
        assert_eq!(hello["ok"], true, "{hello}");
        c
    }

    /// Send one JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    /// Send a request; returns its id.
    pub async fn request(&mut self, method: &str, params: Option<Value>) -> String {
        self.next_id += 1;
        let id = format!("{}:{}", self.next_id, uuid::Uuid::new_v4());
        let mut frame = json!({"type": "req", "id": id, "method": method});
        if let Some(p) = params {
            frame["params"] = p;
        }
        self.send(frame).await;
        id
    }

    /// The next frame, ticks included.
    pub async fn read(&mut self) -> Result<Value, Closed> {
        if !self.backlog.is_empty() {
            return Ok(self.backlog.remove(0));
        }
        loop {
            let msg =
                tokio::time::timeout(Duration::from_secs(15), self.socket.next()).await.expect("no frame within 15 s");
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string()))));
                }
                Some(Ok(_)) => continue,
                _ => return Err(Closed(None)),
            }
        }
    }

    /// Read until `want` matches, keeping other frames for later.
    pub async fn until(&mut self, mut want: impl FnMut(&Value) -> bool) -> Value {
        let mut skipped = Vec::new();
        let found = loop {
            let frame = self.read().await.unwrap_or_else(|c| panic!("closed while waiting: {c:?}"));
            if want(&frame) {
                break frame;
            }
            skipped.push(frame);
        };
        skipped.append(&mut self.backlog);
        self.backlog = skipped;
        found
    }

    /// The `res` of request `id`.
    pub async fn response(&mut self, id: &str) -> Value {
        self.until(|f| f["type"] == "res" && f["id"] == id).await
    }

    /// Send a request and wait for its `res`.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, Some(params)).await;
        self.response(&id).await
    }

    /// Expect the server to close the socket; returns code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.read().await {
                Ok(_) => continue,
                Err(Closed(Some(close))) => return close,
                Err(Closed(None)) => panic!("socket dropped without a close frame"),
            }
        }
    }
}

/// `connect` params the way OpenClaw's CLI 2026.9 sends them.
pub fn connect_params(token: &str) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "2026.9.6", "platform": "linux", "deviceFamily": "Linux",
                   "mode": "cli", "instanceId": uuid::Uuid::new_v4().to_string()},
        "caps": [], "auth": {"token": token}, "role": "operator", "scopes": ["operator.write"],
    })
}

/// Config with `main` = echo, `slow` and `flood` fault agents, and `extra` inside `gateway`.
pub fn ws_config(extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} {extra} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    slow: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "150" }} }},
    flood: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "flood" }} }},
  }} }},
}}"#
    )
}

/// A WebSocket upgrade done by hand, for tests that must send what no client
/// library sends (half of a huge frame, a header alone).
pub struct RawWs {
    pub tcp: tokio::net::TcpStream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrade on `/`; panics unless the gateway answers `101`.
    pub async fn open(gw: &TestGateway) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = gw.base.trim_start_matches("http://").to_string();
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk)).await.expect("upgrade answer").unwrap();
            assert!(n > 0, "connection closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buf.drain(..end);
        Self { tcp, buf }
    }

    /// The next server frame as `(opcode, payload)`; `None` once the socket ends.
    pub async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        read_server_frame(&mut self.tcp, &mut self.buf).await
    }

    /// Send `header` and `payload_len` filler bytes while reading what the
    /// server sends (it may close before we are done); returns its close code.
    pub async fn send_reading_close(&mut self, header: &[u8], payload_len: usize) -> Option<u16> {
        use tokio::io::AsyncWriteExt;
        let (mut rd, mut wr) = self.tcp.split();
        let write = async {
            wr.write_all(header).await?;
            let chunk = vec![b'x'; 64 << 10];
            let mut left = payload_len;
            while left > 0 {
                let n = left.min(chunk.len());
                wr.write_all(&chunk[..n]).await?;
                left -= n;
            }
            Ok::<_, std::io::Error>(())
        };
        let buf = &mut self.buf;
        let read = async move {
            while let Some((opcode, payload)) = read_server_frame(&mut rd, buf).await {
                if opcode == 8 {
                    return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                }
            }
            None
        };
        tokio::join!(write, read).1
    }

    /// The header of a final, masked client text frame announcing `len`
    /// payload bytes. The mask key is zero, so payload bytes go as they are.
    pub fn text_header(len: u64) -> Vec<u8> {
        let mut h = vec![0x81];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    }
}

/// The next unmasked server frame from `r` as `(opcode, payload)`, `buf` holding bytes read ahead.
async fn read_server_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some((header, len)) = server_frame_len(buf)
            && buf.len() >= header + len
        {
            let opcode = buf[0] & 0x0f;
            let payload = buf[header..header + len].to_vec();
            buf.drain(..header + len);
            return Some((opcode, payload));
        }
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(PATIENCE, r.read(&mut chunk)).await.expect("a server frame in time") {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `(header length, payload length)` of an unmasked server frame, once its header is complete.
fn server_frame_len(b: &[u8]) -> Option<(usize, usize)> {
    let len7 = *b.get(1)? & 0x7f;
    match len7 {
        126 => Some((4, u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize)),
        127 => Some((10, u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize)),
        n => Some((2, n as usize)),
    }
}

impl Client {
    /// Upgrade from the loopback source address `local` (e.g. `127.0.0.2`: another
    /// client to the per-client caps) and read the challenge; `Err` carries a refusal.
    pub async fn open_from(
        gw: &TestGateway,
        local: &str,
    ) -> Result<(Self, Value), tokio_tungstenite::tungstenite::Error> {
        let addr: std::net::SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let url = gw.base.replace("http://", "ws://");
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
        let (socket, _) = tokio_tungstenite::client_async(url, stream).await?;
        let mut c = Self { socket, next_id: 0, backlog: Vec::new() };
        let challenge = c.read().await.unwrap();
        Ok((c, challenge))
    }
}
