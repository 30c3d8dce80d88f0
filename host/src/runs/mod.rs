//! The one run path every door uses: resolve the agent, start the run, stream
//! its events, report how it ended. Nothing here knows about OpenAI JSON.

mod batches;
mod board;
mod budget;
mod handle;
mod install;
mod job;
mod ledger;
mod record;
pub mod replay;
mod rollout;
mod settle;
mod watch;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::chat::{AgentId, Message, Role, RunRequest, ToolSpec};
use crate::config::Config;
use crate::providers::Providers;
use crate::registry::RegistryStore;
use crate::runtime::{AgentRegistry, AgentVersion, Delivery, EngineLimits, RunError, RunEvents, Runtime};
use crate::sessions::{RunMark, SessionKey, SessionStore, StoreError};
use crate::telemetry;
use job::Job;
use settle::{BudgetCheck, Outcome, Settle};

pub use board::{Claim, Finished, IdempotencyScope, ParamsDigest, Reservation, RunBoard, RunEnd, RunResult, Tracking};
pub use handle::RunHandle;
pub use install::{AgentsChanged, InstallError, agent_id_of, component_digest, entry_settings, run_limits};
pub use rollout::{Candidate, InvalidRollout, RolloutRequest, RolloutSpec};
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
    /// The request's `idempotencyKey`, kept with the turn's messages (`sessions::RunMark`).
    pub idempotency_key: Option<String>,
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
            idempotency_key: None,
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
    /// Where finished runs' usage goes.
    ledger: ledger::LedgerWriter,
    recordings: record::RecordingWriter,
    /// The tokens' budgets and how runs reserve on them.
    budgets: Arc<budget::Budgets>,
    /// Canary rollouts as they serve here.
    rollouts: crate::rollout::Rollouts,
    /// Rollbacks runs decide, acted on by `rollout::watch_trips`.
    trips: mpsc::UnboundedSender<crate::rollout::Trip>,
    trips_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<crate::rollout::Trip>>>,
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
        // Unbounded, yet at most one trip per rollout is ever sent.
        let (trips, trips_rx) = mpsc::unbounded_channel();
        let agents = Self {
            runtime,
            registry: AgentRegistry::default(),
            default_agent,
            sessions: sessions.clone(),
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
            ledger: ledger::LedgerWriter::spawn(sessions.clone()),
            recordings: record::RecordingWriter::spawn(sessions.clone()),
            budgets: Arc::new(budget::Budgets::from_config(config)),
            rollouts: Default::default(),
            trips,
            trips_rx: std::sync::Mutex::new(Some(trips_rx)),
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

    /// Canary rollouts as they serve on this instance.
    pub fn rollouts(&self) -> &crate::rollout::Rollouts {
        &self.rollouts
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

    /// The usage ledger summed by `group_by` over `[from_ms, to_ms)`, as
    /// much of it as `caller` may read (`sessions::access::usage_owner`).
    pub async fn usage(
        &self,
        caller: &Principal,
        group_by: crate::usage::GroupBy,
        from_ms: i64,
        to_ms: i64,
        agent: Option<String>,
    ) -> Result<Vec<crate::usage::UsageTotals>, StoreError> {
        let principal = crate::sessions::access::usage_owner(caller);
        let query = crate::usage::UsageQuery { group_by, from_ms, to_ms, principal, agent };
        self.sessions.usage_totals(query).await
    }

    /// The budgets `caller` may see, with what their windows spent and hold.
    pub async fn budgets(&self, caller: &Principal) -> Result<Vec<serde_json::Value>, StoreError> {
        self.budgets.report(self.sessions.as_ref(), caller, &self.entries.load()).await
    }

    /// Write the usage rows and recordings of finished runs still waiting in
    /// their writers' queues (graceful shutdown: nothing queued is lost).
    pub async fn flush_writes(&self) {
        // Bounded: a store that stopped answering must not hold the process.
        let flushed = futures::future::join(self.ledger.flush(), self.recordings.flush());
        if tokio::time::timeout(std::time::Duration::from_secs(10), flushed).await.is_err() {
            tracing::warn!("usage rows and run recordings still unwritten after 10 s at shutdown; stopping anyway");
        }
    }

    /// Runs that doors track for waits, aborts and retries.
    pub fn board(&self) -> &RunBoard {
        &self.board
    }

    /// Start a run. Fails at once for an unknown agent; everything else is
    /// reported through the handle.
    pub fn start(&self, input: RunInput) -> Result<RunHandle, RunError> {
        let stable = Some(&input.agent)
            .filter(|id| input.caller.may_use(id))
            .and_then(|id| self.registry.get(id))
            .ok_or_else(|| RunError::UnknownAgent(input.agent.to_string()))?;
        // Time-ordered, so the stores' indexes on run ids (recordings, usage) grow at one end
        // instead of touching a random page per row (BENCHMARKS.md, "Recording").
        let run_id = uuid::Uuid::now_v7().to_string();
        // The one place a run meets a rollout's candidate instead of the current version.
        let crate::rollout::Routed { version: agent, tally } = self.rollouts.route(stable, &input.session.key, &run_id);
        if let Some(model) = &input.model {
            agent.check_run_model(model).map_err(RunError::InvalidRequest)?;
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
        // Begun here, synchronously, so runs on one key keep their arrival order.
        let begin = input
            .session
            .persistent
            .then(|| self.sessions.begin_turn(&input.session.key, input.agent.as_str(), input.caller.name()));
        let turn = new_turn(&input.messages);
        let input_params = input.params.clone();
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
        let meter = crate::usage::Meter::new(input.caller.name());
        let entries = self.entries.load();
        let shadow = tally.as_ref().and_then(crate::rollout::Tally::shadow);
        let persistent = input.session.persistent;
        let taping = record::start(entries.get(agent.id.as_str()), &agent, &input.caller, &request, persistent, shadow);
        let route = agent.settings().llm.as_ref();
        let price = route.and_then(|r| r.provider.price(request.model.as_deref().unwrap_or(&r.model)));
        let budget = BudgetCheck {
            budgets: self.budgets.clone(),
            agent_budget: entries.get(agent.id.as_str()).and_then(|e| e.budget),
            estimate: self.budgets.estimate(&input_params, price),
            holds: Default::default(),
        };
        let settle = Settle {
            ledger: self.ledger.clone(),
            store: self.sessions.clone(),
            meter: meter.clone(),
            holds: budget.holds.clone(),
            run_id: run_id.clone(),
            agent: agent.id.clone(),
        };
        let job = Job {
            mark: RunMark { run_id: run_id.clone(), idempotency_key: input.idempotency_key },
            agent: agent.clone(),
            caller: input.caller,
            begin,
            turn,
            meter,
            budget,
            store: self.sessions.clone(),
            tape: taping.as_ref().map(|t| t.tape.clone()).unwrap_or_default(),
        };
        let recordings = self.recordings.clone();
        // Resolved once: the run records its first event and its end without a lookup.
        let agent_meter = self.metrics.agent(agent.id.as_str());
        // The door says how it takes the events (`RunHandle::collect` wants them whole).
        let delivery = Delivery::default();
        let first = crate::metrics::FirstEvent::new(agent_meter.clone(), std::time::Instant::now());
        let events_tx = RunEvents { tx: events_tx, delivery: delivery.clone(), first: Some(first) };
        let (log_run_id, log_agent, outcome_meter) = (run_id.clone(), agent.id.clone(), agent_meter.clone());
        let (version, trips) = (agent.digest.clone(), self.trips.clone());
        // The trace's `invoke_agent` span (none while tracing is off), a child of the door's.
        let trace = telemetry::invoke_agent(agent.id.as_str(), &agent.digest, &input.session.key, &run_id);
        // The run logs under the caller's span (e.g. the HTTP request id).
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _slots = (global_slot, agent_slot);
                let started = std::time::Instant::now();
                let mut outcome = Outcome { meter: outcome_meter, started, recorded: false };
                // Boxed: the run's future is kilobytes (a store's calls, the guest's), and the
                // task's future is moved whole when spawned, polled to its end and read.
                let work = Box::pin(job.run(request, events_tx));
                let result = telemetry::in_run(trace.clone(), work).await;
                if let Err(e) = &result {
                    telemetry::failed(&trace, e.kind());
                }
                settle.finish().await;
                if let Some(taping) = taping {
                    // Kept off the response path: the client does not wait for the write.
                    taping.finish(&recordings, result.as_ref().err());
                }
                outcome.record(result.as_ref().err().map(RunError::kind));
                if let Some(trip) = tally.and_then(|t| t.record(started.elapsed(), result.as_ref().map(|_| ()))) {
                    let _ = trips.send(trip);
                }
                let (run_id, agent, ms) = (log_run_id, log_agent, started.elapsed().as_secs_f64() * 1000.0);
                let version = &version[..12];
                match &result {
                    Ok(()) => tracing::debug!(run_id, %agent, version, ms, "run finished"),
                    Err(RunError::Cancelled) => tracing::info!(run_id, %agent, version, ms, "run cancelled"),
                    Err(e) => tracing::warn!(run_id, %agent, version, ms, error = %e, "run failed"),
                }
                result
            },
            tracing::Span::current(),
        ));
        Ok(RunHandle { run_id, session: input.session, agent, events, delivery, task: Some(task) })
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
    [
        "installed",
        "rolled-back",
        "removed",
        "rollout-started",
        "rollout-promoted",
        "rollout-rolled-back",
        "rollout-ended",
    ]
    .into_iter()
    .find(|a| *a == action)
}

/// The messages a client adds in this turn: everything after the last
/// assistant message, minus system prompts (clients resend those every time).
fn new_turn(messages: &[Message]) -> Vec<Message> {
    let start = messages.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    messages[start..].iter().filter(|m| m.role != Role::System).cloned().collect()
}
