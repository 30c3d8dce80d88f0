//! The one place errors become OpenAI-shaped HTTP responses. Failures inside
//! the gateway (a store's SQL error, a crashed run task) never reach the
//! client: it gets a generic message naming the request id, and the detail
//! goes to the log under that id ([`ApiError::internal`]).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use super::request_id::{in_request, request_id};

use crate::auth::AuthFailure;
use crate::providers::ProviderError;
use crate::runs::InstallError;
use crate::runtime::{LoadError, RunError};
use crate::sessions::{InvalidPage, InvalidSessionKey, StoreError};

/// An error response: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub message: String,
    pub retry_after: Option<u64>,
    /// For 405: the methods the path accepts.
    pub allow: Option<std::sync::Arc<str>>,
    /// Adds `x-should-retry: false`, which the OpenAI SDKs honour.
    pub no_retry: bool,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code,
            param: None,
            message: message.into(),
            retry_after: None,
            allow: None,
            no_retry: false,
        }
    }

    /// 400 for a request the gateway cannot use.
    pub fn invalid_request(message: impl Into<String>, param: Option<String>) -> Self {
        Self { param, ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, message) }
    }

    /// 404 for a path that does not exist (or an endpoint that is disabled).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", Some("not_found"), "Not found")
    }

    /// 404 for a session that does not exist for the caller (another
    /// principal's session gets exactly this too).
    pub fn session_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", Some("session_not_found"), "No such session")
    }

    /// 404 for a recorded run that does not exist for the caller (another
    /// principal's run gets exactly this too).
    pub fn run_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", Some("run_not_found"), "No such recorded run")
    }

    /// 405 with the methods that are allowed named in the message.
    pub fn method_not_allowed(allow: std::sync::Arc<str>) -> Self {
        Self {
            allow: Some(allow.clone()),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                Some("method_not_allowed"),
                format!("Method not allowed; use {allow}"),
            )
        }
    }

    /// 404 for an agent no one has configured.
    pub fn unknown_agent(what: &str) -> Self {
        Self {
            param: Some("model".into()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                format!("The model `{what}` does not exist or you do not have access to it."),
            )
        }
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!("Request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 415 for a body that says it is not JSON.
    pub fn unsupported_media_type(got: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            Some("unsupported_media_type"),
            format!("Content-Type {got:?} is not supported; send application/json"),
        )
    }

    /// 429 while a client is locked out after repeated auth failures.
    pub fn locked_out(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("auth_rate_limited"),
                "Too many failed authentication attempts; try again later",
            )
        }
    }

    /// 429 for a credential over its `rateLimit`.
    pub fn rate_limited(token: &str, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limited"),
                format!("Rate limit of the token {token:?} exceeded; retry after {retry_after} s"),
            )
        }
    }

    /// 429: the caller has as many background responses running as it may.
    pub fn too_many_background(max: usize) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("too_many_background_responses"),
                format!(
                    "This credential already has {max} background responses running; wait for one to finish or \
                     cancel one (gateway.http.endpoints.responses.maxBackgroundPerPrincipal)"
                ),
            )
        }
    }

    /// 503 while the gateway drains for shutdown.
    pub fn shutting_down() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("shutting_down"),
                "The gateway is shutting down",
            )
        }
    }

    /// 503 while the session database cannot be reached: a retry soon may work.
    /// The driver's words (addresses, timeouts, settings) go to the log, not to the client.
    pub fn store_unavailable(detail: impl std::fmt::Display) -> Self {
        let message = logged("the session database is unavailable", detail);
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("session_store_unavailable"),
                format!("The session database is unavailable; retry shortly ({message})"),
            )
        }
    }

    /// 408 for a body that did not arrive in time.
    pub fn read_timeout(ms: u64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            format!("The request body did not arrive within {ms} ms"),
        )
    }

    /// 403 for a caller whose credentials lack the scope a route needs.
    pub fn permission_denied(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some("permission_denied"),
            format!("This credential lacks the {scope} scope"),
        )
    }

    /// 403 for a loopback-only route called from elsewhere.
    pub fn loopback_only(what: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some("forbidden"),
            format!("{what} are served to loopback clients only"),
        )
    }

    /// 403 for a browser page whose origin may not open the WebSocket.
    pub fn forbidden_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some("origin_not_allowed"),
            "This origin may not connect; list it in gateway.controlUi.allowedOrigins",
        )
    }

    /// 403 for a Host name the gateway does not answer to in auth mode `none`.
    pub fn forbidden_host() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some("host_not_allowed"),
            "Without credentials (auth mode none) only loopback host names are served; see gateway.allowedHosts",
        )
    }

    /// 500 for a failure inside the gateway: `detail` (which may hold SQL,
    /// key values or panic text) goes to the log with the request id; the
    /// client gets only that id.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let id = request_id().filter(|id| !id.is_empty());
        let shown = id.as_deref().unwrap_or("-");
        tracing::error!(request_id = shown, detail = %detail, "internal error; the client was sent only the request id");
        let message = match &id {
            Some(id) => format!("Internal error; the gateway logged the details under request id {id}"),
            None => "Internal error; the gateway logged the details".to_string(),
        };
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some("internal_error"), message)
    }

    /// The same error with another status.
    pub fn into_response_with(mut self, status: StatusCode) -> Response {
        self.status = status;
        self.into_response()
    }

    /// The JSON body, also used for errors inside an SSE stream.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.no_retry {
            response.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> Self {
        let message = match failure {
            AuthFailure::Missing => "Missing credentials: send `Authorization: Bearer <token>`",
            AuthFailure::Wrong => "Incorrect API key provided",
        };
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", Some("invalid_api_key"), message)
    }
}

