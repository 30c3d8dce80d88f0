//! The assistant agent against the mock provider: gateway overhead is the
//! end-to-end latency minus the latency of the same request sent straight to
//! the mock, both measured in this run at the same fixed rate.

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::load;
use crate::poster::Poster;
use crate::process::ServerProcess;

/// Run the scenario and print its table.
pub async fn run(rate: f64, seconds: u64) -> anyhow::Result<Value> {
    let mock = MockProvider::start_on(0, 1);
    mock.set_default(Reply::tokens(16));
    let gateway = ServerProcess::wasmclaw(&format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ maxConcurrentRuns: 2000, entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "m" }} }} }} }}"#,
        mock.url()
    ))?;
    let body = json!({"model": "openclaw", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let direct = Poster::new(&format!("{}/chat/completions", mock.url()), &body, None)?;
    let direct = move || direct.clone().send();
    let through = Poster::new(&format!("{}/v1/chat/completions", gateway.base), &body, Some(crate::TOKEN))?;
    let through = move || through.clone().send();
    load::fixed_rate(200.0, 1.0, through.clone()).await; // warm-up
    let d = load::fixed_rate(rate, seconds as f64, direct).await;
    let e = load::fixed_rate(rate, seconds as f64, through).await;
    let (o50, o99) = (e.p50_ms - d.p50_ms, e.p99_ms - d.p99_ms);
    println!("\nassistant via the mock provider (16 tokens, streamed), {rate:.0} req/s open loop, {seconds} s");
    println!("  straight to the mock   p50 {:.3} ms  p99 {:.3} ms  ({} errors)", d.p50_ms, d.p99_ms, d.errors);
    println!("  through wasmclaw       p50 {:.3} ms  p99 {:.3} ms  ({} errors)", e.p50_ms, e.p99_ms, e.errors);
    println!("  gateway overhead: p50 {o50:.3} ms, p99 {o99:.3} ms (target: p99 under 1 ms)");
    Ok(json!({"rate": rate, "direct": crate::echo::latency(d), "through_gateway": crate::echo::latency(e),
              "overhead_p50_ms": o50, "overhead_p99_ms": o99}))
}
