//! Per-run store data and the host side of the agent's imports.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{EmitError, Event, wasmclaw::agent};
use super::guest_log::GuestLog;

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
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryLimiter,
    events: Option<mpsc::Sender<Event>>,
    config: Arc<BTreeMap<String, String>>,
    output_budget: usize,
    pub(super) output_stop: Option<OutputStop>,
}

impl RunState {
    /// `events: None` is for calls that must not emit (`info`).
    pub fn new(
        agent_id: &str,
        config: Arc<BTreeMap<String, String>>,
        events: Option<mpsc::Sender<Event>>,
        memory_bytes: usize,
        output_budget: usize,
    ) -> Self {
        // No env, no args, no preopened dirs, no socket addresses allowed:
        // the defaults of the builder. Only stdout/stderr are wired, to the log.
        let wasi = WasiCtx::builder().stdout(GuestLog::stdout(agent_id)).stderr(GuestLog::stderr(agent_id)).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter { max: memory_bytes, exceeded: false },
            events,
            config,
            output_budget,
            output_stop: None,
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
