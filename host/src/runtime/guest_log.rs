//! What a guest writes to the gateway's log: its stdout/stderr line by line,
//! and (contract 0.1.1) levelled lines and panic reports. Every line goes out
//! under target `guest` with the agent id, the run id and, through the span of
//! the caller that started the run, the request id.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tracing::Level;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept; the rest of an overlong line is dropped, not buffered.
pub const MAX_LINE: usize = 4096;

/// Who is writing: one per run (or per `info()` call).
#[derive(Clone)]
pub struct LogContext {
    agent: Arc<str>,
    run_id: Option<Arc<str>>,
    /// The span the run was started under (an HTTP request's, with its id).
    /// Kept explicitly: guest output is written from wasmtime's own tasks.
    span: tracing::Span,
    /// The run's trace span (none while tracing is off): each line is also an event of it.
    trace: tracing::Span,
}

impl LogContext {
    /// Lines of `agent`'s run `run_id`, under the current span.
    pub fn new(agent: &str, run_id: Option<&str>) -> Self {
        let (span, trace) = (tracing::Span::current(), crate::telemetry::run_span());
        Self { agent: agent.into(), run_id: run_id.map(Into::into), span, trace }
    }

    /// The agent's id.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// Write one line at `level`; `stream` names stdout/stderr for their lines.
    pub fn line(&self, level: Level, stream: Option<&'static str>, text: &str) {
        let text = escape_controls(cut(text.trim_end(), MAX_LINE));
        let (agent, run_id) = (&*self.agent, self.run_id.as_deref());
        if !self.trace.is_none() {
            crate::telemetry::log_event(&self.trace, level, stream, &text);
        }
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(target: "guest", parent: &self.span, $level, agent, run_id, stream, "{text}")
            };
        }
        match level {
            Level::TRACE => line!(Level::TRACE),
            Level::DEBUG => line!(Level::DEBUG),
            Level::INFO => line!(Level::INFO),
            Level::WARN => line!(Level::WARN),
            Level::ERROR => line!(Level::ERROR),
        }
    }

    /// Report that the agent panicked with `message` (already escaped: see [`escape_controls`]).
    pub fn panicked(&self, message: &str) {
        let (agent, run_id) = (&*self.agent, self.run_id.as_deref());
        tracing::error!(target: "guest", parent: &self.span, agent, run_id, "agent panicked: {message}");
        if !self.trace.is_none() {
            crate::telemetry::log_event(&self.trace, Level::ERROR, None, &format!("agent panicked: {message}"));
        }
    }
}

/// `text` with its control characters (newlines, carriage returns, escape
/// sequences, Unicode line separators) written as Rust escapes, so a guest's
/// text stays inside the one log line the gateway writes for it and cannot
/// start a forged one or repaint a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A guest output stream that writes to the log, one line per event.
#[derive(Clone)]
pub struct GuestLog {
    context: LogContext,
    stream: &'static str,
}

impl GuestLog {
    /// The agent's stdout.
    pub fn stdout(context: &LogContext) -> Self {
        Self { context: context.clone(), stream: "stdout" }
    }

    /// The agent's stderr.
    pub fn stderr(context: &LogContext) -> Self {
        Self { context: context.clone(), stream: "stderr" }
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
            self.log.context.line(Level::INFO, Some(self.log.stream), &text);
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

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_not_copied() {
        assert!(matches!(escape_controls("plain text, ünïcode"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\nFORGED\r\t\x1b[31m\u{7f}\u{85}\u{2028}z"),
            "a\\nFORGED\\r\\t\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}z"
        );
    }
}
