//! `wasmclaw dev`: one agent on loopback while its author edits it. Given a
//! component FILE, the config watcher reloads it when it changes. Without
//! one, run in an agent project, `dev` also watches the project's sources and
//! runs the project's own build after each save; the rebuilt file reloads
//! the same way, and a failed build leaves the last good version serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;

use super::plugin::{self, PluginArgs, ProjectEntry, Scratch};
use crate::gateway::Gateway;

/// Quiet time after the last save before building: an editor's save is
/// several events, a "save all" many.
const SETTLE: Duration = Duration::from_millis(200);

/// `wasmclaw dev`'s command line.
pub struct DevArgs {
    pub file: Option<PathBuf>,
    pub agent: Option<String>,
    pub set: Vec<String>,
    pub allow: Vec<String>,
    pub credentials: Vec<String>,
    pub port: u16,
}

/// Folders of build output and tools, never sources.
const SKIPPED: &[&str] = &["target", "node_modules", "__pycache__", "wit_world"];

/// What kind of agent project a folder is, which says how it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Cargo.toml` depending on `wasmclaw-sdk`.
    Rust,
    /// `pyproject.toml` or `app.py` (componentize-py).
    Python,
    /// `package.json` with a `build` script (componentize-js).
    Js,
}

impl Kind {
    /// The project kind of `dir`, if it is one.
    pub fn of(dir: &Path) -> Option<Self> {
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if cargo.contains("wasmclaw-sdk") {
            Some(Self::Rust)
        } else if dir.join("pyproject.toml").is_file() || dir.join("app.py").is_file() {
            Some(Self::Python)
        } else if dir.join("package.json").is_file() {
            Some(Self::Js)
        } else {
            None
        }
    }

    /// Whether a change to `path` (inside the project) needs a rebuild:
    /// sources, manifests and the contract, never build output or tools.
    pub fn is_source(self, project: &Path, path: &Path) -> bool {
        let Ok(inside) = path.strip_prefix(project) else { return false };
        let dirs = inside.parent().into_iter().flat_map(Path::components);
        if dirs.map(|c| c.as_os_str().to_string_lossy()).any(|d| d.starts_with('.') || SKIPPED.contains(&&*d)) {
            return false;
        }
        let name = inside.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let ext = inside.extension().and_then(|e| e.to_str()).unwrap_or_default();
        match self {
            Self::Rust => ["rs", "wit"].contains(&ext) || name == "Cargo.toml" || name == "build.rs",
            Self::Python => ["py", "wit"].contains(&ext) || name == "pyproject.toml",
            Self::Js => ["js", "mjs", "cjs", "wit"].contains(&ext) || name == "package.json",
        }
    }
}

/// An agent project and where its build puts the component.
struct Project {
    dir: PathBuf,
    kind: Kind,
    /// Python and JavaScript: fixed by the build command. Rust: what cargo reports.
    output: Option<PathBuf>,
}

impl Project {
    fn find(dir: &Path) -> anyhow::Result<Self> {
        let kind = Kind::of(dir).with_context(|| {
            format!(
                "{} is not an agent project (no Cargo.toml using wasmclaw-sdk, pyproject.toml, app.py or \
                 package.json): run `wasmclaw dev` in a project made by `wasmclaw new agent`, or name the \
                 component: `wasmclaw dev FILE.wasm`",
                dir.display()
            )
        })?;
        let output = match kind {
            Kind::Rust => None,
            Kind::Python | Kind::Js => Some(dir.join(component_name(dir)?)),
        };
        Ok(Self { dir: dir.to_path_buf(), kind, output })
    }

