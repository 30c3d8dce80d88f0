//! One loaded version of an agent, and how it runs a turn.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use wasmtime::{Store, UpdateDeadline};

use super::budget::Exhausted;
use super::capabilities::outbox::{RunEvents, hand_over_on_wait};
use super::capabilities::{Capabilities, RunContext, RunState};
use super::error::RunError;
use super::wit::AgentPre;
use crate::chat::{AgentId, AgentInfo, Reply, RunRequest};
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

/// What an operator set for an agent; carried over when its component is replaced.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    /// What the agent reads through `config.get`.
    pub config: BTreeMap<String, String>,
    pub limits: RunLimits,
    /// Where its `llm` calls go.
    pub llm: Option<ModelRoute>,
    /// Where its outbound HTTP may go; `None` denies every request.
    pub http: Option<super::capabilities::http::HttpPolicy>,
}

/// Where an agent version came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// A plugin built into the binary, by name.
    Shipped(String),
    /// A file named by `agents.entries.<id>.plugin`.
    Config(PathBuf),
    /// A file in the agents folder.
    Folder(PathBuf),
    /// Uploaded through the admin HTTP API.
    AdminApi,
    /// Uploaded through the WebSocket `agents.install` method.
    WebSocket,
}

impl AgentSource {
    /// True for sources the config file put there (a config edit may remove them).
    pub fn from_config(&self) -> bool {
        matches!(self, Self::Shipped(_) | Self::Config(_))
    }

    /// Inverse of `Display`, for sources read back from the registry.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.split_once(':') {
            Some(("shipped", name)) => Self::Shipped(name.into()),
            Some(("config", path)) => Self::Config(path.into()),
            Some(("dir", path)) => Self::Folder(path.into()),
            _ if text == "admin-api" => Self::AdminApi,
            _ if text == "websocket" => Self::WebSocket,
            _ => return None,
        })
    }
}

impl std::fmt::Display for AgentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shipped(name) => write!(f, "shipped:{name}"),
            Self::Config(path) => write!(f, "config:{}", path.display()),
            Self::Folder(path) => write!(f, "dir:{}", path.display()),
            Self::AdminApi => f.write_str("admin-api"),
            Self::WebSocket => f.write_str("websocket"),
        }
    }
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
    pub source: AgentSource,
    pub loaded_at: SystemTime,
    pre: AgentPre,
    settings: AgentSettings,
    capabilities: Capabilities,
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

/// Why `bytes` cannot be a component, from its first 8 bytes, in one line:
/// wasmtime's parser error chain names offsets and sections, not the
/// mistake (a text file, a core module from the wrong build target).
fn not_a_component(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return Some(
            "not a WebAssembly file (it does not start with \"\\0asm\"); send the .wasm component the build writes",
        );
    }
    if bytes.get(4..8) == Some(CORE_MODULE) {
        return Some(
            "a core WebAssembly module, not a component: build for wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        );
    }
    None
}

