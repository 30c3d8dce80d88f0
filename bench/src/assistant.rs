//! The assistant agent against the mock provider, each in its own process.
//!
//! - **Side by side** (`wrk`, interleaved rounds): the gateway's CPU per
//!   streamed request next to the mock's own CPU for the same requests (from
//!   `/proc/<pid>/stat` before and after each cell at 8 connections); the
//!   median added at one connection (gateway p50 minus mock-direct p50); the
//!   gateway's RSS after the load. `WASMCLAW_BENCH_PERF=FILE` also records a
//!   `perf` profile of the gateway during one extra 8-connection cell.
//!   With `perf` at hand, one more cell counts the gateway's system calls
//!   per request (`perf stat` on the `syscalls:sys_enter_*` tracepoints):
//!   `writev` per request is how many times a streamed reply reaches the socket.
//! - **Fixed rate** (open loop): end-to-end latency minus the latency of the
//!   same request sent straight to the mock, both at the same rate.

use serde_json::{Value, json};

use crate::load;
use crate::poster::Poster;
use crate::process::ServerProcess;

/// Tokens the mock streams per reply.
const TOKENS: usize = 16;
/// Connections of the CPU cells.
const CPU_CONNECTIONS: usize = 8;
/// Interleaved rounds of the side-by-side cells.
const ROUNDS: usize = 3;

