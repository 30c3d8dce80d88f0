//! Any config file text: it loads or is rejected with a located message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = wasmclaw::config::Config::parse(text, std::path::Path::new("fuzz.json5")) {
            let _ = e.to_string();
        }
    }
});
