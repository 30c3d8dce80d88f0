//! Live sources of agent changes: the agents folder, the config file (and the
//! component files its entries name), and in cluster mode the other instances.
//! Every source installs only what *changed* since it last installed —
//! compared by content, remembered durably — so the gateway's own reads of a
//! file, a restart or a second instance never install anything again.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;

use super::Agents;
use super::install::{InstallError, agent_id_of};
use crate::config::Config;
use crate::registry::Change;
use crate::runtime::AgentSource;

/// Quiet time after the last file event before acting on it.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _debouncer: Arc<Mutex<Debouncer<RecommendedWatcher>>>,
}

/// Watch `dir` (created if missing): `<id>.wasm` added or changed → installed,
/// removed → the agent it installed is removed. Files are reconciled with
/// what they installed before a restart first.
pub async fn watch_agents_dir(agents: &Arc<Agents>, dir: PathBuf) -> anyhow::Result<Watcher> {
    std::fs::create_dir_all(&dir)?;
    let mut files: BTreeSet<PathBuf> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Files that installed before and were deleted while the gateway was down.
    let prefix = AgentSource::Folder(dir.join("")).to_string();
    for (origin, _) in agents.store.origins(&prefix).await? {
        files.extend(origin.strip_prefix("dir:").map(PathBuf::from));
    }
    let mut seen = Seen::default();
    for path in files {
        apply_file_change(agents, &path, &mut seen).await;
    }
    let (watcher, mut changes) = watch(std::slice::from_ref(&dir))?;
    let weak = Arc::downgrade(agents);
    tokio::spawn(async move {
        while let Some(paths) = changes.recv().await {
            let Some(agents) = weak.upgrade() else { return };
            for path in paths {
                apply_file_change(&agents, &path, &mut seen).await;
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching the agents folder");
    Ok(watcher)
}

/// A file's modification time and size: read with `stat`, which (unlike
/// reading the file) raises no watch event of its own.
type Stamp = (Option<SystemTime>, u64);

fn stamp_of(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| (m.modified().ok(), m.len()))
}

/// What the watcher last read, per agent file: its stamp and content digest.
/// The watcher also hears the file being opened — by the gateway's own read,
/// for one — and must not act on that: only a changed content installs.
#[derive(Default)]
struct Seen(HashMap<PathBuf, (Stamp, String)>);

async fn apply_file_change(agents: &Agents, path: &Path, seen: &mut Seen) {
    if path.extension().is_none_or(|e| e != "wasm") {
        return;
    }
    let Some(id) = agent_id_of(path) else {
        tracing::warn!(path = %path.display(), "ignored: the file name is not a valid agent id");
        return;
    };
    let source = AgentSource::Folder(path.to_path_buf());
    let origin = source.to_string();
    let Some(stamp) = stamp_of(path) else {
        seen.0.remove(path);
        if let Err(e) = agents.store.set_origin(&origin, None).await {
            tracing::warn!(agent = %id, error = %e, "cannot forget a deleted agent file");
        }
        if agents.registry().get(&id).is_some_and(|v| v.source == source) {
            let _ = agents.remove(&id).await;
        }
        return;
    };
    if seen.0.get(path).is_some_and(|(s, _)| *s == stamp) {
        return;
    }
    let (bytes, digest) = match agents.read_component(path).await {
        Ok(read) => read,
        Err(e) => {
            seen.0.insert(path.to_path_buf(), (stamp, String::new()));
            tracing::warn!(agent = %id, path = %path.display(), error = %e, "agent file refused; the running version keeps serving");
            return;
        }
    };
    if seen.0.insert(path.to_path_buf(), (stamp, digest.clone())).is_some_and(|(_, d)| d == digest) {
        return; // touched, not changed
    }
    // After a restart: installed before, unchanged since, so whatever serves
    // the id now (an upload, a removal) was the later change and stays.
    let known = agents.registry().revision(&id).is_some();
    if known && agents.store.origin(&origin).await.ok().flatten().as_deref() == Some(digest.as_str()) {
        return;
    }
    // Errors are logged by install; the running version keeps serving.
    if agents.install(id.clone(), bytes, source).await.is_ok()
        && let Err(e) = agents.store.set_origin(&origin, Some(&digest)).await
    {
        tracing::warn!(agent = %id, error = %e, "installed, but the file's digest was not recorded");
    }
}

/// Bring the served agents in line with `config`'s entries: an entry that
/// changed (or every entry, with `force`) installs; an entry that is gone
/// removes the agent it installed. Returns the entries that failed.
pub(super) async fn apply_entries(agents: &Agents, config: &Config, force: bool) -> Vec<(String, InstallError)> {
    let wanted = config.agent_entries();
    agents.set_entries(wanted.clone());
    let mut failed = Vec::new();
    for (id, entry) in &wanted {
        if let Err(e) = agents.apply_entry(config, id, entry, force).await {
            failed.push((id.clone(), e));
        }
    }
    let recorded = match agents.store.origins("entry:").await {
        Ok(recorded) => recorded,
        Err(e) => {
            failed.push((String::new(), e.into()));
            return failed;
        }
    };
    for (origin, _) in recorded {
        let Some(id) = origin.strip_prefix("entry:").filter(|id| !wanted.contains_key(*id)) else { continue };
        let _ = agents.store.set_origin(&origin, None).await;
        let Some(agent_id) = crate::chat::AgentId::parse(id) else { continue };
        // Only agents the config put there; uploads and dropped files stay.
        if agents.registry().get(&agent_id).is_some_and(|v| v.source.from_config()) {
            let _ = agents.remove(&agent_id).await;
        }
    }
    failed
}

/// Watch the config file and the component files its entries name: changes
/// to `agents.entries` or to those files apply live; an invalid file keeps
/// the running config and says why.
pub fn watch_config(agents: &Arc<Agents>, config: &Config) -> anyhow::Result<Option<Watcher>> {
    let Some(path) = config.source.clone() else { return Ok(None) };
    let mut dirs = watched_dirs(config);
    let (watcher, mut changes) = watch(&dirs.iter().cloned().collect::<Vec<_>>())?;
    let debouncer = Arc::downgrade(&watcher._debouncer);
    let weak: Weak<Agents> = Arc::downgrade(agents);
    let mut current = config.clone();
    let mut stamps: HashMap<PathBuf, Option<Stamp>> =
        referenced_files(config).into_iter().chain([path.clone()]).map(|p| (p.clone(), stamp_of(&p))).collect();
    tokio::spawn(async move {
        while let Some(paths) = changes.recv().await {
            // Our own reads of these files are events too: act on changes only.
            let mut changed = |p: &PathBuf| {
                let stamp = stamp_of(p);
                stamps.insert(p.clone(), stamp) != Some(stamp)
            };
            // Editors replace files; match on the name, not the inode.
            let config_changed = paths.iter().any(|p| p.file_name() == path.file_name()) && changed(&path);
            let files_changed = referenced_files(&current)
                .iter()
                .filter(|f| paths.iter().any(|p| p.file_name() == f.file_name()))
                .any(&mut changed);
            if !config_changed && !files_changed {
                continue;
            }
            let Some(agents) = weak.upgrade() else { return };
            let mut providers_changed = false;
            if config_changed {
                let new = match Config::load(Some(&path)) {
                    Ok(new) => new,
                    Err(e) => {
                        tracing::warn!(error = %e, "config change rejected; keeping the running config");
                        continue;
                    }
                };
                providers_changed = new.providers != current.providers;
                if providers_changed {
                    match crate::providers::Providers::from_config(&new) {
                        Ok(providers) => {
                            agents.replace_providers(providers);
                            tracing::info!("providers changed; reinstalling configured agents");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "config change rejected; keeping the running config");
                            continue;
                        }
                    }
                }
                current = new;
                for file in referenced_files(&current) {
                    stamps.entry(file.clone()).or_insert_with(|| stamp_of(&file));
                }
                if let Some(debouncer) = debouncer.upgrade() {
                    for dir in watched_dirs(&current).into_iter().filter(|d| dirs.insert(d.clone())) {
                        let mut debouncer = debouncer.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = debouncer.watcher().watch(&dir, RecursiveMode::NonRecursive) {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a folder named by agents.entries");
                        }
                    }
                }
            }
            for (id, e) in apply_entries(&agents, &current, providers_changed).await {
                tracing::warn!(agent = id, error = %e, "config entry not applied; the running version keeps serving");
            }
        }
    });
    Ok(Some(watcher))
}

/// Component files named by path in `agents.entries`.
fn referenced_files(config: &Config) -> Vec<PathBuf> {
    config
        .agent_entries()
        .values()
        .filter(|e| crate::runtime::shipped::component(&e.plugin).is_none())
        .map(|e| config.resolve_path(&e.plugin))
        .collect()
}

/// The config file's folder and those of the files its entries name.
fn watched_dirs(config: &Config) -> BTreeSet<PathBuf> {
    let parent = |p: &Path| p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    config.source.iter().map(|p| parent(p)).chain(referenced_files(config).iter().map(|p| parent(p))).collect()
}

/// Act on the rollbacks this instance's runs decide, and follow the other
/// instances' changes (cluster mode; nothing to follow on one machine).
pub fn follow_registry(agents: &Arc<Agents>) {
    super::rollout::watch_trips(agents);
    let Some(mut changes) = agents.store.changes() else { return };
    let weak = Arc::downgrade(agents);
    tokio::spawn(async move {
        loop {
            let change = match changes.recv().await {
                Ok(change) => change,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Change::Resync,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Some(agents) = weak.upgrade() else { return };
            agents.follow(change).await;
        }
    });
}

fn watch(dirs: &[PathBuf]) -> anyhow::Result<(Watcher, mpsc::UnboundedReceiver<Vec<PathBuf>>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| match result {
        Ok(events) => {
            let _ = tx.send(events.into_iter().map(|e| e.path).collect());
        }
        Err(e) => tracing::warn!(error = %e, "file watcher error"),
    })?;
    for dir in dirs {
        if let Err(e) = debouncer.watcher().watch(dir, RecursiveMode::NonRecursive) {
            // A missing folder of a referenced file must not stop the gateway.
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder");
        }
    }
    Ok((Watcher { _debouncer: Arc::new(Mutex::new(debouncer)) }, rx))
}
