//! Soak: mixed traffic against the release gateway for a fixed time. The
//! healthy agent must never fail, whatever else is going on around it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::ServerProcess;

#[derive(Default)]
struct Tally {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn add(&self, kind: impl Into<String>) {
        *self.counts.lock().unwrap().entry(kind.into()).or_default() += 1;
    }
}

/// One request a worker sends, and what counts as right for it.
struct Shot {
    token: String,
    body: Value,
    /// The healthy agent: anything but a complete reply is unexpected.
    healthy: bool,
    /// Drop the stream after its first bytes.
    disconnect: bool,
}

/// What a worker sends on its `i`-th turn.
type Plan = Box<dyn Fn(u64) -> Shot + Send + Sync>;

fn shot(agent: &str, text: &str, stream: bool) -> Shot {
    Shot { token: crate::TOKEN.into(), body: body(agent, text, stream), healthy: false, disconnect: false }
}

fn config() -> String {
    let faults = env!("WASMCLAW_BENCH_FAULTS");
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ limits: {{ timeoutMs: 500 }}, entries: {{
    main: {{ plugin: "echo" }},
    slow: {{ plugin: "{faults}", config: {{ fault: "slow", delayMs: "40" }} }},
    trap: {{ plugin: "{faults}", config: {{ fault: "trap" }} }},
    spin: {{ plugin: "{faults}", config: {{ fault: "loop" }} }},
    hog: {{ plugin: "{faults}", config: {{ fault: "memory" }}, limits: {{ memoryBytes: 16777216 }} }},
    flood: {{ plugin: "{faults}", config: {{ fault: "flood" }}, limits: {{ maxOutputBytes: 65536 }} }},
  }} }},
}}"#
    )
}

fn body(agent: &str, text: &str, stream: bool) -> Value {
    json!({"model": format!("agent:{agent}"), "stream": stream, "messages": [{"role": "user", "content": text}]})
}

async fn error_code(res: reqwest::Response) -> String {
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or_default();
    format!("{status} {}", v["error"]["code"].as_str().unwrap_or("-"))
}

/// Run the scenario and print its report.
pub async fn run(seconds: u64) -> anyhow::Result<Value> {
    let gw = ServerProcess::wasmclaw(&config())?;
    let url = format!("{}/v1/chat/completions", gw.base);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let rss_start = gw.rss_kib()?;
    println!("\nsoak: {seconds} s of mixed traffic against the release gateway (RSS {rss_start} KiB at start)");
    let mut workers = Vec::new();
    let spawn = |plan: Plan| {
        let (url, stop, tally) = (url.clone(), stop.clone(), tally.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let Shot { token, body, healthy, disconnect } = plan(i);
                let res = match client.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(r) => r,
                    Err(e) => {
                        tally.add(if healthy {
                            format!("UNEXPECTED transport error: {e}")
                        } else {
                            "transport error".into()
                        });
                        continue;
                    }
                };
                let streaming = body["stream"] == true;
                match (res.status().as_u16(), healthy, disconnect) {
                    (200, _, true) => {
                        let mut res = res;
                        let _ = res.chunk().await;
                        drop(res);
                        tally.add("disconnected mid-stream");
                    }
                    (200, true, _) => {
                        let text = res.text().await.unwrap_or_default();
                        let complete = if streaming {
                            text.ends_with("data: [DONE]\n\n") && !text.contains("\"error\"")
                        } else {
                            text.contains("\"finish_reason\":\"stop\"")
                        };
                        tally.add(if complete { "healthy ok" } else { "UNEXPECTED incomplete healthy reply" });
                    }
                    (200, false, _) => {
                        let text = res.text().await.unwrap_or_default();
                        tally.add(if text.contains("\"error\"") { "fault: error inside stream" } else { "fault: 200" });
                    }
                    (_, true, _) => tally.add(format!("UNEXPECTED healthy {}", error_code(res).await)),
                    (_, false, _) => tally.add(format!("expected {}", error_code(res).await)),
                }
            }
        })
    };
    for w in 0..4u64 {
        workers.push(spawn(Box::new(move |i| Shot {
            healthy: true,
            ..shot("main", "soak test words", (i + w) % 2 == 0)
        })));
    }
    let faults = ["trap", "spin", "hog", "flood"];
    workers.push(spawn(Box::new(move |i| shot(faults[(i % 4) as usize], "x", false))));
    workers.push(spawn(Box::new(|_| Shot { disconnect: true, ..shot("slow", "one two three four five six", true) })));
    workers.push(spawn(Box::new(|_| Shot { token: "wrong-token".into(), ..shot("main", "x", false) })));

    let started = Instant::now();
    let mut rss_peak = rss_start;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(10).min(Duration::from_secs(seconds).saturating_sub(started.elapsed())))
            .await;
        let rss = gw.rss_kib()?;
        rss_peak = rss_peak.max(rss);
        let served: u64 = tally.counts.lock().unwrap().values().sum();
        println!("  {:>4.0} s  {served:>8} requests  RSS {rss} KiB", started.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let rss_end = gw.rss_kib()?;
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", gw.base))
        .bearer_auth(crate::TOKEN)
        .send()
        .await?
        .text()
        .await?;
    let active = metrics.lines().find_map(|l| l.strip_prefix("wasmclaw_runs_active ")).unwrap_or("?").to_string();
    let counts = tally.counts.lock().unwrap().clone();
    let total: u64 = counts.values().sum();
    let unexpected: u64 = counts.iter().filter(|(k, _)| k.starts_with("UNEXPECTED")).map(|(_, n)| n).sum();
    println!("  {:<46} {:>9}", "outcome", "count");
    for (kind, n) in &counts {
        println!("  {kind:<46} {n:>9}");
    }
    println!(
        "  requests {total} ({:.0}/s); unexpected for the healthy agent: {unexpected}; runs active after: {active}; RSS start {rss_start} KiB, peak {rss_peak} KiB, end {rss_end} KiB",
        total as f64 / seconds as f64
    );
    let failures: u64 = counts.iter().filter(|(k, _)| k.starts_with("expected 5")).map(|(_, n)| n).sum();
    println!(
        "  gateway log: {} `run failed` warnings for {failures} expected agent failures",
        gw.log_lines_with("run failed")
    );
    anyhow::ensure!(unexpected == 0, "the healthy agent failed {unexpected} times under soak");
    anyhow::ensure!(active == "0", "runs still active after the soak: {active}");
    Ok(json!({
        "seconds": seconds, "requests": total, "unexpected": unexpected, "outcomes": counts,
        "rss_kib": {"start": rss_start, "peak": rss_peak, "end": rss_end}, "runs_active_after": active,
    }))
}
