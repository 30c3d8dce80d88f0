//! What a guest can reach, one sub-state per capability. Each module prepares
//! its part once per agent version (from the agent's settings) and creates a
//! fresh state per run — the shape of Spin's factors. The contract bindings
//! in `runtime::wit` call into these states, so a capability is written once
//! for every WIT version, and adding one is a module plus a field here.

pub mod config;
pub mod http;
pub mod llm;
pub mod log;
pub mod memo;
pub mod memory;
pub mod outbox;
pub mod output;
pub mod session;
pub mod tool_activity;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use std::sync::Arc;

use super::agent::AgentSettings;
use super::budget::Exhausted;
use super::guest_log::{GuestLog, LogContext};
use crate::chat::AgentId;
use crate::metrics::Metrics;
use crate::sessions::SessionData;

/// Every capability of one agent version, prepared at load.
pub struct Capabilities {
    agent: AgentId,
    config: config::ConfigCapability,
    http: http::HttpCapability,
    llm: llm::LlmCapability,
    memo: memo::MemoShelf,
    memory: memory::MemoryCapability,
    output: output::OutputCapability,
}

/// What one run brings besides the agent's settings.
pub struct RunContext {
    /// The run's id, for its log lines (empty for `info`).
    pub run_id: String,
    /// `None` for calls that must not emit (`info`).
    pub events: Option<outbox::RunEvents>,
    /// `None` for a throw-away session: empty history, no reply kept.
    pub session: Option<SessionData>,
    /// The model the client chose for this run, replacing the entry's.
    pub model: Option<String>,
    /// Where the run's model calls are metered.
    pub meter: crate::usage::Meter,
    /// Off, recording, or answering every crossing from a recording.
    pub tape: crate::tape::Tape,
}

impl Capabilities {
    /// Prepare once per agent version; `memo` is the process's, where the version gets a shelf of its own.
    pub fn prepare(agent: &AgentId, settings: &AgentSettings, metrics: &Arc<Metrics>, memo: &memo::Memo) -> Self {
        Self {
            agent: agent.clone(),
            config: config::ConfigCapability::new(settings.config.clone()),
            http: http::HttpCapability::new(agent, settings.http.clone(), &settings.config, metrics.clone()),
            llm: llm::LlmCapability::new(agent, settings.llm.clone(), metrics.clone()),
            memo: memo.shelf(agent.as_str()),
            memory: memory::MemoryCapability::new(settings.limits.memory_bytes),
            output: output::OutputCapability::new(settings.limits.output_bytes),
        }
    }

    /// The model capability, whose rule decides a client's per-run model.
    pub fn llm(&self) -> &llm::LlmCapability {
        &self.llm
    }

    /// A fresh state for one run.
    pub fn instantiate(&self, run: RunContext) -> RunState {
        let keep_reply = run.session.is_some();
        // No env, no args, no preopened dirs, no socket addresses allowed:
        // the defaults of the builder. Only stdout/stderr are wired, to the log.
        let log = LogContext::new(self.agent.as_str(), Some(run.run_id.as_str()).filter(|id| !id.is_empty()));
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestLog::stdout(&log)).stderr(GuestLog::stderr(&log));
        let tape = run.tape;
        if let Some(seed) = tape.seed() {
            // What the guest sees of time and chance comes from the tape: a replay sees it again.
            let mut insecure = seed;
            insecure[0] ^= 0xff;
            let low: [u8; 16] = insecure[..16].try_into().expect("16 of 32 bytes");
            wasi.secure_random(crate::tape::seeded_random(seed))
                .insecure_random(crate::tape::seeded_random(insecure))
                .insecure_random_seed(u128::from_le_bytes(low))
                .wall_clock(crate::tape::WallClock(tape.clone()))
                .monotonic_clock(crate::tape::MonotonicClock(tape.clone(), std::time::Instant::now()));
        }
        let wasi = wasi.build();
        let memory = self.memory.instantiate();
        RunState {
            wasi,
            table: ResourceTable::new(),
            config: self.config.instantiate(tape.clone()),
            http: self.http.instantiate(&run.run_id, memory.account(), tape.clone()),
            llm: self.llm.instantiate(run.model, run.meter, tape.clone()),
            memo: memo::MemoState::new(self.memo.clone(), tape.clone()),
            memory,
            output: self.output.instantiate(run.events, keep_reply).taped(tape),
            session: session::SessionState::new(run.session.unwrap_or_default()),
            tools: tool_activity::ToolActivityState::new(self.agent.as_str(), &run.run_id),
            log: log::LogState::new(log),
        }
    }
}

/// Everything one `Store` owns. Dropped with the store after each run.
pub struct RunState {
    wasi: WasiCtx,
    /// Resources the guest holds (completions, WASI streams).
    pub table: ResourceTable,
    pub config: config::ConfigState,
    pub http: http::HttpState,
    pub llm: llm::LlmState,
    pub memo: memo::MemoState,
    pub memory: memory::MemoryLimiter,
    pub output: output::OutputState,
    pub session: session::SessionState,
    pub tools: tool_activity::ToolActivityState,
    pub log: log::LogState,
}

impl RunState {
    /// The budget a run ran out of, if any. `trapped`: the guest trapped,
    /// so a refused memory growth explains it.
    pub fn exhausted(&self, trapped: bool) -> Option<Exhausted> {
        // The output side decides first: whatever the guest did after being
        // told to stop is noise.
        self.output.exhausted().or_else(|| if trapped { self.memory.exhausted() } else { None })
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http.ctx, table: &mut self.table, hooks: &mut self.http.hooks }
    }
}
