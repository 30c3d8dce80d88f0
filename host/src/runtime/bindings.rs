//! Host bindings generated from `wit/` — the same files the guest SDK uses.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    imports: {
        // Async so a slow client applies backpressure to the guest instead of
        // buffering without bound; trappable so a guest that keeps emitting
        // after being told to stop is killed.
        "wasmclaw:agent/output.emit": async | trappable,
        // Network waits: async so they yield to the executor and can be
        // cancelled by dropping the store.
        "wasmclaw:agent/llm.complete": async | trappable,
        "wasmclaw:agent/llm.[method]completion.next": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasmclaw:agent/llm.completion": crate::providers::CompletionStream,
    },
});

// `self::` because the generated module shares the crate's name.
pub use self::wasmclaw::agent::llm::{CompletionRequest, LlmError};
pub use self::wasmclaw::agent::types::{
    EmitError, Event, FinishReason, Message, Role, ToolCall, ToolCallDelta, ToolSpec, Usage,
};
