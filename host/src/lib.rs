//! wasmclaw: an OpenClaw-compatible gateway that runs every agent as a
//! WebAssembly component. See `DESIGN.md` for the map.

pub mod auth;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod providers;
pub mod runs;
pub mod runtime;
pub mod sessions;
pub mod ws;