    /// Run the project's build, its output on stderr; the component it wrote.
    async fn build(&self) -> anyhow::Result<PathBuf> {
        let mut cmd = match self.kind {
            Kind::Rust => {
                let mut cmd = tokio::process::Command::new("cargo");
                // Diagnostics rendered for the author on stderr; stdout has the artifacts.
                cmd.args(["build", "--target", "wasm32-wasip2", "--release"])
                    .arg("--message-format=json-render-diagnostics")
                    .stdout(Stdio::piped());
                cmd
            }
            Kind::Python => {
                let venv = self.dir.join(".venv/bin/componentize-py");
                let tool = if venv.is_file() { venv } else { PathBuf::from("componentize-py") };
                let mut cmd = tokio::process::Command::new(tool);
                cmd.args(["-d", "wit", "-w", "agent", "componentize", "app", "-o"]);
                cmd.arg(self.output.as_ref().expect("a Python project's output")).stdout(std::io::stderr());
                cmd
            }
            Kind::Js => {
                let mut cmd = tokio::process::Command::new("npm");
                cmd.args(["run", "build"]).stdout(std::io::stderr());
                cmd
            }
        };
        cmd.current_dir(&self.dir).stdin(Stdio::null()).stderr(Stdio::inherit()).kill_on_drop(true);
        let shown: Vec<_> = std::iter::once(cmd.as_std().get_program())
            .chain(cmd.as_std().get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let shown = shown.join(" ");
        tracing::info!(command = %shown, "building");
        let child = cmd.spawn().with_context(|| format!("cannot run {shown}"))?;
        let out = child.wait_with_output().await?;
        anyhow::ensure!(out.status.success(), "the build failed ({})", out.status);
        let file = match &self.output {
            Some(file) => file.clone(),
            None => cargo_component(&out.stdout).context("cargo built no .wasm (is the crate a cdylib?)")?,
        };
        anyhow::ensure!(file.is_file(), "the build did not write {}", file.display());
        Ok(file)
    }
}

/// The component a Python or JavaScript project builds: `<name>.wasm`, the
/// name from `pyproject.toml` / `package.json`, else the folder's.
fn component_name(dir: &Path) -> anyhow::Result<String> {
    let name = if let Ok(text) = std::fs::read_to_string(dir.join("package.json")) {
        let json: serde_json::Value = serde_json::from_str(&text).context("package.json")?;
        json["name"].as_str().map(str::to_string)
    } else {
        let text = std::fs::read_to_string(dir.join("pyproject.toml")).unwrap_or_default();
        text.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
        })
    };
    let name = name.or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()));
    Ok(format!("{}.wasm", name.context("the project has no name")?))
}

/// The `.wasm` of the last cdylib in cargo's JSON messages.
fn cargo_component(messages: &[u8]) -> Option<PathBuf> {
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// Run `wasmclaw dev`.
pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    // First, so a busy port fails at once rather than after a build and a compile.
    let listener = super::bind("127.0.0.1", args.port, "choose another port with --port N (0 picks a free one)")?;
    crate::runtime::name_dev_flags_in_denials();
    let here = std::env::current_dir()?;
    let (project, file) = match &args.file {
        Some(file) => (None, file.clone()),
        None => {
            let project = Project::find(&here)?;
            let file = first_build(&project).await?;
            (Some(project), file)
        }
    };
    let project_config = project.as_ref().map_or(here.as_path(), |p| p.dir.as_path()).join("gateway.json5");
    let id = match (&args.agent, project_config.is_file()) {
        (Some(id), _) => Some(id.clone()),
        (None, true) => plugin::project_default(&project_config)?,
        (None, false) => None,
    };
    let id = plugin::agent_id(&file, id.as_deref())?;
    let scratch = Scratch::new()?;
    plugin::share_compile_cache(&scratch);
    let dev = Arc::new(DevConfig { scratch, project_config, id: id.to_string(), args });
    let (config, entry) = dev.write(&file)?;
    if let Some(ProjectEntry { path, .. }) = &entry {
        tracing::info!(agent = %id, config = %path.display(), "serving with the project's entry for the agent");
    }
    let _watcher = match project {
        Some(project) => Some(watch_sources(project, file.clone(), dev.clone())?),
        None => None,
    };
    super::serve(config, listener, move |gw, base| announce(gw, base, &file, id.as_str())).await
}

/// Dev's config: written to the scratch folder from the flags and the
/// project's entry, again whenever the project's `gateway.json5` changes.
struct DevConfig {
    scratch: Scratch,
    project_config: PathBuf,
    id: String,
    args: DevArgs,
}

