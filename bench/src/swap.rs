//! Swap-to-serve: from the start of an admin upload to the first reply from
//! the new version, for a component the gateway has never seen (compile) and
//! one it has compiled before (cache), against a rollback (pointer swap only)
//! and a plain request, measured in the same run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{BenchGateway, TOKEN, median, ms};

const FAULTS: &[u8] = include_bytes!(env!("WASMCLAW_BENCH_FAULTS"));
const ECHO: &[u8] = include_bytes!(env!("WASMCLAW_BENCH_ECHO"));

/// Append a custom section so the component has a new digest but the same code.
fn with_nonce(component: &[u8], nonce: u64) -> Vec<u8> {
    let name = b"wasmclaw-bench-nonce";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&nonce.to_le_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(payload.len() as u8); // LEB128 size, < 128
    out.extend_from_slice(&payload);
    out
}

async fn put_then_serve(gw: &BenchGateway, bytes: Vec<u8>, expect: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let res = gw.client.put(format!("{}/admin/agents/bench", gw.base)).bearer_auth(TOKEN).body(bytes).send().await?;
    anyhow::ensure!(res.status().is_success(), "install failed: {}", res.text().await?);
    let reply = gw.chat("bench", "x").await?;
    anyhow::ensure!(reply == expect, "served {reply:?}, expected {expect:?}");
    Ok(started.elapsed())
}

/// Run the scenario and print its table.
pub async fn run(samples: usize) -> anyhow::Result<Value> {
    let gw = BenchGateway::start().await?;
    put_then_serve(&gw, ECHO.to_vec(), "x").await?; // warm up: echo compiled and cached
    let mut request = Vec::new();
    let mut rollback = Vec::new();
    let mut uncached = Vec::new();
    let mut cached = Vec::new();
    let nonce0 = std::process::id() as u64 * 1_000_000;
    for i in 0..samples as u64 {
        let started = Instant::now();
        gw.chat("bench", "x").await?;
        request.push(started.elapsed());

        uncached.push(put_then_serve(&gw, with_nonce(FAULTS, nonce0 + i), "faults:x").await?);
        cached.push(put_then_serve(&gw, ECHO.to_vec(), "x").await?);

        let started = Instant::now();
        let res = gw.client.post(format!("{}/admin/agents/bench/rollback", gw.base)).bearer_auth(TOKEN).send().await?;
        anyhow::ensure!(res.status().is_success());
        anyhow::ensure!(gw.chat("bench", "x").await? == "faults:x");
        rollback.push(started.elapsed());
    }
    let (request, rollback, uncached, cached) = (median(request), median(rollback), median(uncached), median(cached));
    println!("\nswap-to-serve (admin PUT → first reply from the new version)");
    println!("  {:<44} {:>10}  {:>8}", "case", "median ms", "× request");
    for (case, d) in [
        ("plain chat request (baseline)", request),
        ("rollback (no compile)", rollback),
        ("upload, cached component", cached),
        ("upload, never-seen component (compile)", uncached),
    ] {
        println!("  {case:<44} {:>10.3}  {:>8.1}", ms(d), d.as_secs_f64() / request.as_secs_f64());
    }
    println!("  uncached / cached: {:.1}×", uncached.as_secs_f64() / cached.as_secs_f64());
    Ok(json!({
        "samples": samples,
        "request_ms": ms(request),
        "rollback_ms": ms(rollback),
        "cached_ms": ms(cached),
        "uncached_ms": ms(uncached),
        "uncached_over_cached": uncached.as_secs_f64() / cached.as_secs_f64(),
        "component_bytes": FAULTS.len(),
    }))
}
