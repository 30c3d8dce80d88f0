//! Sessions: which conversation a run belongs to, its transcript, its lane,
//! and the plugin's per-session state.

mod key;
mod lanes;
mod sqlite;
mod store;

pub use key::{InvalidSessionKey, MAX_KEY_BYTES, SessionKey, resolve};
pub use lanes::{LaneTicket, Lanes};
pub use sqlite::SqliteStore;
pub use store::{
    MAX_STATE_KEY_BYTES, MAX_STATE_TOTAL_BYTES, MAX_STATE_VALUE_BYTES, SessionData, SessionStore, SessionSummary,
    StateChanges, StoreError, StoredMessage, Transcript, now_ms, role_name,
};
