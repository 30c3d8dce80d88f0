use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;
use wasmclaw::cli::{Cli, Command, LogFormat};
use wasmclaw::runtime::ALLOCATOR_ENV;
use wasmclaw::telemetry::Tracing;

/// The gateway's allocator: glibc's malloc and free were a tenth of a streamed
/// request's CPU and a fifth of a non-streaming one's (BENCHMARKS.md, issue 28).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Re-execute with [`ALLOCATOR_ENV`] unless it is already in place, before any
/// thread starts: mimalloc reads its settings before `main`, so setting them
/// later does not help. If that fails the process goes on with its defaults.
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    if ALLOCATOR_ENV.iter().all(|(name, _)| std::env::var_os(name).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    command.arg0(args.next().unwrap_or_default()).args(args);
    for (name, value) in ALLOCATOR_ENV.iter().filter(|(name, _)| std::env::var_os(name).is_none()) {
        command.env(name, value);
    }
    let error = command.exec();
    eprintln!("warning: could not re-execute with the allocator's settings ({error}); going on with its defaults");
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts").block_on(run())
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `wasmclaw dev` is for agent authors: their agents' debug lines too.
    let guest = if matches!(cli.command, Command::Dev { .. }) { ",guest=debug" } else { "" };
    let filter = EnvFilter::try_from_env("WASMCLAW_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("info,wasmtime=warn,cranelift=warn,tower_http=warn{guest}")));
    let tracing = match start_tracing(&cli) {
        Ok(tracing) => tracing,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::stderr().is_terminal();
    match (&tracing, cli.log_format) {
        // Tracing off: the log alone, exactly as without telemetry compiled in.
        (None, LogFormat::Text) => {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init()
        }
        (None, LogFormat::Json) => {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).json().init()
        }
        // Tracing on: each layer has its own filter, so `WASMCLAW_LOG` never hides spans.
        (Some(t), format) => {
            let filter = filter.add_directive(Tracing::log_directive());
            let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
            let logs = match format {
                LogFormat::Text => logs.with_filter(filter).boxed(),
                LogFormat::Json => logs.json().with_filter(filter).boxed(),
            };
            tracing_subscriber::registry().with(logs).with(t.layer()).init();
        }
    }
    if let Some(tracing) = &tracing {
        tracing.announce();
    }
    let result = wasmclaw::cli::run(cli).await;
    if let Some(tracing) = tracing {
        tracing.shutdown().await;
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Traces are exported by `wasmclaw gateway` only, when its config or the
/// environment names an OTLP endpoint. A config that does not load is
/// reported by the command itself.
fn start_tracing(cli: &Cli) -> anyhow::Result<Option<Tracing>> {
    let Command::Gateway { config, .. } = &cli.command else { return Ok(None) };
    match wasmclaw::config::Config::load(config.as_deref()) {
        Ok(config) => Tracing::start(&config),
        Err(_) => Ok(None),
    }
}
