//! Memory limits per run: the total of every linear memory of the store and
//! of the host buffers held for the run (outbound HTTP bodies), and how many
//! memories, tables and instances a component may create.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// A limiter for one store, over a fresh account for its run.
    pub fn instantiate(&self) -> MemoryLimiter {
        MemoryLimiter { account: Arc::new(RunMemory { max: self.max, used: AtomicUsize::new(0) }), exceeded: false }
    }
}

/// Linear memories one component may create (also the pool's per-component cap).
pub const MAX_MEMORIES: usize = 16;
/// Tables one component may create.
pub const MAX_TABLES: usize = 64;
/// Core instances one component may create.
pub const MAX_INSTANCES: usize = 128;

/// One run's bytes under `limits.memoryBytes`: its linear memories and the
/// host buffers it holds. Shared with the tasks that fill those buffers.
#[derive(Debug)]
pub struct RunMemory {
    max: usize,
    used: AtomicUsize,
}

impl RunMemory {
    /// Add `bytes` if the total stays within the limit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    /// The run's limit in bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// An empty hold on the account, grown as a host buffer fills.
    pub fn hold(self: &Arc<Self>) -> MemoryHold {
        MemoryHold { account: self.clone(), bytes: 0 }
    }
}

/// Bytes a host buffer holds against its run's limit, given back on drop.
#[derive(Debug)]
pub struct MemoryHold {
    account: Arc<RunMemory>,
    bytes: usize,
}

impl MemoryHold {
    /// Count `bytes` more; false (and nothing counted) past the run's limit.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let taken = self.account.take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        self.account.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Caps the store's linear memory, all memories and host buffers together,
/// and remembers that the cap was hit, so the trap that follows a failed
/// allocation is reported as a memory limit, not a bug.
pub struct MemoryLimiter {
    account: Arc<RunMemory>,
    exceeded: bool,
}

impl MemoryLimiter {
    /// `Memory` once a growth past the limit was refused.
    pub fn exhausted(&self) -> Option<Exhausted> {
        self.exceeded.then_some(Exhausted::Memory(self.account.max))
    }

    /// The run's account, for host buffers to count against.
    pub fn account(&self) -> &Arc<RunMemory> {
        &self.account
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Each call moves one memory (a new one starts at 0) from `current` to
        // `desired`; memories never shrink.
        if !self.account.take(desired.saturating_sub(current)) {
            self.exceeded = true;
            return Ok(false);
        }
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

    #[test]
    fn host_buffers_count_against_the_same_limit_until_dropped() {
        let mut limiter = MemoryCapability::new(64 << 20).instantiate();
        assert!(limiter.memory_growing(0, 40 << 20, None).unwrap());
        let mut hold = limiter.account().hold();
        assert!(hold.grow(20 << 20), "a buffer within what is left");
        assert!(!hold.grow(8 << 20), "a buffer past the total");
        assert!(!limiter.memory_growing(40 << 20, 50 << 20, None).unwrap(), "the buffer leaves no room to grow");
        drop(hold);
        let mut limiter = MemoryCapability::new(64 << 20).instantiate();
        let mut hold = limiter.account().hold();
        assert!(hold.grow(60 << 20));
        drop(hold);
        assert!(limiter.memory_growing(0, 60 << 20, None).unwrap(), "a dropped buffer gives its bytes back");
    }
}
