//! One loaded version of an agent, and how it runs a turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::AgentId;
use super::bindings::{Agent, AgentInfo, AgentPre, Event, RunRequest};
use super::cache::CompileCache;
use super::error::RunError;
use super::reply::Reply;
use super::state::{OutputStop, RunState};
use crate::providers::ModelRoute;
use crate::sessions::{SessionData, StateChanges};

/// Per-run resource limits for an agent.
#[derive(Debug, Clone)]
pub struct RunLimits {
    pub memory_bytes: usize,
    pub time_budget: Duration,
    pub output_bytes: usize,
    /// Runs of this version in flight at once.
    pub max_concurrent: Option<usize>,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            time_budget: Duration::from_secs(120),
            output_bytes: 16 << 20,
            max_concurrent: None,
        }
    }
}

impl RunLimits {
    /// Built-in defaults overridden by whatever the config sets.
    pub fn from_config(limits: &crate::config::LimitsConfig) -> Self {
        let d = Self::default();
        Self {
            memory_bytes: limits.memory_bytes.unwrap_or(d.memory_bytes),
            time_budget: limits.timeout_ms.map_or(d.time_budget, Duration::from_millis),
            output_bytes: limits.max_output_bytes.unwrap_or(d.output_bytes),
            max_concurrent: limits.max_concurrent_runs,
        }
    }
}

/// What an operator set for an agent; carried over when its component is replaced.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    /// What the agent reads through `config.get`.
    pub config: BTreeMap<String, String>,
    pub limits: RunLimits,
    /// Where its `llm` calls go.
    pub llm: Option<ModelRoute>,
}

/// What a successful run produced, for the transcript.
#[derive(Debug)]
pub struct RunOutcome {
    pub reply: Reply,
    pub state_changes: StateChanges,
}

/// Budget for `info()` at load time: it must not do real work.
const INFO_BUDGET: Duration = Duration::from_secs(5);

/// An agent component compiled, link-checked and ready to instantiate.
pub struct AgentVersion {
    pub id: AgentId,
    /// sha256 of the component bytes, hex.
    pub digest: String,
    pub info: AgentInfo,
    /// Where it came from (`shipped:echo`, a file path, …).
    pub source: String,
    pub loaded_at: SystemTime,
    pre: AgentPre<RunState>,
    config: Arc<BTreeMap<String, String>>,
    limits: RunLimits,
    llm: Option<ModelRoute>,
    in_flight: std::sync::atomic::AtomicUsize,
    /// Present when `max_concurrent` is set.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// True when the compiled code came from the on-disk cache.
    pub from_cache: bool,
}

/// The agent already runs `limits.maxConcurrentRuns` runs.
#[derive(Debug)]
pub struct AtLimit;

/// Counts a run for as long as it lives, even if its future is dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Why a component could not become an agent version.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid component: {0}")]
    Compile(String),
    #[error("component does not fit the wasmclaw:agent world: {0}")]
    Link(String),
    #[error("component's info() failed: {0}")]
    Info(String),
}

impl AgentVersion {
    /// Compile, link-check and call `info()`. CPU-heavy compilation runs on a blocking thread.
    pub(super) async fn load(
        engine: &Engine,
        linker: &Linker<RunState>,
        cache: Option<Arc<CompileCache>>,
        id: AgentId,
        source: String,
        bytes: Arc<[u8]>,
        settings: AgentSettings,
    ) -> Result<Self, LoadError> {
        let AgentSettings { config, limits, llm } = settings;
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let (component, from_cache) = {
            let (engine, bytes, digest) = (engine.clone(), bytes.clone(), digest.clone());
            tokio::task::spawn_blocking(move || match cache {
                Some(cache) => cache.load_or_compile(&engine, &digest, &bytes),
                None => Component::new(&engine, &bytes).map(|c| (c, false)),
            })
            .await
            .map_err(|e| LoadError::Compile(e.to_string()))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?
        };
        let pre = linker.instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = AgentPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let config = Arc::new(config);
        let slots = limits.max_concurrent.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        let mut version = Self {
            id,
            digest,
            info: AgentInfo { name: String::new(), version: String::new(), description: String::new() },
            source,
            loaded_at: SystemTime::now(),
            pre,
            config,
            limits,
            llm,
            in_flight: Default::default(),
            slots,
            from_cache,
        };
        version.info = version.call_info().await.map_err(|e| LoadError::Info(e.to_string()))?;
        Ok(version)
    }

