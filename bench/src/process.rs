//! Servers under test as separate processes, so their memory can be read
//! from /proc without the load generator's sockets in it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A server process that printed `… listening on http://ADDR`.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    _state: tempfile::TempDir,
}

impl ServerProcess {
    /// The release `wasmclaw` binary with `config` (JSON5), built first if needed.
    pub fn wasmclaw(config: &str) -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--release", "--quiet", "-p", "wasmclaw", "--bin", "wasmclaw"])
            .status()?;
        anyhow::ensure!(status.success(), "building the release wasmclaw binary failed");
        let state = tempfile::tempdir()?;
        let path = state.path().join("gateway.json5");
        std::fs::write(&path, config)?;
        let mut cmd = Command::new(root.join("target/release/wasmclaw"));
        cmd.args(["gateway", "--port", "0", "--config"])
            .arg(&path)
            .env("WASMCLAW_STATE_DIR", state.path())
            .env("OPENCLAW_GATEWAY_TOKEN", crate::TOKEN)
            .env("WASMCLAW_LOG", "warn");
        Self::spawn(cmd, state)
    }

    /// This benchmark binary re-run as the bare baseline server `mode`.
    pub fn baseline(mode: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--serve-baseline", mode]);
        Self::spawn(cmd, tempfile::tempdir()?)
    }

    fn spawn(mut cmd: Command, state: tempfile::TempDir) -> anyhow::Result<Self> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().ok_or_else(|| anyhow::anyhow!("server exited before listening"))??;
            if let Some((_, url)) = line.split_once("listening on ") {
                break url.trim().to_string();
            }
        };
        Ok(Self { child, base, _state: state })
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
        Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
