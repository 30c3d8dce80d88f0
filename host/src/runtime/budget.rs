//! The per-run budgets a run can exhaust, and the one mapping to [`RunError`].

use std::time::Duration;

use super::error::RunError;

/// A budget a run ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// Its consumer went away: nobody will see more output.
    Cancelled,
    /// It emitted more than `limits.maxOutputBytes`.
    Output,
    /// It tried to grow memory past `limits.memoryBytes` (this many bytes).
    Memory(usize),
    /// It ran past `limits.timeoutMs`.
    Time(Duration),
}

impl From<Exhausted> for RunError {
    fn from(e: Exhausted) -> Self {
        match e {
            Exhausted::Cancelled => Self::Cancelled,
            Exhausted::Output => Self::OutputLimit,
            Exhausted::Memory(max) => Self::MemoryLimit(max),
            Exhausted::Time(budget) => Self::Timeout(budget),
        }
    }
}
