//! A cache the gateway keeps across runs of this agent version (contract
//! 0.2.1): what one run learned that later runs may reuse instead of asking
//! again. [`crate::mcp::McpClient::cached`] keeps MCP servers' tool lists here.
//!
//! A cache, not state: an entry may be gone at any time (expired, evicted
//! when this version's 1 MiB share is full, another gateway instance, a
//! restart, a new version of the agent), so treat a hit as a hint and be
//! ready to rebuild it. For what must survive, use [`crate::session`] state.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasmclaw_sdk::memo;
//!
//! let rates: Vec<f64> = match memo::get_json("rates") {
//!     Some(rates) => rates,
//!     None => {
//!         let rates = vec![1.0, 1.08]; // fetched at some cost
//!         let _ = memo::set_json("rates", &rates, Duration::from_secs(300));
//!         rates
//!     }
//! };
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The value under `key`, unless it expired or was evicted.
pub fn get(key: &str) -> Option<Vec<u8>> {
    crate::host::memo_get(key)
}

/// Keep `value` under `key` for `ttl` (at most a day; zero removes it). The
/// error names the limit when the key (256 bytes) or the value (256 KiB) is too big.
pub fn set(key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
    crate::host::memo_set(key, value, ttl.as_millis().try_into().unwrap_or(u64::MAX))
}

/// Forget `key`.
pub fn remove(key: &str) {
    crate::host::memo_remove(key)
}

/// The value under `key` decoded from JSON; `None` also when it does not
/// decode (an entry another build of the agent wrote is just a miss).
pub fn get_json<T: DeserializeOwned>(key: &str) -> Option<T> {
    serde_json::from_slice(&get(key)?).ok()
}

/// Keep `value` as JSON under `key` for `ttl`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T, ttl: Duration) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| format!("cannot keep memo {key:?} as JSON: {e}"))?;
    set(key, &bytes, ttl)
}
