//! The gateway's configuration: a JSON5 file, embedded defaults, and the
//! environment variables that may supply secrets.

mod agents;
mod auth;
mod budget;
mod http;
mod providers;
mod secret;
mod telemetry;
mod tokens;
mod ws;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use agents::{
    AgentEntry, AgentHttpConfig, AgentsConfig, AutoRollback, CredentialConfig, HttpLimitsConfig, LimitsConfig,
    OAuthConfig, RecordConfig, RolloutConfig, Sticky,
};
pub use auth::{AuthConfig, AuthMode, RateLimitConfig};
pub use budget::{BudgetConfig, BudgetWindow};
pub use http::{CorsConfig, EndpointToggle, HttpConfig, HttpEndpoints, ResponsesEndpoint};
pub use providers::{HeaderValueConfig, ModelConfig, PriceConfig, ProviderConfig};
pub use secret::Secret;
pub use telemetry::{OtlpConfig, TelemetryConfig};
pub use tokens::{TokenConfig, TokenRateLimit};
pub use ws::WsConfig;

/// Port the gateway listens on when nothing else is said (OpenClaw's).
pub const DEFAULT_PORT: u16 = 18789;

/// Whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Where shared state lives: absent = SQLite on this machine.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Model providers agents may call, by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Traces over OTLP (off unless an endpoint is set).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Folder of the file the config came from; relative plugin paths resolve against it.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// The file the config came from, watched for live agent changes.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `gateway.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayConfig {
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// Where the gateway keeps its files (default: env `WASMCLAW_STATE_DIR`, else `~/.wasmclaw`).
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub ws: WsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// After SIGTERM, how long in-flight runs and streams get to finish.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
    /// Host names (besides loopback ones) requests may name in auth mode `none`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub control_ui: ControlUiConfig,
}

/// `gateway.controlUi`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlUiConfig {
    /// Serve the control page at `/ui` (and `/` for browsers).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Browser origins (`https://ops.example.com`) allowed to open the WebSocket.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl Default for ControlUiConfig {
    fn default() -> Self {
        Self { enabled: true, allowed_origins: Vec::new() }
    }
}

/// `gateway.metrics`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may read `/metrics`.
    #[serde(default)]
    pub access: MetricsAccess,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, access: MetricsAccess::default() }
    }
}

/// `auth`: the gateway's bearer secret; `loopback`: no secret, loopback clients only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    #[default]
    Auth,
    Loopback,
}

fn default_true() -> bool {
    true
}

fn default_grace() -> u64 {
    30_000
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            bind: default_bind(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            state_dir: None,
            ws: WsConfig::default(),
            shutdown_grace_ms: default_grace(),
            metrics: MetricsConfig::default(),
            allowed_hosts: Vec::new(),
            control_ui: ControlUiConfig::default(),
        }
    }
}

/// `sessions.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionsConfig {
    /// SQLite file (default `<stateDir>/sessions.sqlite`).
    pub path: Option<PathBuf>,
    /// Most recent messages an agent sees as history.
    #[serde(default = "default_max_history")]
    pub max_history_messages: usize,
    /// Remove sessions idle this long: `"90s"`, `"30m"`, `"12h"`, `"7d"`. Off when absent.
    pub idle_ttl: Option<String>,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self { path: None, max_history_messages: default_max_history(), idle_ttl: None }
    }
}

fn default_max_history() -> usize {
    200
}

/// `database.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseConfig {
    /// `postgres://…`; else env `WASMCLAW_DATABASE_URL`; neither = SQLite.
    /// A secret: it may carry a password.
    pub url: Option<Secret>,
    /// Pooled connections per instance.
    #[serde(default = "default_db_connections")]
    pub max_connections: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, max_connections: default_db_connections() }
    }
}

fn default_db_connections() -> usize {
    16
}

/// Parse `"<n>s|m|h|d"` into a duration.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then(|| std::time::Duration::from_secs(seconds))
}

fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_bind() -> String {
    "127.0.0.1".into()
}
fn default_max_body() -> usize {
    20 << 20
}

/// A config that cannot be used, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, line: usize, column: usize, message: String },
    #[error("{path}: `{key}`: {message}")]
    Value { path: PathBuf, key: String, message: String },
}

