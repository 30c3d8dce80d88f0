//! The one run path every door uses: resolve the agent, start the run, stream
//! its events, report how it ended. Nothing here knows about OpenAI JSON.

mod board;
mod install;
mod watch;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::Principal;
use crate::chat::{AgentId, Event, Message, Reply, Role, RunRequest, ToolSpec};
use crate::config::Config;
use crate::providers::Providers;
use crate::registry::RegistryStore;
use crate::runtime::{AgentRegistry, AgentVersion, EngineLimits, RunError, Runtime};
use crate::sessions::{Access, SessionKey, SessionStore, StoreError, StoreFuture, Turn, access};
use crate::telemetry;

pub use board::{Claim, Finished, IdempotencyScope, ParamsDigest, Reservation, RunBoard, RunEnd, RunResult, Tracking};
pub use install::{AgentsChanged, InstallError, agent_id_of, component_digest, run_limits};
pub use watch::{Watcher, follow_registry, watch_agents_dir, watch_config};

/// Events buffered between a run and its consumer; beyond this the guest waits.
const EVENT_BUFFER: usize = 32;

/// What a door hands to [`Agents::start`].
#[derive(Debug, Clone)]
pub struct RunInput {
    /// Who asks: an agent it may not use behaves as unknown.
    pub caller: Principal,
    pub agent: AgentId,
    pub session: SessionKey,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub user: Option<String>,
    /// Remaining model parameters as a JSON object.
    pub params: serde_json::Value,
    /// A per-run model (`x-openclaw-model`), for agents whose entry sets `allowModelOverride`.
    pub model: Option<String>,
}

impl RunInput {
    /// One plain user message, as the CLI and the WebSocket methods send.
    pub fn user_message(caller: Principal, agent: AgentId, session: SessionKey, text: String) -> Self {
        let message = Message::text(Role::User, text);
        Self {
            caller,
            agent,
            session,
            messages: vec![message],
            tools: vec![],
            user: None,
            params: serde_json::json!({}),
            model: None,
        }
    }
}

/// The agents this process serves, and how to run them.
pub struct Agents {
    runtime: Runtime,
    registry: AgentRegistry,
    default_agent: AgentId,
    sessions: Arc<dyn SessionStore>,
    /// The cluster's shared database, when `database.url` is set.
    database: Option<Arc<crate::db::Postgres>>,
    board: RunBoard,
    max_component_bytes: usize,
    changes: tokio::sync::broadcast::Sender<AgentsChanged>,
    default_limits: crate::config::LimitsConfig,
    /// One permit per run in flight, across agents.
    run_slots: Arc<tokio::sync::Semaphore>,
    max_runs: usize,
    metrics: Arc<crate::metrics::Metrics>,
    /// Replaced as a whole when the config file changes.
    providers: arc_swap::ArcSwap<Providers>,
    /// `agents.entries` as last applied: each id's settings come from here.
    entries: arc_swap::ArcSwap<std::collections::BTreeMap<String, crate::config::AgentEntry>>,
    /// The durable registry the live one is rebuilt from.
    store: Arc<dyn RegistryStore>,
}

