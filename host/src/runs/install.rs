//! The one way an agent version comes to serve: from config, the agents
//! folder, the admin API or the CLI, it is compiled, link-checked and asked
//! for `info()` *before* the atomic swap, so a broken upload never replaces a
//! working agent.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;

use super::Agents;
use crate::chat::AgentId;
use crate::config::{AgentEntry, Config, LimitsConfig};
use crate::providers::ModelRoute;
use crate::runtime::{AgentSettings, AgentSource, AgentVersion, LoadError, RunLimits, shipped};

/// Why an install, rollback or removal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("component is {size} bytes; the limit (agents.maxComponentBytes) is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("agent {0:?} not found")]
    NotFound(String),
    #[error("agent {0:?} has no previous version to roll back to")]
    NoPrevious(String),
    #[error("{0}")]
    Source(String),
}

/// What changed, for listeners such as WebSocket connections.
#[derive(Debug, Clone)]
pub struct AgentsChanged {
    pub id: String,
    /// `installed`, `rolled-back` or `removed`.
    pub action: &'static str,
    /// Digest now serving, if any.
    pub digest: Option<String>,
}

impl Agents {
    /// Validate `bytes` and make them serve `id`. The agent's settings carry
    /// over from the version it replaces unless `settings` is given.
    pub async fn install(
        &self,
        id: AgentId,
        bytes: Arc<[u8]>,
        source: AgentSource,
        settings: Option<AgentSettings>,
    ) -> Result<Arc<AgentVersion>, InstallError> {
        if bytes.len() > self.max_component_bytes {
            return Err(InstallError::TooLarge { size: bytes.len(), limit: self.max_component_bytes });
        }
        let settings = match (settings, self.registry.get(&id)) {
            (Some(settings), _) => settings,
            (None, Some(current)) => current.settings().clone(),
            (None, None) => AgentSettings { limits: run_limits(&self.default_limits), ..AgentSettings::default() },
        };
        let started = Instant::now();
        let version = self.runtime.load(id.clone(), source.clone(), bytes, settings).await;
        let version = match version {
            Ok(v) => Arc::new(v),
            Err(e) => {
                tracing::warn!(agent = %id, %source, error = %e, "agent rejected; the running version keeps serving");
                return Err(e.into());
            }
        };
        let replaced = self.registry.install(version.clone());
        tracing::info!(
            agent = %id, %source, world = version.world(), digest = &version.digest[..12], plugin = %version.info.name,
            version = %version.info.version, cached = version.from_cache, ms = started.elapsed().as_millis() as u64,
            replaced = replaced.as_ref().map(|r| &r.digest[..12]), "agent installed"
        );
        self.announce(&id, "installed", Some(&version));
        Ok(version)
    }

    /// Serve the previous version of `id` again (and keep the current one as the new previous).
    pub fn rollback(&self, id: &AgentId) -> Result<Arc<AgentVersion>, InstallError> {
        if self.registry.get(id).is_none() {
            return Err(InstallError::NotFound(id.to_string()));
        }
        let restored = self.registry.rollback(id).ok_or_else(|| InstallError::NoPrevious(id.to_string()))?;
        tracing::info!(agent = %id, digest = &restored.digest[..12], "agent rolled back");
        self.announce(id, "rolled-back", Some(&restored));
        Ok(restored)
    }

    /// Stop serving `id`. Runs already on it finish.
    pub fn remove(&self, id: &AgentId) -> Result<Arc<AgentVersion>, InstallError> {
        let removed = self.registry.remove(id).ok_or_else(|| InstallError::NotFound(id.to_string()))?;
        tracing::info!(agent = %id, digest = &removed.digest[..12], in_flight = removed.in_flight(), "agent removed");
        self.announce(id, "removed", None);
        Ok(removed)
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AgentsChanged> {
        self.changes.subscribe()
    }

    fn announce(&self, id: &AgentId, action: &'static str, version: Option<&Arc<AgentVersion>>) {
        self.metrics.swap(action);
        // No subscribers is fine: nobody is listening yet.
        let _ =
            self.changes.send(AgentsChanged { id: id.to_string(), action, digest: version.map(|v| v.digest.clone()) });
    }

    /// Install one `agents.entries` entry (shipped name or file path).
    pub async fn install_entry(
        &self,
        config: &Config,
        id: &str,
        entry: &AgentEntry,
    ) -> Result<Arc<AgentVersion>, InstallError> {
        let agent_id = AgentId::parse(id).ok_or_else(|| InstallError::Source(format!("{id:?} is not an agent id")))?;
        let (source, bytes): (AgentSource, Arc<[u8]>) = match shipped::component(&entry.plugin) {
            Some(bytes) => (AgentSource::Shipped(entry.plugin.clone()), bytes.into()),
            None => {
                let path = config.resolve_path(&entry.plugin);
                let bytes = self.read_component(&path).map_err(|e| match e {
                    InstallError::Source(e) => InstallError::Source(format!(
                        "agents.entries.{id}.plugin: {:?} is neither a shipped plugin ({}) nor a readable file ({e})",
                        entry.plugin,
                        shipped::NAMES.join(", "),
                    )),
                    other => other,
                })?;
                (AgentSource::Config(path), bytes)
            }
        };
        let settings = self.entry_settings(id, entry)?;
        self.install(agent_id, bytes, source, Some(settings)).await
    }

    /// An entry's settings, with its provider looked up among the live ones.
    fn entry_settings(&self, id: &str, entry: &AgentEntry) -> Result<AgentSettings, InstallError> {
        let llm = match (&entry.provider, &entry.model) {
            (Some(name), Some(model)) => {
                let providers = self.providers.load();
                let provider = providers.get(name).ok_or_else(|| {
                    InstallError::Source(format!("agents.entries.{id}.provider: no provider named {name:?}"))
                })?;
                Some(ModelRoute {
                    provider: provider.clone(),
                    model: model.clone(),
                    allow_override: entry.allow_model_override,
                })
            }
            _ => None,
        };
        let limits = run_limits(&entry.limits.or(&self.default_limits));
        Ok(AgentSettings { config: entry.config.clone(), limits, llm })
    }

    /// A component file, refused by its size *before* it is read: a huge (or
    /// sparse) file must not be loaded into memory just to be rejected.
    pub(super) fn read_component(&self, path: &Path) -> Result<Arc<[u8]>, InstallError> {
        use std::io::Read as _;
        let limit = self.max_component_bytes;
        let unreadable = |e: std::io::Error| InstallError::Source(format!("cannot read {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let size = file.metadata().map_err(unreadable)?.len();
        if size > limit as u64 {
            return Err(InstallError::TooLarge { size: size as usize, limit });
        }
        // The file may grow after the check: read one byte past the limit at most.
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() > limit {
            return Err(InstallError::TooLarge { size: bytes.len(), limit });
        }
        Ok(bytes.into())
    }
}

/// Built-in run limits overridden by whatever the config sets.
pub fn run_limits(limits: &LimitsConfig) -> RunLimits {
    let d = RunLimits::default();
    RunLimits {
        memory_bytes: limits.memory_bytes.unwrap_or(d.memory_bytes),
        time_budget: limits.timeout_ms.map_or(d.time_budget, std::time::Duration::from_millis),
        output_bytes: limits.max_output_bytes.unwrap_or(d.output_bytes),
        max_concurrent: limits.max_concurrent_runs,
    }
}

/// `main.wasm` → `main`; anything else → `None`.
pub fn agent_id_of(path: &Path) -> Option<AgentId> {
    if path.extension()? != "wasm" {
        return None;
    }
    AgentId::parse(path.file_stem()?.to_str()?)
}
