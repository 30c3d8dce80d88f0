//! `gateway.http.*`: the HTTP door's endpoints, timeouts and CORS.

use serde::Deserialize;

use super::*;

/// `gateway.http.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConfig {
    #[serde(default)]
    pub endpoints: HttpEndpoints,
    /// Largest request body accepted, in bytes (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Time a client has to deliver its whole request body (408 beyond).
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u64,
    /// A `: ping` comment goes out after this long without a stream event.
    #[serde(default = "default_sse_keep_alive")]
    pub sse_keep_alive_ms: u64,
    /// Time a client has to send a whole request head, from connecting or from its previous response.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress is closed after this long without a byte from the
    /// client; default 5000, or `headerReadTimeoutMs` if that is shorter (see [`Self::idle_timeout_ms`]).
    #[serde(rename = "idleTimeoutMs")]
    pub idle_timeout: Option<u64>,
    /// Open connections at most (HTTP and WebSocket); default: sized from the file-descriptor limit.
    pub max_connections: Option<usize>,
    /// Open connections per client address at most; default: three quarters of `maxConnections`.
    pub max_connections_per_client: Option<usize>,
    /// Which browser origins may call the HTTP API (CORS); off by default.
    #[serde(default)]
    pub cors: CorsConfig,
}

/// `gateway.http.cors.*`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsConfig {
    /// Origins (`https://app.example.com`, or `*` for any) whose pages may
    /// call the API; empty: no CORS headers, no preflight answered.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl CorsConfig {
    /// An origin is `*` or `scheme://host[:port]`, nothing after it.
    pub(super) fn validate(&self) -> Result<(), String> {
        for origin in &self.allowed_origins {
            let origin = origin.trim_end_matches('/');
            let well_formed = origin == "*"
                || origin.split_once("://").is_some_and(|(scheme, rest)| {
                    !scheme.is_empty() && !rest.is_empty() && !rest.contains(['/', '?', '#', ' '])
                });
            if !well_formed {
                return Err(format!(
                    "{origin:?} is not an origin; write scheme://host[:port], e.g. https://app.example.com, or \"*\""
                ));
            }
        }
        Ok(())
    }
}

fn default_header_read_timeout() -> u64 {
    10_000
}

/// Idle timeout when none is configured (and the header timeout is not shorter).
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 5_000;

impl HttpConfig {
    /// The idle timeout in force: the configured one, else the default capped by the header timeout.
    pub fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS.min(self.header_read_timeout_ms))
    }

    /// Check the connection keys; `Err` names the key and what is wrong with it.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let error = |key: &str, message: String| Err((format!("gateway.http.{key}"), message));
        if self.header_read_timeout_ms == 0 {
            return error("headerReadTimeoutMs", "must be at least 1".into());
        }
        match self.idle_timeout {
            Some(0) => return error("idleTimeoutMs", "must be at least 1".into()),
            // hyper starts the header clock as soon as a connection goes idle,
            // so a longer idle timeout would silently never apply.
            Some(idle) if idle > self.header_read_timeout_ms => {
                return error(
                    "idleTimeoutMs",
                    format!(
                        "{idle} is longer than gateway.http.headerReadTimeoutMs ({}); an idle connection is \
                         closed when its next request head is late, so raise headerReadTimeoutMs too",
                        self.header_read_timeout_ms
                    ),
                );
            }
            _ => {}
        }
        if let Err(message) = self.cors.validate() {
            return error("cors.allowedOrigins", message);
        }
        if self.max_connections == Some(0) {
            return error("maxConnections", "must be at least 1".into());
        }
        match (self.max_connections_per_client, self.max_connections) {
            (Some(0), _) => error("maxConnectionsPerClient", "must be at least 1".into()),
            (Some(per_client), Some(max)) if per_client > max => error(
                "maxConnectionsPerClient",
                format!("{per_client} is more than gateway.http.maxConnections ({max})"),
            ),
            _ => Ok(()),
        }
    }
}

fn default_sse_keep_alive() -> u64 {
    15_000
}

fn default_read_timeout() -> u64 {
    30_000
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            endpoints: HttpEndpoints::default(),
            max_body_bytes: default_max_body(),
            read_timeout_ms: default_read_timeout(),
            sse_keep_alive_ms: default_sse_keep_alive(),
            header_read_timeout_ms: default_header_read_timeout(),
            idle_timeout: None,
            max_connections: None,
            max_connections_per_client: None,
            cors: CorsConfig::default(),
        }
    }
}

/// `gateway.http.endpoints.*`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpEndpoints {
    #[serde(default)]
    pub chat_completions: EndpointToggle,
    /// `/v1/responses` (OpenClaw's key for its OpenResponses endpoint).
    #[serde(default)]
    pub responses: ResponsesEndpoint,
}

/// `gateway.http.endpoints.responses`: the toggle and the bounds of background responses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResponsesEndpoint {
    #[serde(default)]
    pub enabled: bool,
    /// Background responses one principal may have running at once.
    #[serde(default = "default_background_per_principal")]
    pub max_background_per_principal: usize,
    /// Bytes of SSE events a background response keeps for a resumed stream.
    #[serde(default = "default_background_event_bytes")]
    pub background_event_bytes: usize,
}

impl Default for ResponsesEndpoint {
    fn default() -> Self {
        Self {
            enabled: false,
            max_background_per_principal: default_background_per_principal(),
            background_event_bytes: default_background_event_bytes(),
        }
    }
}

fn default_background_per_principal() -> usize {
    8
}
fn default_background_event_bytes() -> usize {
    4 << 20
}

/// An endpoint that is off unless enabled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointToggle {
    #[serde(default)]
    pub enabled: bool,
}
