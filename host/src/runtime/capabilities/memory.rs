//! Linear-memory limits per run.

use wasmtime::ResourceLimiter;

use crate::runtime::budget::Exhausted;

/// The agent's memory limit.
pub struct MemoryCapability {
    max: usize,
}

impl MemoryCapability {
    /// Prepare from `limits.memoryBytes`.
    pub fn new(max: usize) -> Self {
        Self { max }
    }

    /// A limiter for one store.
    pub fn instantiate(&self) -> MemoryLimiter {
        MemoryLimiter { max: self.max, exceeded: false }
    }
}

/// Caps linear memory and remembers that the cap was hit, so the trap that
/// follows a failed allocation is reported as a memory limit, not a bug.
pub struct MemoryLimiter {
    max: usize,
    exceeded: bool,
}

impl MemoryLimiter {
    /// `Memory` once a growth past the limit was refused.
    pub fn exhausted(&self) -> Option<Exhausted> {
        self.exceeded.then_some(Exhausted::Memory(self.max))
    }
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