impl DevConfig {
    fn write(&self, file: &Path) -> anyhow::Result<(crate::config::Config, Option<ProjectEntry>)> {
        let entry = match self.project_config.is_file() {
            true => plugin::project_entry(&self.project_config, &self.id)?,
            false => None,
        };
        let args = PluginArgs {
            agent: Some(&self.id),
            set: &self.args.set,
            allow: &self.args.allow,
            credentials: &self.args.credentials,
            project: entry.as_ref(),
            port: self.args.port,
            ..PluginArgs::new(file)
        };
        Ok((plugin::config(&self.scratch, &args)?.0, entry))
    }
}

/// Build until a build succeeds: there is nothing to serve before that.
async fn first_build(project: &Project) -> anyhow::Result<PathBuf> {
    let (tx, mut saves) = mpsc::unbounded_channel();
    let mut watcher = None;
    loop {
        match project.build().await {
            Ok(file) => return Ok(file),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "build failed; fix it and save: dev serves once a build succeeds");
                if watcher.is_none() {
                    watcher = Some(source_watcher(project, tx.clone())?);
                }
                saves.recv().await.context("the file watcher stopped")?;
            }
        }
    }
}

/// Watches a project's folder; dropping it stops watching.
type SourceWatcher = Debouncer<RecommendedWatcher>;

/// A file's modification time and size: what a save changes.
type Stamp = (Option<SystemTime>, u64);

fn stamp_of(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| (m.modified().ok(), m.len()))
}

/// The stamps of the watched files under `dir`.
fn stamps_under(kind: Kind, project: &Path, dir: &Path, stamps: &mut HashMap<PathBuf, Option<Stamp>>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with('.') && !SKIPPED.contains(&&*name) {
                    stamps_under(kind, project, &path, stamps);
                }
            }
            Ok(_) if watched(kind, project, &path) => {
                stamps.insert(path.clone(), stamp_of(&path));
            }
            _ => {}
        }
    }
}

/// A watcher sending the project's changed sources (after [`SETTLE`]).
fn source_watcher(project: &Project, tx: mpsc::UnboundedSender<Vec<PathBuf>>) -> anyhow::Result<SourceWatcher> {
    let (dir, kind) = (project.dir.clone(), project.kind);
    let mut stamps = HashMap::new();
    stamps_under(kind, &dir, &dir, &mut stamps);
    let mut debouncer = new_debouncer(SETTLE, move |result: DebounceEventResult| match result {
        Ok(events) => {
            // The build reading a source is an event too: act on changed content only.
            let paths: Vec<PathBuf> = events
                .into_iter()
                .map(|e| e.path)
                .filter(|p| watched(kind, &dir, p))
                .filter(|p| {
                    let stamp = stamp_of(p);
                    stamps.insert(p.clone(), stamp) != Some(stamp)
                })
                .collect();
            if !paths.is_empty() {
                let _ = tx.send(paths);
            }
        }
        Err(e) => tracing::warn!(error = %e, "file watcher error"),
    })?;
    debouncer.watcher().watch(&project.dir, RecursiveMode::Recursive)?;
    Ok(debouncer)
}

/// A source, or the project's `gateway.json5`.
fn watched(kind: Kind, dir: &Path, path: &Path) -> bool {
    kind.is_source(dir, path) || path == dir.join("gateway.json5")
}

