//! `session`: the conversation before this turn and the agent's own state,
//! with writes kept aside until the run succeeds.

use std::collections::BTreeMap;

use crate::chat::Message;
use crate::sessions::{MAX_STATE_KEY_BYTES, MAX_STATE_TOTAL_BYTES, MAX_STATE_VALUE_BYTES, SessionData, StateChanges};

/// One run's session: history and state as loaded, plus its own writes.
pub struct SessionState {
    history: Vec<Message>,
    state: BTreeMap<String, Vec<u8>>,
    state_bytes: usize,
    changes: StateChanges,
}

impl SessionState {
    /// From what the store loaded (empty for throw-away sessions).
    pub fn new(data: SessionData) -> Self {
        let state_bytes = data.state.iter().map(|(k, v)| k.len() + v.len()).sum();
        Self { history: data.history, state: data.state, state_bytes, changes: StateChanges::new() }
    }

    /// The transcript before this turn, oldest first.
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// A value stored earlier (or in this run).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).cloned()
    }

    /// Store a value, within the size limits; the error says which.
    pub fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if key.len() > MAX_STATE_KEY_BYTES {
            return Err(format!("state key is {} bytes; the limit is {MAX_STATE_KEY_BYTES}", key.len()));
        }
        if value.len() > MAX_STATE_VALUE_BYTES {
            return Err(format!("state value is {} bytes; the limit is {MAX_STATE_VALUE_BYTES}", value.len()));
        }
        let old = self.state.get(&key).map_or(0, |v| key.len() + v.len());
        let total = self.state_bytes - old + key.len() + value.len();
        if total > MAX_STATE_TOTAL_BYTES {
            return Err(format!("session state would be {total} bytes; the limit is {MAX_STATE_TOTAL_BYTES}"));
        }
        self.state_bytes = total;
        self.changes.insert(key.clone(), Some(value.clone()));
        self.state.insert(key, value);
        Ok(())
    }

    /// Remove a value.
    pub fn delete(&mut self, key: String) {
        if let Some(old) = self.state.remove(&key) {
            self.state_bytes -= key.len() + old.len();
            self.changes.insert(key, None);
        }
    }

    /// The writes to persist if the run succeeds.
    pub fn take_changes(&mut self) -> StateChanges {
        std::mem::take(&mut self.changes)
    }
}
