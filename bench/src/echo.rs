//! The gateway's overhead on plain requests: the echo agent against a bare
//! axum server that answers with the same JSON and SSE shapes natively.

use serde_json::{Value, json};

use crate::load::{self, Throughput};
use crate::poster::Poster;
use crate::process::ServerProcess;

/// Concurrency levels for closed-loop load.
const LEVELS: [usize; 4] = [1, 16, 64, 256];

const GATEWAY: &str = r#"{ gateway: { http: { endpoints: { chatCompletions: { enabled: true } } } },
  agents: { maxConcurrentRuns: 1000, entries: { main: { plugin: "echo" } } } }"#;

fn url(server: &ServerProcess) -> String {
    format!("{}/v1/chat/completions", server.base)
}

/// Run the scenario and print its tables.
pub async fn run(seconds: u64) -> anyhow::Result<Value> {
    let baseline = ServerProcess::baseline("http")?;
    let gateway = ServerProcess::wasmclaw(GATEWAY)?;
    let client = reqwest::Client::new();
    let mut out = serde_json::Map::new();

    if load::have_wrk() {
        let body = json!({"model": "openclaw", "messages": [{"role": "user", "content": "hello from the benchmark"}]});
        println!("\nnon-streaming echo, wrk closed loop, {seconds} s per cell");
        println!(
            "  {:>5} {:>12} {:>12} {:>7} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
            "conns",
            "base req/s",
            "gw req/s",
            "gw/base",
            "base p50",
            "gw p50",
            "base p99",
            "gw p99",
            "base µs/req",
            "gw µs/req"
        );
        load::wrk(&url(&gateway), &body, 16, 1)?; // warm-up: instances, connections, code paths
        let mut rows = Vec::new();
        for c in LEVELS {
            let (b, b_cpu) = cpu_per_request(&baseline, || load::wrk(&url(&baseline), &body, c, seconds), seconds)?;
            let (g, g_cpu) = cpu_per_request(&gateway, || load::wrk(&url(&gateway), &body, c, seconds), seconds)?;
            anyhow::ensure!(g.errors == 0 && b.errors == 0, "errors under load: base {b:?}, gateway {g:?}");
            println!(
                "  {c:>5} {:>12.0} {:>12.0} {:>6.0}% {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>11.1} {:>11.1}",
                b.rps,
                g.rps,
                100.0 * g.rps / b.rps,
                b.p50_ms,
                g.p50_ms,
                b.p99_ms,
                g.p99_ms,
                b_cpu,
                g_cpu
            );
            rows.push(json!({"connections": c, "baseline": cell(b), "wasmclaw": cell(g), "ratio": g.rps / b.rps,
                             "baseline_cpu_us_per_request": b_cpu, "wasmclaw_cpu_us_per_request": g_cpu}));
        }
        let peak = rows.iter().map(|r| r["wasmclaw"]["rps"].as_f64().unwrap()).fold(0.0, f64::max);
        out.insert("json_throughput".into(), Value::Array(rows));

        // Added latency at fixed rates up to half of the gateway's peak, open loop.
        let fixed = |server: &ServerProcess| -> anyhow::Result<_> {
            let poster = Poster::new(&url(server), &body, Some(crate::TOKEN))?;
            Ok(move || poster.clone().send())
        };
        println!("\nfixed request rates, open loop, {seconds} s each");
        println!(
            "  {:>8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
            "req/s", "base p50", "gw p50", "base p99", "gw p99", "added p50", "added p99"
        );
        let mut fixed_rows = Vec::new();
        for rate in [1000.0, (peak / 4.0).round(), (peak / 2.0).round()] {
            let b = load::fixed_rate(rate, seconds as f64, fixed(&baseline)?).await;
            let g = load::fixed_rate(rate, seconds as f64, fixed(&gateway)?).await;
            println!(
                "  {rate:>8.0} {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>9.3}ms {:>9.3}ms",
                b.p50_ms,
                g.p50_ms,
                b.p99_ms,
                g.p99_ms,
                g.p50_ms - b.p50_ms,
                g.p99_ms - b.p99_ms
            );
            fixed_rows.push(json!({"rate": rate, "baseline": latency(b), "wasmclaw": latency(g),
                                   "added_p50_ms": g.p50_ms - b.p50_ms, "added_p99_ms": g.p99_ms - b.p99_ms}));
        }
        println!("  (the last row is half the gateway's wrk peak; target: added p99 under 1 ms there)");
        out.insert("fixed_rate".into(), Value::Array(fixed_rows));
    } else {
        println!("\nnon-streaming echo: skipped, `wrk` is not installed (scripts/bench.sh installs it)");
    }

    // Streaming: 64 words, so 64 content events per stream.
    let words: Vec<String> = (0..64).map(|i| format!("word{i}")).collect();
    let body = json!({"model": "openclaw", "stream": true, "messages": [{"role": "user", "content": words.join(" ")}]});
    println!("\nstreaming echo, 64 content events per stream");
    println!(
        "  {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "conns", "base ttfb", "gw ttfb", "base gap", "gw gap", "base p99", "gw p99", "base str/s", "gw str/s"
    );
    load::sse(&client, &url(&gateway), &body, 16, 64).await; // warm-up
    let mut rows = Vec::new();
    for c in LEVELS {
        let total = (c * 8).max(200);
        let b = load::sse(&client, &url(&baseline), &body, c, total).await;
        let g = load::sse(&client, &url(&gateway), &body, c, total).await;
        anyhow::ensure!(g.errors == 0 && b.errors == 0, "stream errors: base {b:?}, gateway {g:?}");
        println!(
            "  {c:>5} {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>11.0} {:>11.0}",
            b.ttfb_p50_ms,
            g.ttfb_p50_ms,
            b.gap_p50_ms,
            g.gap_p50_ms,
            b.total_p99_ms,
            g.total_p99_ms,
            b.streams_per_sec,
            g.streams_per_sec
        );
        rows.push(json!({"connections": c, "streams": total, "baseline": timing(b), "wasmclaw": timing(g),
                         "ratio": g.streams_per_sec / b.streams_per_sec}));
    }
    println!("  (ttfb and gap are medians; p99 is of whole streams)");
    out.insert("sse_64_events".into(), Value::Array(rows));
    Ok(Value::Object(out))
}

