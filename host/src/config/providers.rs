//! `providers.<name>`: OpenAI-compatible endpoints agents call through the `llm` import.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Secret;

/// One provider: where it is and how to authenticate. Its key never leaves the host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderConfig {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// The key itself. Prefer `apiKeyEnv` so it stays out of the file.
    pub api_key: Option<Secret>,
    /// Environment variable holding the key.
    pub api_key_env: Option<String>,
    /// Extra headers sent with every request (e.g. Azure's `api-key`). Every
    /// value is treated as a secret: never logged, and redacted from anything
    /// the provider sends back.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValueConfig>,
    /// How long to wait for the response to start, and for each next chunk.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Retries of a failed connection or 5xx answer, before anything reaches the client.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// What the operator knows about each model, by the name agents ask for.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
}

/// `providers.<name>.models.<model>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelConfig {
    /// USD per million tokens; without it the model's calls are counted but cost nothing.
    pub price: Option<PriceConfig>,
}

/// `price: { inputPerMTok, outputPerMTok, cachedInputPerMTok? }`, kept exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PriceFields")]
pub struct PriceConfig(pub crate::usage::Price);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFields {
    #[serde(rename = "inputPerMTok")]
    input: f64,
    #[serde(rename = "outputPerMTok")]
    output: f64,
    #[serde(rename = "cachedInputPerMTok")]
    cached_input: Option<f64>,
}

impl TryFrom<PriceFields> for PriceConfig {
    type Error = String;

    fn try_from(p: PriceFields) -> Result<Self, String> {
        crate::usage::Price::per_mtok(p.input, p.output, p.cached_input).map(Self)
    }
}

/// A header value: the value itself, or `{ valueEnv: "VAR" }` to keep it out of the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum HeaderValueConfig {
    Value(Secret),
    Env {
        #[serde(rename = "valueEnv")]
        value_env: String,
    },
}

fn default_timeout() -> u64 {
    60_000
}
fn default_retries() -> u32 {
    2
}

impl ProviderConfig {
    /// Check what can be checked without the network; `Err((key, message))`.
    pub fn validate(&self, name: &str) -> Result<(), (String, String)> {
        let key = |field: &str| format!("providers.{name}.{field}");
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            // Not quoted: a URL may carry credentials.
            return Err((key("baseUrl"), "must be an http:// or https:// URL".into()));
        }
        if self.api_key.is_some() && self.api_key_env.is_some() {
            return Err((key("apiKey"), "set either apiKey or apiKeyEnv, not both".into()));
        }
        if self.timeout_ms == 0 {
            return Err((key("timeoutMs"), "must be at least 1".into()));
        }
        for header in self.headers.keys() {
            if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err((key("headers"), format!("{header:?} is not a valid header name")));
            }
        }
        Ok(())
    }

    /// Header names and values to send, values from the file or the environment.
    pub fn resolve_headers(&self, name: &str) -> Result<Vec<(String, Secret)>, String> {
        self.headers
            .iter()
            .map(|(header, value)| match value {
                HeaderValueConfig::Value(v) => Ok((header.clone(), v.clone())),
                HeaderValueConfig::Env { value_env } => match std::env::var(value_env) {
                    Ok(v) if !v.is_empty() => Ok((header.clone(), Secret::new(v))),
                    _ => Err(format!(
                        "providers.{name}.headers.{header}.valueEnv: environment variable {value_env} is not set"
                    )),
                },
            })
            .collect()
    }

    /// The price of `model` on this provider, if the operator set one.
    pub fn price(&self, model: &str) -> Option<crate::usage::Price> {
        self.models.get(model)?.price.map(|p| p.0)
    }

    /// The key to send, from the file or the environment.
    pub fn resolve_key(&self, name: &str) -> Result<Option<Secret>, String> {
        if let Some(key) = &self.api_key {
            return Ok(Some(key.clone()));
        }
        let Some(var) = &self.api_key_env else { return Ok(None) };
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
            _ => Err(format!("providers.{name}.apiKeyEnv: environment variable {var} is not set")),
        }
    }
}