impl Agents {
    /// Build the engine, open the session store and load every configured agent;
    /// any failure stops start-up.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let database = match config.database_url() {
            Some(url) => Some(
                crate::db::Postgres::connect(&url, config.database.max_connections).await.context("database.url")?,
            ),
            None => None,
        };
        let sessions = crate::sessions::open(config, database.clone()).await?;
        let store = crate::registry::open(config, database.as_ref())?;
        let providers = Providers::from_config(config)?;
        let max_runs = config.agents.max_concurrent_runs;
        // Instances beyond the run cap serve loads and info() calls.
        let engine = EngineLimits { max_instances: (max_runs + 32) as u32, ..EngineLimits::default() };
        let metrics: Arc<crate::metrics::Metrics> = Default::default();
        let runtime = Runtime::new(&engine, Some(config.state_dir().join("cache")))?.with_metrics(metrics.clone());
        let default_agent = AgentId::parse(&config.agents.default).context("default agent validated by config")?;
        let agents = Self {
            runtime,
            registry: AgentRegistry::default(),
            default_agent,
            sessions,
            board: RunBoard::new(
                board::ResultLimits {
                    total: config.gateway.ws.max_result_bytes,
                    per_principal: config.gateway.ws.max_result_bytes_per_principal,
                },
                metrics.clone(),
            ),
            max_component_bytes: config.agents.max_component_bytes,
            changes: tokio::sync::broadcast::channel(64).0,
            default_limits: config.agents.limits.clone(),
            run_slots: Arc::new(tokio::sync::Semaphore::new(max_runs)),
            max_runs,
            metrics,
            providers: arc_swap::ArcSwap::from_pointee(providers),
            entries: arc_swap::ArcSwap::from_pointee(config.agent_entries()),
            store,
            database,
        };
        // What served before the restart serves again; then config entries
        // that changed since they last installed take over their ids.
        let records = agents.store.records().await.context("cannot read the agent registry")?;
        for record in &records {
            if let Some(v) = agents.show(record, None, "installed").await {
                tracing::info!(
                    agent = %v.id, source = %v.source, digest = &v.digest[..12], cached = v.from_cache,
                    revision = record.revision, "agent restored"
                );
            }
        }
        if let Some((id, e)) = watch::apply_entries(&agents, config, false).await.into_iter().next() {
            return Err(anyhow::Error::new(e).context(format!("agents.entries.{id}: cannot load")));
        }
        Ok(agents)
    }

    /// Use `entries` for agents' settings from now on.
    fn set_entries(&self, entries: std::collections::BTreeMap<String, crate::config::AgentEntry>) {
        self.entries.store(Arc::new(entries));
    }

    /// Apply a change another instance made, unless it is already shown.
    async fn follow(&self, change: crate::registry::Change) {
        use crate::registry::Change;
        let (records, action) = match change {
            Change::Agent { id, revision, action } => {
                let seen = AgentId::parse(&id).and_then(|id| self.registry.revision(&id));
                if seen.is_some_and(|r| r >= revision) {
                    return;
                }
                (self.store.record(&id).await.map(|r| r.into_iter().collect::<Vec<_>>()), action_name(&action))
            }
            Change::Resync => (self.store.records().await, None),
        };
        let records = match records {
            Ok(records) => records,
            Err(e) => return tracing::warn!(error = %e, "cannot read another instance's agent change"),
        };
        for record in records {
            let fallback = if record.current.is_some() { "installed" } else { "removed" };
            if let Some(shown) =
                self.show(&record, None, action.unwrap_or(fallback)).await.filter(|_| record.current.is_some())
            {
                tracing::info!(agent = %shown.id, digest = &shown.digest[..12], revision = record.revision, "agent changed on another instance");
            }
        }
    }

    /// The agent used when a request names none.
    pub fn default_agent(&self) -> &AgentId {
        &self.default_agent
    }

    /// The live registry.
    pub fn registry(&self) -> &AgentRegistry {
        &self.registry
    }

    /// The agents `caller` may see and use, sorted by id.
    pub fn visible(&self, caller: &Principal) -> Vec<Arc<AgentVersion>> {
        self.registry.list().into_iter().filter(|v| caller.may_use(&v.id)).collect()
    }

    /// The engine agents run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Point-in-time values for the metrics endpoint.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        crate::metrics::Gauges {
            active_runs: self.max_runs - self.run_slots.available_permits(),
            max_runs: self.max_runs,
            pool_instances: self.runtime.pool_instances(),
        }
    }

    /// Use the providers of a changed config for agents installed from now on.
    pub fn replace_providers(&self, providers: Providers) {
        self.providers.store(Arc::new(providers));
    }

    /// The transcript store.
    pub fn sessions(&self) -> &dyn SessionStore {
        self.sessions.as_ref()
    }

    /// The cluster's shared database (readiness, shared stores); `None` on SQLite.
    pub fn database(&self) -> Option<&Arc<crate::db::Postgres>> {
        self.database.as_ref()
    }

    /// Runs that doors track for waits, aborts and retries.
    pub fn board(&self) -> &RunBoard {
        &self.board
    }

    /// Start a run. Fails at once for an unknown agent; everything else is
    /// reported through the handle.
    pub fn start(&self, input: RunInput) -> Result<RunHandle, RunError> {
        let agent = Some(&input.agent)
            .filter(|id| input.caller.may_use(id))
            .and_then(|id| self.registry.get(id))
            .ok_or_else(|| RunError::UnknownAgent(input.agent.to_string()))?;
        if input.model.is_some() {
            let id = &agent.id;
            match &agent.settings().llm {
                Some(route) if route.allow_override => {}
                Some(_) => {
                    return Err(RunError::InvalidRequest(format!(
                        "agent {id:?} may not run on a model chosen per request \
                         (agents.entries.{id}.allowModelOverride is off)"
                    )));
                }
                None => {
                    return Err(RunError::InvalidRequest(format!(
                        "agent {id:?} has no model provider, so no model can be chosen for it"
                    )));
                }
            }
        }
        // Refuse at once rather than queue without bound: 503 + Retry-After.
        let Ok(global_slot) = self.run_slots.clone().try_acquire_owned() else {
            tracing::warn!(agent = %agent.id, limit = self.max_runs, "run refused: gateway at agents.maxConcurrentRuns");
            return Err(RunError::NoCapacity);
        };
        let Ok(agent_slot) = agent.try_slot() else {
            tracing::warn!(agent = %agent.id, limit = agent.limits().max_concurrent, "run refused: agent at limits.maxConcurrentRuns");
            return Err(RunError::NoCapacity);
        };
        let run_id = uuid::Uuid::new_v4().to_string();
        // Begun here, synchronously, so runs on one key keep their arrival order.
        let begin = input
            .session
            .persistent
            .then(|| self.sessions.begin_turn(&input.session.key, input.agent.as_str(), input.caller.name()));
        let turn = new_turn(&input.messages);
        let request = RunRequest {
            run_id: run_id.clone(),
            agent_id: input.agent.to_string(),
            session_key: input.session.key.clone(),
            messages: input.messages,
            tools: input.tools,
            user: input.user,
            params: input.params.to_string(),
            model: input.model,
        };
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let job = Job { agent: agent.clone(), caller: input.caller, begin, turn };
        let (log_run_id, log_agent, metrics) = (run_id.clone(), agent.id.clone(), self.metrics.clone());
        // The trace's `invoke_agent` span (none while tracing is off), a child of the door's.
        let trace = telemetry::invoke_agent(agent.id.as_str(), &agent.digest, &input.session.key, &run_id);
        // The run logs under the caller's span (e.g. the HTTP request id).
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _slots = (global_slot, agent_slot);
                let started = std::time::Instant::now();
                let mut outcome = Outcome { metrics, agent: log_agent.clone(), started, recorded: false };
                let result = telemetry::in_run(trace.clone(), job.run(request, events_tx)).await;
                if let Err(e) = &result {
                    telemetry::failed(&trace, e.kind());
                }
                outcome.record(result.as_ref().err().map(RunError::kind));
                let (run_id, agent, ms) = (log_run_id, log_agent, started.elapsed().as_secs_f64() * 1000.0);
                match &result {
                    Ok(()) => tracing::debug!(run_id, %agent, ms, "run finished"),
                    Err(RunError::Cancelled) => tracing::info!(run_id, %agent, ms, "run cancelled"),
                    Err(e) => tracing::warn!(run_id, %agent, ms, error = %e, "run failed"),
                }
                result
            },
            tracing::Span::current(),
        ));
        Ok(RunHandle {
            run_id,
            session: input.session,
            agent,
            events,
            task: Some(task),
            started: std::time::Instant::now(),
            metrics: Some(self.metrics.clone()),
        })
    }
}

