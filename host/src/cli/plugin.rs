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
    /// `--allow URL` (`dev`): added to the entry's `http.allow`.
    pub allow: &'a [String],
    /// `--credential MATCH=HEADER:ENV` (`dev`): added to its `http.credentials`.
    pub credentials: &'a [String],
    /// The project's own entry for the agent, and its providers (`dev`).
    pub project: Option<&'a ProjectEntry>,
    /// Listen here (`dev`).
    pub port: u16,
}

impl<'a> PluginArgs<'a> {
    /// `file` with nothing else said.
    pub fn new(file: &'a Path) -> Self {
        Self { file, agent: None, set: &[], allow: &[], credentials: &[], project: None, port: 0 }
    }
}

/// An agent's entry in a project's `gateway.json5`, with the providers it may name.
#[derive(Debug, Clone)]
pub struct ProjectEntry {
    /// The file it came from, for messages.
    pub path: PathBuf,
    /// `agents.entries.<id>` as written (its `plugin` is replaced).
    pub entry: serde_json::Map<String, serde_json::Value>,
    /// `providers`, as written.
    pub providers: serde_json::Value,
}

/// The id `config` (a project's `gateway.json5`) makes its default agent.
pub fn project_default(config: &Path) -> anyhow::Result<Option<String>> {
    let raw = read_json5(config)?;
    Ok(raw["agents"]["default"].as_str().map(str::to_string))
}

/// Agent `id`'s entry in `config`, checked like the gateway checks it; `None`
/// when the file has no entry for `id`.
pub fn project_entry(config: &Path, id: &str) -> anyhow::Result<Option<ProjectEntry>> {
    // The gateway's loader first: its errors name the key and position.
    Config::load(Some(config))?;
    let raw = read_json5(config)?;
    let Some(entry) = raw["agents"]["entries"][id].as_object() else { return Ok(None) };
    Ok(Some(ProjectEntry { path: config.to_path_buf(), entry: entry.clone(), providers: raw["providers"].clone() }))
}

fn read_json5(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    json5::from_str(&text).with_context(|| format!("{} is not valid JSON5", path.display()))
}

/// `--credential MATCH=HEADER:ENV` as a config `credentials` item. The part
/// after `:` may start with a prefix: `Authorization:Bearer API_KEY` sends
/// `Bearer <value of API_KEY>`.
pub fn parse_credential(text: &str) -> anyhow::Result<serde_json::Value> {
    let usage =
        || format!("--credential {text:?}: expected MATCH=HEADER:ENV, e.g. https://api.example.com=X-Api-Key:API_KEY");
    let (rule, header_env) = text.rsplit_once('=').with_context(usage)?;
    let (header, value) = header_env.split_once(':').with_context(usage)?;
    let (prefix, env) = match value.rsplit_once(' ') {
        Some((prefix, env)) => (format!("{prefix} "), env),
        None => (String::new(), value),
    };
    anyhow::ensure!(!rule.is_empty() && !header.is_empty() && !env.is_empty(), usage());
    Ok(json!({ "match": rule, "header": header, "prefix": prefix, "valueEnv": env }))
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
    let mut entry = args.project.map(|p| p.entry.clone()).unwrap_or_default();
    entry.insert("plugin".into(), json!(file));
    let config = entry.entry("config").or_insert_with(|| json!({}));
    for (key, value) in parse_set(args.set)? {
        config[key] = json!(value);
    }
    if !args.allow.is_empty() || !args.credentials.is_empty() {
        let http = entry.entry("http").or_insert_with(|| json!({}));
        let list = |http: &mut serde_json::Value, key: &str| {
            if !http[key].is_array() {
                http[key] = json!([]);
            }
            http[key].as_array_mut().map(std::mem::take).unwrap_or_default()
        };
        let mut allow = list(http, "allow");
        allow.extend(args.allow.iter().map(|a| json!(a)));
        let mut credentials = list(http, "credentials");
        for c in args.credentials {
            credentials.push(parse_credential(c)?);
        }
        http["allow"] = json!(allow);
        http["credentials"] = json!(credentials);
    }
    let providers = args.project.map_or_else(|| json!({}), |p| p.providers.clone());
    let text = json!({
        "gateway": {
            "bind": "127.0.0.1",
            "port": args.port,
            "auth": { "mode": "none" },
            "stateDir": scratch.path(),
            "http": { "endpoints": { "chatCompletions": { "enabled": true } } },
        },
        "agents": { "default": id.as_str(), "entries": { id.as_str(): entry } },
        "providers": if providers.is_null() { json!({}) } else { providers },
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
        let set = ["suffix=!!".into()];
        let args = PluginArgs { set: &set, ..PluginArgs::new(&file) };
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

    #[test]
    fn credentials_read_match_header_optional_prefix_and_variable() {
        let c = parse_credential("https://api.example.com=X-Api-Key:API_KEY").unwrap();
        assert_eq!(
            c,
            json!({"match": "https://api.example.com", "header": "X-Api-Key", "prefix": "", "valueEnv": "API_KEY"})
        );
        let c = parse_credential("http://127.0.0.1:9100=Authorization:Bearer TOKEN").unwrap();
        assert_eq!((c["match"].as_str(), c["prefix"].as_str()), (Some("http://127.0.0.1:9100"), Some("Bearer ")));
        for bad in ["https://x", "https://x=Header", "=H:E", "https://x=:E", "https://x=H:"] {
            let err = parse_credential(bad).unwrap_err().to_string();
            assert!(err.contains("MATCH=HEADER:ENV"), "{bad}: {err}");
        }
    }

    #[test]
    fn flags_add_to_the_projects_entry() {
        let scratch = Scratch::new().unwrap();
        let file = scratch.path().join("agent.wasm");
        std::fs::write(&file, b"\0asm").unwrap();
        let project = ProjectEntry {
            path: "gateway.json5".into(),
            entry: json!({"plugin": "elsewhere.wasm", "config": {"suffix": "!", "keep": "1"},
                          "http": {"allow": ["https://a.example"]}})
            .as_object()
            .unwrap()
            .clone(),
            providers: json!({"local": {"baseUrl": "http://127.0.0.1:1/v1"}}),
        };
        let (set, allow) = (["suffix=?".to_string()], ["http://127.0.0.1:9".to_string()]);
        let credentials = ["http://127.0.0.1:9=X-Key:PATH".to_string()];
        let args = PluginArgs {
            agent: Some("mine"),
            set: &set,
            allow: &allow,
            credentials: &credentials,
            project: Some(&project),
            ..PluginArgs::new(&file)
        };
        let (config, _) = config(&scratch, &args).unwrap();
        let entry = &config.agent_entries()["mine"];
        assert_eq!(config.resolve_path(&entry.plugin), file, "the built file, not the entry's");
        assert_eq!((entry.config["suffix"].as_str(), entry.config["keep"].as_str()), ("?", "1"));
        let http = entry.http.as_ref().unwrap();
        assert_eq!(http.allow, ["https://a.example", "http://127.0.0.1:9"]);
        let c = &http.credentials[0];
        assert_eq!((c.header.as_deref(), c.value_env.as_deref()), (Some("X-Key"), Some("PATH")));
        assert!(config.providers.contains_key("local"));
    }
}
