//! What recording runs costs (issue 26): the assistant path (streamed, 16
//! tokens from the mock provider) through gateways that differ only in
//! `agents.entries.main.record`, measured closed-loop with `wrk`, interleaved
//! round by round like `tracing_cost`. "Off" runs twice: no `record` block
//! (A) and `record: {sample: 0}` (B), whose difference is the noise floor and
//! shows that sampling costs nothing when off; "on" records every run
//! (`sample: 1.0`), and the table says how many recordings were really kept.
//! Each column also gets the gateway's CPU per request (from `/proc/<pid>/stat`
//! over each cell), which the machine's other load disturbs less than req/s;
//! `WASMCLAW_BENCH_PERF=FILE` records a `perf` profile of the recording
//! gateway (FILE) and of off A (FILE.off) during one extra cell each.

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::load;
use crate::process::ServerProcess;

/// Connections of each wrk cell: past the knee on two cores, as in `assistant`.
const CONNECTIONS: usize = 16;

fn gateway(mock: &MockProvider, record: &str) -> anyhow::Result<ServerProcess> {
    ServerProcess::wasmclaw(&format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ maxConcurrentRuns: 2000, entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "m" {record} }} }} }} }}"#,
        mock.url()
    ))
}

/// Recordings `g` lists for `main` (at most 1000: the listing's cap).
async fn recordings(g: &ServerProcess) -> anyhow::Result<usize> {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/runs?agent=main&limit=1000", g.base))
        .bearer_auth(crate::TOKEN)
        .send()
        .await?
        .json()
        .await?;
    Ok(body["runs"].as_array().map_or(0, Vec::len))
}

/// Record a `perf` profile of `g` into `file` during one more cell; its req/s.
fn profile(g: &ServerProcess, file: &std::ffi::OsStr, url: &str, body: &Value, seconds: u64) -> anyhow::Result<f64> {
    Ok(load::wrk_profiled(file, g.pid(), url, body, CONNECTIONS, seconds)?.rps)
}

/// Run the scenario (`rounds` interleaved cells of `seconds` each) and print its table.
pub async fn run(seconds: u64, rounds: usize) -> anyhow::Result<Value> {
    anyhow::ensure!(load::have_wrk(), "the recording scenario needs wrk (apt-get install wrk)");
    let mock = MockProvider::start_on(0, 1);
    mock.set_default(Reply::tokens(16));
    let off_a = gateway(&mock, "")?;
    let off_b = gateway(&mock, ", record: { sample: 0.0 }")?;
    let on = gateway(&mock, ", record: { sample: 1.0 }")?;
    let body = json!({"model": "openclaw", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let url = |g: &ServerProcess| format!("{}/v1/chat/completions", g.base);
    for g in [&off_a, &off_b, &on] {
        load::wrk(&url(g), &body, CONNECTIONS, 1)?; // warm-up
    }
    let load_before = load::load_average();
    let columns = load::rotated(&[&off_a, &on, &off_b], url, &body, CONNECTIONS, seconds, rounds)?;
    let [a, r, b] = &columns[..] else { unreachable!("three gateways, three columns") };
    let load_after = load::load_average();
    if let Some(file) = std::env::var_os("WASMCLAW_BENCH_PERF") {
        // Off A too (FILE.off): what recording adds is the difference per request.
        let off_file = {
            let mut f = file.clone();
            f.push(".off");
            f
        };
        for (g, file, which) in [(&on, &file, "on"), (&off_a, &off_file, "off A")] {
            let rps = profile(g, file, &url(g), &body, seconds)?;
            println!("  perf: {which} profiled into {} over {seconds} s at {rps:.0} req/s", file.to_string_lossy());
        }
    }
    let kept = recordings(&on).await?;
    let none_kept = recordings(&off_b).await? + recordings(&off_a).await?;
    let median = |cells: &[load::Throughput], f: fn(&load::Throughput) -> f64| {
        let mut v: Vec<f64> = cells.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ra, rb, rr) = (median(&a.cells, |c| c.rps), median(&b.cells, |c| c.rps), median(&r.cells, |c| c.rps));
    let (pa, pb, pr) = (median(&a.cells, |c| c.p50_ms), median(&b.cells, |c| c.p50_ms), median(&r.cells, |c| c.p50_ms));
    let cpu = |column: &load::Column| {
        let mut v = column.cpu_us.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ca, cr, cb) = (cpu(a), cpu(r), cpu(b));
    let errors: u64 = a.cells.iter().chain(&b.cells).chain(&r.cells).map(|c| c.errors).sum();
    println!(
        "\nrecording: assistant via the mock (16 tokens, streamed), wrk {CONNECTIONS} connections, {rounds}×{seconds} s interleaved"
    );
    println!("  | recording | req/s (median) | vs off A | p50 | gateway CPU per request | vs off A |");
    println!("  | off (A, no record block) | {ra:.0} | 100 % | {pa:.3} ms | {ca:.0} µs | 100 % |");
    println!(
        "  | off (B, sample 0: noise) | {rb:.0} | {:.1} % | {pb:.3} ms | {cb:.0} µs | {:.1} % |",
        rb / ra * 100.0,
        cb / ca * 100.0
    );
    println!(
        "  | on, sample 1.0 | {rr:.0} | {:.1} % | {pr:.3} ms | {cr:.0} µs | {:.1} % |",
        rr / ra * 100.0,
        cr / ca * 100.0
    );
    println!("  kept: {kept} recordings listed (the listing stops at 1000), {none_kept} while off; {errors} errors");
    println!("  target: on ≥ 90 % of off; off B within the noise of off A");
    println!("  load average {load_before} → {load_after}");
    Ok(json!({
        "connections": CONNECTIONS, "seconds": seconds, "rounds": rounds,
        "off_a_rps": ra, "off_b_rps": rb, "on_rps": rr,
        "on_vs_off": rr / ra, "off_b_vs_off_a": rb / ra,
        "off_p50_ms": pa, "on_p50_ms": pr, "recordings_listed": kept, "errors": errors,
        "cpu_us_per_request": {"off_a": ca, "off_b": cb, "on": cr}, "on_cpu_vs_off": cr / ca,
        "load_average": [load_before, load_after],
    }))
}
