//! Servers under test as separate processes, so their memory can be read
//! from /proc without the load generator's sockets in it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A server process that printed `… listening on http://ADDR`.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    /// Where the server's stderr goes, when it is not the terminal's.
    log: Option<PathBuf>,
    _state: tempfile::TempDir,
}

/// A release binary of the workspace, built first if needed (into
/// `CARGO_TARGET_DIR` when the harness was built with one).
fn release_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", package, "--bin", bin])
        .status()?;
    anyhow::ensure!(status.success(), "building the release {bin} binary failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release").join(bin))
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

impl ServerProcess {
    /// The release `wasmclaw` binary with `config` (JSON5), built first if
    /// needed; or the binary `WASMCLAW_BENCH_BINARY` names, as it is.
    pub fn wasmclaw(config: &str) -> anyhow::Result<Self> {
        let binary = match std::env::var_os("WASMCLAW_BENCH_BINARY") {
            Some(binary) => PathBuf::from(binary),
            None => release_binary("wasmclaw", "wasmclaw")?,
        };
        let state = tempfile::tempdir()?;
        let path = state.path().join("gateway.json5");
        std::fs::write(&path, config)?;
        let mut cmd = Command::new(binary);
        cmd.args(["gateway", "--port", "0", "--config"])
            .arg(&path)
            .env("WASMCLAW_STATE_DIR", state.path())
            .env("OPENCLAW_GATEWAY_TOKEN", crate::TOKEN)
            .env("WASMCLAW_LOG", "warn");
        // Into a file: the soak's expected failures would bury the tables.
        let log = state.path().join("gateway.log");
        cmd.stderr(std::fs::File::create(&log)?);
        Self::spawn(cmd, state, Some(log))
    }

    /// The mock provider (`mock-provider`, release) in a process of its own,
    /// answering every request with `tokens` streamed tokens; `base` ends in `/v1`.
    pub fn mock_provider(tokens: usize) -> anyhow::Result<Self> {
        let mut cmd = Command::new(release_binary("wasmclaw-mock-provider", "mock-provider")?);
        cmd.args(["--tokens", &tokens.to_string()]).stderr(Stdio::inherit());
        Self::spawn(cmd, tempfile::tempdir()?, None)
    }

    /// This benchmark binary re-run as the bare baseline server `mode`.
    pub fn baseline(mode: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--serve-baseline", mode]);
        cmd.stderr(Stdio::inherit());
        Self::spawn(cmd, tempfile::tempdir()?, None)
    }

    fn spawn(mut cmd: Command, state: tempfile::TempDir, log: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut child = cmd.stdout(Stdio::piped()).spawn()?;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let Some(line) = lines.next() else {
                let log = log.as_ref().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
                anyhow::bail!("server exited before listening\n{log}");
            };
            let line = line?;
            if let Some((_, url)) = line.split_once("listening on ") {
                break url.trim().to_string();
            }
        };
        Ok(Self { child, base, log, _state: state })
    }

    /// How many lines of the server's log contain `needle` (0 without a log file).
    pub fn log_lines_with(&self, needle: &str) -> usize {
        let text = self.log.as_ref().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
        text.lines().filter(|l| l.contains(needle)).count()
    }

    /// The process id, for `perf record -p`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system, all threads) the process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').ok_or_else(|| anyhow::anyhow!("unreadable /proc stat"))?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11).unwrap_or(&"0").parse::<f64>()? + fields.get(12).unwrap_or(&"0").parse::<f64>()?;
        Ok(ticks / *TICKS.get_or_init(clock_ticks))
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
