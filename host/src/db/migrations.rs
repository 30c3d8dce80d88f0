//! The PostgreSQL schema, as numbered steps. Append only, and additive: an
//! instance of the previous version may still be serving from a schema a
//! newer instance has migrated during a rolling upgrade.

use super::DbError;

/// Schema steps; index + 1 is the version `schema_migrations` records.
pub const POSTGRES: &[&str] = &[
    // 1: sessions (as sessions/sqlite.rs), the agent registry, the auth lock-out.
    "CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
     );
     CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at);
     CREATE INDEX sessions_by_activity ON sessions (updated_at);
     CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        name TEXT,
        tool_call_id TEXT,
        tool_calls TEXT NOT NULL DEFAULT '[]',
        created_at BIGINT NOT NULL
     );
     CREATE INDEX messages_by_session ON messages (session_key, id);
     CREATE TABLE session_state (
        session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (session_key, key)
     );
     CREATE TABLE components (digest TEXT PRIMARY KEY, bytes BYTEA NOT NULL, created_at BIGINT NOT NULL);
     CREATE SEQUENCE agent_revisions;
     CREATE TABLE agents (id TEXT PRIMARY KEY, current_digest TEXT REFERENCES components (digest), previous_digest TEXT REFERENCES components (digest), source TEXT NOT NULL, updated_at BIGINT NOT NULL, revision BIGINT NOT NULL);
     CREATE TABLE agent_origins (origin TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
     CREATE TABLE auth_failures (addr TEXT PRIMARY KEY, window_start BIGINT NOT NULL, count INTEGER NOT NULL, locked_until BIGINT);",
    // 2: the registry keeps each version's source (as on SQLite), and a removal
    // keeps its row with no current version.
    "ALTER TABLE agents RENAME COLUMN source TO current_source;
     ALTER TABLE agents ALTER COLUMN current_source DROP NOT NULL;
     ALTER TABLE agents ADD COLUMN previous_source TEXT;",
    // 3: stored `/v1/responses` objects (sessions/responses.rs), each mapped to
    // its session and gone with it.
    "CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL
     );
     CREATE INDEX responses_by_session ON responses (session_key);",
    // 4: sessions have owners (sessions/access.rs); those made before belong
    // to the main secret. A previous version's inserts get that default too.
    "ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT 'operator';
     CREATE INDEX sessions_by_owner ON sessions (owner, updated_at);",
    // 5: stored responses keep their input items (`/v1/responses/{id}/input_items`);
    // rows from before have none.
    "ALTER TABLE responses ADD COLUMN input TEXT NOT NULL DEFAULT '[]';",
    // 6: conversations (`/v1/conversations`) and their items (sessions/conversations.rs).
    "CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        metadata TEXT NOT NULL,
        agent_id TEXT,
        session_key TEXT,
        created_at BIGINT NOT NULL
     );
     CREATE TABLE conversation_items (
        seq BIGSERIAL PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        pending BOOLEAN NOT NULL
     );
     CREATE INDEX conversation_items_by_conversation ON conversation_items (conversation_id, seq);",
    // 7: paired devices (sessions/devices.rs): a device token's SHA-256, never the token.
    "CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        principal TEXT NOT NULL,
        scopes TEXT NOT NULL,
        client_id TEXT NOT NULL,
        token_digest TEXT UNIQUE,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
     );",
    // 8: the usage ledger, one row per run and model (sessions/usage.rs).
    "CREATE TABLE usage (
        run_id TEXT NOT NULL,
        model TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        agent_id TEXT NOT NULL,
        principal TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cached_input_tokens BIGINT NOT NULL,
        reasoning_tokens BIGINT NOT NULL,
        cost_picos BIGINT NOT NULL,
        llm_calls BIGINT NOT NULL,
        unmetered_calls BIGINT NOT NULL,
        PRIMARY KEY (run_id, model)
     );
     CREATE INDEX usage_by_time ON usage (at_ms);
     CREATE TABLE budget_counters (
        budget TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        spent_tokens BIGINT NOT NULL DEFAULT 0,
        spent_picos BIGINT NOT NULL DEFAULT 0,
        reserved_tokens BIGINT NOT NULL DEFAULT 0,
        reserved_picos BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (budget, window_start)
     );",
    // 9: an agent's rollout (`registry::RolloutRecord` as JSON) lives in its
    // record; a previous version's writes leave it as it is.
    "ALTER TABLE agents ADD COLUMN rollout TEXT;",
    // 10: which run wrote each message (`sessions::RunMark`); older rows have none.
    "ALTER TABLE messages ADD COLUMN run_id TEXT;
     ALTER TABLE messages ADD COLUMN idempotency_key TEXT;",
    // 11: each run's budget reservation, until it settles or expires
    // (sessions/usage.rs); `budget_counters.reserved_*` are no longer used.
    "CREATE TABLE budget_holds (
        budget TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        run_id TEXT NOT NULL,
        tokens BIGINT NOT NULL,
        picos BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (budget, window_start, run_id)
     );",
    // 12: recorded runs (`sessions/recordings.rs`), pruned after `record.retainDays`.
    "CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        session_key TEXT NOT NULL,
        owner TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        truncated BOOLEAN NOT NULL,
        expires_at BIGINT NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX recordings_by_agent ON recordings (agent_id, started_at);
     CREATE INDEX recordings_by_expiry ON recordings (expires_at);",
];

/// Advisory lock key (two-int form, so it cannot meet a lane's bigint key)
/// that serializes instances migrating at once: "wasm", 1.
const MIGRATION_LOCK: (i32, i32) = (0x7761_736d, 1);

/// Bring the schema up to date in one transaction. Instances starting at
/// once queue on the transaction-level lock; the first migrates, the others
/// then find nothing to do.
pub(super) async fn run(client: &mut deadpool_postgres::Object) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1]).await?;
    // Checked rather than CREATE ... IF NOT EXISTS, whose NOTICE would reach the log on every start.
    let exists: bool = tx.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        tx.batch_execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .await?;
    }
    let done: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?.get(0);
    if done as usize > POSTGRES.len() {
        tracing::warn!(
            schema = done,
            known = POSTGRES.len(),
            "the database schema is newer than this gateway; serving on it (migrations are additive)"
        );
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for (i, step) in POSTGRES.iter().enumerate().skip(done.max(0) as usize) {
        tx.batch_execute(step).await?;
        tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[&(i as i32 + 1), &now])
            .await?;
        tracing::info!(version = i + 1, "database migrated");
    }
    tx.commit().await?;
    Ok(())
}
