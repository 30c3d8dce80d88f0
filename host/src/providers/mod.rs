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
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

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

/// A header value that carries a secret: marked sensitive, so no `Debug` of
/// the request shows it. `what` names the config key when it is not a valid value.
fn sensitive(provider: &str, what: &str, value: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        let key = if what == "apiKey" { what.to_string() } else { format!("headers.{what}") };
        anyhow::anyhow!("providers.{provider}.{key}: not a valid header value")
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Redirects are followed only within the endpoint's origin (scheme, host,
/// port). reqwest drops `Authorization` on a redirect elsewhere but sends
/// the configured headers (an `api-key`) and, on a 307/308, the whole body
/// on to whatever host the provider names; so elsewhere is an error that
/// says which key to change.
fn same_origin_redirects(provider: &str) -> reqwest::redirect::Policy {
    const MAX_REDIRECTS: usize = 10;
    let provider = provider.to_string();
    reqwest::redirect::Policy::custom(move |attempt| {
        let next = attempt.url();
        let same = |from: &reqwest::Url| {
            (from.scheme(), from.host_str(), from.port_or_known_default())
                == (next.scheme(), next.host_str(), next.port_or_known_default())
        };
        if !attempt.previous().first().is_some_and(same) {
            // Not quoted: either URL may carry credentials.
            let why = format!(
                "the provider redirects to another origin, which is not followed with its credentials; \
                 set providers.{provider}.baseUrl to where it points"
            );
            attempt.error(why)
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
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

/// One provider with its own pooled connections. What is the same for every
/// call (the endpoint, parsed; the headers, the key among them) is made here
/// once, so a call formats and parses nothing of it.
pub struct Provider {
    name: String,
    /// `<baseUrl>/chat/completions`, parsed when the provider is built.
    endpoint: reqwest::Url,
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
            headers.insert(HeaderName::from_bytes(header.as_bytes())?, sensitive(name, &header, value.expose())?);
            secrets.push(value);
        }
        // After the configured headers: the body is JSON and the key is the
        // key, whatever a header of the same name says.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &key {
            headers.insert(AUTHORIZATION, sensitive(name, "apiKey", &format!("Bearer {}", key.expose()))?);
        }
        // Longest first, so a secret that contains another is replaced whole.
        secrets.retain(|s| !s.expose().is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("wasmclaw/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .redirect(same_origin_redirects(name))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .build()?;
        let endpoint = format!("{}/chat/completions", config.base_url.trim().trim_end_matches('/'));
        // Not quoted: a URL may carry credentials.
        let endpoint = reqwest::Url::parse(&endpoint)
            .ok()
            .filter(reqwest::Url::has_host)
            .ok_or_else(|| anyhow::anyhow!("providers.{name}.baseUrl: not a valid http:// or https:// URL"))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let secrets = secrets.into();
        let prices = config.models.keys().filter_map(|m| Some((m.clone(), config.price(m)?))).collect();
        Ok(Self { name: name.into(), endpoint, secrets, timeout, max_retries: config.max_retries, client, prices })
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
        // The headers, key included, are the client's defaults (`new`).
        let mut request = self.client.post(self.endpoint.clone()).body(body.clone());
        // The model call's `chat` span, when tracing is on.
        if let Some(traceparent) = crate::telemetry::inject(&tracing::Span::current()) {
            request = request.header(HeaderName::from_static("traceparent"), traceparent);
        }
        let provider = self.name.clone();
        let ms = self.timeout.as_millis() as u64;
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => return Err(ProviderError::Timeout { provider, ms }),
            Ok(Err(e)) if e.is_timeout() => return Err(ProviderError::Timeout { provider, ms }),
            // Refused by the redirect policy (`new`): asking again would be refused again.
            Ok(Err(e)) if e.is_redirect() => {
                return Err(ProviderError::Redirected { provider, message: self.describe(&e) });
            }
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
