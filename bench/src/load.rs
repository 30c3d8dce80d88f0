//! Load generators: `wrk` for closed-loop throughput, and small tokio clients
//! for what wrk cannot do (a fixed request rate, SSE event timing).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// The machine's load average over 1, 5 and 15 minutes (`/proc/loadavg`):
/// how much else was running, printed with the figures.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// One gateway's cells in a [`rotated`] run: wrk's figures and the gateway's
/// CPU per request (µs), which the machine's other load disturbs less than req/s.
#[derive(Debug, Default)]
pub struct Column {
    pub cells: Vec<Throughput>,
    pub cpu_us: Vec<f64>,
}

/// `rounds` rounds of one wrk cell per gateway, each round starting one
/// gateway later, so no column always runs first (in a fixed order the first
/// gateway read 22–34 % above its identical twin, which ran last).
pub fn rotated(
    gateways: &[&crate::process::ServerProcess],
    url: impl Fn(&crate::process::ServerProcess) -> String,
    body: &Value,
    connections: usize,
    seconds: u64,
    rounds: usize,
) -> anyhow::Result<Vec<Column>> {
    let mut columns: Vec<Column> = gateways.iter().map(|_| Column::default()).collect();
    for round in 0..rounds {
        for i in 0..gateways.len() {
            let which = (round + i) % gateways.len();
            let before = gateways[which].cpu_seconds()?;
            let cell = wrk(&url(gateways[which]), body, connections, seconds)?;
            let used = gateways[which].cpu_seconds()? - before;
            columns[which].cpu_us.push(used / (cell.rps * seconds as f64).max(1.0) * 1e6);
            columns[which].cells.push(cell);
        }
    }
    Ok(columns)
}

/// Whether `wrk` is installed (Debian: `apt-get install wrk`).
pub fn have_wrk() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// One [`wrk`] cell with `perf <command…> -p <pid>` attached for its length
/// (a profile with `record`, counts with `stat`); `perf` is stopped before a
/// failed cell's error is returned.
pub fn wrk_under_perf(
    perf_command: &[&str],
    pid: u32,
    url: &str,
    body: &Value,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Throughput> {
    let mut perf = Command::new("perf")
        .args(perf_command)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let cell = wrk(url, body, connections, seconds);
    // SIGINT makes perf write its file and exit.
    Command::new("kill").args(["-INT", &perf.id().to_string()]).status()?;
    perf.wait()?;
    cell
}

/// One [`wrk`] cell while `perf record` (`cpu-clock`: the one event this VM
/// has) profiles `pid` into `file`.
pub fn wrk_profiled(
    file: &std::ffi::OsStr,
    pid: u32,
    url: &str,
    body: &Value,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Throughput> {
    let file = file.to_string_lossy();
    let record = ["record", "-e", "cpu-clock", "-F", "1999", "-g", "-o", &file];
    wrk_under_perf(&record, pid, url, body, connections, seconds)
}

/// `wrk` POSTing `body` to `url` with `connections` open for `seconds`.
pub fn wrk(url: &str, body: &Value, connections: usize, seconds: u64) -> anyhow::Result<Throughput> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    let lua_body = body.to_string().replace('\\', "\\\\").replace('\'', "\\'");
    std::fs::write(
        &script,
        format!(
            "wrk.method = 'POST'\nwrk.body = '{lua_body}'\nwrk.headers['Content-Type'] = 'application/json'\n\
             wrk.headers['Authorization'] = 'Bearer {}'\n",
            crate::TOKEN
        ),
    )?;
    let threads = connections.clamp(1, 2);
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "--latency"])
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let field = |prefix: &str| {
        text.lines().find_map(|l| {
            l.trim().strip_prefix(prefix).map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        })
    };
    let rps: f64 = field("Requests/sec:").ok_or_else(|| anyhow::anyhow!("no Requests/sec in {text}"))?.parse()?;
    let errors = field("Non-2xx or 3xx responses:").map_or(Ok(0), |n| n.parse())?
        + text.lines().find(|l| l.contains("Socket errors")).map_or(0, |_| 1);
    Ok(Throughput {
        rps,
        p50_ms: duration_ms(&field("50%").unwrap_or_default()),
        p99_ms: duration_ms(&field("99%").unwrap_or_default()),
        errors,
    })
}

