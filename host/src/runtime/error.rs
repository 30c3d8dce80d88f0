//! Why a run did not complete. The one error type every door maps from.

use std::time::Duration;

use crate::chat::AgentError;

/// A run that ended without a complete reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    #[error("agent {0:?} not found")]
    UnknownAgent(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// The session does not exist for this caller (another principal's is refused the same way).
    #[error("no session {0:?}")]
    SessionNotFound(String),
    #[error("agent unavailable: {0}")]
    Unavailable(String),
    #[error("agent failed: {0}")]
    Failed(String),
    #[error("agent trapped: {0}")]
    Trapped(String),
    /// The guest reported a panic (or uncaught exception), then trapped.
    #[error("agent {agent:?} panicked: {message}")]
    Panicked { agent: String, message: String },
    #[error("agent exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    #[error("agent exceeded its output limit")]
    OutputLimit,
    #[error("agent exceeded its time budget of {}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("no capacity for another run; retry shortly")]
    NoCapacity,
    /// The session's database cannot be reached (the reason never holds its URL).
    #[error("the session database is unavailable ({0}); retry shortly")]
    StoreUnavailable(String),
    #[error("run cancelled")]
    Cancelled,
    /// The agent gave up after its model provider failed.
    #[error("{0}")]
    Upstream(crate::providers::ProviderError),
    #[error("internal error: {0}")]
    Internal(String),
    /// A budget of the caller or the agent is spent for its window.
    #[error("{message}")]
    BudgetExceeded {
        message: String,
        /// Seconds until the window resets; `None` for a `total` budget.
        retry_after: Option<u64>,
    },
}

/// A guest's own error. Its message is guest text: escaped, as the run's
/// error is logged (`runs`) as well as sent.
impl From<AgentError> for RunError {
    fn from(e: AgentError) -> Self {
        let escaped = |m: String| super::guest_log::escape_controls(&m).into_owned();
        match e {
            AgentError::InvalidRequest(m) => Self::InvalidRequest(escaped(m)),
            AgentError::Unavailable(m) => Self::Unavailable(escaped(m)),
            AgentError::Failed(m) => Self::Failed(escaped(m)),
        }
    }
}

impl RunError {
    /// A short stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownAgent(_) => "unknown_agent",
            Self::InvalidRequest(_) | Self::Unavailable(_) | Self::Failed(_) => "agent_error",
            Self::SessionNotFound(_) => "session_not_found",
            Self::Trapped(_) => "trap",
            Self::Panicked { .. } => "panic",
            Self::MemoryLimit(_) => "memory_limit",
            Self::OutputLimit => "output_limit",
            Self::Timeout(_) => "timeout",
            Self::NoCapacity => "no_capacity",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::Cancelled => "cancelled",
            Self::Upstream(_) => "upstream",
            Self::Internal(_) => "internal",
            Self::BudgetExceeded { .. } => "budget_exceeded",
        }
    }

    /// Classify an error out of wasmtime (trap, pool exhaustion, host bug).
    pub(super) fn from_wasmtime(err: wasmtime::Error) -> Self {
        if err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
            return Self::NoCapacity;
        }
        match err.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => Self::Trapped(trap.to_string()),
            // Not a wasm trap: a host import failed (e.g. emit after stop).
            None => Self::Trapped(format!("{err:#}")),
        }
    }
}
