//! Runs agents: the engine, compiled agent versions, per-run stores, the
//! registry. The contract versions live in `wit`, the guest's capabilities in
//! `capabilities`; everything outside this module speaks `crate::chat`.

mod agent;
mod budget;
mod cache;
mod capabilities;
mod compiler;
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
pub use capabilities::http::{
    AllowRule, Credential, CredentialValue, HttpLimits, HttpPolicy, TokenSource, name_dev_flags_in_denials,
};
pub use capabilities::outbox::{Delivery, RunEvents};
pub use compiler::{ALLOCATOR_ENV, compile_in_worker_processes, serve_worker as serve_compile_worker};
pub use engine::{Allocation, EngineLimits};
pub use error::RunError;
pub use registry::{AgentRegistry, AgentSlot};
pub use wit::WORLDS;

use crate::chat::AgentId;
use capabilities::RunState;

/// The engine and the linker every agent is checked against.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    allocation: Allocation,
    /// The engine's sizing, which a compile worker's engine must share.
    limits: EngineLimits,
    cache: Option<Arc<cache::CompileCache>>,
    /// Where capabilities count what agents do (outbound HTTP).
    metrics: Arc<crate::metrics::Metrics>,
    /// What agent versions keep across runs (`memo`), under one byte cap.
    memo: capabilities::memo::Memo,
}

impl Runtime {
    /// Build the engine and link WASI (sandboxed) plus every supported world's imports.
    /// `cache_dir`: where compiled components are kept between restarts.
    pub fn new(limits: &EngineLimits, cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        let (engine, allocation) = engine::build(limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Only the HTTP interfaces: the rest of WASI is linked above, sandboxed.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wit::add_to_linker(&mut linker)?;
        let cache = cache_dir.map(|dir| Arc::new(cache::CompileCache::new(dir, &engine)));
        Ok(Self {
            engine,
            linker,
            allocation,
            limits: limits.clone(),
            cache,
            metrics: Default::default(),
            memo: Default::default(),
        })
    }

    /// Count what agents do in `metrics` (the gateway's own).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
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
        AgentVersion::load(self, id, source, bytes, settings).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::capabilities::{Capabilities, RunContext};

    /// A component of `n` core modules, each instantiated with a memory of its own.
    fn memories_component(n: usize) -> Vec<u8> {
        let mut text = String::from("(component\n");
        for i in 0..n {
            text.push_str(&format!("(core module $m{i} (memory 1)) (core instance (instantiate $m{i}))\n"));
        }
        text.push(')');
        wat::parse_str(&text).unwrap()
    }

    #[tokio::test]
    async fn a_component_with_too_many_memories_cannot_take_the_pool() {
        // A pool with room for far more memories than one component may take.
        let runtime = Runtime::new(&EngineLimits { max_instances: 64, ..EngineLimits::default() }, None).unwrap();
        let id = AgentId::parse("many").unwrap();
        let capabilities =
            Capabilities::prepare(&id, &AgentSettings::default(), &Default::default(), &Default::default());
        for (n, fits) in [(4, true), (capabilities::memory::MAX_MEMORIES + 1, false)] {
            // The pooling allocator refuses at compile time (so at install);
            // the on-demand one through the store's limiter at instantiation.
            let result = match wasmtime::component::Component::new(&runtime.engine, memories_component(n)) {
                Err(e) => Err(e),
                Ok(component) => {
                    let state = capabilities.instantiate(RunContext {
                        run_id: String::new(),
                        events: None,
                        session: None,
                        model: None,
                        meter: Default::default(),
                        tape: Default::default(),
                    });
                    let mut store = wasmtime::Store::new(&runtime.engine, state);
                    store.limiter(|s| &mut s.memory);
                    runtime.linker.instantiate_async(&mut store, &component).await.map(drop)
                }
            };
            match (fits, result) {
                (true, r) => assert!(r.is_ok(), "{n} memories must fit: {:?}", r.err()),
                (false, Ok(())) => panic!("{n} memories must be refused"),
                (false, Err(e)) => assert!(format!("{e:#}").contains("memories"), "the error names memories: {e:#}"),
            }
        }
    }
}
