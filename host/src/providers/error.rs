//! Why a provider call failed, in terms the client and the agent can act on.

/// A failed or broken-off completion. Messages name the provider, never its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("provider {provider:?} is rate limiting requests")]
    RateLimited { provider: String, retry_after: Option<u32> },
    #[error(
        "provider {provider:?} rejected the gateway's credentials (HTTP {status}); the operator must fix providers.{provider}"
    )]
    Unauthorized { provider: String, status: u16 },
    #[error("provider {provider:?} rejected the request (HTTP {status}): {message}")]
    BadRequest { provider: String, status: u16, message: String },
    #[error("provider {provider:?} is unavailable: {message}")]
    Unavailable { provider: String, message: String },
    /// A redirect the gateway does not follow: a fixed configuration error, not retried.
    #[error("provider {provider:?} is unavailable: {message}")]
    Redirected { provider: String, message: String },
    #[error("provider {provider:?} did not answer within {ms} ms")]
    Timeout { provider: String, ms: u64 },
}

impl ProviderError {
    /// Worth another attempt before anything reached the client.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Unauthorized { .. } => "unauthorized",
            Self::BadRequest { .. } => "bad_request",
            Self::Unavailable { .. } => "unavailable",
            Self::Redirected { .. } => "redirected",
            Self::Timeout { .. } => "timeout",
        }
    }
}