/// Run the scenario and print its tables.
pub async fn run(rate: f64, seconds: u64) -> anyhow::Result<Value> {
    let mock = ServerProcess::mock_provider(TOKENS)?;
    let gateway = ServerProcess::wasmclaw(&format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ maxConcurrentRuns: 2000, entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "m" }} }} }} }}"#,
        mock.base
    ))?;
    let body = json!({"model": "openclaw", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let direct_url = format!("{}/chat/completions", mock.base);
    let through_url = format!("{}/v1/chat/completions", gateway.base);
    let side = if load::have_wrk() {
        side_by_side(&mock, &gateway, &direct_url, &through_url, &body, seconds)?
    } else {
        println!("\nassistant side by side: skipped (needs wrk: apt-get install wrk)");
        Value::Null
    };

    let direct = Poster::new(&direct_url, &body, None)?;
    let direct = move || direct.clone().send();
    let through = Poster::new(&through_url, &body, Some(crate::TOKEN))?;
    let through = move || through.clone().send();
    load::fixed_rate(200.0, 1.0, through.clone()).await; // warm-up
    let d = load::fixed_rate(rate, seconds as f64, direct).await;
    let e = load::fixed_rate(rate, seconds as f64, through).await;
    let (o50, o99) = (e.p50_ms - d.p50_ms, e.p99_ms - d.p99_ms);
    println!("\nassistant via the mock provider ({TOKENS} tokens, streamed), {rate:.0} req/s open loop, {seconds} s");
    println!("  straight to the mock   p50 {:.3} ms  p99 {:.3} ms  ({} errors)", d.p50_ms, d.p99_ms, d.errors);
    println!("  through wasmclaw       p50 {:.3} ms  p99 {:.3} ms  ({} errors)", e.p50_ms, e.p99_ms, e.errors);
    println!("  gateway overhead: p50 {o50:.3} ms, p99 {o99:.3} ms (target: p99 under 1 ms)");
    Ok(json!({"rate": rate, "direct": crate::echo::latency(d), "through_gateway": crate::echo::latency(e),
              "overhead_p50_ms": o50, "overhead_p99_ms": o99, "side_by_side": side}))
}

/// CPU of both processes over one `wrk` cell through the gateway, per request, in µs.
struct CpuCell {
    gateway_us: f64,
    mock_us: f64,
    rps: f64,
}

fn cpu_cell(
    mock: &ServerProcess,
    gateway: &ServerProcess,
    url: &str,
    body: &Value,
    seconds: u64,
) -> anyhow::Result<CpuCell> {
    let (g0, m0) = (gateway.cpu_seconds()?, mock.cpu_seconds()?);
    let cell = load::wrk(url, body, CPU_CONNECTIONS, seconds)?;
    let (g1, m1) = (gateway.cpu_seconds()?, mock.cpu_seconds()?);
    anyhow::ensure!(cell.errors == 0, "wrk through the gateway saw errors");
    // wrk counts the requests that completed; both processes served the same ones.
    let requests = (cell.rps * seconds as f64).max(1.0);
    Ok(CpuCell { gateway_us: (g1 - g0) / requests * 1e6, mock_us: (m1 - m0) / requests * 1e6, rps: cell.rps })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn side_by_side(
    mock: &ServerProcess,
    gateway: &ServerProcess,
    direct_url: &str,
    through_url: &str,
    body: &Value,
    seconds: u64,
) -> anyhow::Result<Value> {
    load::wrk(through_url, body, CPU_CONNECTIONS, 1)?; // warm-up
    let load_before = load::load_average();
    let (mut added, mut direct_p50, mut through_p50) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratio, mut gw_us, mut mock_us, mut rps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let d = load::wrk(direct_url, body, 1, seconds)?;
        let t = load::wrk(through_url, body, 1, seconds)?;
        added.push(t.p50_ms - d.p50_ms);
        direct_p50.push(d.p50_ms);
        through_p50.push(t.p50_ms);
        let c = cpu_cell(mock, gateway, through_url, body, seconds)?;
        ratio.push(c.gateway_us / c.mock_us);
        gw_us.push(c.gateway_us);
        mock_us.push(c.mock_us);
        rps.push(c.rps);
    }
    let rss_mb = gateway.rss_kib()? as f64 / 1024.0;
    let load_after = load::load_average();
    let syscalls = match syscalls_per_request(gateway, through_url, body, seconds) {
        Ok(counts) => {
            let text: Vec<String> = counts.iter().map(|(name, n)| format!("{name} {n:.2}")).collect();
            println!("  gateway system calls per request at {CPU_CONNECTIONS} connections: {}", text.join(", "));
            Some(counts.into_iter().collect::<serde_json::Map<_, _>>())
        }
        Err(e) => {
            println!("  gateway system calls per request: skipped ({e:#})");
            None
        }
    };
    let profile = match std::env::var_os("WASMCLAW_BENCH_PERF") {
        Some(file) => {
            load::wrk_profiled(&file, gateway.pid(), through_url, body, CPU_CONNECTIONS, seconds)?;
            println!("  perf profile of the gateway: {}", std::path::Path::new(&file).display());
            Some(file.to_string_lossy().to_string())
        }
        None => None,
    };
    let (ratio, gw, mk, added) = (median(&ratio), median(&gw_us), median(&mock_us), median(&added));
    println!(
        "\nassistant side by side: mock ({TOKENS} tokens, streamed) and gateway in their own processes, \
         {ROUNDS} interleaved rounds of {seconds} s, medians; load average {load_before} → {load_after}"
    );
    println!(
        "  CPU per request at {CPU_CONNECTIONS} connections: gateway {gw:.0} µs, mock {mk:.0} µs → {ratio:.2}× \
         (target ≤ 2.5×), {:.0} req/s",
        median(&rps)
    );
    println!(
        "  p50 at 1 connection: mock direct {:.3} ms, through the gateway {:.3} ms → added {added:.3} ms (target ≤ 0.3 ms)",
        median(&direct_p50),
        median(&through_p50)
    );
    println!("  gateway RSS after the load: {rss_mb:.1} MB (target ≤ 50 MB)");
    Ok(json!({
        "rounds": ROUNDS, "seconds": seconds, "connections": CPU_CONNECTIONS,
        "gateway_cpu_us_per_request": gw, "mock_cpu_us_per_request": mk, "cpu_ratio": ratio,
        "rps": median(&rps), "added_p50_ms_one_connection": added,
        "direct_p50_ms": median(&direct_p50), "through_p50_ms": median(&through_p50),
        "rss_mb_after_load": rss_mb, "load_average": [load_before, load_after], "perf_profile": profile,
        "syscalls_per_request": syscalls,
    }))
}

/// System calls the gateway counts on `perf stat`'s tracepoints, by name.
const SYSCALLS: [&str; 5] = ["writev", "recvfrom", "write", "futex", "epoll_wait"];

/// The gateway's system calls per request over one more `wrk` cell at
/// [`CPU_CONNECTIONS`], from `perf stat` attached to it (needs `perf` and
/// access to the tracepoints: root, or `kernel.perf_event_paranoid` ≤ -1).
fn syscalls_per_request(
    gateway: &ServerProcess,
    url: &str,
    body: &Value,
    seconds: u64,
) -> anyhow::Result<Vec<(String, Value)>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("stat.csv");
    let events: Vec<String> = SYSCALLS.iter().map(|s| format!("syscalls:sys_enter_{s}")).collect();
    let (events, out_path) = (events.join(","), out.to_string_lossy());
    let stat = ["stat", "-x", ",", "-e", &events, "-o", &out_path];
    let cell = load::wrk_under_perf(&stat, gateway.pid(), url, body, CPU_CONNECTIONS, seconds)?;
    let requests = (cell.rps * seconds as f64).max(1.0);
    let text = std::fs::read_to_string(&out)?;
    let counts = SYSCALLS
        .iter()
        .map(|name| {
            let event = format!("syscalls:sys_enter_{name}");
            // `count,unit,event,…`; `<not supported>` when the tracepoint cannot be read.
            let count = text
                .lines()
                .find(|l| l.split(',').nth(2) == Some(event.as_str()))
                .and_then(|l| l.split(',').next()?.parse::<f64>().ok())
                .ok_or_else(|| anyhow::anyhow!("perf stat could not count {event}"))?;
            Ok((name.to_string(), json!((count / requests * 100.0).round() / 100.0)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(counts)
}
