//! Black-box tests of the real `wasmclaw` binary, one module per area.
//!
//! One test binary rather than one per file: eleven binaries of ~60 MB each
//! filled CI's disk, and each linked on its own. Same layout as wasmtime's
//! `tests/all`. Test-only agents live in `tests/fixtures/`, the Python SDK
//! scripts in `tests/sdk/`.

mod pg;
mod support;

mod author;
mod background;
mod budgets;
mod chat_surface;
mod cli;
mod cluster;
mod cluster_auth;
mod cluster_registry;
mod codex;
mod config;
mod connections;
mod content_parts;
mod control_ui;
mod conversations;
mod db;
mod dev;
mod device_revocation;
mod guest_log;
mod hardening;
mod hostile;
mod hot_swap;
mod http_auth;
mod http_chat;
mod internal_errors;
mod languages;
mod limits;
mod mcp;
mod mcp_cache;
mod mcp_versions;
mod mock_tools;
mod openai_sdk;
mod origins;
mod outbound;
mod outbound_edges;
mod outbound_oauth;
mod owners;
mod pg_tls;
mod providers;
mod registry;
mod replay;
mod responses;
mod responses_items;
mod rollout;
mod sdk;
mod secrets;
mod sessions;
mod shutdown;
mod tokens;
mod traces;
mod ui;
mod ui_serving;
mod usage;
mod worlds;
mod ws;
mod ws_hardening;
mod ws_outage;