impl Config {
    /// Load `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config = Self::parse(&text, path)?;
        config.base_dir = path.parent().map(Path::to_path_buf);
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parse JSON5 text; `origin` names the source in errors. Errors name
    /// the file, line, column and key, never a value or the source text: the
    /// line in question may hold a token.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let invalid = |key: String, err: json5::Error, describe: fn(&str) -> String| {
            let json5::Error::Message { msg, location } = err;
            let (line, column) = location.map_or((1, 1), |l| (l.line, l.column));
            ConfigError::Invalid { path: origin.to_path_buf(), key, line, column, message: describe(&msg) }
        };
        let mut de = json5::Deserializer::from_str(text).map_err(|e| invalid("(syntax)".into(), e, syntax_error))?;
        let config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let key = e.path().to_string();
            invalid(key, e.into_inner(), without_values)
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let value_error = |key: &str, message: String| ConfigError::Value {
            path: origin.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if self.gateway.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(value_error("gateway.bind", format!("{:?} is not an IP address", self.gateway.bind)));
        }
        let loopback = self.gateway.bind.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if self.gateway.auth.mode == AuthMode::None && !loopback {
            return Err(value_error(
                "gateway.auth.mode",
                format!("\"none\" is only allowed when gateway.bind is a loopback address, not {}", self.gateway.bind),
            ));
        }
        if self.gateway.http.sse_keep_alive_ms == 0 {
            return Err(value_error("gateway.http.sseKeepAliveMs", "must be at least 1".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, token) in self.gateway.auth.tokens.iter().enumerate() {
            token.validate(i).map_err(|(key, message)| value_error(&key, message))?;
            if !names.insert(&token.name) {
                let message = format!("{:?} is used by another token", token.name);
                return Err(value_error(&format!("gateway.auth.tokens[{i}].name"), message));
            }
        }
        self.gateway.http.validate().map_err(|(key, message)| value_error(&key, message))?;
        let ws = &self.gateway.ws;
        for (key, value) in [
            ("gateway.ws.maxPayloadBytes", ws.max_payload_bytes as u64),
            ("gateway.ws.maxPendingHandshakes", ws.max_pending_handshakes as u64),
            ("gateway.ws.sendTimeoutMs", ws.send_timeout_ms),
            ("gateway.ws.maxResultBytes", ws.max_result_bytes as u64),
            ("gateway.ws.maxResultBytesPerPrincipal", ws.max_result_bytes_per_principal as u64),
        ] {
            if value == 0 {
                return Err(value_error(key, "must be at least 1".into()));
            }
        }
        match ws.max_pending_handshakes_per_client {
            Some(0) => {
                return Err(value_error("gateway.ws.maxPendingHandshakesPerClient", "must be at least 1".into()));
            }
            Some(n) if n > ws.max_pending_handshakes => {
                let message =
                    format!("{n} is more than gateway.ws.maxPendingHandshakes ({})", ws.max_pending_handshakes);
                return Err(value_error("gateway.ws.maxPendingHandshakesPerClient", message));
            }
            _ => {}
        }
        if self.gateway.auth.rate_limit.max_attempts == 0 {
            return Err(value_error("gateway.auth.rateLimit.maxAttempts", "must be at least 1".into()));
        }
        if crate::chat::AgentId::parse(&self.agents.default).is_none() {
            return Err(value_error("agents.default", invalid_id_message(&self.agents.default)));
        }
        if let Some(ttl) = &self.sessions.idle_ttl
            && parse_duration(ttl).is_none()
        {
            return Err(value_error(
                "sessions.idleTtl",
                format!("{ttl:?} is not a duration like \"30m\", \"12h\" or \"7d\""),
            ));
        }
        for (name, provider) in &self.providers {
            provider.validate(name).map_err(|(key, message)| value_error(&key, message))?;
        }
        for (id, entry) in self.agents.entries.iter().flatten() {
            if crate::chat::AgentId::parse(id).is_none() {
                return Err(value_error(&format!("agents.entries.{id}"), invalid_id_message(id)));
            }
            if entry.plugin.trim().is_empty() {
                return Err(value_error(&format!("agents.entries.{id}.plugin"), "must not be empty".into()));
            }
            if let Some(provider) = &entry.provider {
                if !self.providers.contains_key(provider) {
                    let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
                    let message = format!("no provider named {provider:?} (configured: {known:?})");
                    return Err(value_error(&format!("agents.entries.{id}.provider"), message));
                }
                if entry.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
                    let message = "an agent with a provider needs a `model`".to_string();
                    return Err(value_error(&format!("agents.entries.{id}.model"), message));
                }
            }
            if let Some(Err((field, message))) = entry.record.as_ref().map(|r| r.check()) {
                return Err(value_error(&format!("agents.entries.{id}.record.{field}"), message));
            }
            if let Some(rollout) = &entry.rollout {
                let key = format!("agents.entries.{id}.rollout");
                if rollout.plugin.trim().is_empty() {
                    return Err(value_error(&format!("{key}.plugin"), "must not be empty".into()));
                }
                if rollout.weight > 100 {
                    return Err(value_error(&format!("{key}.weight"), format!("{} is over 100", rollout.weight)));
                }
                if let Some(Err((field, message))) = rollout.auto_rollback.map(|a| a.check()) {
                    return Err(value_error(&format!("{key}.autoRollback.{field}"), message));
                }
            }
        }
        Ok(())
    }

    /// The agent entries to load: the configured ones, or `main` = echo.
    pub fn agent_entries(&self) -> BTreeMap<String, AgentEntry> {
        self.agents
            .entries
            .clone()
            .unwrap_or_else(|| BTreeMap::from([("main".to_string(), AgentEntry::plugin("echo"))]))
    }

    /// The gateway's state folder: config, else `WASMCLAW_STATE_DIR`, else `~/.wasmclaw`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.gateway.state_dir {
            return self.resolve_path(&dir.to_string_lossy());
        }
        if let Some(dir) = std::env::var_os("WASMCLAW_STATE_DIR") {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".wasmclaw")
    }

    /// The session database file.
    pub fn sessions_path(&self) -> PathBuf {
        match &self.sessions.path {
            Some(p) => self.resolve_path(&p.to_string_lossy()),
            None => self.state_dir().join("sessions.sqlite"),
        }
    }

    /// The PostgreSQL URL for cluster mode, if one is set (config, then env).
    pub fn database_url(&self) -> Option<Secret> {
        self.database
            .url
            .clone()
            .or_else(|| std::env::var("WASMCLAW_DATABASE_URL").ok().filter(|u| !u.is_empty()).map(Secret::new))
    }

    /// The folder watched for agent components.
    pub fn agents_dir(&self) -> PathBuf {
        match &self.agents.dir {
            Some(dir) => self.resolve_path(&dir.to_string_lossy()),
            None => self.state_dir().join("agents"),
        }
    }

    /// Where a plugin reference that is a path points, relative to the config file.
    pub fn resolve_path(&self, plugin: &str) -> PathBuf {
        match &self.base_dir {
            Some(dir) if Path::new(plugin).is_relative() => dir.join(plugin),
            _ => PathBuf::from(plugin),
        }
    }
}

