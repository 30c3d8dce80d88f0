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
use crate::config::{AgentEntry, AgentHttpConfig, Config, HttpLimitsConfig, LimitsConfig, Secret};
use crate::providers::ModelRoute;
use crate::registry::{Record, RegistryError, StoredVersion};
use crate::runtime::{
    AgentSettings, AgentSlot, AgentSource, AgentVersion, AllowRule, Credential, CredentialValue, HttpLimits,
    HttpPolicy, LoadError, RunLimits, TokenSource, shipped,
};

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
    #[error("agent {0:?} has no rollout")]
    NoRollout(String),
    #[error("the rollout of agent {id:?} is {state}; start a new one (PUT /admin/agents/{id}/rollout)")]
    RolloutOver { id: String, state: &'static str },
    #[error("no component with digest {0} is kept in the registry; send the component instead")]
    UnknownComponent(String),
    /// The durable registry could not keep the change, so nothing changed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What changed, for listeners such as WebSocket connections.
#[derive(Debug, Clone)]
pub struct AgentsChanged {
    pub id: String,
    /// `installed`, `rolled-back`, `removed`, or for a canary `rollout-started`,
    /// `rollout-promoted`, `rollout-rolled-back`, `rollout-ended`.
    pub action: &'static str,
    /// Digest now serving, if any.
    pub digest: Option<String>,
}

impl Agents {
    /// Validate `bytes` and make them serve `id`, durably: kept in the
    /// registry before they serve, so a restart serves them again. Settings
    /// come from the id's config entry (or the defaults), whatever the source.
    pub async fn install(
        &self,
        id: AgentId,
        bytes: Arc<[u8]>,
        source: AgentSource,
    ) -> Result<Arc<AgentVersion>, InstallError> {
        if bytes.len() > self.max_component_bytes {
            return Err(InstallError::TooLarge { size: bytes.len(), limit: self.max_component_bytes });
        }
        let settings = self.settings_for(&id)?;
        let started = Instant::now();
        let version = match self.runtime.load(id.clone(), source.clone(), bytes.clone(), settings).await {
            Ok(v) => Arc::new(v),
            Err(e) => {
                tracing::warn!(agent = %id, %source, error = %e, "agent rejected; the running version keeps serving");
                return Err(e.into());
            }
        };
        let replaced = self.registry.get(&id);
        let stored = StoredVersion { digest: version.digest.clone(), source: source.to_string() };
        let kept = async {
            self.store.put_component(&version.digest, bytes).await?;
            self.store.install(id.as_str(), stored).await
        };
        let record = kept.await.inspect_err(|e| {
            tracing::warn!(agent = %id, %source, error = %e, "agent not installed: the registry could not keep it");
        })?;
        self.show(&record, Some(&version), "installed").await;
        tracing::info!(
            agent = %id, %source, world = version.world(), digest = &version.digest[..12], plugin = %version.info.name,
            version = %version.info.version, cached = version.from_cache, ms = started.elapsed().as_millis() as u64,
            replaced = replaced.as_ref().map(|r| &r.digest[..12]), revision = record.revision, "agent installed"
        );
        Ok(version)
    }

    /// Serve the previous version of `id` again (and keep the current one as the new previous).
    pub async fn rollback(&self, id: &AgentId) -> Result<Arc<AgentVersion>, InstallError> {
        if self.registry.get(id).is_none() {
            return Err(InstallError::NotFound(id.to_string()));
        }
        let record = self.store.rollback(id.as_str()).await?.ok_or_else(|| InstallError::NoPrevious(id.to_string()))?;
        let restored =
            self.show(&record, None, "rolled-back").await.ok_or_else(|| InstallError::NotFound(id.to_string()))?;
        tracing::info!(agent = %id, digest = &restored.digest[..12], revision = record.revision, "agent rolled back");
        Ok(restored)
    }

    /// Stop serving `id`, durably. Runs already on it finish.
    pub async fn remove(&self, id: &AgentId) -> Result<Arc<AgentVersion>, InstallError> {
        let current = self.registry.get(id).ok_or_else(|| InstallError::NotFound(id.to_string()))?;
        let record = self.store.remove(id.as_str()).await?.ok_or_else(|| InstallError::NotFound(id.to_string()))?;
        self.show(&record, None, "removed").await;
        tracing::info!(agent = %id, digest = &current.digest[..12], in_flight = current.in_flight(), "agent removed");
        Ok(current)
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AgentsChanged> {
        self.changes.subscribe()
    }

    /// Make the live registry show `record` (unless it already shows a newer
    /// one) and tell listeners. `fresh` is a version just loaded for it.
    /// Returns the version now serving the id, if any.
    pub(super) async fn show(
        &self,
        record: &Record,
        fresh: Option<&Arc<AgentVersion>>,
        action: &'static str,
    ) -> Option<Arc<AgentVersion>> {
        let id = AgentId::parse(&record.id)?;
        let slot = match &record.current {
            None => None,
            Some(current) => {
                let current = match self.version_of(&id, current, fresh).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::error!(agent = %id, digest = %current.digest, error = %e, "agent in the registry cannot be served");
                        return self.registry.get(&id);
                    }
                };
                let previous = match &record.previous {
                    None => None,
                    Some(p) => self
                        .version_of(&id, p, fresh)
                        .await
                        .inspect_err(|e| tracing::warn!(agent = %id, digest = %p.digest, error = %e, "rollback target cannot be loaded"))
                        .ok(),
                };
                Some(AgentSlot { current, previous })
            }
        };
        let rollout = self.live_rollout(&id, record, slot.as_ref(), fresh).await;
        if self.registry.apply(&id, slot, record.revision) {
            self.rollouts.apply(&id, rollout, record.revision);
            self.announce(&id, action, self.registry.get(&id).as_ref());
        }
        self.registry.get(&id)
    }

    /// `record`'s rollout beside `slot`, its candidate loaded; counts carry
    /// over from the rollout shown now when it is the same one.
    async fn live_rollout(
        &self,
        id: &AgentId,
        record: &Record,
        slot: Option<&AgentSlot>,
        fresh: Option<&Arc<AgentVersion>>,
    ) -> Option<Arc<crate::rollout::LiveRollout>> {
        let rollout = record.rollout.as_ref()?;
        // Once promoted, the candidate is current: the stable it was measured against is the previous.
        let stable = match rollout.state {
            crate::registry::RolloutState::Promoted => record.previous.as_ref()?.digest.clone(),
            _ => slot?.current.digest.clone(),
        };
        let candidate = self
            .version_of(id, &rollout.candidate, fresh)
            .await
            .inspect_err(|e| tracing::error!(agent = %id, digest = %rollout.candidate.digest, error = %e, "rollout candidate cannot be loaded; stable serves all traffic"))
            .ok()?;
        let before = self.rollouts.get(id);
        Some(Arc::new(crate::rollout::LiveRollout::new(
            id.clone(),
            rollout.clone(),
            stable,
            candidate,
            before.as_deref(),
        )))
    }

    /// The loaded version for `stored`: `fresh`, one already serving, or
    /// loaded from the registry's bytes.
    pub(super) async fn version_of(
        &self,
        id: &AgentId,
        stored: &StoredVersion,
        fresh: Option<&Arc<AgentVersion>>,
    ) -> Result<Arc<AgentVersion>, InstallError> {
        if let Some(v) = fresh.filter(|v| v.digest == stored.digest) {
            return Ok(v.clone());
        }
        if let Some(v) = self.registry.find(id, &stored.digest).or_else(|| self.rollouts.find(id, &stored.digest)) {
            return Ok(v);
        }
        let bytes = self.store.component(&stored.digest).await?.ok_or_else(|| {
            InstallError::Source(format!("component {} is missing from the registry", &stored.digest))
        })?;
        let source = AgentSource::parse(&stored.source).unwrap_or(AgentSource::AdminApi);
        let settings = self.settings_for(id)?;
        Ok(Arc::new(self.runtime.load(id.clone(), source, bytes, settings).await?))
    }

    fn announce(&self, id: &AgentId, action: &'static str, version: Option<&Arc<AgentVersion>>) {
        self.metrics.swap(action);
        // No subscribers is fine: nobody is listening yet.
        let _ =
            self.changes.send(AgentsChanged { id: id.to_string(), action, digest: version.map(|v| v.digest.clone()) });
    }

    /// The component an `agents.entries` entry names (shipped name or file path).
    pub(super) async fn entry_component(
        &self,
        config: &Config,
        id: &str,
        entry: &AgentEntry,
    ) -> Result<(AgentSource, Arc<[u8]>, String), InstallError> {
        if let Some(bytes) = shipped::component(&entry.plugin) {
            let bytes: Arc<[u8]> = bytes.into();
            let digest = component_digest(bytes.clone()).await;
            return Ok((AgentSource::Shipped(entry.plugin.clone()), bytes, digest));
        }
        let path = config.resolve_path(&entry.plugin);
        let (bytes, digest) = self.read_component(&path).await.map_err(|e| match e {
            InstallError::Source(e) => InstallError::Source(format!(
                "agents.entries.{id}.plugin: {:?} is neither a shipped plugin ({}) nor a readable file ({e})",
                entry.plugin,
                shipped::NAMES.join(", "),
            )),
            other => other,
        })?;
        Ok((AgentSource::Config(path), bytes, digest))
    }

    /// Install one `agents.entries` entry when it changed since it last
    /// installed (its text or its component's bytes), or when `force`d, or
    /// when its id has no durable record yet. `Ok(false)`: nothing to do.
    pub async fn apply_entry(
        &self,
        config: &Config,
        id: &str,
        entry: &AgentEntry,
        force: bool,
    ) -> Result<bool, InstallError> {
        let agent_id = AgentId::parse(id).ok_or_else(|| InstallError::Source(format!("{id:?} is not an agent id")))?;
        let (source, bytes, digest) = self.entry_component(config, id, entry).await?;
        let fingerprint = crate::registry::digest(format!("{entry:?}\n{digest}").as_bytes());
        let origin = format!("entry:{id}");
        let known = self.registry.revision(&agent_id).is_some();
        if !force && known && self.store.origin(&origin).await?.as_deref() == Some(fingerprint.as_str()) {
            return Ok(false);
        }
        self.install(agent_id.clone(), bytes, source).await?;
        self.apply_entry_rollout(config, &agent_id, entry.rollout.as_ref()).await?;
        self.store.set_origin(&origin, Some(&fingerprint)).await?;
        Ok(true)
    }

    /// The settings of agent `id`: its entry's, else the defaults.
    pub(super) fn settings_for(&self, id: &AgentId) -> Result<AgentSettings, InstallError> {
        match self.entries.load().get(id.as_str()) {
            Some(entry) => self.entry_settings(id.as_str(), entry),
            None => Ok(AgentSettings { limits: run_limits(&self.default_limits), ..AgentSettings::default() }),
        }
    }

    /// An entry's settings, with its provider looked up among the live ones.
    fn entry_settings(&self, id: &str, entry: &AgentEntry) -> Result<AgentSettings, InstallError> {
        entry_settings(id, entry, &self.providers.load(), &self.default_limits)
    }

    /// A component file, refused by its size *before* it is read: a huge (or
    /// sparse) file must not be loaded into memory just to be rejected.
    pub(super) async fn read_component(&self, path: &Path) -> Result<(Arc<[u8]>, String), InstallError> {
        let (path, limit) = (path.to_path_buf(), self.max_component_bytes);
        // Reading and hashing tens of MiB would hold a tokio worker.
        tokio::task::spawn_blocking(move || {
            let bytes = read_limited(&path, limit)?;
            let digest = crate::registry::digest(&bytes);
            Ok((bytes, digest))
        })
        .await
        .map_err(|e| InstallError::Source(format!("reading a component file failed: {e}")))?
    }
}

