//! Authentication for every door (HTTP bearer, WS `connect`): a presented
//! secret becomes a [`Principal`] with scopes, or nothing.

mod client;
pub mod device;
mod lockout;
mod principal;
mod rate;
mod shared;

pub use client::{ClientPlace, ClientPlaces, NoPlace, client_key};
pub use lockout::Lockout;
pub use principal::{Principal, Scope};
pub use rate::RequestRate;
pub use shared::SharedLockout;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::chat::AgentId;
use crate::config::{AuthConfig, AuthMode, Secret};

/// Env var that supplies the token when `gateway.auth.token` is absent.
pub const TOKEN_ENV: &str = "OPENCLAW_GATEWAY_TOKEN";
/// Env var that supplies the password when `gateway.auth.password` is absent.
pub const PASSWORD_ENV: &str = "OPENCLAW_GATEWAY_PASSWORD";

/// Checks presented credentials against the main secret and the named tokens.
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    /// Only digests are kept so comparisons take the same time whatever the input length.
    digest: [u8; 32],
    tokens: Vec<([u8; 32], Principal)>,
    /// Built once: authenticating is then two reference-count increments.
    operator: Principal,
}

/// A secret the configuration names is nowhere to be found.
#[derive(Debug, thiserror::Error)]
pub enum MissingSecret {
    #[error(
        "gateway.auth.mode is \"{mode}\" but no {mode} is configured: set `gateway.auth.{mode}` in the \
         config file or the {env} environment variable"
    )]
    Main { mode: &'static str, env: &'static str },
    #[error("{0}")]
    Token(String),
}

impl Authenticator {
    /// Resolve the secret for the configured mode: the config value, else the env var.
    pub fn from_config(config: &AuthConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, MissingSecret> {
        let (configured, env_name, mode_name) = match config.mode {
            AuthMode::Token => (&config.token, TOKEN_ENV, "token"),
            AuthMode::Password => (&config.password, PASSWORD_ENV, "password"),
            AuthMode::None => {
                return Ok(Self {
                    mode: AuthMode::None,
                    digest: [0; 32],
                    tokens: Vec::new(),
                    operator: Principal::operator(),
                });
            }
        };
        let secret = configured
            .clone()
            .or_else(|| env(env_name).map(Secret::new))
            .filter(|s| !s.expose().is_empty())
            .ok_or(MissingSecret::Main { mode: mode_name, env: env_name })?;
        let mut tokens = Vec::new();
        for (i, token) in config.tokens.iter().enumerate() {
            let value = token.resolve(i, &env).map_err(MissingSecret::Token)?;
            let scopes = Scope::ALL.into_iter().filter(|s| token.scopes.iter().any(|n| n == s.name())).collect();
            let agents = token.agents.as_ref().map(|ids| ids.iter().filter_map(|a| AgentId::parse(a)).collect());
            let rate = token.rate_limit.as_ref().map(|r| RequestRate::per_minute(r.requests_per_minute));
            tokens.push((digest(value.expose()), Principal::token(&token.name, scopes, agents, rate)));
        }
        Ok(Self { mode: config.mode, digest: digest(secret.expose()), tokens, operator: Principal::operator() })
    }

    /// The mode clients authenticate with.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Who `presented` authenticates as, if anyone: the operator (the main
    /// secret, every scope) or a named token. Every digest is compared, in
    /// constant time, whichever matches.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        if self.mode == AuthMode::None {
            return Some(self.operator.clone());
        }
        let theirs = digest(presented);
        let mut found = same(&self.digest, &theirs).then(|| self.operator.clone());
        for (token, principal) in &self.tokens {
            if same(token, &theirs) {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// The principal a credential named `name` stands for now (the main
    /// secret is `operator`): what a paired device acts as. `None` once the
    /// config no longer has that token, so its devices stop working too.
    pub fn principal_named(&self, name: &str) -> Option<Principal> {
        if self.operator.name() == name {
            return Some(self.operator.clone());
        }
        self.tokens.iter().find(|(_, p)| p.name() == name).map(|(_, p)| p.clone())
    }

    #[cfg(test)]
    fn verify(&self, presented: &str) -> bool {
        self.authenticate(presented).is_some()
    }

    /// Check `Authorization: Bearer <secret>` (scheme case-insensitive).
    pub fn authenticate_bearer(&self, headers: &HeaderMap) -> Result<Principal, AuthFailure> {
        if self.mode == AuthMode::None {
            return Ok(self.operator.clone());
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

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
            tokens: Vec::new(),
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
    fn named_tokens_become_their_principals_and_a_missing_variable_is_named() {
        let mut config = auth(AuthMode::Token, Some("main"), None);
        config.tokens = vec![crate::config::TokenConfig {
            name: "web-app".into(),
            token: None,
            token_env: Some("WEB_APP_TOKEN".into()),
            scopes: vec!["operator.write".into()],
            agents: Some(vec!["main".into()]),
            rate_limit: None,
            budget: None,
        }];
        let err = Authenticator::from_config(&config, |_| None).err().unwrap().to_string();
        assert!(err.contains("WEB_APP_TOKEN") && err.contains("tokens[0].tokenEnv"), "{err}");
        let a = Authenticator::from_config(&config, |k| (k == "WEB_APP_TOKEN").then(|| "app-secret".into())).unwrap();
        let app = a.authenticate("app-secret").unwrap();
        assert_eq!(app.name(), "web-app");
        assert!(app.allows(Scope::Read) && app.allows(Scope::Write) && !app.allows(Scope::Admin));
        assert_eq!(a.authenticate("main").unwrap().name(), "operator");
        assert!(a.authenticate("nope").is_none());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let a = Authenticator::from_config(&auth(AuthMode::Token, Some("s3cret"), None), |_| None).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(a.authenticate_bearer(&h).err(), Some(AuthFailure::Missing));
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
