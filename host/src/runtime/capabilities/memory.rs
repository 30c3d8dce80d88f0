//! Memory limits per run: the total of every linear memory of the store, and
//! how many memories, tables and instances a component may create.

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
        MemoryLimiter { max: self.max, total: 0, exceeded: false }
    }
}

/// Linear memories one component may create (also the pool's per-component cap).
pub const MAX_MEMORIES: usize = 16;
/// Tables one component may create.
pub const MAX_TABLES: usize = 64;
/// Core instances one component may create.
pub const MAX_INSTANCES: usize = 128;

/// Caps the store's linear memory, all memories together, and remembers that
/// the cap was hit, so the trap that follows a failed allocation is reported
/// as a memory limit, not a bug.
pub struct MemoryLimiter {
    max: usize,
    /// Bytes of every memory of the store together.
    total: usize,
    exceeded: bool,
}

impl MemoryLimiter {
    /// `Memory` once a growth past the limit was refused.
    pub fn exhausted(&self) -> Option<Exhausted> {
        self.exceeded.then_some(Exhausted::Memory(self.max))
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Each call moves one memory (a new one starts at 0) from `current` to `desired`.
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.max {
            self.exceeded = true;
            return Ok(false);
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_for_all_memories_of_a_run_together() {
        let mut limiter = MemoryCapability::new(64 << 20).instantiate();
        assert!(limiter.memory_growing(0, 40 << 20, None).unwrap(), "one memory within the limit");
        assert!(!limiter.memory_growing(0, 40 << 20, None).unwrap(), "a second memory past the total");
        assert_eq!(limiter.exhausted(), Some(Exhausted::Memory(64 << 20)));
        assert!(limiter.memory_growing(40 << 20, 60 << 20, None).unwrap(), "growing the first within the total");
    }
}
