//! Runs agents: the engine, compiled agent versions, per-run stores, the registry.

mod agent;
mod bindings;
mod cache;
mod engine;
mod error;
mod guest_log;
mod llm_host;
mod registry;
mod reply;
pub mod shipped;
mod state;

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use agent::{AgentSettings, AgentVersion, LoadError, RunLimits, RunOutcome};
pub use bindings::{
    AgentError, AgentInfo, Event, FinishReason, Message, Role, RunRequest, ToolCall, ToolCallDelta, ToolSpec, Usage,
};
pub use engine::{Allocation, EngineLimits};
pub use error::RunError;
pub use registry::{AgentRegistry, AgentSlot};
pub use reply::{Reply, finish_reason, finish_reason_name};
use state::RunState;

/// A validated agent id: `[a-z0-9][a-z0-9_-]{0,63}`, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// Validate (case-insensitively) and normalise an id.
    pub fn parse(raw: &str) -> Option<Self> {
        let id = raw.to_ascii_lowercase();
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        (first_ok && rest_ok && id.len() <= 64).then_some(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The engine and the linker every agent is checked against.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    allocation: Allocation,
    cache: Option<Arc<cache::CompileCache>>,
}

impl Runtime {
    /// Build the engine and link WASI (sandboxed) plus the wasmclaw imports.
    /// `cache_dir`: where compiled components are kept between restarts.
    pub fn new(limits: &EngineLimits, cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        let (engine, allocation) = engine::build(limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Agent::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)?;
        let cache = cache_dir.map(|dir| Arc::new(cache::CompileCache::new(dir, &engine)));
        Ok(Self { engine, linker, allocation, cache })
    }

    /// Component instances live in the pool (pooling allocator only).
    pub fn pool_instances(&self) -> Option<u64> {
        self.engine.pooling_allocator_metrics().map(|m| m.component_instances())
    }

    /// Which allocator the engine got.
    pub fn allocation(&self) -> Allocation {
        self.allocation
    }

    /// Turn component bytes into a runnable agent version.
    pub async fn load(
        &self,
        id: AgentId,
        source: String,
        bytes: Arc<[u8]>,
        settings: AgentSettings,
    ) -> Result<AgentVersion, LoadError> {
        AgentVersion::load(&self.engine, &self.linker, self.cache.clone(), id, source, bytes, settings).await
    }
}

#[cfg(test)]
mod tests {
    use super::AgentId;

    #[test]
    fn agent_ids_follow_the_wire_pattern() {
        assert_eq!(AgentId::parse("Main").unwrap().as_str(), "main");
        for ok in ["a", "0", "beta_2", "x-y", &"a".repeat(64)] {
            assert!(AgentId::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "-a", "_a", "a/b", "../x", "a b", "é", &"a".repeat(65)] {
            assert!(AgentId::parse(bad).is_none(), "{bad}");
        }
    }
}
