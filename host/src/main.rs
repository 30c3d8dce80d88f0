use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmclaw::cli::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `wasmclaw dev` is for agent authors: their agents' debug lines too.
    let guest = if matches!(cli.command, Command::Dev { .. }) { ",guest=debug" } else { "" };
    let filter = EnvFilter::try_from_env("WASMCLAW_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("info,wasmtime=warn,cranelift=warn,tower_http=warn{guest}")));
    // Colour only on a terminal: log files and collectors get plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match wasmclaw::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
