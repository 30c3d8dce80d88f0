//! Outbound HTTP: one GET from a guest through `wasi:http` (the gateway's
//! allow-list, limits and metrics on the way) against the same GET from
//! native Rust (reqwest), both to a loopback server, in the same run.
//!
//! The guest is the faults fixture in `fetch` mode, which GETs each URL of
//! the message and emits one line per response. A turn's fixed cost
//! (request, instance, reply) is taken out by timing turns of 1 and of
//! 1 + `CALLS` GETs: per call = (long − short) / `CALLS`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{BenchGateway, median};

/// GETs per long turn; below the default `maxRequestsPerRun` (32).
const CALLS: usize = 16;

/// Run the scenario and print its table.
pub async fn run(samples: usize) -> anyhow::Result<Value> {
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Another build of the fixture (e.g. an older commit's) can be measured on
    // this host without rebuilding the bench.
    let faults = std::env::var("WASMCLAW_BENCH_FETCH_PLUGIN").unwrap_or_else(|_| env!("WASMCLAW_BENCH_FAULTS").into());
    let gw = BenchGateway::start_with(&format!(
        r#"fetch: {{ plugin: "{faults}", config: {{ fault: "fetch" }}, http: {{ allow: ["{base}"] }} }}"#
    ))
    .await?;
    let url = format!("{base}/hello");
    let long = vec![url.as_str(); CALLS + 1].join(" ");
    let client = reqwest::Client::new();
    // Warm up: compile, pool the connections, and check what the guest got.
    let reply = gw.chat("fetch", &long).await?;
    anyhow::ensure!(reply.matches("-> 200 [] hello").count() == CALLS + 1, "guest GETs failed: {reply}");
    native_gets(client.clone(), url.clone(), 1).await?;

    let (mut short, mut long_turns, mut native) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let started = Instant::now();
        gw.chat("fetch", &url).await?;
        short.push(started.elapsed());
        let started = Instant::now();
        gw.chat("fetch", &long).await?;
        long_turns.push(started.elapsed());
        native.push(native_gets(client.clone(), url.clone(), CALLS).await? / CALLS as u32);
    }
    let (short, long_turn, native) = (median(short), median(long_turns), median(native));
    let guest = long_turn.saturating_sub(short) / CALLS as u32;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ratio = us(guest) / us(native);
    println!("\noutbound GET to a loopback server ({CALLS} GETs per turn, medians of {samples})");
    println!("  {:<44} {:>10}", "case", "µs");
    println!("  {:<44} {:>10.1}", "native reqwest GET (baseline)", us(native));
    println!("  {:<44} {:>10.1}", "guest GET through wasi:http", us(guest));
    println!("  {:<44} {:>10.1}", "added per call", us(guest) - us(native));
    println!(
        "  guest / native: {ratio:.1}×  (turn of 1 GET {:.1} µs, of {} GETs {:.1} µs)",
        us(short),
        CALLS + 1,
        us(long_turn)
    );
    Ok(json!({
        "samples": samples,
        "calls_per_turn": CALLS,
        "native_us": us(native),
        "guest_us": us(guest),
        "added_us": us(guest) - us(native),
        "ratio": ratio,
        "turn_1_get_us": us(short),
        "turn_many_gets_us": us(long_turn),
    }))
}

/// Time `n` GETs of `url` in a task of their own: on a worker thread, as the
/// gateway's runs are (the harness's main task runs on the thread that blocks
/// on it, where every wake-up is a cross-thread hand-off).
async fn native_gets(client: reqwest::Client, url: String, n: usize) -> anyhow::Result<Duration> {
    tokio::spawn(async move {
        let started = Instant::now();
        for _ in 0..n {
            let res = client.get(&url).send().await?;
            anyhow::ensure!(res.status() == 200, "native GET: {}", res.status());
            anyhow::ensure!(res.text().await? == "hello");
        }
        Ok(started.elapsed())
    })
    .await?
}