/// Log `detail` at warn under the request id; what the client is told instead.
fn logged(what: &str, detail: impl std::fmt::Display) -> String {
    let id = request_id().filter(|id| !id.is_empty());
    tracing::warn!(request_id = id.as_deref().unwrap_or("-"), detail = %detail, "{what}; the client was sent only the request id");
    match id {
        Some(id) => format!("the gateway logged the details under request id {id}"),
        None => "the gateway logged the details".to_string(),
    }
}

impl From<crate::runs::replay::ReplayError> for ApiError {
    fn from(e: crate::runs::replay::ReplayError) -> Self {
        use crate::runs::replay::ReplayError;
        match e {
            ReplayError::NotFound(_) => Self::run_not_found(),
            ReplayError::Store(e) => e.into(),
            ReplayError::NoComponent(_) => Self::invalid_request(e.to_string(), Some("digest".into())),
            ReplayError::Load(_) => Self::invalid_request(e.to_string(), Some("component".into())),
            ReplayError::Truncated(_) | ReplayError::Unreadable(..) => {
                Self::invalid_request(e.to_string(), Some("runId".into()))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::store_unavailable(e),
            StoreError::WrongAgent { .. } => Self::invalid_request(e.to_string(), None),
            e => Self::internal(e),
        }
    }
}

impl From<InvalidPage> for ApiError {
    fn from(e: InvalidPage) -> Self {
        Self::invalid_request(e.message, Some(e.param.into()))
    }
}

impl From<InvalidSessionKey> for ApiError {
    fn from(e: InvalidSessionKey) -> Self {
        Self::invalid_request(e.to_string(), Some("x-openclaw-session-key".into()))
    }
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> Self {
        let message = e.to_string();
        let with = |status, code| Self::new(status, "invalid_request_error", Some(code), message.clone());
        match e {
            InstallError::TooLarge { limit, .. } => Self::too_large(limit),
            InstallError::Load(LoadError::Compile(_)) => with(StatusCode::BAD_REQUEST, "invalid_component"),
            InstallError::Load(LoadError::Link(_)) => with(StatusCode::UNPROCESSABLE_ENTITY, "incompatible_component"),
            InstallError::Load(LoadError::Info(_)) => with(StatusCode::UNPROCESSABLE_ENTITY, "info_failed"),
            InstallError::NotFound(_) => with(StatusCode::NOT_FOUND, "agent_not_found"),
            InstallError::NoPrevious(_) => with(StatusCode::CONFLICT, "no_previous_version"),
            InstallError::Source(_) => with(StatusCode::BAD_REQUEST, "invalid_source"),
            InstallError::NoRollout(_) => with(StatusCode::NOT_FOUND, "rollout_not_found"),
            InstallError::RolloutOver { .. } => with(StatusCode::CONFLICT, "rollout_not_running"),
            InstallError::UnknownComponent(_) => with(StatusCode::NOT_FOUND, "component_not_found"),
            InstallError::Registry(crate::registry::RegistryError::Unavailable(_)) => Self {
                retry_after: Some(5),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("database_unavailable"),
                    format!(
                        "The agent registry's database is unavailable; retry in a few seconds ({})",
                        logged("the registry database is unavailable", &message)
                    ),
                )
            },
            InstallError::Registry(e) => Self { code: Some("registry_error"), ..Self::internal(e) },
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        let message = e.to_string();
        match e {
            RunError::UnknownAgent(id) => Self::unknown_agent(&id),
            RunError::InvalidRequest(_) => Self::invalid_request(message, None),
            RunError::SessionNotFound(_) => Self::session_not_found(),
            RunError::Unavailable(_) => Self {
                retry_after: Some(5),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("agent_unavailable"), message)
            },
            RunError::NoCapacity => Self {
                retry_after: Some(1),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("no_capacity"), message)
            },
            RunError::StoreUnavailable(_) => Self::store_unavailable(message),
            RunError::Timeout(_) => Self::new(StatusCode::GATEWAY_TIMEOUT, "server_error", Some("timeout"), message),
            RunError::Trapped(_) | RunError::Panicked { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some("agent_trapped"), message)
            }
            RunError::MemoryLimit(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some("memory_limit"), message)
            }
            RunError::OutputLimit => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some("output_limit"), message)
            }
            // The agent's own words: its author wants them seen.
            RunError::Failed(_) | RunError::Cancelled => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, message)
            }
            RunError::Internal(detail) => Self::internal(detail),
            RunError::Upstream(upstream) => Self::from(upstream),
            RunError::BudgetExceeded { retry_after, .. } => Self {
                retry_after,
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("budget_exceeded"), message)
            },
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        let message = e.to_string();
        let with = |status, kind, code| Self::new(status, kind, Some(code), message.clone());
        match e {
            ProviderError::RateLimited { retry_after, .. } => Self {
                retry_after: retry_after.map(u64::from),
                ..with(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "upstream_rate_limited")
            },
            // The operator's key is wrong: retrying cannot help, so say so to the SDKs.
            ProviderError::Unauthorized { .. } => {
                Self { no_retry: true, ..with(StatusCode::BAD_GATEWAY, "server_error", "upstream_unauthorized") }
            }
            ProviderError::BadRequest { .. } => {
                with(StatusCode::BAD_REQUEST, "invalid_request_error", "upstream_bad_request")
            }
            ProviderError::Unavailable { .. } => with(StatusCode::BAD_GATEWAY, "server_error", "upstream_unavailable"),
            // The operator's base URL points where the gateway will not follow: the same answer next time.
            ProviderError::Redirected { .. } => {
                Self { no_retry: true, ..with(StatusCode::BAD_GATEWAY, "server_error", "upstream_unavailable") }
            }
            ProviderError::Timeout { .. } => with(StatusCode::GATEWAY_TIMEOUT, "server_error", "upstream_timeout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_failures_send_the_request_id_and_nothing_else() {
        let panic_text = "run task failed: task 7 panicked with message \"secret row 42\"";
        let error = in_request(Some("req-1".into()), async { ApiError::from(RunError::Internal(panic_text.into())) });
        let body = error.await.body().to_string();
        assert!(body.contains("req-1") && !body.contains("secret row") && !body.contains("panicked"), "{body}");
        let store = StoreError::Backend("duplicate key value violates unique constraint; DETAIL: Key (k)=(v)".into());
        let body = ApiError::from(store).body().to_string();
        assert!(!body.contains("Key (k)") && body.contains("Internal error"), "{body}");
        // The agent's own failure stays visible to its client.
        let body = ApiError::from(RunError::Failed("no API key configured".into())).body().to_string();
        assert!(body.contains("no API key configured"), "{body}");
    }
}
