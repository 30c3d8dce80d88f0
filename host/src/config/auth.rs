//! `gateway.auth.*`: how clients prove who they are, and the failed-attempt lock-out.

use serde::Deserialize;

use super::*;

/// `gateway.auth.*`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthConfig {
    #[serde(default)]
    pub mode: AuthMode,
    pub token: Option<Secret>,
    pub password: Option<Secret>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Named tokens beside the main secret, each with its own scopes.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// `gateway.auth.rateLimit`: failed attempts per client IP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitConfig {
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    #[serde(default = "default_lockout_ms")]
    pub lockout_ms: u64,
    #[serde(default = "default_true")]
    pub exempt_loopback: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            window_ms: default_window_ms(),
            lockout_ms: default_lockout_ms(),
            exempt_loopback: true,
        }
    }
}

fn default_max_attempts() -> u32 {
    10
}
fn default_window_ms() -> u64 {
    60_000
}
fn default_lockout_ms() -> u64 {
    300_000
}

/// Which shared secret clients present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Token,
    Password,
    /// No credentials at all; allowed only when bound to loopback.
    None,
}
