//! Any body the chat endpoint can receive: parsing and translating it must
//! return a value or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmclaw::http::openai::ChatRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ChatRequest::parse(data) {
        let _ = request.agent_messages();
        let _ = request.agent_tools();
        let _ = request.params();
        let _ = (request.streaming(), request.include_usage());
    }
});
