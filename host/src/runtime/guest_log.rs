//! Guest stdout/stderr, forwarded line by line to the gateway's log.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept; the rest of an overlong line is dropped, not buffered.
const MAX_LINE: usize = 4096;

/// A guest output stream that writes to `tracing` under target `guest`.
#[derive(Clone)]
pub struct GuestLog {
    agent: Arc<str>,
    stream: &'static str,
}

impl GuestLog {
    /// The agent's stdout.
    pub fn stdout(agent: &str) -> Self {
        Self { agent: agent.into(), stream: "stdout" }
    }

    /// The agent's stderr.
    pub fn stderr(agent: &str) -> Self {
        Self { agent: agent.into(), stream: "stderr" }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { log: self.clone(), line: Vec::new() })
    }
}

struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn flush_line(&mut self) {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line);
            tracing::info!(target: "guest", agent = %self.log.agent, stream = self.log.stream, "{}", text.trim_end());
            self.line.clear();
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.flush_line();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_line();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_line();
    }
}
