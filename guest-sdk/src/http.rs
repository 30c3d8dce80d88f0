//! Outbound HTTP from an agent, through the contract's `http.fetch` (0.2.2):
//! one host call per request, under the gateway's per-agent policy: only
//! origins in the agent's `http.allow` list answer, credentials the gateway
//! adds never reach the agent, and per-run limits hold. (The gateway applies
//! the same policy to `wasi:http`, for agents that bring their own client.)
//!
//! ```ignore
//! let weather: serde_json::Value = wasmclaw_sdk::http::get("https://api.example.com/today")?.json()?;
//! ```

use crate::AgentError;

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The gateway's policy refused it: no `http.allow` rule holds the origin and path,
    /// or its name resolves to an internal address.
    Denied(String),
    /// No answer within the agent's `http.limits.timeoutMs`.
    Timeout,
    /// The answer was larger than `http.limits.maxResponseBytes`.
    TooLarge,
    /// Anything else: refused connection, a run limit, a bad URL.
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Denied(why) => write!(f, "request denied by the gateway: {why}"),
            Self::Timeout => f.write_str("request timed out"),
            Self::TooLarge => f.write_str("response too large"),
            Self::Failed(why) => write!(f, "request failed: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for AgentError {
    fn from(e: HttpError) -> Self {
        AgentError::Failed(e.to_string())
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-case names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Failed(format!("response is not the expected JSON: {e}")))
    }

    /// `Err` unless the status is 2xx, with the body's start as the reason.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let text = self.text();
        Err(HttpError::Failed(format!("status {}: {}", self.status, text.chars().take(200).collect::<String>())))
    }
}

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A request with `method` to `url`.
pub fn request(method: &str, url: &str) -> Request {
    Request { method: method.to_string(), url: url.to_string(), headers: Vec::new(), body: Vec::new() }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    request("GET", url).send()
}

/// `POST url` with `body` as JSON.
pub fn post_json(url: &str, body: &impl serde::Serialize) -> Result<Response, HttpError> {
    request("POST", url).json(body)?.send()
}

impl Request {
    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Set a JSON body and its content type.
    pub fn json(self, body: &impl serde::Serialize) -> Result<Self, HttpError> {
        let bytes = serde_json::to_vec(body).map_err(|e| HttpError::Failed(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(bytes))
    }

    /// Send it and read the whole response. Natively the fake gateway of
    /// `testing::TestHost` answers.
    pub fn send(self) -> Result<Response, HttpError> {
        crate::host::http_send(self.method, self.url, self.headers, self.body)
    }
}
