//! `agents.*`: which agents to serve, and the limits they run under.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

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
}

impl LimitsConfig {
    /// `self` where set, else `fallback`.
    pub fn or(&self, fallback: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            memory_bytes: self.memory_bytes.or(fallback.memory_bytes),
            timeout_ms: self.timeout_ms.or(fallback.timeout_ms),
            max_output_bytes: self.max_output_bytes.or(fallback.max_output_bytes),
            max_concurrent_runs: self.max_concurrent_runs.or(fallback.max_concurrent_runs),
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
        }
    }
}

fn default_max_component() -> usize {
    50 << 20
}

/// `agents.entries.<id>`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
        }
    }
}

fn default_agent() -> String {
    "main".into()
}
