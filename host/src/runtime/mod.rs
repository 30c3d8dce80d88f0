//! Runs agents: the engine, compiled agent versions, per-run stores, the
//! registry. The contract versions live in `wit`, the guest's capabilities in
//! `capabilities`; everything outside this module speaks `crate::chat`.

mod agent;
mod budget;
mod cache;
mod capabilities;
mod engine;
mod error;
mod guest_log;
mod registry;
pub mod shipped;
mod wit;

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use agent::{AgentSettings, AgentSource, AgentVersion, LoadError, RunLimits, RunOutcome};
pub use engine::{Allocation, EngineLimits};
pub use error::RunError;
pub use registry::{AgentRegistry, AgentSlot};

use crate::chat::AgentId;
use capabilities::RunState;

/// The engine and the linker every agent is checked against.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    allocation: Allocation,
    cache: Option<Arc<cache::CompileCache>>,
}

impl Runtime {
    /// Build the engine and link WASI (sandboxed) plus every supported world's imports.
    /// `cache_dir`: where compiled components are kept between restarts.
    pub fn new(limits: &EngineLimits, cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        let (engine, allocation) = engine::build(limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wit::add_to_linker(&mut linker)?;
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
        source: AgentSource,
        bytes: Arc<[u8]>,
        settings: AgentSettings,
    ) -> Result<AgentVersion, LoadError> {
        AgentVersion::load(&self.engine, &self.linker, self.cache.clone(), id, source, bytes, settings).await
    }
}