/// Records how a run ended in the metrics, including runs whose task was
/// aborted because their client went away (those never reach the end).
struct Outcome {
    metrics: Arc<crate::metrics::Metrics>,
    agent: AgentId,
    started: std::time::Instant,
    recorded: bool,
}

impl Outcome {
    fn record(&mut self, failure: Option<&'static str>) {
        self.recorded = true;
        self.metrics.run_finished(self.agent.as_str(), self.started.elapsed(), failure);
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(Some(RunError::Cancelled.kind()));
        }
    }
}

/// One run's work inside its task.
struct Job {
    agent: Arc<AgentVersion>,
    /// Who asked: the session must be one they may run in.
    caller: Principal,
    /// Present for persistent sessions: the turn, its lane place already taken.
    begin: Option<StoreFuture<Turn>>,
    /// The client's new messages, appended with the reply on success.
    turn: Vec<Message>,
}

impl Job {
    async fn run(self, request: RunRequest, events: mpsc::Sender<Event>) -> Result<(), RunError> {
        let Some(begin) = self.begin else {
            // Per-request session: nothing to load, nothing kept.
            return self.agent.run(request, events, None).await.map(drop);
        };
        let mut turn = begin.await?;
        match &turn.existing {
            Some(existing) => {
                // Refused exactly as an unknown session would be read: the
                // caller learns nothing of another principal's session.
                if !access::permits(&self.caller, existing, Access::Run) {
                    return Err(RunError::SessionNotFound(request.session_key));
                }
                if existing.agent != request.agent_id {
                    let owner = existing.agent.clone();
                    return Err(StoreError::WrongAgent { key: request.session_key, owner }.into());
                }
            }
            None => {
                let user = request.user.as_deref();
                if !access::may_create(&self.caller, &self.agent.id, &request.session_key, user) {
                    return Err(RunError::SessionNotFound(request.session_key));
                }
            }
        }
        let session = std::mem::take(&mut turn.session);
        let outcome = self.agent.run(request, events, Some(session)).await?;
        let mut messages = self.turn;
        messages.extend(outcome.reply.to_messages());
        turn.commit(messages, outcome.state_changes).await?;
        Ok(())
    }
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongAgent { .. } => Self::InvalidRequest(e.to_string()),
            StoreError::WrongOwner(key) => Self::SessionNotFound(key),
            StoreError::Unavailable(why) => Self::StoreUnavailable(why),
            e => Self::Internal(e.to_string()),
        }
    }
}

/// The `&'static` name of an action another instance reported.
fn action_name(action: &str) -> Option<&'static str> {
    ["installed", "rolled-back", "removed"].into_iter().find(|a| *a == action)
}

/// The messages a client adds in this turn: everything after the last
/// assistant message, minus system prompts (clients resend those every time).
fn new_turn(messages: &[Message]) -> Vec<Message> {
    let start = messages.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    messages[start..].iter().filter(|m| m.role != Role::System).cloned().collect()
}

/// A run in flight. Dropping it cancels the run.
pub struct RunHandle {
    pub run_id: String,
    pub session: SessionKey,
    /// The version this run is pinned to, whatever is swapped in meanwhile.
    pub agent: Arc<AgentVersion>,
    events: mpsc::Receiver<Event>,
    task: Option<JoinHandle<Result<(), RunError>>>,
    started: std::time::Instant,
    /// Taken when the first event is recorded.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl RunHandle {
    /// The next event, or `None` once the agent has returned.
    pub async fn next(&mut self) -> Option<Event> {
        let event = self.events.recv().await;
        if event.is_some()
            && let Some(metrics) = self.metrics.take()
        {
            metrics.first_event(self.agent.id.as_str(), self.started.elapsed());
        }
        event
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
