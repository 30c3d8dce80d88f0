//! Log lines with levels. The gateway writes each line under target `guest`
//! with the agent id, the run id and the request id; `WASMCLAW_LOG` filters
//! them (`info,guest=debug` shows debug lines too). In unit tests the lines
//! go to stderr and into `testing::TestRun::logs`.
//!
//! ```no_run
//! use wasmclaw_sdk::log;
//! # let (n, id) = (3, "x");
//! log::info!("{n} messages in the history");
//! log::warn!("tool {id} answered nothing");
//! ```
//!
//! A panic is reported the same way: its message and location are logged as
//! an error, and the client learns that the agent panicked with that message.

pub use crate::bindings::wasmclaw::agent::log::Level;

/// Write one line at `level`.
pub fn write(level: Level, message: &str) {
    crate::host::log(level, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __wasmclaw_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::write($crate::log::Level::$level, &::std::format!($($arg)+))
    };
}

/// Log at `trace` level, `format!` style.
#[doc(hidden)]
#[macro_export]
macro_rules! __wasmclaw_trace {
    ($($arg:tt)+) => { $crate::__wasmclaw_log!(Trace, $($arg)+) };
}

/// Log at `debug` level, `format!` style.
#[doc(hidden)]
#[macro_export]
macro_rules! __wasmclaw_debug {
    ($($arg:tt)+) => { $crate::__wasmclaw_log!(Debug, $($arg)+) };
}

/// Log at `info` level, `format!` style.
#[doc(hidden)]
#[macro_export]
macro_rules! __wasmclaw_info {
    ($($arg:tt)+) => { $crate::__wasmclaw_log!(Info, $($arg)+) };
}

/// Log at `warn` level, `format!` style.
#[doc(hidden)]
#[macro_export]
macro_rules! __wasmclaw_warn {
    ($($arg:tt)+) => { $crate::__wasmclaw_log!(Warn, $($arg)+) };
}

/// Log at `error` level, `format!` style.
#[doc(hidden)]
#[macro_export]
macro_rules! __wasmclaw_error {
    ($($arg:tt)+) => { $crate::__wasmclaw_log!(Error, $($arg)+) };
}

pub use crate::{
    __wasmclaw_debug as debug, __wasmclaw_error as error, __wasmclaw_info as info, __wasmclaw_trace as trace,
    __wasmclaw_warn as warn,
};

/// Report panics to the gateway (message and location) instead of stderr.
#[cfg(target_arch = "wasm32")]
pub(crate) fn report_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload_as_str().unwrap_or("(a panic without a message)");
        let report = match info.location() {
            Some(at) => format!("{message} (at {}:{}:{})", at.file(), at.line(), at.column()),
            None => message.to_string(),
        };
        crate::host::panicked(&report);
    }));
}