/// A JSON5 syntax error without the quoted source line: only what was expected.
fn syntax_error(message: &str) -> String {
    match message.lines().rev().find_map(|l| l.trim().strip_prefix("= ")) {
        Some(expected) => format!("syntax error: {expected}"),
        None => "syntax error".into(),
    }
}

/// serde's message without the value it quotes (`invalid type: string "…"`,
/// `unknown variant `…``): a secret in the wrong place must not be printed.
fn without_values(message: &str) -> String {
    let (what, expected) = match message.split_once(", expected") {
        Some((what, rest)) => (what, format!(", expected{rest}")),
        None => (message, String::new()),
    };
    let what = if let Some(kind) = what.strip_prefix("invalid type: ").or_else(|| what.strip_prefix("invalid value: "))
    {
        let label = &what[..what.len() - kind.len()];
        format!("{label}{}", kind.split([' ', '`', '"']).next().unwrap_or_default())
    } else if what.starts_with("unknown variant") {
        "unknown variant".to_string()
    } else if what.contains(['"', '`']) && !what.starts_with("unknown field") && !what.starts_with("missing field") {
        // An unfamiliar message that quotes something: keep only its first words.
        what.split(['"', '`']).next().unwrap_or_default().trim_end().to_string()
    } else {
        what.to_string()
    };
    format!("{what}{expected}")
}

fn invalid_id_message(id: &str) -> String {
    format!("{id:?} is not a valid agent id (expected [a-z0-9][a-z0-9_-]{{0,63}})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Config::parse(text, Path::new("/etc/wasmclaw/gateway.json5")).expect_err("must be refused").to_string()
    }

    #[test]
    fn errors_name_file_line_and_key_but_never_a_value() {
        let secret = "s3cr3t-7f81";
        let syntax = error(&format!("{{\n  gateway: {{ auth: {{ token: \"{secret}\" port: 1 }} }}\n}}"));
        assert!(syntax.starts_with("/etc/wasmclaw/gateway.json5:2:"), "{syntax}");
        assert!(!syntax.contains(secret) && !syntax.contains("token:"), "{syntax}");
        for (text, key) in [
            (format!("{{ gateway: {{ auth: {{ mode: \"{secret}\" }} }} }}"), "gateway.auth.mode"),
            (format!("{{ gateway: {{ port: \"{secret}\" }} }}"), "gateway.port"),
            ("{ gateway: { auth: { password: 73311234 } } }".to_string(), "gateway.auth.password"),
            (format!("{{ providers: {{ p: {{ baseUrl: \"ftp://u:{secret}@x\" }} }} }}"), "providers.p.baseUrl"),
        ] {
            let message = error(&text);
            assert!(message.contains(key), "{message}");
            assert!(!message.contains(secret) && !message.contains("73311234"), "a value leaked: {message}");
        }
    }

    #[test]
    fn record_is_off_by_default_and_its_values_are_checked() {
        let parse = |record: &str| {
            let text = format!(r#"{{ agents: {{ entries: {{ main: {{ plugin: "echo" {record} }} }} }} }}"#);
            Config::parse(&text, Path::new("g.json5"))
        };
        let plain = parse("").unwrap();
        assert_eq!(plain.agent_entries()["main"].record, None);
        let on = parse(", record: { sample: 0.25 }").unwrap();
        let record = on.agent_entries()["main"].record.clone().unwrap();
        assert_eq!((record.sample, record.retain_days, record.max_bytes), (0.25, 7, 4 << 20));
        for (record, key) in [
            (", record: { sample: 1.5 }", "agents.entries.main.record.sample"),
            (", record: { sample: 1, retainDays: 0 }", "agents.entries.main.record.retainDays"),
        ] {
            let message = parse(record).expect_err("must be refused").to_string();
            assert!(message.contains(key), "{message}");
        }
    }
}
