//! The control page (issue 19): how it is served, and the page itself in a
//! real browser. The browser checks are Python scripts in `tests/ui/`, run
//! against a real gateway with Debian's Chromium driven by Playwright from a
//! venv under `target/` (created on first use, like the `openai` SDK's).
//! Without Chromium or Playwright these tests fail with what to install;
//! they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use wasmclaw_mock_provider::{MockProvider, Reply};

/// Debian's Chromium; `.ci/run` installs it.
const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every browser test needs the venv; the first one to ask creates it, the others wait.
pub(crate) fn python_with_playwright() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(install_playwright).clone()
}

fn install_playwright() -> PathBuf {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the control page tests need Debian's Chromium (apt-get install chromium; .ci/run does)"
    );
    // The package only: browsers come from Debian, never from `playwright install`.
    python_venv("ui-venv", PLAYWRIGHT, |bin| imports(bin, "playwright.sync_api")).join("python")
}

/// The reader token's secret in [`ui_browser_shows_rollouts_promotes_rolls_back_and_follows_auto_rollback`].
const READER: &str = "reader-secret-ui-5";

/// Run `tests/ui/<script>` against `gw` with the URL and token in its environment.
fn run_browser_check(gw: &TestGateway, script: &str, env: &[(&str, &str)]) {
    let python = python_with_playwright();
    let shots = root().join("target").join("ui-screenshots");
    let out = Command::new(python)
        .arg(root().join("tests").join("ui").join(script))
        .current_dir(root().join("tests").join("ui"))
        .env("WASMCLAW_UI_URL", &gw.base)
        .env("WASMCLAW_UI_TOKEN", TOKEN)
        .env("WASMCLAW_UI_SCREENSHOTS", &shots)
        .env("WASMCLAW_UI_CHROMIUM", CHROMIUM)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let log = gw.log();
    assert!(!log.contains(TOKEN), "the secret reached the gateway's log:\n{log}");
}

/// `main` = echo, `slow` words every 150 ms, `trap`, `shout` runs a tool itself, and `tools` = the assistant behind `mock`.
fn page_config(mock: &str, extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} {extra} }},
  providers: {{ mock: {{ baseUrl: "{mock}", maxRetries: 0 }} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    slow: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "150" }} }},
    trap: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "trap" }} }},
    shout: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "server-tool" }} }},
    tools: {{ plugin: "assistant", provider: "mock", model: "mock-model" }},
  }} }},
}}"#
    )
}

#[test]
fn ui_browser_connects_chats_streams_aborts_and_opens_transcripts() {
    let mock = MockProvider::start();
    mock.push(Reply::tool_call("call_w1", "get_weather", r#"{"city": "Paris"}"#));
    mock.push(Reply::text(&["It is sunny", " in Paris."]));
    let gw = TestGateway::start(&page_config(&mock.url(), ""));
    run_browser_check(&gw, "chat_check.py", &[]);
}

#[test]
fn ui_browser_installs_rolls_back_removes_and_follows_changes_made_elsewhere() {
    let gw = TestGateway::start(&page_config("http://127.0.0.1:9", ""));
    run_browser_check(
        &gw,
        "agents_check.py",
        &[
            ("WASMCLAW_UI_ECHO_WASM", ECHO_WASM),
            ("WASMCLAW_UI_FAULTS_WASM", FAULTS_WASM),
            ("WASMCLAW_UI_NOT_AN_AGENT_WASM", NOT_AN_AGENT_WASM),
        ],
    );
}

#[test]
fn ui_browser_shows_rollouts_promotes_rolls_back_and_follows_auto_rollback() {
    // `failing`'s config makes the candidate (the faults fixture) fail; echo ignores it.
    let config = r#"{
  gateway: {
    http: { endpoints: { chatCompletions: { enabled: true } } },
    auth: { tokens: [{ name: "reader", tokenEnv: "READER_TOKEN", scopes: ["operator.read"] }] },
  },
  agents: { entries: {
    main: { plugin: "echo" },
    other: { plugin: "echo" },
    failing: { plugin: "echo", config: { fault: "failed" } },
    shadowed: { plugin: "echo", config: { prefix: "cand:" } },
  } },
}"#;
    let gw = TestGateway::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("READER_TOKEN", READER)])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    run_browser_check(
        &gw,
        "rollout_check.py",
        &[("WASMCLAW_UI_FAULTS_WASM", FAULTS_WASM), ("WASMCLAW_UI_READER_TOKEN", READER)],
    );
    let log = gw.log();
    assert!(!log.contains(READER), "the reader's secret reached the gateway's log:\n{log}");
}

#[test]
fn ui_browser_shows_usage_cost_per_day_and_budgets_left() {
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["ok"]).with_usage(1_000_000, 1_000_000));
    // $0.30 a run; the agent's $3 budget has 70% left after three.
    let config = page_config(&mock.url(), "")
        .replace(
            r#"mock: { baseUrl: ""#,
            r#"mock: { models: { "mock-model": { price: { inputPerMTok: 0.1, outputPerMTok: 0.2 } } }, baseUrl: ""#,
        )
        .replace(r#"model: "mock-model" }"#, r#"model: "mock-model", budget: { usd: 3, window: "month" } }"#);
    assert!(config.contains("price") && config.contains("budget"), "{config}");
    let gw = TestGateway::start(&config);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for _ in 0..3 {
            let res = gw.chat(ask("openclaw:tools", "hi")).send().await.unwrap();
            assert_eq!(res.status(), 200);
        }
        eventually("three runs in the ledger", async || {
            let body = gw.get_json("/usage").await;
            (body["usage"][0]["runs"] == 3).then_some(())
        })
        .await;
    });
    run_browser_check(&gw, "usage_check.py", &[]);
}

#[test]
fn ui_browser_shows_the_lockout_and_its_retry_time() {
    let limit =
        r#", auth: { rateLimit: { maxAttempts: 2, windowMs: 60000, lockoutMs: 60000, exemptLoopback: false } }"#;
    let gw = TestGateway::start(&page_config("http://127.0.0.1:9", limit));
    run_browser_check(&gw, "lockout_check.py", &[]);
}

#[test]
fn ui_screenshots_of_every_page_at_desktop_and_phone_widths() {
    let gw = TestGateway::start(&page_config("http://127.0.0.1:9", ""));
    run_browser_check(&gw, "screenshots.py", &[]);
    for page in ["connect", "chat", "agents", "sessions", "gateway"] {
        for width in ["desktop", "phone"] {
            let shot = root().join("target").join("ui-screenshots").join(format!("{page}-{width}.png"));
            assert!(shot.metadata().is_ok_and(|m| m.len() > 1000), "{} missing", shot.display());
        }
    }
}
