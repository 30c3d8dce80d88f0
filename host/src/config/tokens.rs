//! `gateway.auth.tokens`: named application tokens with scopes, an agent
//! allow-list and a rate limit, beside the main secret.

use serde::Deserialize;

use super::Secret;

/// Scope names a token may carry (OpenClaw's operator scopes).
pub const SCOPE_NAMES: &[&str] = &["operator.read", "operator.write", "operator.admin"];

/// One named token. Its value comes from the file or, better, the environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenConfig {
    /// What logs and metrics call it (never the secret).
    pub name: String,
    /// The token itself. Prefer `tokenEnv` so it stays out of the file.
    pub token: Option<Secret>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// `operator.read`, `operator.write`, `operator.admin`.
    pub scopes: Vec<String>,
    /// Agent ids it may use; all when absent.
    pub agents: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limit: Option<TokenRateLimit>,
    /// What this token's runs may spend per window.
    pub budget: Option<super::BudgetConfig>,
}

/// `rateLimit` of a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRateLimit {
    pub requests_per_minute: u32,
}

impl TokenConfig {
    /// Check one entry (`index` in the list); `Err((key, message))`.
    pub fn validate(&self, index: usize) -> Result<(), (String, String)> {
        let key = |field: &str| format!("gateway.auth.tokens[{index}].{field}");
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok {
            return Err((
                key("name"),
                format!("{:?} is not a token name (letters, digits, . _ -; at most 64)", self.name),
            ));
        }
        if self.name == "operator" {
            return Err((key("name"), "\"operator\" names the main secret; choose another name".into()));
        }
        match (&self.token, &self.token_env) {
            (Some(_), Some(_)) => return Err((key("token"), "set either token or tokenEnv, not both".into())),
            (None, None) => return Err((key("tokenEnv"), "set tokenEnv (or token)".into())),
            (Some(t), None) if t.expose().is_empty() => return Err((key("token"), "must not be empty".into())),
            _ => {}
        }
        if self.scopes.is_empty() {
            return Err((key("scopes"), format!("name at least one of {SCOPE_NAMES:?}")));
        }
        if let Some(bad) = self.scopes.iter().find(|s| !SCOPE_NAMES.contains(&s.as_str())) {
            return Err((key("scopes"), format!("{bad:?} is not one of {SCOPE_NAMES:?}")));
        }
        if let Some(bad) = self.agents.iter().flatten().find(|a| crate::chat::AgentId::parse(a).is_none()) {
            return Err((key("agents"), format!("{bad:?} is not an agent id")));
        }
        if self.rate_limit.as_ref().is_some_and(|r| r.requests_per_minute == 0) {
            return Err((key("rateLimit.requestsPerMinute"), "must be at least 1".into()));
        }
        Ok(())
    }

    /// The token's value, from the file or the environment; the error names the variable.
    pub fn resolve(&self, index: usize, env: impl Fn(&str) -> Option<String>) -> Result<Secret, String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let var = self.token_env.as_deref().unwrap_or_default();
        match env(var) {
            Some(value) if !value.is_empty() => Ok(Secret::new(value)),
            _ => Err(format!("gateway.auth.tokens[{index}].tokenEnv: environment variable {var} is not set")),
        }
    }
}
