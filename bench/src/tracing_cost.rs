//! What traces cost: the assistant path (streamed, 16 tokens from the mock
//! provider) through gateways that differ only in telemetry, measured
//! closed-loop with `wrk`, interleaved round by round. "Off" runs twice (two
//! identical processes): their difference is the run's noise floor, which is
//! what "off costs nothing measurable" is measured against. "On" samples every
//! trace (`sampleRatio: 1.0`) and exports to a local OTLP/HTTP sink that
//! decodes each export and counts its spans, so the table says that the spans
//! were really sent, not dropped. "Metering" is a gateway with a price for
//! the model and a budget on the agent (issue 25): every run reserves on the
//! budget and settles its cost, so its column is what that bookkeeping costs.
//! Each column also gets the gateway's CPU per request, which the machine's
//! other load disturbs less than throughput; `WASMCLAW_BENCH_PERF=FILE`
//! records a `perf` profile of one gateway during one extra cell: the
//! metering one, or the one `WASMCLAW_BENCH_PERF_GATEWAY` names (`off`, `on`,
//! `metering`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use prost::Message;
use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::load;
use crate::process::ServerProcess;

/// Connections of each wrk cell: past the knee on two cores, as in `assistant`.
const CONNECTIONS: usize = 16;

/// Spans and export requests the sink received.
#[derive(Default)]
struct Sink {
    exports: AtomicU64,
    spans: AtomicU64,
}

async fn export(State(sink): State<Arc<Sink>>, body: Bytes) -> &'static str {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let spans = ExportTraceServiceRequest::decode(body)
        .map(|r| r.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum())
        .unwrap_or(0);
    sink.exports.fetch_add(1, Ordering::Relaxed);
    sink.spans.fetch_add(spans, Ordering::Relaxed);
    ""
}

/// The sink's span count once the exporter has sent what it had (it sends
/// at least every 5 s, `OTEL_BSP_SCHEDULE_DELAY`): unchanged over 6 s, or after 30 s.
async fn settled(sink: &Sink) -> u64 {
    let mut last = sink.spans.load(Ordering::Relaxed);
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        let now = sink.spans.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// A price for the mock's model and a budget on the agent, large enough never to refuse.
const METERING: (&str, &str) = (
    r#"models: { m: { price: { inputPerMTok: 1, outputPerMTok: 2 } } },"#,
    r#"budget: { usd: 1000000, window: "day" },"#,
);

fn gateway(mock: &MockProvider, telemetry: &str, (price, budget): (&str, &str)) -> anyhow::Result<ServerProcess> {
    ServerProcess::wasmclaw(&format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  {telemetry}
  providers: {{ mock: {{ baseUrl: "{}", {price} }} }},
  agents: {{ maxConcurrentRuns: 2000, entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "m", {budget} }} }} }} }}"#,
        mock.url()
    ))
}

