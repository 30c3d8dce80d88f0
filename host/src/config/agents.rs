//! `agents.*`: which agents to serve, and the limits they run under.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `agents.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentsConfig {
    #[serde(default = "default_agent")]
    pub default: String,
    /// Absent means "serve `main` = echo".
    pub entries: Option<BTreeMap<String, AgentEntry>>,
    /// Folder watched for `<id>.wasm` files (default `<stateDir>/agents`).
    pub dir: Option<PathBuf>,
    /// Largest component accepted from any source.
    #[serde(default = "default_max_component")]
    pub max_component_bytes: usize,
    /// Defaults for every agent's per-run limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Runs in flight across all agents; beyond it, 503 with `Retry-After`.
    #[serde(default = "default_max_runs")]
    pub max_concurrent_runs: usize,
    /// Tokens a run under a budget reserves when its request sets no
    /// `max_tokens` / `max_completion_tokens`.
    #[serde(default = "default_reserve_tokens")]
    pub budget_reserve_tokens: u64,
}

fn default_reserve_tokens() -> u64 {
    1024
}

/// `agents.limits` and `agents.entries.<id>.limits`: unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Linear memory an instance may grow to.
    pub memory_bytes: Option<usize>,
    /// Wall-clock budget of one run.
    pub timeout_ms: Option<u64>,
    /// Reply bytes (text, reasoning, tool calls) one run may emit.
    pub max_output_bytes: Option<usize>,
    /// Runs of this agent in flight at once (unlimited when unset).
    pub max_concurrent_runs: Option<usize>,
    /// Outbound HTTP limits per run.
    #[serde(default)]
    pub http: HttpLimitsConfig,
}

impl LimitsConfig {
    /// `self` where set, else `fallback`.
    pub fn or(&self, fallback: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            memory_bytes: self.memory_bytes.or(fallback.memory_bytes),
            timeout_ms: self.timeout_ms.or(fallback.timeout_ms),
            max_output_bytes: self.max_output_bytes.or(fallback.max_output_bytes),
            max_concurrent_runs: self.max_concurrent_runs.or(fallback.max_concurrent_runs),
            http: self.http.or(&fallback.http),
        }
    }
}

fn default_max_runs() -> usize {
    500
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            default: default_agent(),
            entries: None,
            dir: None,
            max_component_bytes: default_max_component(),
            limits: LimitsConfig::default(),
            max_concurrent_runs: default_max_runs(),
            budget_reserve_tokens: default_reserve_tokens(),
        }
    }
}

fn default_max_component() -> usize {
    50 << 20
}

/// `agents.entries.<id>`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentEntry {
    /// A shipped plugin name (`echo`) or a path to a `.wasm` component.
    pub plugin: String,
    /// Settings the plugin reads through its `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Per-run limits for this agent; unset fields come from `agents.limits`.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The `providers.<name>` this agent's `llm` calls go to.
    pub provider: Option<String>,
    /// The model those calls ask for.
    pub model: Option<String>,
    /// Whether the agent may ask for another model than `model`.
    #[serde(default)]
    pub allow_model_override: bool,
    /// Outbound HTTP (`wasi:http`); absent = every request denied.
    pub http: Option<AgentHttpConfig>,
    /// What runs of this agent may spend per window, whoever asks.
    pub budget: Option<super::BudgetConfig>,
    /// A candidate version served beside `plugin` to a share of the traffic.
    pub rollout: Option<RolloutConfig>,
    /// Which runs are recorded for replay (off when absent).
    pub record: Option<RecordConfig>,
}

/// `agents.entries.<id>.record`: keep a sample of runs, every host call with
/// its answer, so any version can be replayed on them (`wasmclaw replay`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecordConfig {
    /// Share of runs recorded, 0.0–1.0.
    pub sample: f64,
    /// Days a recording is kept.
    #[serde(default = "default_retain_days")]
    pub retain_days: u32,
    /// Bytes one recording may keep; past it the recording is kept truncated (not replayable).
    #[serde(default = "default_record_bytes")]
    pub max_bytes: usize,
}

fn default_retain_days() -> u32 {
    7
}

fn default_record_bytes() -> usize {
    4 << 20
}

