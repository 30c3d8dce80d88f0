//! `cargo run --release -p wasmclaw-bench -- [SCENARIO…]`
//!
//! Starts a gateway in this process on a loopback port and measures it with
//! a real HTTP client. Every figure is a median of repeated samples, printed
//! next to a baseline measured in the same run, because on a small noisy
//! machine only ratios travel. Results also go to `target/bench/results.json`.

mod baseline;
mod process;
mod soak;
mod swap;
mod ws_idle;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use wasmclaw::config::Config;
use wasmclaw::gateway::Gateway;

/// Scenarios to run (default: all).
#[derive(Parser)]
struct Args {
    scenarios: Vec<String>,
    /// Samples per measurement.
    #[arg(long, default_value_t = 15)]
    samples: usize,
    /// Connections held open by the ws-idle scenario.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Length of the soak scenario.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Internal: run as a bare baseline server (`ws`).
    #[arg(long, hide = true)]
    serve_baseline: Option<String>,
}

/// Token the in-process gateway uses.
pub const TOKEN: &str = "bench-token";

/// A gateway running inside the benchmark process.
pub struct BenchGateway {
    pub base: String,
    pub client: reqwest::Client,
    pub state: tempfile::TempDir,
}

impl BenchGateway {
    /// Start with the chat endpoint on and `main` = echo, in a fresh state dir.
    pub async fn start() -> anyhow::Result<Self> {
        let state = tempfile::tempdir()?;
        let text = format!(
            r#"{{ gateway: {{ auth: {{ token: "{TOKEN}" }}, stateDir: "{}",
                 http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
               agents: {{ entries: {{ main: {{ plugin: "echo" }} }} }} }}"#,
            state.path().display()
        );
        let config = Config::parse(&text, &PathBuf::from("bench.json5"))?;
        let gw = Gateway::start(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(wasmclaw::http::serve(gw, listener, std::future::pending()));
        Ok(Self { base, client: reqwest::Client::new(), state })
    }

    /// One non-streaming chat turn; returns the reply text.
    pub async fn chat(&self, agent: &str, text: &str) -> anyhow::Result<String> {
        let body = json!({"model": format!("agent:{agent}"), "messages": [{"role": "user", "content": text}]});
        let res = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "chat failed: {}", res.status());
        let v: Value = res.json().await?;
        Ok(v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string())
    }
}

/// Median of durations.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Milliseconds with three decimals, for tables and JSON.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(mode) = &args.serve_baseline {
        return baseline::serve(mode).await;
    }
    let wanted = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    println!("wasmclaw benchmarks: {} samples each, medians; machine: {} cores", args.samples, num_cpus());
    let mut results = serde_json::Map::new();
    if wanted("swap") {
        results.insert("swap".into(), swap::run(args.samples).await?);
    }
    if wanted("soak") {
        results.insert("soak".into(), soak::run(args.seconds).await?);
    }
    if wanted("ws-idle") {
        results.insert("ws_idle".into(), ws_idle::run(args.connections).await?);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(results))?)?;
    println!("\nresults written to {}", path.display());
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
