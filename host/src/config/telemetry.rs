//! `telemetry.*`: where traces go and what they may carry (read by the `telemetry` module).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::HeaderValueConfig;

/// `telemetry.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TelemetryConfig {
    #[serde(default)]
    pub otlp: OtlpConfig,
    /// Share of new traces kept, 0.0–1.0; a continued trace follows its caller's choice.
    #[serde(default = "one")]
    pub sample_ratio: f64,
    /// Put message text, tool arguments and results in spans.
    #[serde(default)]
    pub capture_content: bool,
    /// Continue a client's W3C `traceparent`; default: on for a loopback `gateway.bind` only.
    pub trust_incoming_traceparent: Option<bool>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp: OtlpConfig::default(),
            sample_ratio: 1.0,
            capture_content: false,
            trust_incoming_traceparent: None,
        }
    }
}

fn one() -> f64 {
    1.0
}

/// `telemetry.otlp.*`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OtlpConfig {
    /// The collector's base URL, like `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is added).
    pub endpoint: Option<String>,
    /// Headers sent with every export (values are secrets: `{ valueEnv }` reads the environment).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValueConfig>,
}
