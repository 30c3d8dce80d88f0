//! `wasmclaw agents rollout ID FILE --weight N`: start (or widen) a canary on
//! a running gateway through its admin API.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Value, json};

/// The `PUT /admin/agents/{id}/rollout` request for `file` at `weight` percent.
pub fn request(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    file: &Path,
    weight: u8,
    sticky: &str,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let component = base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = json!({"candidate": {"component": component}, "weight": weight, "sticky": sticky});
    Ok(client.put(format!("{base}/{id}/rollout")).json(&body))
}

/// One line for a rollout as the admin API shows it.
pub fn line(r: &Value) -> String {
    let short = |v: &Value| v["digest"].as_str().unwrap_or_default().chars().skip(7).take(12).collect::<String>();
    format!(
        "{}\t{}\tweight {}\tstable {} ({} runs)\tcandidate {} ({} runs, {} errors)",
        r["agent"].as_str().unwrap_or_default(),
        r["state"].as_str().unwrap_or_default(),
        r["weight"],
        short(&r["stable"]),
        r["stable"]["runs"],
        short(&r["candidate"]),
        r["candidate"]["runs"],
        r["candidate"]["errors"],
    )
}
