//! Model providers: OpenAI-compatible `/v1/chat/completions` endpoints the
//! host calls on an agent's behalf. URLs and keys stay here; agents only see
//! the stream of events.

mod error;
mod sse;
mod stream;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::chat::{Message, ToolSpec};
use crate::config::{Config, ProviderConfig, Secret};

pub use error::ProviderError;
pub use stream::CompletionStream;

/// Every configured provider, by name.
#[derive(Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<Provider>>,
}

impl Providers {
    /// Build a client per provider; fails when a key's environment variable is missing.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let by_name = config
            .providers
            .iter()
            .map(|(name, p)| Ok((name.clone(), Arc::new(Provider::new(name, p)?))))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { by_name })
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }
}

/// Providers sometimes quote the credentials they were sent (the key or any
/// configured header); never pass them on, to the agent, the client or the log.
fn redact(secrets: &[Secret], mut text: String) -> String {
    for secret in secrets {
        if text.contains(secret.expose()) {
            text = text.replace(secret.expose(), "[redacted]");
        }
    }
    text
}

/// Where one agent's `llm` calls go.
#[derive(Clone)]
pub struct ModelRoute {
    pub provider: Arc<Provider>,
    pub model: String,
    pub allow_override: bool,
}

impl std::fmt::Debug for ModelRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider.name, self.model)
    }
}

/// One provider with its own pooled connections.
pub struct Provider {
    name: String,
    endpoint: String,
    key: Option<Secret>,
    /// Every secret this provider is sent (key and header values), to redact.
    secrets: Arc<[Secret]>,
    timeout: Duration,
    max_retries: u32,
    client: reqwest::Client,
    /// `models.<model>.price`, by model.
    prices: BTreeMap<String, crate::usage::Price>,
}

impl Provider {
    fn new(name: &str, config: &ProviderConfig) -> anyhow::Result<Self> {
        let key = config.resolve_key(name).map_err(anyhow::Error::msg)?;
        let mut headers = HeaderMap::new();
        let mut secrets: Vec<Secret> = key.iter().cloned().collect();
        for (header, value) in config.resolve_headers(name).map_err(anyhow::Error::msg)? {
            let mut header_value = HeaderValue::from_str(value.expose())
                .map_err(|_| anyhow::anyhow!("providers.{name}.headers.{header}: not a valid header value"))?;
            header_value.set_sensitive(true);
            headers.insert(HeaderName::from_bytes(header.as_bytes())?, header_value);
            secrets.push(value);
        }
        // Longest first, so a secret that contains another is replaced whole.
        secrets.retain(|s| !s.expose().is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("wasmclaw/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .build()?;
        let endpoint = format!("{}/chat/completions", config.base_url.trim().trim_end_matches('/'));
        let timeout = Duration::from_millis(config.timeout_ms);
        let secrets = secrets.into();
        let prices = config.models.keys().filter_map(|m| Some((m.clone(), config.price(m)?))).collect();
        Ok(Self { name: name.into(), endpoint, key, secrets, timeout, max_retries: config.max_retries, client, prices })
    }

    /// The name the operator gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a million tokens of `model` cost here, if the operator said.
    pub fn price(&self, model: &str) -> Option<crate::usage::Price> {
        self.prices.get(model).copied()
    }

    /// Start a streaming completion. Connection failures and 5xx answers are
    /// retried with exponential backoff; nothing has reached the client yet.
    pub async fn start(
        &self,
        model: &str,
        messages: &[Message],
        tools: &[ToolSpec],
        params: &str,
    ) -> Result<CompletionStream, ProviderError> {
        // Serialized once: a retry sends the same bytes.
        let body = wire::request_body(model, messages, tools, params).map_err(|message| ProviderError::BadRequest {
            provider: self.name.clone(),
            status: 400,
            message,
        })?;
        let started = Instant::now();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(self.max_retries as usize)
            .with_jitter();
        let response = (|| self.send(&body))
            .retry(backoff)
            .when(ProviderError::is_retryable)
            .notify(|error, wait| {
                tracing::warn!(provider = %self.name, %error, retry_in_ms = wait.as_millis() as u64, "provider call failed; retrying")
            })
            .await
            .inspect_err(|error| tracing::warn!(provider = %self.name, model, %error, kind = error.kind(), "provider call failed"))?;
        tracing::debug!(provider = %self.name, model, ms = started.elapsed().as_millis() as u64, "provider stream started");
        Ok(CompletionStream::new(self.name.clone(), response, self.timeout, self.secrets.clone()))
    }

    async fn send(&self, body: &bytes::Bytes) -> Result<reqwest::Response, ProviderError> {
        let mut request = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        // The model call's `chat` span, when tracing is on.
        if let Some(traceparent) = crate::telemetry::inject(&tracing::Span::current()) {
            request = request.header("traceparent", traceparent);
        }
        let provider = self.name.clone();
        let ms = self.timeout.as_millis() as u64;
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => return Err(ProviderError::Timeout { provider, ms }),
            Ok(Err(e)) if e.is_timeout() => return Err(ProviderError::Timeout { provider, ms }),
            Ok(Err(e)) => return Err(ProviderError::Unavailable { provider, message: self.describe(&e) }),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let text = tokio::time::timeout(self.timeout, response.text()).await.ok().and_then(Result::ok);
        let message = self.redact(wire::error_message(&text.unwrap_or_default()));
        Err(match status {
            429 => ProviderError::RateLimited { provider, retry_after },
            401 | 403 => ProviderError::Unauthorized { provider, status },
            408 => ProviderError::Timeout { provider, ms },
            500.. => ProviderError::Unavailable { provider, message: format!("HTTP {status}: {message}") },
            _ => ProviderError::BadRequest { provider, status, message },
        })
    }

    /// A transport error without the URL's query or anything secret: the root cause.
    fn describe(&self, e: &reqwest::Error) -> String {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let what = if e.is_connect() { "cannot connect" } else { "request failed" };
        self.redact(format!("{what}: {cause}"))
    }

    fn redact(&self, text: String) -> String {
        redact(&self.secrets, text)
    }
}