/// Rebuild after each save, one build at a time; a change to the project's
/// `gateway.json5` rewrites dev's config instead, which applies live.
fn watch_sources(project: Project, mut file: PathBuf, dev: Arc<DevConfig>) -> anyhow::Result<SourceWatcher> {
    let (tx, mut saves) = mpsc::unbounded_channel();
    let watcher = source_watcher(&project, tx)?;
    tokio::spawn(async move {
        while let Some(mut paths) = saves.recv().await {
            while let Ok(more) = saves.try_recv() {
                paths.extend(more);
            }
            if paths.contains(&dev.project_config) {
                match dev.write(&file) {
                    Ok(_) => tracing::info!(config = %dev.project_config.display(), "project config applied"),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "project config not applied; keeping the running one")
                    }
                }
            }
            let Some(saved) = paths.iter().find(|p| project.kind.is_source(&project.dir, p)) else { continue };
            let saved = saved.strip_prefix(&project.dir).unwrap_or(saved).display().to_string();
            let started = Instant::now();
            match project.build().await {
                Ok(built) => {
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::info!(%saved, ms, file = %built.display(), "build finished; reloading");
                    if built != file {
                        file = built;
                        if let Err(e) = dev.write(&file) {
                            tracing::warn!(error = %format!("{e:#}"), "cannot serve the new build");
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    %saved, error = %format!("{e:#}"),
                    "build failed; the last good version keeps serving"
                ),
            }
        }
    });
    Ok(watcher)
}

/// What `dev` prints once it listens, and each agent change after.
fn announce(gw: &Arc<Gateway>, base: &str, file: &Path, id: &str) {
    let mut changes = gw.agents.subscribe();
    println!("serving {} as agent {id:?}; rebuild it and new requests get the new version", file.display());
    println!(
        "try: curl -sS {base}/v1/chat/completions -H 'Content-Type: application/json' \\\n  \
         -d '{{\"model\":\"openclaw\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
    );
    tokio::spawn(async move {
        while let Ok(change) = changes.recv().await {
            let digest = change.digest.as_deref().map_or("", |d| &d[..12]);
            println!("agent {:?} {} {digest}", change.id, change.action);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_what_the_build_reads_and_never_its_output() {
        let dir = Path::new("/p");
        let rust = |p: &str| Kind::Rust.is_source(dir, &dir.join(p));
        assert!(rust("src/lib.rs") && rust("Cargo.toml") && rust("wit/v0.2/agent.wit") && rust("build.rs"));
        assert!(!rust("target/wasm32-wasip2/release/x.wasm") && !rust("target/debug/build/x/out/y.rs"));
        assert!(!rust("Cargo.lock") && !rust(".git/index") && !rust("src/.lib.rs.swp"));
        assert!(!Kind::Rust.is_source(dir, Path::new("/elsewhere/lib.rs")));
        let py = |p: &str| Kind::Python.is_source(dir, &dir.join(p));
        assert!(py("app.py") && py("pyproject.toml") && !py("x.wasm") && !py(".venv/lib/site.py"));
        assert!(!py("__pycache__/app.cpython-312.pyc") && !py("wit_world/__init__.py"));
        let js = |p: &str| Kind::Js.is_source(dir, &dir.join(p));
        assert!(js("agent.js") && js("package.json") && !js("node_modules/x/index.js"));
    }

    #[test]
    fn the_cdylib_wasm_is_read_from_cargos_messages() {
        let messages = br#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libserde.rlib"]}
{"reason":"compiler-artifact","target":{"kind":["cdylib"]},"filenames":["/t/wasm32-wasip2/release/shout.wasm"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(cargo_component(messages), Some(PathBuf::from("/t/wasm32-wasip2/release/shout.wasm")));
        assert_eq!(cargo_component(b"{\"reason\":\"build-finished\"}"), None);
    }

    #[test]
    fn projects_are_told_apart_by_their_manifests() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Kind::of(dir.path()), None);
        std::fs::write(dir.path().join("package.json"), r#"{"name": "hello"}"#).unwrap();
        assert_eq!(Kind::of(dir.path()), Some(Kind::Js));
        assert_eq!(component_name(dir.path()).unwrap(), "hello.wasm");
        std::fs::write(dir.path().join("Cargo.toml"), "[dependencies]\nwasmclaw-sdk = { path = \"x\" }\n").unwrap();
        assert_eq!(Kind::of(dir.path()), Some(Kind::Rust));
        let py = tempfile::tempdir().unwrap();
        std::fs::write(py.path().join("pyproject.toml"), "[project]\nname = \"snake\"\n").unwrap();
        assert_eq!(Kind::of(py.path()), Some(Kind::Python));
        assert_eq!(component_name(py.path()).unwrap(), "snake.wasm");
    }
}
