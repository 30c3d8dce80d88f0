//! Many open, silent streams (runs waiting on a slow model): memory per open
//! stream held by the gateway, next to a bare axum SSE server holding as many.
//! RSS counts a page once per mapping: every instance maps its component's
//! data image (the kernel maps the neighbouring image pages in on the first
//! read), so the image is in RSS once per stream though it is one copy in
//! RAM. PSS, which divides a shared page among its mappings, is printed beside it.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::process::ServerProcess;

/// Proportional set size of `pid` in KiB (`/proc/<pid>/smaps_rollup`).
fn pss_kib(pid: u32) -> anyhow::Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let line = rollup.lines().find(|l| l.starts_with("Pss:")).ok_or_else(|| anyhow::anyhow!("no Pss"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// Memory of a server: RSS and PSS in KiB.
#[derive(Clone, Copy)]
struct Memory {
    rss: u64,
    pss: u64,
}

fn memory(server: &ServerProcess) -> anyhow::Result<Memory> {
    Ok(Memory { rss: server.rss_kib()?, pss: pss_kib(server.pid())? })
}

/// Open `n` streams that stay silent after their first chunk; memory before and after.
async fn hold(server: &ServerProcess, n: usize, body: &Value) -> anyhow::Result<(Memory, Memory)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let url = format!("{}/v1/chat/completions", server.base);
    let before = memory(server)?;
    let open: Vec<anyhow::Result<reqwest::Response>> = futures::stream::iter(0..n)
        .map(|_| {
            let request = client.post(&url).bearer_auth(crate::TOKEN).json(body);
            async move {
                let res = request.send().await?;
                anyhow::ensure!(res.status().is_success(), "status {}", res.status());
                Ok(res)
            }
        })
        .buffer_unordered(2000)
        .collect()
        .await;
    let failed = open.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} of {n} streams failed to open: {:?}", open.iter().find(|r| r.is_err()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = memory(server)?;
    drop(open);
    Ok((before, after))
}

/// Run the scenario for each stream count and print its table.
pub async fn run(counts: &[usize]) -> anyhow::Result<Value> {
    println!("\nopen silent streams (a run waiting on its model), RSS and PSS from /proc");
    println!(
        "  {:>7} {:>16} {:>16} {:>9} {:>16} {:>16}",
        "streams", "base KiB/stream", "gw KiB/stream", "gw/base", "base PSS KiB/s.", "gw PSS KiB/s."
    );
    let mut rows = Vec::new();
    for &n in counts {
        let baseline = ServerProcess::baseline("http")?;
        let body =
            json!({"model": "openclaw", "stream": true, "hold": true, "messages": [{"role": "user", "content": "x"}]});
        let (b0, b1) = hold(&baseline, n, &body).await?;
        drop(baseline);
        let gateway = ServerProcess::wasmclaw(&format!(
            r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ maxConcurrentRuns: {}, entries: {{ main: {{ plugin: "{}", config: {{ fault: "sleep" }},
    limits: {{ timeoutMs: 600000 }} }} }} }} }}"#,
            n + 100,
            env!("WASMCLAW_BENCH_FAULTS")
        ))?;
        let result = hold(&gateway, n, &body).await;
        let (g0, g1) = match result {
            Ok(r) => r,
            Err(e) => {
                println!("  {n:>7} gateway could not hold them: {e}");
                rows.push(json!({"streams": n, "error": e.to_string()}));
                continue;
            }
        };
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / n as f64;
        let (bp, gp) = (per(b0.rss, b1.rss), per(g0.rss, g1.rss));
        let (bpss, gpss) = (per(b0.pss, b1.pss), per(g0.pss, g1.pss));
        println!("  {n:>7} {bp:>16.1} {gp:>16.1} {:>8.1}× {bpss:>16.1} {gpss:>16.1}", gp / bp.max(0.001));
        rows.push(json!({"streams": n, "baseline_kib_per_stream": bp, "wasmclaw_kib_per_stream": gp,
                         "baseline_pss_kib_per_stream": bpss, "wasmclaw_pss_kib_per_stream": gpss,
                         "baseline_rss_kib": [b0.rss, b1.rss], "wasmclaw_rss_kib": [g0.rss, g1.rss]}));
    }
    Ok(Value::Array(rows))
}