    /// A place for one more run, or `None` when the agent is at its limit.
    pub fn try_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, AtLimit> {
        match &self.slots {
            None => Ok(None),
            Some(s) => s.clone().try_acquire_owned().map(Some).map_err(|_| AtLimit),
        }
    }

    /// Runs on this version right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The settings this version reads through `config.get`.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    /// The limits each run of this version gets.
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// Everything the operator set, to carry over to a replacement.
    pub fn settings(&self) -> AgentSettings {
        AgentSettings { config: (*self.config).clone(), limits: self.limits.clone(), llm: self.llm.clone() }
    }

    /// Where this agent's `llm` calls go.
    pub fn model_route(&self) -> Option<&ModelRoute> {
        self.llm.as_ref()
    }

    async fn call_info(&self) -> Result<AgentInfo, RunError> {
        let mut store = self.store(None, None);
        let call = async {
            let agent = self.pre.instantiate_async(&mut store).await?;
            agent.call_info(&mut store).await
        };
        match tokio::time::timeout(INFO_BUDGET, call).await {
            Err(_) => Err(RunError::Timeout(INFO_BUDGET)),
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(RunError::from_wasmtime(e, self.exceeded(&store))),
        }
    }

    /// Run one turn in a fresh store, streaming events into `events`.
    /// `session: None` is a throw-away session: empty history, and the
    /// outcome's reply stays empty because nothing will be stored.
    ///
    /// Dropping the returned future cancels the run and frees the instance.
    pub async fn run(
        &self,
        req: &RunRequest,
        events: mpsc::Sender<Event>,
        session: Option<SessionData>,
    ) -> Result<RunOutcome, RunError> {
        let _counted = InFlight::enter(&self.in_flight);
        let mut store = self.store(Some(events), session);
        let call = async {
            let agent: Agent = self.pre.instantiate_async(&mut store).await?;
            agent.call_run(&mut store, req).await
        };
        let outcome = tokio::time::timeout(self.limits.time_budget, call).await;
        let stop = store.data().output_stop;
        match outcome {
            Err(_) => Err(RunError::Timeout(self.limits.time_budget)),
            // The output side decided first: whatever the guest returned after
            // being told to stop is noise.
            Ok(_) if stop == Some(OutputStop::Closed) => Err(RunError::Cancelled),
            Ok(_) if stop == Some(OutputStop::Limit) => Err(RunError::OutputLimit),
            Ok(Ok(Ok(()))) => {
                let state = store.into_data();
                Ok(RunOutcome { reply: state.reply.unwrap_or_default(), state_changes: state.changes })
            }
            // Gave up after a model call failed: the client hears why (429, 502, 504).
            Ok(Ok(Err(agent_error))) => match store.data_mut().llm_failure.take() {
                Some(upstream) => Err(RunError::Upstream(upstream)),
                None => Err(agent_error.into()),
            },
            Ok(Err(e)) => Err(RunError::from_wasmtime(e, self.exceeded(&store))),
        }
    }

    fn store(&self, events: Option<mpsc::Sender<Event>>, session: Option<SessionData>) -> Store<RunState> {
        let state = RunState::new(
            self.id.as_str(),
            self.config.clone(),
            events,
            self.limits.memory_bytes,
            self.limits.output_bytes,
            session,
            self.llm.clone(),
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        // Yield to the executor on every epoch tick: a guest spinning on the
        // CPU cannot starve other tasks, and the time budget can fire.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store
    }

    fn exceeded(&self, store: &Store<RunState>) -> Option<usize> {
        store.data().memory.exceeded.then_some(self.limits.memory_bytes)
    }
}
