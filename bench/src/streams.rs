//! Many open, silent streams (runs waiting on a slow model): memory per open
//! stream held by the gateway, next to a bare axum SSE server holding as many.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::process::ServerProcess;

/// Open `n` streams that stay silent after their first chunk; RSS before and after.
async fn hold(server: &ServerProcess, n: usize, body: &Value) -> anyhow::Result<(u64, u64)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let url = format!("{}/v1/chat/completions", server.base);
    let before = server.rss_kib()?;
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
    let after = server.rss_kib()?;
    drop(open);
    Ok((before, after))
}

/// Run the scenario for each stream count and print its table.
pub async fn run(counts: &[usize]) -> anyhow::Result<Value> {
    println!("\nopen silent streams (a run waiting on its model), RSS from /proc");
    println!("  {:>7} {:>16} {:>16} {:>9}", "streams", "base KiB/stream", "gw KiB/stream", "gw/base");
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
        let (bp, gp) = (per(b0, b1), per(g0, g1));
        println!("  {n:>7} {bp:>16.1} {gp:>16.1} {:>8.1}×", gp / bp.max(0.001));
        rows.push(json!({"streams": n, "baseline_kib_per_stream": bp, "wasmclaw_kib_per_stream": gp,
                         "baseline_rss_kib": [b0, b1], "wasmclaw_rss_kib": [g0, g1]}));
    }
    Ok(Value::Array(rows))
}
