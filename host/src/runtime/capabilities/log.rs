//! `log` (contract 0.1.1): levelled lines and panic reports from the guest,
//! written to the gateway's log with the agent, run and request ids. A panic
//! report is kept so a trap that follows it is reported as that panic.

use crate::runtime::guest_log::{LogContext, cut, escape_controls};

/// Longest panic message kept for the log and the client.
const MAX_PANIC_MESSAGE: usize = 1024;

/// One run's log.
pub struct LogState {
    context: LogContext,
    panic: Option<String>,
}

impl LogState {
    /// Lines of the run `context` describes.
    pub fn new(context: LogContext) -> Self {
        Self { context, panic: None }
    }

    /// Write one line at `level`.
    pub fn write(&self, level: tracing::Level, message: &str) {
        self.context.line(level, None, message);
    }

    /// The guest reports a panic it is about to trap on. Escaped once here:
    /// the message goes to the log and, in the run's error, to the client.
    pub fn panicked(&mut self, message: &str) {
        let message = escape_controls(cut(message, MAX_PANIC_MESSAGE)).into_owned();
        self.context.panicked(&message);
        self.panic = Some(message);
    }

    /// The panic the guest reported, if any.
    pub fn panic(&self) -> Option<&str> {
        self.panic.as_deref()
    }

    /// The agent's id.
    pub fn agent(&self) -> &str {
        self.context.agent()
    }
}
