//! Per-run store data and the host side of the agent's imports.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{EmitError, Event, Message, wasmclaw::agent};
use super::guest_log::GuestLog;
use super::reply::Reply;
use crate::providers::{ModelRoute, ProviderError};
use crate::sessions::{MAX_STATE_KEY_BYTES, MAX_STATE_TOTAL_BYTES, MAX_STATE_VALUE_BYTES, SessionData, StateChanges};

/// Why a run's output stream stopped accepting events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStop {
    /// The receiver is gone: the client disconnected or the run was cancelled.
    Closed,
    /// The run wrote more than its output budget.
    Limit,
}

/// Everything one `Store` owns. Dropped with the store after each run.
pub struct RunState {
    pub(super) agent_id: String,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) memory: MemoryLimiter,
    events: Option<mpsc::Sender<Event>>,
    config: Arc<BTreeMap<String, String>>,
    output_budget: usize,
    pub(super) output_stop: Option<OutputStop>,
    /// Everything emitted so far, for the transcript; `None` when no
    /// transcript is kept (per-request sessions), to spare a copy per event.
    pub(super) reply: Option<Reply>,
    history: Vec<Message>,
    state: std::collections::BTreeMap<String, Vec<u8>>,
    state_bytes: usize,
    /// Writes to persist if the run succeeds.
    pub(super) changes: StateChanges,
    /// Where `llm` calls go; `None` when the agent has no provider.
    pub(super) llm: Option<ModelRoute>,
    /// The last `llm` failure the agent saw, cleared by a later success: a
    /// run that then fails is reported to the client as this failure.
    pub(super) llm_failure: Option<ProviderError>,
    /// `completion` resources the agent holds now.
    pub(super) open_completions: usize,
}

impl RunState {
    /// `events: None` is for calls that must not emit (`info`); `session:
    /// None` is a throw-away session, whose reply is not kept.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        agent_id: &str,
        config: Arc<BTreeMap<String, String>>,
        events: Option<mpsc::Sender<Event>>,
        memory_bytes: usize,
        output_budget: usize,
        session: Option<SessionData>,
        llm: Option<ModelRoute>,
    ) -> Self {
        let reply = session.is_some().then(Reply::default);
        let session = session.unwrap_or_default();
        // No env, no args, no preopened dirs, no socket addresses allowed:
        // the defaults of the builder. Only stdout/stderr are wired, to the log.
        let wasi = WasiCtx::builder().stdout(GuestLog::stdout(agent_id)).stderr(GuestLog::stderr(agent_id)).build();
        Self {
            agent_id: agent_id.to_string(),
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter { max: memory_bytes, exceeded: false },
            events,
            config,
            output_budget,
            output_stop: None,
            reply,
            state_bytes: session.state.iter().map(|(k, v)| k.len() + v.len()).sum(),
            history: session.history,
            state: session.state,
            changes: StateChanges::new(),
            llm,
            llm_failure: None,
            open_completions: 0,
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl agent::types::Host for RunState {}

impl agent::output::Host for RunState {
    async fn emit(&mut self, ev: Event) -> wasmtime::Result<Result<(), EmitError>> {
        if let Some(stop) = self.output_stop {
            // It was told to stop and did not: end it rather than let it spin.
            wasmtime::bail!("agent kept emitting after emit returned {stop:?}");
        }
        let Some(events) = &self.events else {
            return Ok(Err(EmitError::Closed));
        };
        let size = event_size(&ev);
        if size > self.output_budget {
            self.output_stop = Some(OutputStop::Limit);
            return Ok(Err(EmitError::OutputLimit));
        }
        self.output_budget -= size;
        if let Some(reply) = &mut self.reply {
            reply.push(&ev);
        }
        if events.send(ev).await.is_err() {
            self.output_stop = Some(OutputStop::Closed);
            return Ok(Err(EmitError::Closed));
        }
        Ok(Ok(()))
    }
}

impl agent::config::Host for RunState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).cloned())
    }
}

impl agent::session::Host for RunState {
    fn history(&mut self) -> wasmtime::Result<Vec<Message>> {
        Ok(self.history.clone())
    }

    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.state.get(&key).cloned())
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if key.len() > MAX_STATE_KEY_BYTES {
            return Ok(Err(format!("state key is {} bytes; the limit is {MAX_STATE_KEY_BYTES}", key.len())));
        }
        if value.len() > MAX_STATE_VALUE_BYTES {
            return Ok(Err(format!("state value is {} bytes; the limit is {MAX_STATE_VALUE_BYTES}", value.len())));
        }
        let old = self.state.get(&key).map_or(0, |v| key.len() + v.len());
        let total = self.state_bytes - old + key.len() + value.len();
        if total > MAX_STATE_TOTAL_BYTES {
            return Ok(Err(format!("session state would be {total} bytes; the limit is {MAX_STATE_TOTAL_BYTES}")));
        }
        self.state_bytes = total;
        self.changes.insert(key.clone(), Some(value.clone()));
        self.state.insert(key, value);
        Ok(Ok(()))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        if let Some(old) = self.state.remove(&key) {
            self.state_bytes -= key.len() + old.len();
            self.changes.insert(key, None);
        }
        Ok(())
    }
}

fn event_size(ev: &Event) -> usize {
    match ev {
        Event::Text(t) | Event::Reasoning(t) => t.len(),
        Event::ToolCall(c) => {
            c.arguments.len() + c.id.as_ref().map_or(0, String::len) + c.name.as_ref().map_or(0, String::len)
        }
        Event::Usage(_) | Event::Finish(_) => 0,
    }
}

/// Caps linear memory and remembers that the cap was hit, so the trap that
/// follows a failed allocation is reported as a memory limit, not a bug.
pub struct MemoryLimiter {
    max: usize,
    pub(super) exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