/// A `wrk` cell and the server's own CPU per request during it (µs, from
/// `/proc`): the ratio of req/s hides whether the server or the client was
/// the limit on a 2-core machine, the CPU a request costs does not.
fn cpu_per_request(
    server: &ServerProcess,
    cell: impl FnOnce() -> anyhow::Result<Throughput>,
    seconds: u64,
) -> anyhow::Result<(Throughput, f64)> {
    let before = server.cpu_seconds()?;
    let t = cell()?;
    let used = server.cpu_seconds()? - before;
    Ok((t, 1e6 * used / (t.rps * seconds as f64).max(1.0)))
}

fn cell(t: Throughput) -> Value {
    json!({"rps": t.rps, "p50_ms": t.p50_ms, "p99_ms": t.p99_ms})
}

/// JSON of a fixed-rate run.
pub fn latency(l: load::Latency) -> Value {
    json!({"p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "sent": l.sent, "errors": l.errors})
}

fn timing(t: load::StreamTiming) -> Value {
    json!({"ttfb_p50_ms": t.ttfb_p50_ms, "ttfb_p99_ms": t.ttfb_p99_ms, "gap_p50_ms": t.gap_p50_ms,
           "gap_p99_ms": t.gap_p99_ms, "total_p50_ms": t.total_p50_ms, "total_p99_ms": t.total_p99_ms,
           "streams_per_sec": t.streams_per_sec})
}
