//! Live sources of agent changes: the agents folder and the config file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;

use super::Agents;
use super::install::agent_id_of;
use crate::chat::AgentId;
use crate::config::{AgentEntry, Config};
use crate::runtime::AgentSource;

/// Quiet time after the last file event before acting on it.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher>,
}

/// Watch `dir` (created if missing): `<id>.wasm` added or replaced → installed,
/// removed → the agent it installed is removed. Existing files are installed first.
pub async fn watch_agents_dir(agents: &Arc<Agents>, dir: PathBuf) -> anyhow::Result<Watcher> {
    std::fs::create_dir_all(&dir)?;
    let mut existing: Vec<PathBuf> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    existing.sort();
    let mut seen = Seen::default();
    for path in existing {
        apply_file_change(agents, &path, &mut seen).await;
    }
    let (watcher, mut changes) = watch(&dir)?;
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

/// What the watcher last acted on, per agent file: its stamp and content digest.
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
    let Some(meta) = std::fs::metadata(path).ok().filter(|m| m.is_file()) else {
        seen.0.remove(path);
        if agents.registry().get(&id).is_some_and(|v| v.source == AgentSource::Folder(path.to_path_buf())) {
            let _ = agents.remove(&id);
        }
        return;
    };
    let stamp = (meta.modified().ok(), meta.len());
    if seen.0.get(path).is_some_and(|(s, _)| *s == stamp) {
        return;
    }
    let bytes = match agents.read_component(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            seen.0.insert(path.to_path_buf(), (stamp, String::new()));
            tracing::warn!(agent = %id, path = %path.display(), error = %e, "agent file refused; the running version keeps serving");
            return;
        }
    };
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let previous = seen.0.insert(path.to_path_buf(), (stamp, digest.clone()));
    if previous.is_some_and(|(_, d)| d == digest) {
        return; // touched, not changed
    }
    // Errors are logged by install; the running version keeps serving.
    let _ = agents.install(id, bytes, AgentSource::Folder(path.to_path_buf()), None).await;
}

/// Watch the config file: changes to `agents.entries` apply live; an invalid
/// file keeps the running config and says why.
pub fn watch_config(agents: &Arc<Agents>, config: &Config) -> anyhow::Result<Option<Watcher>> {
    let Some(path) = config.source.clone() else { return Ok(None) };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let (watcher, mut changes) = watch(&dir)?;
    let weak: Weak<Agents> = Arc::downgrade(agents);
    let mut applied = config.agent_entries();
    let mut applied_providers = config.providers.clone();
    let stamp_of = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()));
    let mut last_stamp = stamp_of(&path);
    tokio::spawn(async move {
        while let Some(paths) = changes.recv().await {
            // Editors replace files; match on the name, not the inode.
            if !paths.iter().any(|p| p.file_name() == path.file_name()) {
                continue;
            }
            // Our own read of the file is an event too: act on changes only.
            let stamp = stamp_of(&path);
            if stamp == last_stamp {
                continue;
            }
            last_stamp = stamp;
            let Some(agents) = weak.upgrade() else { return };
            match Config::load(Some(&path)) {
                Ok(new) => {
                    let providers_changed = new.providers != applied_providers;
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
                    applied_providers = new.providers.clone();
                    apply_entries(&agents, &new, &mut applied, providers_changed).await
                }
                Err(e) => tracing::warn!(error = %e, "config change rejected; keeping the running config"),
            }
        }
    });
    Ok(Some(watcher))
}

/// `reinstall_all`: the providers changed, so every entry re-resolves its own.
async fn apply_entries(
    agents: &Agents,
    config: &Config,
    applied: &mut BTreeMap<String, AgentEntry>,
    reinstall_all: bool,
) {
    let wanted = config.agent_entries();
    for (id, entry) in &wanted {
        if (reinstall_all || applied.get(id) != Some(entry)) && agents.install_entry(config, id, entry).await.is_ok() {
            applied.insert(id.clone(), entry.clone());
        }
    }
    let gone: BTreeSet<String> = applied.keys().filter(|id| !wanted.contains_key(*id)).cloned().collect();
    for id in gone {
        applied.remove(&id);
        let Some(agent_id) = AgentId::parse(&id) else { continue };
        // Only agents the config put there; uploads and dropped files stay.
        if agents.registry().get(&agent_id).is_some_and(|v| v.source.from_config()) {
            let _ = agents.remove(&agent_id);
        }
    }
}

fn watch(dir: &Path) -> anyhow::Result<(Watcher, mpsc::UnboundedReceiver<Vec<PathBuf>>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| match result {
        Ok(events) => {
            let _ = tx.send(events.into_iter().map(|e| e.path).collect());
        }
        Err(e) => tracing::warn!(error = %e, "file watcher error"),
    })?;
    debouncer.watcher().watch(dir, RecursiveMode::NonRecursive)?;
    Ok((Watcher { _debouncer: debouncer }, rx))
}