/// Run the scenario (`rounds` interleaved cells of `seconds` each) and print its table.
pub async fn run(seconds: u64, rounds: usize) -> anyhow::Result<Value> {
    anyhow::ensure!(load::have_wrk(), "the tracing scenario needs wrk (apt-get install wrk)");
    let mock = MockProvider::start_on(0, 1);
    mock.set_default(Reply::tokens(16));
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route("/v1/traces", post(export)).with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let off_a = gateway(&mock, "", ("", ""))?;
    let off_b = gateway(&mock, "", ("", ""))?;
    let on = gateway(
        &mock,
        &format!(r#"telemetry: {{ otlp: {{ endpoint: "{sink_url}" }}, sampleRatio: 1.0 }},"#),
        ("", ""),
    )?;
    let metered = gateway(&mock, "", METERING)?;
    let body = json!({"model": "openclaw", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let url = |g: &ServerProcess| format!("{}/v1/chat/completions", g.base);
    for g in [&off_a, &off_b, &on, &metered] {
        load::wrk(&url(g), &body, CONNECTIONS, 1)?; // warm-up
    }
    // The warm-up's spans arrive within the exporter's schedule: count from after them.
    let spans_before = settled(&sink).await;
    let load_before = load::load_average();
    let columns = load::rotated(&[&off_a, &on, &metered, &off_b], url, &body, CONNECTIONS, seconds, rounds)?;
    let [a, t, m, b] = &columns[..] else { unreachable!("four gateways, four columns") };
    let (a, t, m, b) = (&a.cells, &t.cells, &m.cells, &b.cells);
    let cpu_us: Vec<&Vec<f64>> = columns.iter().map(|c| &c.cpu_us).collect();
    let on_requests: f64 = t.iter().map(|c| c.rps * seconds as f64).sum();
    let load_after = load::load_average();
    // Before the profile's cell, which would add spans but no counted requests.
    let spans = settled(&sink).await - spans_before;
    let profile = match std::env::var_os("WASMCLAW_BENCH_PERF") {
        Some(file) => {
            let which = std::env::var("WASMCLAW_BENCH_PERF_GATEWAY").unwrap_or_else(|_| "metering".into());
            let gateway = match which.as_str() {
                "off" => &off_a,
                "on" => &on,
                "metering" => &metered,
                other => anyhow::bail!("WASMCLAW_BENCH_PERF_GATEWAY: {other} is not off, on or metering"),
            };
            Some(profile(gateway, &which, &url(gateway), &body, seconds, &file)?)
        }
        None => None,
    };
    let median = |cells: &[load::Throughput], f: fn(&load::Throughput) -> f64| {
        let mut v: Vec<f64> = cells.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ra, rb, rt, rm) = (median(a, |c| c.rps), median(b, |c| c.rps), median(t, |c| c.rps), median(m, |c| c.rps));
    let (pa, pt, pm) = (median(a, |c| c.p50_ms), median(t, |c| c.p50_ms), median(m, |c| c.p50_ms));
    let cpu = |which: usize| {
        let mut v = cpu_us[which].clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ca, ct, cm, cb) = (cpu(0), cpu(1), cpu(2), cpu(3));
    let errors: u64 = a.iter().chain(b).chain(t).chain(m).map(|c| c.errors).sum();
    let per_request = spans as f64 / on_requests.max(1.0);
    println!(
        "\ntraces and metering: assistant via the mock (16 tokens, streamed), wrk {CONNECTIONS} connections, {rounds}×{seconds} s interleaved"
    );
    println!("  | tracing | req/s (median) | vs off A | p50 | gateway CPU per request |");
    println!("  | off (A) | {ra:.0} | 100 % | {pa:.3} ms | {ca:.0} µs |");
    println!(
        "  | off (B, same config: noise) | {rb:.0} | {:.1} % | {:.3} ms | {cb:.0} µs |",
        rb / ra * 100.0,
        median(b, |c| c.p50_ms)
    );
    println!("  | on, sampleRatio 1.0 → local sink | {rt:.0} | {:.1} % | {pt:.3} ms | {ct:.0} µs |", rt / ra * 100.0);
    println!(
        "  | metering: a price and an agent budget | {rm:.0} | {:.1} % | {pm:.3} ms | {cm:.0} µs |",
        rm / ra * 100.0
    );
    println!(
        "  exported: {spans} spans in {} requests, {per_request:.2} spans per traced request; {errors} errors",
        sink.exports.load(Ordering::Relaxed)
    );
    println!("  target: on ≥ 90 % of off; off within the noise of off vs off");
    println!("  load average {load_before} → {load_after}");
    Ok(json!({
        "connections": CONNECTIONS, "seconds": seconds, "rounds": rounds,
        "off_a_rps": ra, "off_b_rps": rb, "on_rps": rt, "metered_rps": rm,
        "on_vs_off": rt / ra, "off_b_vs_off_a": rb / ra, "metered_vs_off": rm / ra,
        "off_p50_ms": pa, "on_p50_ms": pt, "metered_p50_ms": pm,
        "cpu_us_per_request": {"off_a": ca, "off_b": cb, "on": ct, "metered": cm}, "perf_profile": profile,
        "load_average": [load_before, load_after], "spans_exported": spans, "spans_per_request": per_request, "errors": errors,
    }))
}

/// A `perf` profile (`cpu-clock`: what works here) of `gateway` (named
/// `which`) during one more cell, written to `file`.
fn profile(
    gateway: &ServerProcess,
    which: &str,
    url: &str,
    body: &Value,
    seconds: u64,
    file: &std::ffi::OsStr,
) -> anyhow::Result<String> {
    load::wrk_profiled(file, gateway.pid(), url, body, CONNECTIONS, seconds)?;
    println!("  perf profile of the {which} gateway: {}", std::path::Path::new(file).display());
    Ok(file.to_string_lossy().to_string())
}
