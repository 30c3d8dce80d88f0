//! The one `wasmtime::Engine` of the process.

use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, PoolingAllocationConfig};

use super::capabilities::memory::{MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES};

/// How often the epoch advances; the granularity of CPU preemption and deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sizing of the engine; one value per process.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Component instances alive at once (= concurrent runs + loads).
    pub max_instances: u32,
    /// Largest linear memory any agent may grow to.
    pub max_memory_bytes: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        // The pool reserves address space per slot either way; per-agent
        // memory limits are enforced by each store's limiter, below this.
        Self { max_instances: 1000, max_memory_bytes: 4 << 30 }
    }
}

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    Pooling,
    OnDemand,
}

/// Build the engine: pooling allocator when the address space allows it
/// (it reserves all slots up front), on-demand otherwise — as Spin and
/// `wasmtime serve` do. Starts the epoch ticker.
pub fn build(limits: &EngineLimits) -> anyhow::Result<(Engine, Allocation)> {
    let mut pool = PoolingAllocationConfig::default();
    let n = limits.max_instances;
    pool.total_component_instances(n)
        .total_core_instances(n * 4)
        .total_memories(n * 2)
        .total_tables(n * 2)
        .total_stacks(n)
        // One component must not take a share of the shared pool: refused
        // when its info() is called at install.
        .max_memories_per_component(MAX_MEMORIES as u32)
        .max_tables_per_component(MAX_TABLES as u32)
        .max_core_instances_per_component(MAX_INSTANCES as u32)
        .max_memory_size(limits.max_memory_bytes)
        // Measured with the instantiate microbenchmark: keeping a little memory resident between
        // instantiations saves ~30 µs per run against madvise round trips.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(512 << 10)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages a run
        // dirtied instead of memsetting the whole kept region: the memset was ~5 % of
        // the gateway's CPU under the echo load. Elsewhere wasmtime memsets as before.
        .pagemap_scan(Enabled::Auto);
    let (engine, allocation) = match Engine::new(base_config().allocation_strategy(pool)) {
        Ok(engine) => (engine, Allocation::Pooling),
        Err(err) => {
            tracing::warn!(error = %err, "pooling allocator unavailable; using on-demand allocation");
            (Engine::new(&base_config())?, Allocation::OnDemand)
        }
    };
    start_epoch_ticker(&engine);
    Ok((engine, allocation))
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}

// Ticks while the engine lives; holds only a weak handle so dropping the last
// engine (tests build several) ends the thread.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasmclaw-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch ticker");
}
