//! Live sources of agent changes: the agents folder and the config file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

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
    for path in existing {
        apply_file_change(agents, &path).await;
    }
    let (watcher, mut changes) = watch(&dir)?;
    let weak = Arc::downgrade(agents);
    tokio::spawn(async move {
        while let Some(paths) = changes.recv().await {
            let Some(agents) = weak.upgrade() else { return };
            for path in paths {
                apply_file_change(&agents, &path).await;
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching the agents folder");
    Ok(watcher)
}

async fn apply_file_change(agents: &Agents, path: &Path) {
    if path.extension().is_none_or(|e| e != "wasm") {
        return;
    }
    let Some(id) = agent_id_of(path) else {
        tracing::warn!(path = %path.display(), "ignored: the file name is not a valid agent id");
        return;
    };
    if path.is_file() {
        // Errors are logged by install; the running version keeps serving.
        let _ = agents.install_file(path).await;
    } else if agents.registry().get(&id).is_some_and(|v| v.source == AgentSource::Folder(path.to_path_buf())) {
        let _ = agents.remove(&id);
    }
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
    tokio::spawn(async move {
        while let Some(paths) = changes.recv().await {
            // Editors replace files; match on the name, not the inode.
            if !paths.iter().any(|p| p.file_name() == path.file_name()) {
                continue;
            }
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
