//! The per-run budgets a run can exhaust, and the one mapping to [`RunError`].

use std::time::Duration;

use super::error::RunError;
use crate::chat::MAX_TOOL_CALLS;

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
    /// It sent a tool call with this index, beyond the slots a reply has
    /// ([`MAX_TOOL_CALLS`]).
    ToolCalls(u32),
}

impl From<Exhausted> for RunError {
    fn from(e: Exhausted) -> Self {
        match e {
            Exhausted::Cancelled => Self::Cancelled,
            Exhausted::Output => Self::OutputLimit,
            Exhausted::Memory(max) => Self::MemoryLimit(max),
            Exhausted::Time(budget) => Self::Timeout(budget),
            Exhausted::ToolCalls(index) => Self::Trapped(format!(
                "the agent sent a tool call with index {index}; a reply holds at most {MAX_TOOL_CALLS} tool calls"
            )),
        }
    }
}
