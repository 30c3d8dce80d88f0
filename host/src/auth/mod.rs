//! Authentication for every door (HTTP bearer, WS `connect`): a presented
//! secret becomes a [`Principal`] with scopes, or nothing.

mod lockout;
mod principal;

pub use lockout::Lockout;
pub use principal::{Principal, Scope};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, AuthMode, Secret};

/// Env var that supplies the token when `gateway.auth.token` is absent.
pub const TOKEN_ENV: &str = "OPENCLAW_GATEWAY_TOKEN";
/// Env var that supplies the password when `gateway.auth.password` is absent.
pub const PASSWORD_ENV: &str = "OPENCLAW_GATEWAY_PASSWORD";

/// Checks presented credentials against the configured secret.
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    /// Only the digest is kept so comparisons take the same time whatever the input length.
    digest: [u8; 32],
}

/// The configured mode has no secret anywhere.
#[derive(Debug, thiserror::Error)]
#[error(
    "gateway.auth.mode is \"{mode}\" but no {mode} is configured: set `gateway.auth.{mode}` in the \
     config file or the {env} environment variable"
)]
pub struct MissingSecret {
    mode: &'static str,
    env: &'static str,
}

impl Authenticator {
    /// Resolve the secret for the configured mode: the config value, else the env var.
    pub fn from_config(config: &AuthConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, MissingSecret> {
        let (configured, env_name, mode_name) = match config.mode {
            AuthMode::Token => (&config.token, TOKEN_ENV, "token"),
            AuthMode::Password => (&config.password, PASSWORD_ENV, "password"),
            AuthMode::None => return Ok(Self { mode: AuthMode::None, digest: [0; 32] }),
        };
        let secret = configured
            .clone()
            .or_else(|| env(env_name).map(Secret::new))
            .filter(|s| !s.expose().is_empty())
            .ok_or(MissingSecret { mode: mode_name, env: env_name })?;
        Ok(Self { mode: config.mode, digest: digest(secret.expose()) })
    }

    /// The mode clients authenticate with.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Who `presented` authenticates as, if anyone. Today one principal
    /// exists: the operator, holder of the main secret, with every scope.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        self.verify(presented).then(Principal::operator)
    }

    /// True when `presented` is the configured secret.
    fn verify(&self, presented: &str) -> bool {
        if self.mode == AuthMode::None {
            return true;
        }
        let theirs = digest(presented);
        self.digest.iter().zip(theirs.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Check `Authorization: Bearer <secret>` (scheme case-insensitive).
    pub fn authenticate_bearer(&self, headers: &HeaderMap) -> Result<Principal, AuthFailure> {
        if self.mode == AuthMode::None {
            return Ok(Principal::operator());
        }
        let value = headers.get(header::AUTHORIZATION).ok_or(AuthFailure::Missing)?;
        let value = value.to_str().map_err(|_| AuthFailure::Wrong)?;
        let (scheme, secret) = value.split_once(' ').ok_or(AuthFailure::Wrong)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthFailure::Wrong);
        }
        self.authenticate(secret.trim()).ok_or(AuthFailure::Wrong)
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Wrong,
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(mode: AuthMode, token: Option<&str>, password: Option<&str>) -> AuthConfig {
        AuthConfig {
            mode,
            token: token.map(|t| Secret::new(t.into())),
            password: password.map(|p| Secret::new(p.into())),
            rate_limit: Default::default(),
        }
    }

    #[test]
    fn config_wins_over_env_and_env_fills_the_gap() {
        let a = Authenticator::from_config(&auth(AuthMode::Token, Some("cfg"), None), |_| Some("env".into())).unwrap();
        assert!(a.verify("cfg") && !a.verify("env"));
        let a =
            Authenticator::from_config(&auth(AuthMode::Token, None, None), |k| (k == TOKEN_ENV).then(|| "env".into()))
                .unwrap();
        assert!(a.verify("env") && !a.verify("cfg") && !a.verify(""));
    }

    #[test]
    fn password_mode_ignores_the_token() {
        let err = Authenticator::from_config(&auth(AuthMode::Password, Some("tok"), None), |_| None).err().unwrap();
        let message = err.to_string();
        assert!(message.contains("gateway.auth.password") && message.contains(PASSWORD_ENV), "{message}");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let a = Authenticator::from_config(&auth(AuthMode::Token, Some("s3cret"), None), |_| None).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(a.authenticate_bearer(&h), Err(AuthFailure::Missing));
        for (value, ok) in [
            ("Bearer s3cret", true),
            ("bearer s3cret", true),
            ("BEARER s3cret", true),
            ("Basic s3cret", false),
            ("Bearer nope", false),
            ("s3cret", false),
        ] {
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(a.authenticate_bearer(&h).is_ok(), ok, "{value}");
        }
    }
}
