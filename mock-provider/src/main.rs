//! `mock-provider`: serve the mock on a port for manual runs and benchmarks.

use std::time::Duration;

use clap::Parser;
use wasmclaw_mock_provider::{MockProvider, Reply};

/// An OpenAI-compatible provider that answers with a canned, streamed reply.
#[derive(Parser)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Tokens per reply (0: echo the last user message word by word).
    #[arg(long, default_value_t = 0)]
    tokens: usize,
    /// Delay before each token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    token_delay_ms: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() {
    let args = Args::parse();
    let mut reply = if args.tokens == 0 { Reply::echo() } else { Reply::tokens(args.tokens) };
    reply.token_delay = Duration::from_millis(args.token_delay_ms);
    let mock = MockProvider::start_on(args.port, args.threads);
    mock.set_default(reply);
    println!("mock provider listening on {}", mock.url());
    loop {
        std::thread::park();
    }
}