impl RecordConfig {
    /// The field that is out of range and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=1.0).contains(&self.sample) {
            return Err(("sample", format!("{} is not between 0 and 1", self.sample)));
        }
        if self.retain_days == 0 {
            return Err(("retainDays", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// `agents.entries.<id>.rollout`: a canary of another component for the same id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RolloutConfig {
    /// The candidate: a shipped plugin name or a path to a `.wasm` component.
    pub plugin: String,
    /// Percent of sessions (and of stateless requests) the candidate serves, 0–100.
    pub weight: u8,
    #[serde(default)]
    pub sticky: Sticky,
    pub auto_rollback: Option<AutoRollback>,
}

/// Whether a session keeps meeting the version it first met during a rollout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sticky {
    /// A session (its key, or the key `user` derives) always meets the same version.
    #[default]
    Session,
    /// Every run is split by weight on its own.
    None,
}

/// When a rollout's candidate is taken out of traffic on its own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AutoRollback {
    /// Candidate runs (and, for the latency rule, stable runs) before any rule is judged.
    #[serde(default = "default_min_runs")]
    pub min_runs: u64,
    /// Roll back when the candidate's share of failed runs exceeds this (0–1).
    pub max_error_rate: Option<f64>,
    /// Roll back when the candidate's p95 run time exceeds this many times the stable's.
    pub max_p95_ratio: Option<f64>,
}

impl AutoRollback {
    /// The first field out of range, as (field, why).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.min_runs == 0 {
            return Err(("minRuns", "must be at least 1".into()));
        }
        if let Some(rate) = self.max_error_rate.filter(|r| !(0.0..=1.0).contains(r)) {
            return Err(("maxErrorRate", format!("{rate} is not between 0 and 1")));
        }
        if let Some(ratio) = self.max_p95_ratio.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(("maxP95Ratio", format!("{ratio} is not a positive number")));
        }
        Ok(())
    }
}

fn default_min_runs() -> u64 {
    20
}

/// `agents.entries.<id>.http`: where the agent may send requests, and what
/// the host adds to them. Deny by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentHttpConfig {
    /// `scheme://host[:port][/path-prefix]`; `*.example.com` matches subdomains, `*` any host.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Headers the host adds to matching requests; the guest never sees them.
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    /// Per-run limits; unset fields come from `agents.limits.http`.
    #[serde(default)]
    pub limits: HttpLimitsConfig,
    /// Send the run's W3C `traceparent` with every request (tracing on only).
    #[serde(default)]
    pub propagate_trace: bool,
}

/// One injected header: a value from the environment (`header`, `prefix`,
/// `valueEnv`), or an OAuth token the host fetches (`oauth`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialConfig {
    /// An allow-list pattern the request must match.
    #[serde(rename = "match")]
    pub matches: String,
    /// Default `Authorization`.
    pub header: Option<String>,
    /// Put before the value (`"Bearer "`).
    #[serde(default)]
    pub prefix: String,
    pub value_env: Option<String>,
    pub oauth: Option<OAuthConfig>,
}

/// The OAuth 2.0 client-credentials grant (RFC 6749 §4.4), with the RFC 8707
/// `resource` indicator; id and secret come from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OAuthConfig {
    /// https (plain http only to a loopback host).
    pub token_url: String,
    pub client_id_env: String,
    pub client_secret_env: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// Per-run outbound HTTP limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpLimitsConfig {
    pub max_requests_per_run: Option<u32>,
    pub max_response_bytes: Option<usize>,
    pub timeout_ms: Option<u64>,
}

impl HttpLimitsConfig {
    /// `self` where set, else `fallback`.
    pub fn or(&self, fallback: &HttpLimitsConfig) -> HttpLimitsConfig {
        HttpLimitsConfig {
            max_requests_per_run: self.max_requests_per_run.or(fallback.max_requests_per_run),
            max_response_bytes: self.max_response_bytes.or(fallback.max_response_bytes),
            timeout_ms: self.timeout_ms.or(fallback.timeout_ms),
        }
    }
}

impl AgentEntry {
    /// An entry for a plugin with no settings.
    pub fn plugin(plugin: &str) -> Self {
        Self {
            plugin: plugin.into(),
            config: BTreeMap::new(),
            limits: LimitsConfig::default(),
            provider: None,
            model: None,
            allow_model_override: false,
            http: None,
            budget: None,
            rollout: None,
            record: None,
        }
    }
}

fn default_agent() -> String {
    "main".into()
}
