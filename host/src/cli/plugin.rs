//! A gateway config for one component file, for `wasmclaw agent --plugin`
//! and `wasmclaw dev`: written to a scratch folder that also holds the
//! sessions, the registry and the compile cache, and is removed afterwards.
//! Going through a real config file means the run path, the install path
//! and the file watcher are the gateway's own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;

use crate::chat::AgentId;
use crate::config::Config;

/// A scratch state folder, removed when dropped.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A new, empty folder under the system's temp folder.
    pub fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("wasmclaw-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the command line says about the component to serve.
pub struct PluginArgs<'a> {
    /// The component file.
    pub file: &'a Path,
    /// `--agent`, else the file's name.
    pub agent: Option<&'a str>,
    /// `--set key=value`, the agent's config.
    pub set: &'a [String],
    /// Listen here (`dev`).
    pub port: u16,
}

/// The id a component file serves as: `--agent`, else the file's stem
/// (`my_agent.wasm` → `my_agent`), else `main`.
pub fn agent_id(file: &Path, agent: Option<&str>) -> anyhow::Result<AgentId> {
    if let Some(raw) = agent {
        return AgentId::parse(raw).with_context(|| format!("{raw:?} is not a valid agent id"));
    }
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    Ok(AgentId::parse(stem).unwrap_or_else(|| AgentId::parse("main").expect("a valid id")))
}

/// `key=value` pairs; the value may contain `=`.
pub fn parse_set(set: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    set.iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').with_context(|| format!("--set {pair:?}: expected key=value"))?;
            anyhow::ensure!(!key.is_empty(), "--set {pair:?}: the key is empty");
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// Write a config serving `args.file` as the default agent, on loopback
/// without credentials, with the chat endpoint on, and load it.
pub fn config(scratch: &Scratch, args: &PluginArgs<'_>) -> anyhow::Result<(Config, AgentId)> {
    // The scratch folder keeps everything else; a shared database would
    // install this component for every instance of a cluster.
    if std::env::var_os("WASMCLAW_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        anyhow::bail!("unset WASMCLAW_DATABASE_URL: this command keeps its state in a temporary folder");
    }
    let file = std::path::absolute(args.file).with_context(|| format!("{}", args.file.display()))?;
    anyhow::ensure!(file.is_file(), "{}: no such component file (build it first)", file.display());
    let id = agent_id(&file, args.agent)?;
    let text = json!({
        "gateway": {
            "bind": "127.0.0.1",
            "port": args.port,
            "auth": { "mode": "none" },
            "stateDir": scratch.path(),
            "http": { "endpoints": { "chatCompletions": { "enabled": true } } },
        },
        "agents": {
            "default": id.as_str(),
            "entries": { id.as_str(): { "plugin": file, "config": parse_set(args.set)? } },
        },
    });
    let path = scratch.path().join("gateway.json5");
    std::fs::write(&path, format!("{text:#}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((Config::load(Some(&path))?, id))
}

/// Compiling a big component (Python, JavaScript) takes seconds: keep the
/// compiled code in the usual state folder's cache (`~/.wasmclaw/cache`),
/// where the gateway keeps its own, so running the same file again is quick.
pub fn share_compile_cache(scratch: &Scratch) {
    #[cfg(unix)]
    {
        let cache = Config::default().state_dir().join("cache");
        if std::fs::create_dir_all(&cache).is_ok() {
            let _ = std::os::unix::fs::symlink(&cache, scratch.path().join("cache"));
        }
    }
    #[cfg(not(unix))]
    let _ = scratch;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_flag_or_the_file_name() {
        let id = |file: &str, flag: Option<&str>| agent_id(Path::new(file), flag).map(|id| id.to_string()).ok();
        assert_eq!(id("target/release/my_agent.wasm", None).as_deref(), Some("my_agent"));
        assert_eq!(id("x/Shout.wasm", None).as_deref(), Some("shout"));
        assert_eq!(id("x/has space.wasm", None).as_deref(), Some("main"));
        assert_eq!(id("x/a.wasm", Some("chosen")).as_deref(), Some("chosen"));
        assert_eq!(id("x/a.wasm", Some("not valid!")), None);
    }

    #[test]
    fn set_pairs_split_at_the_first_equals_sign() {
        let pairs = parse_set(&["a=1".into(), "url=http://x/?q=2".into(), "empty=".into()]).unwrap();
        assert_eq!(pairs["url"], "http://x/?q=2");
        assert_eq!(pairs["empty"], "");
        assert!(parse_set(&["novalue".into()]).is_err());
        assert!(parse_set(&["=v".into()]).is_err());
    }

    #[test]
    fn the_config_serves_the_file_on_loopback_and_cleans_up() {
        let scratch = Scratch::new().unwrap();
        let dir = scratch.path().to_path_buf();
        let file = dir.join("shout.wasm");
        std::fs::write(&file, b"\0asm").unwrap();
        let args = PluginArgs { file: &file, agent: None, set: &["suffix=!!".into()], port: 0 };
        let (config, id) = config(&scratch, &args).unwrap();
        assert_eq!(id.as_str(), "shout");
        assert_eq!(config.agents.default, "shout");
        assert_eq!(config.gateway.bind, "127.0.0.1");
        assert!(config.gateway.http.endpoints.chat_completions.enabled);
        let entry = &config.agent_entries()["shout"];
        assert_eq!(config.resolve_path(&entry.plugin), file);
        assert_eq!(entry.config["suffix"], "!!");
        assert_eq!(config.state_dir(), dir);
        drop(scratch);
        assert!(!dir.exists());
    }
}
