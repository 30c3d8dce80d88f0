//! The official `openai` Python SDK against a real gateway (WIRE.md's promise).
//!
//! The SDK is installed into `target/openai-sdk-venv` on first use, so the
//! test needs only `python3` with `venv` and access to PyPI, like CI has.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn python_with_openai() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv = root.join("target").join("openai-sdk-venv");
    let python = venv.join("bin").join("python");
    let has_sdk = |py: &Path| Command::new(py).args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if !has_sdk(&python) {
        let status = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 is required");
        assert!(status.success(), "python3 -m venv failed (Debian: apt-get install python3-venv)");
        let status = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "openai>=1.40,<3"])
            .status()
            .unwrap();
        assert!(status.success(), "pip install openai failed");
    }
    python
}

#[test]
fn official_python_sdk_works() {
    let python = python_with_openai();
    let gw = TestGateway::start(&chat_config());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/openai_check.py");
    let out = Command::new(python).arg(script).arg(gw.url("/v1")).arg(TOKEN).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert!(stdout.contains("all checks passed"));
}
