//! `cargo run --release -p wasmclaw-bench -- [SCENARIO…]`
//!
//! Starts the servers under test on loopback ports (the release gateway
//! binary, a bare baseline server, the mock provider; a gateway inside this
//! process for the swap and soak scenarios) and measures them with real
//! clients. Every figure is a median of repeated samples, printed
//! next to a baseline measured in the same run, because on a small noisy
//! machine only ratios travel. Results also go to `target/bench/results.json`.

mod assistant;
mod baseline;
mod cluster;
mod echo;
mod fetch;
mod load;
mod poster;
mod process;
mod recording_cost;
mod soak;
mod streams;
mod swap;
mod tracing_cost;
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
    /// Length of each load cell (echo, assistant, cluster).
    #[arg(long, default_value_t = 5)]
    cell_seconds: u64,
    /// Request rate of the assistant scenario.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Open streams held by the streams scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
    streams: Vec<usize>,
    /// Internal: run as a bare baseline server (`ws`, `http`).
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
        Self::start_with("").await
    }

    /// As [`Self::start`], with more `agents.entries` (JSON5 members) next to `main`.
    pub async fn start_with(entries: &str) -> anyhow::Result<Self> {
        let state = tempfile::tempdir()?;
        let text = format!(
            r#"{{ gateway: {{ auth: {{ token: "{TOKEN}" }}, stateDir: "{}",
                 http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
               agents: {{ entries: {{ main: {{ plugin: "echo" }}, {entries} }} }} }}"#,
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
    if wanted("echo") {
        results.insert("echo".into(), echo::run(args.cell_seconds).await?);
    }
    if wanted("assistant") {
        results.insert("assistant".into(), assistant::run(args.rate, args.cell_seconds).await?);
    }
    if wanted("tracing") {
        results.insert("tracing".into(), tracing_cost::run(args.cell_seconds, 3).await?);
    }
    if wanted("recording") {
        results.insert("recording".into(), recording_cost::run(args.cell_seconds, 3).await?);
    }
    if wanted("streams") {
        results.insert("streams".into(), streams::run(&args.streams).await?);
    }
    if wanted("fetch") {
        results.insert("fetch".into(), fetch::run(args.samples).await?);
    }
    if wanted("swap") {
        results.insert("swap".into(), swap::run(args.samples).await?);
    }
    if wanted("soak") {
        results.insert("soak".into(), soak::run(args.seconds).await?);
    }
    if wanted("ws-idle") {
        results.insert("ws_idle".into(), ws_idle::run(args.connections).await?);
    }
    // Needs PostgreSQL and HAProxy: run by name it fails loudly without them;
    // as part of "everything" it is skipped with a note.
    if args.scenarios.iter().any(|s| s == "cluster") || (args.scenarios.is_empty() && cluster::available()) {
        results.insert("cluster".into(), cluster::run(args.cell_seconds).await?);
    } else if args.scenarios.is_empty() {
        println!("\ncluster: skipped (needs PostgreSQL and HAProxy: apt-get install postgresql haproxy)");
    }
    if let Some(micro) = criterion_results() {
        results.insert("instantiate_call".into(), micro);
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

/// The criterion microbenchmark's medians (`cargo bench -p wasmclaw-bench`), if it ran.
fn criterion_results() -> Option<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion/run");
    let median_ns = |name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join(name).join("new/estimates.json")).ok()?;
        serde_json::from_str::<Value>(&text).ok()?["median"]["point_estimate"].as_f64()
    };
    let native = median_ns("native (baseline)")?;
    let wasm = median_ns("wasm instantiate + call + drop")?;
    println!("\ninstantiate + call of echo (criterion, from target/criterion)");
    println!("  native baseline {:.2} µs, wasm run {:.2} µs ({:.0}×)", native / 1e3, wasm / 1e3, wasm / native);
    Some(json!({"native_us": native / 1e3, "wasm_us": wasm / 1e3, "ratio": wasm / native}))
}
