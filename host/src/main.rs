use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;
use wasmclaw::cli::{Cli, Command, LogFormat};
use wasmclaw::telemetry::Tracing;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
