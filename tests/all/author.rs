//! The agent author's loop: `wasmclaw new agent` → `cargo test` on the
//! SDK's fake host → a wasm build → `wasmclaw agent --plugin` and
//! `wasmclaw dev`, which reloads a rebuilt file and refuses a broken one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

/// The toolchain this repository pins: a project outside it must build with
/// the same one (it has the wasm32-wasip2 target).
fn toolchain() -> String {
    let pinned = include_str!("../../rust-toolchain.toml");
    let channel = pinned.lines().find_map(|l| l.trim().strip_prefix("channel")).expect("a channel");
    channel.trim_start_matches([' ', '=']).trim().trim_matches('"').to_string()
}

/// Cargo in `dir` as an author runs it: the pinned toolchain, no flags
/// inherited from this test run, dependencies from the local cache only.
/// The target folder is shared between runs (under this repo's `target/`)
/// so only the first run compiles the SDK's dependencies.
pub fn author_cargo(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("cargo");
    as_author(cmd.current_dir(dir).args(args));
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Give `cmd` (cargo, or `wasmclaw dev`, which runs cargo) an author's
/// environment; see [`author_cargo`].
pub fn as_author(cmd: &mut Command) -> &mut Command {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/author-projects");
    cmd.env("RUSTUP_TOOLCHAIN", toolchain()).env("CARGO_TARGET_DIR", target).env("CARGO_NET_OFFLINE", "true");
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET"]
    {
        cmd.env_remove(var);
    }
    cmd
}

/// `wasmclaw new agent name --lang lang --dir <tmp>/name`, in a folder outside this repository.
pub fn new_project(name: &str, lang: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    let out = cli(tmp.path())
        .args(["new", "agent", name, "--lang", lang, "--dir"])
        .arg(&dir)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.starts_with(env!("CARGO_MANIFEST_DIR").trim_end_matches("/host")), "outside the repository");
    (tmp, dir)
}

/// `wasmclaw agent --plugin file --message text [args]`: stdout, or the failure with stderr.
pub fn run_plugin(state: &Path, file: &Path, text: &str, args: &[&str]) -> Result<String, String> {
    let out = cli(state).args(["agent", "--plugin"]).arg(file).args(["--message", text]).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    match out.status.success() {
        true => Ok(stdout),
        false => Err(format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr))),
    }
}

#[test]
fn a_new_rust_agent_tests_builds_and_runs_from_anywhere() {
    let (tmp, dir) = new_project("shouty", "rust");
    for file in ["Cargo.toml", ".cargo/config.toml", "src/lib.rs", "gateway.json5", "README.md"] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    // The unit test runs natively against the SDK's fake host.
    let out = author_cargo(&dir, &["test"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("shouts_with_the_configured_suffix_and_counts_turns ... ok"), "{report}");
    // The component builds (with the template's small stack) and runs with no config file.
    author_cargo(&dir, &["build", "--target", "wasm32-wasip2", "--release"]);
    let wasm =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/author-projects/wasm32-wasip2/release/shouty.wasm");
    assert_eq!(run_plugin(tmp.path(), &wasm, "hello", &["--set", "suffix=!!"]).unwrap(), "HELLO!!");
    assert_eq!(run_plugin(tmp.path(), &wasm, "quiet", &[]).unwrap(), "QUIET!");
    // The project's gateway config is valid and names the agent.
    let config = std::fs::read_to_string(dir.join("gateway.json5")).unwrap();
    assert!(config.contains("target/wasm32-wasip2/release/shouty.wasm"), "{config}");
}

#[test]
fn agent_plugin_reports_bad_files_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.wasm");
    let err = run_plugin(tmp.path(), &missing, "hi", &[]).unwrap_err();
    assert!(err.contains("no such component file"), "{err}");
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    let err = run_plugin(tmp.path(), &junk, "hi", &[]).unwrap_err();
    assert!(err.contains("not a valid component"), "{err}");
    let err = run_plugin(tmp.path(), Path::new(ECHO_WASM), "hi", &["--set", "novalue"]).unwrap_err();
    assert!(err.contains("expected key=value"), "{err}");
    // The agent's id defaults to the file's name; --agent picks another.
    let err =
        run_plugin(tmp.path(), Path::new(FAULTS_WASM), "hi", &["--agent", "x", "--set", "fault=panic"]).unwrap_err();
    assert!(err.contains(r#"agent "x" panicked: the faults agent panics on request"#), "{err}");
}

/// What `dev` answers to `text` (model "openclaw": the default agent).
pub async fn dev_reply(gw: &TestGateway, text: &str) -> String {
    let res = gw.chat(ask("openclaw", text)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", gw.log());
    content(&res.json().await.unwrap())
}

/// Replace `path` the way a build does: write beside it, then rename over it.
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn dev_serves_each_good_rebuild_and_keeps_the_last_good_one_over_a_broken_one() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("agent.wasm");
    std::fs::copy(ECHO_WASM, &file).unwrap();
    let args =
        ["dev".as_ref(), file.as_os_str(), "--port".as_ref(), "0".as_ref(), "--set".as_ref(), "prefix=v2:".as_ref()];
    let gw = TestGateway::start_command(&args, tmp.path(), &[]).unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(dev_reply(&gw, "hi").await, "hi");

    // A good rebuild: the next requests get it (with the --set config).
    replace(&file, &std::fs::read(FAULTS_WASM).unwrap());
    eventually("the rebuilt agent", async || (dev_reply(&gw, "hi").await == "v2:hi").then_some(())).await;

    // Broken builds are refused with the compiler's or linker's message; the last good one serves.
    for (bytes, why) in [
        (b"\0asm garbage".to_vec(), "not a valid component"),
        (std::fs::read(NOT_AN_AGENT_WASM).unwrap(), "does not fit the wasmclaw:agent world"),
    ] {
        let refusals = gw.log().matches("config entry not applied").count();
        replace(&file, &bytes);
        let log = gw
            .wait_for_log(why, |log| log.matches("config entry not applied").count() > refusals && log.contains(why))
            .await;
        let refusal = log.lines().rev().find(|l| l.contains("config entry not applied")).unwrap();
        assert!(refusal.contains(why) && refusal.contains("agent="), "{refusal}");
        let until = Instant::now() + Duration::from_millis(300);
        holds_until("the last good version keeps serving", until, async || dev_reply(&gw, "hi").await == "v2:hi").await;
    }

    // Fixed again: served again.
    replace(&file, &std::fs::read(ECHO_WASM).unwrap());
    eventually("the fixed agent", async || (dev_reply(&gw, "back").await == "back").then_some(())).await;
}
