//! Outbound HTTP: one GET from a guest through `http.fetch` (the SDK's
//! client; the gateway's allow-list, limits and metrics on the way), and the
//! same through `wasi:http` (a guest's own client, wstd), against the same GET
//! from native Rust (reqwest), all to a loopback server, in the same run.
//!
//! The guest is the faults fixture in `fetch` mode, which GETs each URL of
//! the message and emits one line per response (config `client: "wasi"`
//! picks `wasi:http`). A turn's fixed cost (request, instance, reply) is
//! taken out by timing turns of 1 and of 1 + `CALLS` GETs: per call =
//! (long − short) / `CALLS`.

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
        r#"fetch: {{ plugin: "{faults}", config: {{ fault: "fetch" }}, http: {{ allow: ["{base}"] }} }},
           wasi: {{ plugin: "{faults}", config: {{ fault: "fetch", client: "wasi" }}, http: {{ allow: ["{base}"] }} }}"#
    ))
    .await?;
    let url = format!("{base}/hello");
    let long = vec![url.as_str(); CALLS + 1].join(" ");
    let client = reqwest::Client::new();
    // Warm up: compile, pool the connections, and check what the guest got.
    for agent in ["fetch", "wasi"] {
        let reply = gw.chat(agent, &long).await?;
        anyhow::ensure!(reply.matches("-> 200 [] hello").count() == CALLS + 1, "{agent}: guest GETs failed: {reply}");
    }
    native_gets(client.clone(), url.clone(), 1).await?;

    let (mut fetch, mut wasi, mut native) = (Turns::default(), Turns::default(), Vec::new());
    for _ in 0..samples {
        fetch.sample(&gw, "fetch", &url, &long).await?;
        wasi.sample(&gw, "wasi", &url, &long).await?;
        native.push(native_gets(client.clone(), url.clone(), CALLS).await? / CALLS as u32);
    }
    let native = median(native);
    let ((guest, short, long_turn), (wasi, ..)) = (fetch.per_call(), wasi.per_call());
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (ratio, wasi_ratio) = (us(guest) / us(native), us(wasi) / us(native));
    println!("\noutbound GET to a loopback server ({CALLS} GETs per turn, medians of {samples})");
    println!("  {:<44} {:>10} {:>9}", "case", "µs", "/ native");
    println!("  {:<44} {:>10.1}", "native reqwest GET (baseline)", us(native));
    println!("  {:<44} {:>10.1} {ratio:>8.1}×", "guest GET through http.fetch (the SDK)", us(guest));
    println!("  {:<44} {:>10.1} {wasi_ratio:>8.1}×", "guest GET through wasi:http (wstd)", us(wasi));
    println!("  {:<44} {:>10.1}", "added per call (http.fetch)", us(guest) - us(native));
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
        "wasi_http_us": us(wasi),
        "wasi_http_ratio": wasi_ratio,
        "turn_1_get_us": us(short),
        "turn_many_gets_us": us(long_turn),
    }))
}

/// One agent's turns of 1 and of 1 + `CALLS` GETs, sample by sample.
#[derive(Default)]
struct Turns {
    short: Vec<Duration>,
    long: Vec<Duration>,
}

impl Turns {
    async fn sample(&mut self, gw: &BenchGateway, agent: &str, url: &str, long: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        gw.chat(agent, url).await?;
        self.short.push(started.elapsed());
        let started = Instant::now();
        gw.chat(agent, long).await?;
        self.long.push(started.elapsed());
        Ok(())
    }

    /// Per GET, and the median turns it comes from.
    fn per_call(self) -> (Duration, Duration, Duration) {
        let (short, long) = (median(self.short), median(self.long));
        (long.saturating_sub(short) / CALLS as u32, short, long)
    }
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