/// wrk prints `812.00us`, `1.23ms`, `2.01s`.
fn duration_ms(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// Latency percentiles of a fixed-rate run.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub sent: usize,
    pub errors: usize,
}

/// Open-loop load: requests start on a fixed schedule whether or not earlier
/// ones finished (each on an idle connection or a new one), so a stalled
/// server cannot slow the sender down and hide the stall (no coordinated
/// omission). Latency counts from the moment a request is sent: counting
/// from its scheduled instant would add the client's timer granularity
/// (up to 1 ms) to every figure. `send` sends one request and reads the
/// response to its end.
pub async fn fixed_rate<F, Fut>(rate: f64, seconds: f64, send: F) -> Latency
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // One thread, its own runtime: the client then wakes no other threads
    // per request, which keeps its share of the two cores small.
    let run = move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
        runtime.block_on(open_loop(rate, seconds, send))
    };
    tokio::task::spawn_blocking(run).await.expect("open-loop client thread")
}

async fn open_loop<F, Fut>(rate: f64, seconds: f64, send: F) -> Latency
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let send = Arc::new(send);
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = send().await;
            (sent.elapsed(), result)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok((d, Ok(()))) => latencies.push(d),
            Ok((_, Err(e))) => {
                if errors == 0 {
                    eprintln!("  first failed request: {e:#}");
                }
                errors += 1;
            }
            Err(e) => panic!("client task: {e}"),
        }
    }
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    Latency { p50_ms, p99_ms, sent: total, errors }
}

/// p50 and p99 in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    samples.sort();
    let at = |q: f64| crate::ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.50), at(0.99))
}

/// SSE timing of many streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    pub ttfb_p50_ms: f64,
    pub ttfb_p99_ms: f64,
    pub gap_p50_ms: f64,
    pub gap_p99_ms: f64,
    pub total_p50_ms: f64,
    pub total_p99_ms: f64,
    pub streams_per_sec: f64,
    pub errors: usize,
}

/// `total` streaming requests, `concurrency` at a time; times the first
/// event, the gaps between events and the whole stream.
pub async fn sse(client: &reqwest::Client, url: &str, body: &Value, concurrency: usize, total: usize) -> StreamTiming {
    let started = Instant::now();
    let results: Vec<Option<(Duration, Vec<Duration>, Duration)>> = futures::stream::iter(0..total)
        .map(|_| {
            let request = client.post(url).bearer_auth(crate::TOKEN).json(body);
            async move {
                let begin = Instant::now();
                let res = request.send().await.ok()?;
                if !res.status().is_success() {
                    return None;
                }
                let mut events = res.bytes_stream().eventsource();
                let mut last = begin;
                let mut first = None;
                let mut gaps = Vec::new();
                while let Some(event) = events.next().await {
                    let event = event.ok()?;
                    let now = Instant::now();
                    match first {
                        None => first = Some(now - begin),
                        Some(_) => gaps.push(now - last),
                    }
                    last = now;
                    if event.data == "[DONE]" {
                        return Some((first?, gaps, now - begin));
                    }
                }
                None
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let errors = results.iter().filter(|r| r.is_none()).count();
    let ok: Vec<_> = results.into_iter().flatten().collect();
    let mut ttfb: Vec<Duration> = ok.iter().map(|r| r.0).collect();
    let mut gaps: Vec<Duration> = ok.iter().flat_map(|r| r.1.iter().copied()).collect();
    let mut totals: Vec<Duration> = ok.iter().map(|r| r.2).collect();
    let (ttfb_p50_ms, ttfb_p99_ms) = percentiles(&mut ttfb);
    let (gap_p50_ms, gap_p99_ms) = percentiles(&mut gaps);
    let (total_p50_ms, total_p99_ms) = percentiles(&mut totals);
    StreamTiming {
        ttfb_p50_ms,
        ttfb_p99_ms,
        gap_p50_ms,
        gap_p99_ms,
        total_p50_ms,
        total_p99_ms,
        streams_per_sec: ok.len() as f64 / elapsed.as_secs_f64(),
        errors,
    }
}
