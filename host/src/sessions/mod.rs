//! Sessions: which conversation a run belongs to, who owns it, its
//! transcript, its lane, and the plugin's per-session state. [`open`] picks
//! the backend; everything else speaks the [`SessionStore`] trait; [`access`]
//! is the one rule for who may read, run in or delete a session.

pub mod access;
mod conversations;
mod devices;
mod key;
mod lanes;
mod page;
mod postgres;
mod recordings;
mod responses;
mod sqlite;
mod usage;

pub use sqlite::SqliteStore;
mod store;

use std::sync::Arc;

pub use access::{Access, MAIN_SECRET_OWNER, Visible};
pub use conversations::{Conversation, ConversationItem, ItemPage, ItemQuery};
pub use devices::{CHANNEL as DEVICES_CHANNEL, PairedDevice};
pub use key::{InvalidSessionKey, MAX_KEY_BYTES, SessionKey, main_key, resolve};
pub use page::{Cursor, DEFAULT_PAGE, InvalidPage, MAX_PAGE, SessionPage, SessionQuery, parse as parse_page};
pub use recordings::{RecordingQuery, RecordingRow, RecordingSummary};
pub use responses::StoredResponse;
pub use store::{
    MAX_STATE_KEY_BYTES, MAX_STATE_TOTAL_BYTES, MAX_STATE_VALUE_BYTES, RunMark, SessionData, SessionOwner,
    SessionStore, SessionSummary, StateChanges, StoreError, StoreFuture, StoredMessage, Transcript, Turn, TurnWriter,
    now_ms, role_name,
};

use crate::config::Config;
use crate::db::Postgres;

/// Open the store: PostgreSQL when the process has a database (cluster
/// mode), else SQLite at `sessions.path`.
pub async fn open(config: &Config, pg: Option<Arc<Postgres>>) -> Result<Arc<dyn SessionStore>, StoreError> {
    if let Some(pg) = pg {
        return Ok(Arc::new(postgres::PostgresStore::new(pg, config.sessions.max_history_messages)));
    }
    let store = sqlite::SqliteStore::open(&config.sessions_path(), config.sessions.max_history_messages)?;
    Ok(Arc::new(store))
}
