//! Agents built with the gateway and embedded in the binary.

/// Names usable as `agents.entries.<id>.plugin`.
pub const NAMES: &[&str] = &["echo", "assistant"];

/// The component bytes of a shipped plugin.
pub fn component(name: &str) -> Option<&'static [u8]> {
    match name {
        "echo" => Some(include_bytes!(env!("WASMCLAW_PLUGIN_ECHO"))),
        "assistant" => Some(include_bytes!(env!("WASMCLAW_PLUGIN_ASSISTANT"))),
        _ => None,
    }
}