impl AgentVersion {
    /// Compile, link-check and call `info()`. CPU-heavy compilation runs on a blocking thread.
    pub(super) async fn load(
        runtime: &super::Runtime,
        id: AgentId,
        source: AgentSource,
        bytes: Arc<[u8]>,
        settings: AgentSettings,
    ) -> Result<Self, LoadError> {
        let (engine, linker, cache, metrics, limits) =
            (&runtime.engine, &runtime.linker, runtime.cache.clone(), &runtime.metrics, runtime.limits.clone());
        if let Some(why) = not_a_component(&bytes) {
            return Err(LoadError::Compile(why.into()));
        }
        // Hashing, like compiling, is CPU work for a blocking thread.
        let (component, from_cache, digest) = {
            let (engine, bytes) = (engine.clone(), bytes.clone());
            tokio::task::spawn_blocking(move || {
                use sha2::Digest;
                let digest = hex::encode(sha2::Sha256::digest(&bytes));
                let compile = |bytes: &[u8]| super::compiler::compile(&engine, &limits, bytes);
                let compiled = match cache {
                    Some(cache) => cache.load_or_compile(&engine, &digest, &bytes, compile),
                    None => compile(&bytes).map(|c| (c, false)),
                };
                compiled.map(|(component, from_cache)| (component, from_cache, digest))
            })
            .await
            .map_err(|e| LoadError::Compile(e.to_string()))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?
        };
        let pre = AgentPre::new(linker, &component)
            .map_err(|e| LoadError::Link(format!("(supported: {}) {e}", super::wit::WORLDS.join(", "))))?;
        let slots = settings.limits.max_concurrent.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        let mut version = Self {
            capabilities: Capabilities::prepare(&id, &settings, metrics, &runtime.memo),
            id,
            digest,
            info: AgentInfo::default(),
            source,
            loaded_at: SystemTime::now(),
            pre,
            settings,
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

    /// The limits each run of this version gets.
    pub fn limits(&self) -> &RunLimits {
        &self.settings.limits
    }

    /// Everything the operator set, to carry over to a replacement.
    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// The contract version the component was built against.
    pub fn world(&self) -> &'static str {
        self.pre.world()
    }

    async fn call_info(&self) -> Result<AgentInfo, RunError> {
        let mut store = self.store(RunContext {
            run_id: String::new(),
            events: None,
            session: None,
            model: None,
            meter: Default::default(),
            tape: Default::default(),
        });
        match tokio::time::timeout(INFO_BUDGET, self.pre.info(&mut store)).await {
            Err(_) => Err(Exhausted::Time(INFO_BUDGET).into()),
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(trap(e, &store)),
        }
    }

    /// Whether a client may run this agent on `model` (`allowModelOverride`);
    /// `Err` says why not and which key to change.
    pub fn check_run_model(&self, model: &str) -> Result<(), String> {
        self.capabilities.llm().check_run_model(model)
    }

    /// Run one turn in a fresh store, streaming events into `events`.
    /// `session: None` is a throw-away session: empty history, and the
    /// outcome's reply stays empty because nothing will be stored. Model
    /// calls are metered into `meter`; a run that made any ends with the
    /// metered usage as its `Usage` event (the guest's own claims are not passed on).
    ///
    /// Dropping the returned future cancels the run and frees the instance.
    pub async fn run(
        &self,
        req: RunRequest,
        events: RunEvents,
        session: Option<SessionData>,
        meter: crate::usage::Meter,
        tape: crate::tape::Tape,
    ) -> Result<RunOutcome, RunError> {
        let _counted = InFlight::enter(&self.in_flight);
        let model = req.model.clone();
        let run =
            RunContext { run_id: req.run_id.clone(), events: Some(events), session, model, meter: meter.clone(), tape };
        let mut store = self.store(run);
        let budget = self.settings.limits.time_budget;
        // The guest's events are handed to the door when it returns, and whenever it waits if the door streams.
        let outbox = store.data().output.outbox().cloned();
        let guest = hand_over_on_wait(outbox, self.pre.run(&mut store, req));
        let Ok(returned) = tokio::time::timeout(budget, guest).await else {
            return Err(Exhausted::Time(budget).into());
        };
        if let Some(exhausted) = store.data().exhausted(false) {
            return Err(exhausted.into());
        }
        match returned {
            Ok(Ok(())) => {
                let state = store.data_mut();
                let usage = meter.total();
                if usage.llm_calls > 0 {
                    state.output.metered(&usage).await;
                }
                Ok(RunOutcome { reply: state.output.take_reply(), state_changes: state.session.take_changes() })
            }
            // Gave up after a model call failed: the client hears why (429, 502, 504).
            Ok(Err(agent_error)) => match store.data_mut().llm.take_failure() {
                Some(upstream) => Err(RunError::Upstream(upstream)),
                None => Err(agent_error.into()),
            },
            Err(e) => Err(trap(e, &store)),
        }
    }

    /// Run `rec`'s request again in a fresh store with every host call
    /// answered from `rec`: no network (unless `live`), no model cost, no
    /// session write. How it ended, and what the player saw.
    pub async fn replay(
        &self,
        rec: Arc<crate::tape::Recording>,
        live: bool,
    ) -> (Result<(), RunError>, crate::tape::Player) {
        let tape = crate::tape::Tape::replay(rec.clone(), live);
        // The tape keeps the output; the stream only has to be drained.
        let (tx, mut rx) = mpsc::channel(32);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let events = RunEvents::new(tx);
        // Only drained: nothing to wake per event.
        events.delivery.whole();
        let session = rec.persistent.then(|| SessionData {
            history: rec.history.clone(),
            state: rec.state.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
        });
        let meter = crate::usage::Meter::new(&rec.owner);
        let result = self.run(rec.request.clone(), events, session, meter, tape.clone()).await.map(drop);
        let _ = drain.await;
        (result, tape.take_player().expect("a replay tape has a player"))
    }

    fn store(&self, run: RunContext) -> Store<RunState> {
        let mut store = Store::new(self.pre.engine(), self.capabilities.instantiate(run));
        store.limiter(|s| &mut s.memory);
        // Yield to the executor on every epoch tick: a guest spinning on the
        // CPU cannot starve other tasks, and the time budget can fire.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store
    }
}

/// A wasmtime error out of a call: a budget the guest ran out of, else the
/// panic the guest reported before it trapped, else a trap.
fn trap(e: wasmtime::Error, store: &Store<RunState>) -> RunError {
    let state = store.data();
    match (state.exhausted(true), state.log.panic()) {
        (Some(exhausted), _) => exhausted.into(),
        (None, Some(message)) => RunError::Panicked { agent: state.log.agent().to_string(), message: message.into() },
        (None, None) => RunError::from_wasmtime(e),
    }
}

#[cfg(test)]
mod tests {
    use super::not_a_component;

    #[test]
    fn files_that_cannot_be_components_are_named_in_one_line() {
        let text = not_a_component(b"<html>not found</html>").unwrap();
        assert!(text.starts_with("not a WebAssembly file"), "{text}");
        let core = not_a_component(b"\0asm\x01\0\0\0\x01\x04").unwrap();
        assert!(core.contains("core WebAssembly module") && core.contains("wasm32-wasip2"), "{core}");
        assert_eq!(not_a_component(b"\0asm\x0d\0\x01\0"), None, "a component's preamble passes on to the parser");
        assert!(!text.contains('\n') && !core.contains('\n'));
    }
}