/// The file at `path`, at most `limit` bytes of it.
fn read_limited(path: &Path, limit: usize) -> Result<Arc<[u8]>, InstallError> {
    use std::io::Read as _;
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

/// sha256 of `bytes` (hex), hashed on a blocking thread: a component of tens
/// of MiB takes a tokio worker tens of milliseconds.
pub async fn component_digest(bytes: Arc<[u8]>) -> String {
    let kept = bytes.clone();
    tokio::task::spawn_blocking(move || crate::registry::digest(&bytes))
        .await
        .unwrap_or_else(|_| crate::registry::digest(&kept))
}

/// An entry's `http` block as a policy; a bad rule or a missing credential
/// variable is an error naming its key (and never a value).
fn http_policy(id: &str, config: &AgentHttpConfig, limits: &HttpLimitsConfig) -> Result<HttpPolicy, InstallError> {
    let key = |rest: &str| format!("agents.entries.{id}.http.{rest}");
    let rule = |text: &str, at: String| {
        AllowRule::parse(text).map_err(|e| InstallError::Source(format!("{at}: {text:?} is not a valid rule: {e}")))
    };
    let allow =
        config.allow.iter().enumerate().map(|(i, t)| rule(t, key(&format!("allow[{i}]")))).collect::<Result<_, _>>()?;
    let mut credentials = Vec::new();
    for (i, c) in config.credentials.iter().enumerate() {
        let at = key(&format!("credentials[{i}]"));
        let header = c.header.as_deref().unwrap_or("Authorization");
        let header = http::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| InstallError::Source(format!("{at}.header: {header:?} is not a header name")))?;
        let env = |name: &str, field: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| InstallError::Source(format!("{at}.{field}: environment variable {name} is not set")))
        };
        let value = match (&c.value_env, &c.oauth) {
            (Some(name), None) => {
                let value = env(name, "valueEnv")?;
                CredentialValue::Static {
                    value: Secret::new(format!("{}{value}", c.prefix)),
                    secret: Secret::new(value),
                }
            }
            (None, Some(o)) => {
                if c.header.is_some() || !c.prefix.is_empty() {
                    return Err(InstallError::Source(format!(
                        "{at}: an oauth credential is sent as `Authorization: Bearer …`; remove header and prefix"
                    )));
                }
                let id = env(&o.client_id_env, "oauth.clientIdEnv")?;
                let secret = env(&o.client_secret_env, "oauth.clientSecretEnv")?;
                let source = TokenSource::new(
                    format!("{at}.oauth"),
                    &o.token_url,
                    Secret::new(id),
                    Secret::new(secret),
                    o.scope.clone(),
                    o.resource.clone(),
                )
                .map_err(|e| InstallError::Source(format!("{at}.oauth.tokenUrl: {e}")))?;
                CredentialValue::OAuth(Arc::new(source))
            }
            _ => return Err(InstallError::Source(format!("{at}: set exactly one of valueEnv and oauth"))),
        };
        credentials.push(Credential { rule: rule(&c.matches, format!("{at}.match"))?, header, value });
    }
    let d = HttpLimits::default();
    let limits = config.limits.or(limits);
    let limits = HttpLimits {
        max_requests: limits.max_requests_per_run.unwrap_or(d.max_requests),
        max_response_bytes: limits.max_response_bytes.unwrap_or(d.max_response_bytes),
        timeout: limits.timeout_ms.map_or(d.timeout, std::time::Duration::from_millis),
    };
    Ok(HttpPolicy { allow, credentials, limits, propagate_trace: config.propagate_trace })
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

/// An entry's settings, with its provider looked up in `providers` (the gateway's, or the replay CLI's own).
pub fn entry_settings(
    id: &str,
    entry: &AgentEntry,
    providers: &crate::providers::Providers,
    default_limits: &LimitsConfig,
) -> Result<AgentSettings, InstallError> {
    let llm = match (&entry.provider, &entry.model) {
        (Some(name), Some(model)) => {
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
    let limits = entry.limits.or(default_limits);
    let http = entry.http.as_ref().map(|h| http_policy(id, h, &limits.http)).transpose()?;
    Ok(AgentSettings { config: entry.config.clone(), limits: run_limits(&limits), llm, http })
}
