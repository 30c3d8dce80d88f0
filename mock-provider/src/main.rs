//! `mock-provider`: serve the mock on a port for manual runs and benchmarks.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use wasmclaw_mock_provider::{MockProvider, Reply, script_from_json};

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
    /// Use the tools a request offers: call the first one (arguments built
    /// from its JSON schema), and after its result answer `tool said: <result>`.
    #[arg(long, conflicts_with = "tokens")]
    tool_calls: bool,
    /// Answer the first requests with the replies of this JSON list, in
    /// order (`"text"`, `{"text": …}`, `{"tool_calls": [{"name": …, "arguments": {…}}]}`,
    /// `{"status": 429, "message": …}`), then as the other flags say.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let script = match &args.script {
        Some(path) => match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| script_from_json(&t))
        {
            Ok(replies) => replies,
            Err(e) => {
                eprintln!("mock-provider: --script {}: {e}", path.display());
                std::process::exit(2);
            }
        },
        None => vec![],
    };
    let mut reply = match (args.tool_calls, args.tokens) {
        (true, _) => Reply::call_tools(),
        (false, 0) => Reply::echo(),
        (false, n) => Reply::tokens(n),
    };
    reply.token_delay = Duration::from_millis(args.token_delay_ms);
    let mock = MockProvider::start_on(args.port, args.threads);
    mock.set_default(reply);
    for scripted in script {
        mock.push(scripted);
    }
    println!("mock provider listening on {}", mock.url());
    loop {
        std::thread::park();
    }
}
