//! Session state as JSON, and the one error type of state writes, which
//! converts into [`AgentError`] so `?` works inside `Agent::run`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AgentError;

/// Why a state value could not be stored or read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The gateway refused the write; the message names the limit (key 256
    /// bytes, value 64 KiB, 1 MiB per session).
    Refused(String),
    /// The value could not be written as JSON.
    Encode { key: String, reason: String },
    /// The stored bytes are not the JSON this type expects.
    Decode { key: String, reason: String },
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(message) => f.write_str(message),
            Self::Encode { key, reason } => write!(f, "cannot store state {key:?} as JSON: {reason}"),
            Self::Decode { key, reason } => write!(f, "state {key:?} is not the JSON expected: {reason}"),
        }
    }
}

impl std::error::Error for StateError {}

impl From<StateError> for AgentError {
    /// A state error fails the run (HTTP 500); nothing it wrote is kept.
    fn from(e: StateError) -> Self {
        AgentError::Failed(e.to_string())
    }
}

/// Store a value; kept only if the run succeeds. Errors name the limit exceeded.
pub fn set(key: &str, value: &[u8]) -> Result<(), StateError> {
    crate::host::state_set(key, value).map_err(StateError::Refused)
}

/// The value stored under `key`, decoded from JSON; `Ok(None)` if there is none.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, StateError> {
    let Some(bytes) = crate::host::state_get(key) else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Decode { key: key.to_string(), reason: e.to_string() })
}

/// Store `value` as JSON under `key`; kept only if the run succeeds.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), StateError> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| StateError::Encode { key: key.to_string(), reason: e.to_string() })?;
    set(key, &bytes)
}
