//! The one run path every door uses: resolve the agent, start the run, stream
//! its events, report how it ended. Nothing here knows about OpenAI JSON.

mod reply;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::runtime::{
    AgentId, AgentRegistry, AgentVersion, EngineLimits, Event, Message, RunError, RunLimits, RunRequest, Runtime,
    ToolSpec, shipped,
};
use crate::sessions::SessionKey;

pub use reply::{Reply, finish_reason, finish_reason_name};

/// Events buffered between a run and its consumer; beyond this the guest waits.
const EVENT_BUFFER: usize = 32;

/// What a door hands to [`Agents::start`].
#[derive(Debug, Clone)]
pub struct RunInput {
    pub agent: AgentId,
    pub session: SessionKey,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub user: Option<String>,
    /// Remaining model parameters as a JSON object.
    pub params: serde_json::Value,
}

/// The agents this process serves, and how to run them.
pub struct Agents {
    runtime: Runtime,
    registry: AgentRegistry,
    default_agent: AgentId,
}

impl Agents {
    /// Build the engine and load every configured agent; any failure stops start-up.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let runtime = Runtime::new(&EngineLimits::default())?;
        let registry = AgentRegistry::default();
        for (id, entry) in config.agent_entries() {
            let agent_id = AgentId::parse(&id).context("agent id validated by config")?;
            let (source, bytes): (String, Arc<[u8]>) = match shipped::component(&entry.plugin) {
                Some(bytes) => (format!("shipped:{}", entry.plugin), bytes.into()),
                None => {
                    let path = config.resolve_path(&entry.plugin);
                    let bytes = std::fs::read(&path).with_context(|| {
                        format!(
                            "agents.entries.{id}.plugin: {:?} is neither a shipped plugin ({}) nor a readable file ({})",
                            entry.plugin,
                            shipped::NAMES.join(", "),
                            path.display()
                        )
                    })?;
                    (path.display().to_string(), bytes.into())
                }
            };
            let started = std::time::Instant::now();
            let version = runtime
                .load(agent_id.clone(), source.clone(), bytes, entry.config.clone(), RunLimits::default())
                .await
                .with_context(|| format!("agents.entries.{id}: cannot load {source}"))?;
            tracing::info!(
                agent = %agent_id, source, digest = &version.digest[..12], plugin = %version.info.name,
                version = %version.info.version, ms = started.elapsed().as_millis() as u64, "agent loaded"
            );
            registry.install(Arc::new(version));
        }
        let default_agent = AgentId::parse(&config.agents.default).context("default agent validated by config")?;
        Ok(Self { runtime, registry, default_agent })
    }

    /// The agent used when a request names none.
    pub fn default_agent(&self) -> &AgentId {
        &self.default_agent
    }

    /// The live registry.
    pub fn registry(&self) -> &AgentRegistry {
        &self.registry
    }

    /// The engine agents run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Start a run. Fails at once for an unknown agent; everything else is
    /// reported through the handle.
    pub fn start(&self, input: RunInput) -> Result<RunHandle, RunError> {
        let agent = self.registry.get(&input.agent).ok_or_else(|| RunError::UnknownAgent(input.agent.to_string()))?;
        let run_id = uuid::Uuid::new_v4().to_string();
        let request = RunRequest {
            run_id: run_id.clone(),
            agent_id: input.agent.to_string(),
            session_key: input.session.key.clone(),
            messages: input.messages,
            tools: input.tools,
            user: input.user,
            params: input.params.to_string(),
        };
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let task = tokio::spawn({
            let agent = agent.clone();
            let run_id = run_id.clone();
            async move {
                let started = std::time::Instant::now();
                let result = agent.run(&request, events_tx).await;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                match &result {
                    Ok(()) => tracing::debug!(run_id, agent = %agent.id, ms, "run finished"),
                    Err(RunError::Cancelled) => {
                        tracing::info!(run_id, agent = %agent.id, ms, "run cancelled")
                    }
                    Err(e) => {
                        tracing::warn!(run_id, agent = %agent.id, ms, error = %e, "run failed")
                    }
                }
                result
            }
        });
        Ok(RunHandle { run_id, session: input.session, agent, events, task: Some(task) })
    }
}

/// A run in flight. Dropping it cancels the run.
pub struct RunHandle {
    pub run_id: String,
    pub session: SessionKey,
    /// The version this run is pinned to, whatever is swapped in meanwhile.
    pub agent: Arc<AgentVersion>,
    events: mpsc::Receiver<Event>,
    task: Option<JoinHandle<Result<(), RunError>>>,
}

impl RunHandle {
    /// The next event, or `None` once the agent has returned.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// How the run ended. Call after [`next`](Self::next) returned `None`.
    pub async fn finish(mut self) -> Result<(), RunError> {
        let task = self.task.take().expect("finish called once");
        match task.await {
            Ok(result) => result,
            Err(e) => Err(RunError::Internal(format!("run task failed: {e}"))),
        }
    }

    /// Drain the run into a complete reply.
    pub async fn collect(mut self) -> Result<Reply, RunError> {
        let mut reply = Reply::default();
        while let Some(event) = self.next().await {
            reply.push(&event);
        }
        self.finish().await.map(|()| reply)
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        // Abort rather than wait for the guest's next emit: it may be blocked
        // in a host call; dropping its Store frees the instance either way.
        if let Some(task) = self.task.take().filter(|t| !t.is_finished()) {
            task.abort();
            tracing::info!(run_id = self.run_id, agent = %self.agent.id, "run cancelled: its consumer went away");
        }
    }
}
