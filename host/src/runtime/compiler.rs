//! Where components are compiled. The gateway compiles in a child process of
//! its own binary (`wasmclaw compile-worker`), so the compiler's working
//! memory (tens of megabytes that its allocator would otherwise keep) and any
//! crash of the compiler on hostile input stay out of the serving process;
//! the child hands back the serialized artifact, which the gateway loads.
//! Other commands (and tests) compile in process.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::{self, EngineLimits};

/// The binary that serves `compile-worker`, once the gateway opted in.
static WORKER: OnceLock<PathBuf> = OnceLock::new();

/// The subcommand the child runs.
pub const WORKER_COMMAND: &str = "compile-worker";

/// mimalloc's settings for a server process (the binary's allocator, set in
/// `main.rs`; the compile worker is started with them): freed pages go back to
/// the OS at once and arenas are committed as used. With its defaults the
/// gateway held 64-69 MB after the benchmark's load instead of 34-36 MB, and
/// the compile worker peaked at 136 MB instead of 54 MB (BENCHMARKS.md, issue
/// 28, round 5). Values the operator set are kept.
pub const ALLOCATOR_ENV: [(&str, &str); 2] = [("MIMALLOC_ARENA_EAGER_COMMIT", "0"), ("MIMALLOC_PURGE_DELAY", "0")];

/// Compile in child processes of this binary from now on (the gateway's choice).
pub fn compile_in_worker_processes() {
    match std::env::current_exe() {
        Ok(exe) => {
            let _ = WORKER.set(exe);
        }
        Err(e) => tracing::warn!(error = %e, "compiling in process: the gateway's own binary was not found"),
    }
}

/// Compile `bytes` for `engine` (built from `limits`), in a worker when the
/// gateway asked for it. A worker that cannot start, or whose artifact this
/// engine refuses, falls back to compiling here; a compile error is the
/// component's and is returned as is.
pub fn compile(engine: &Engine, limits: &EngineLimits, bytes: &[u8]) -> wasmtime::Result<Component> {
    let Some(exe) = WORKER.get() else {
        return in_process(engine, bytes);
    };
    let started = std::time::Instant::now();
    let artifact = match run_worker(exe, limits, bytes) {
        Ok(Ok(artifact)) => artifact,
        Ok(Err(compile_error)) => return Err(wasmtime::Error::msg(compile_error)),
        Err(e) => {
            tracing::warn!(error = %e, "the compile worker did not run; compiling in process");
            return in_process(engine, bytes);
        }
    };
    // SAFETY: the artifact was just serialized by this same binary, in a child
    // process this gateway started, from an engine built with the same settings
    // (wasmtime checks the engine's compatibility before loading it).
    match unsafe { Component::deserialize(engine, &artifact) } {
        Ok(component) => {
            tracing::debug!(ms = started.elapsed().as_millis() as u64, "compiled in a worker process");
            Ok(component)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the compile worker's artifact was refused; compiling in process");
            in_process(engine, bytes)
        }
    }
}

fn in_process(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    let component = Component::new(engine, bytes)?;
    release_compile_memory();
    Ok(component)
}

/// Run the worker on `bytes`: `Err` when it could not run, `Ok(Err)` with the
/// compiler's message when the component does not compile.
fn run_worker(exe: &PathBuf, limits: &EngineLimits, bytes: &[u8]) -> std::io::Result<Result<Vec<u8>, String>> {
    let mut child = Command::new(exe)
        .arg(WORKER_COMMAND)
        .arg(limits.max_instances.to_string())
        .arg(limits.max_memory_bytes.to_string())
        // It needs nothing from the gateway's environment, secrets least of all.
        .env_clear()
        // The allocator's settings, so the worker need not re-execute for them.
        .envs(ALLOCATOR_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Written from a thread: the child may answer (an error) before reading it all.
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    if output.status.success() {
        return Ok(Ok(output.stdout));
    }
    // The binary prints a failed command's error as `error: …`.
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.trim().strip_prefix("error: ").unwrap_or(said.trim()).to_string();
    Ok(Err(match output.status.code() {
        Some(_) if !said.is_empty() => said,
        _ => format!("the compiler stopped without an answer ({})", output.status),
    }))
}

/// The child's side: read a component on stdin, write its compiled artifact
/// on stdout (or the compiler's error on stderr and exit non-zero).
pub fn serve_worker(max_instances: u32, max_memory_bytes: usize) -> anyhow::Result<()> {
    let (engine, _) = engine::build(&EngineLimits { max_instances, max_memory_bytes })?;
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    let artifact = engine.precompile_component(&bytes).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    std::io::stdout().write_all(&artifact)?;
    Ok(())
}

/// Hand back to the OS what the compiler freed: glibc keeps freed memory in
/// its per-thread arenas, and a compile frees tens of megabytes at once.
fn release_compile_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
