//! Replaying recorded runs on a component: the one runner behind
//! `wasmclaw replay` and `POST /admin/replay`. The component runs in a fresh
//! store with every host call answered from the recording (`tape`), and the
//! replay is judged against what the recorded run put out.

use std::sync::Arc;

use serde::Serialize;

use super::Agents;
use crate::auth::Principal;
use crate::chat::AgentId;
use crate::registry::RegistryStore;
use crate::runtime::{AgentSettings, AgentSource, AgentVersion, Runtime};
use crate::sessions::{
    RecordingQuery, RecordingRow, RecordingSummary, SessionOwner, SessionStore, StoreError, Visible,
};
use crate::tape::{Recording, Verdict};

/// Which component a replay runs.
#[derive(Debug, Clone)]
pub enum ReplaySource {
    /// These bytes (`--plugin`, `component`).
    Bytes(Arc<[u8]>),
    /// A component the registry keeps (`sha256:…` or bare hex).
    Digest(String),
    /// The version that served the run.
    Recorded,
}

/// Why a replay could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no recorded run {0:?}")]
    NotFound(String),
    #[error(
        "the recording of run {0:?} was truncated at its agent's record.maxBytes and cannot be replayed; raise agents.entries.<id>.record.maxBytes for later runs"
    )]
    Truncated(String),
    #[error("the recording of run {0:?} cannot be read: {1}")]
    Unreadable(String, String),
    #[error("no component with digest {0}: the registry does not keep it; pass the component itself")]
    NoComponent(String),
    #[error("the component cannot run: {0}")]
    Load(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A batch's counts by outcome.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub identical: usize,
    pub changed: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Truncated recordings, not replayable.
    pub skipped: usize,
}

/// A batch replay: counts, and one verdict per run (newest first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Batch {
    pub summary: Summary,
    pub runs: Vec<Verdict>,
}

/// Read a stored recording.
pub fn parse(row: &RecordingRow) -> Result<Recording, ReplayError> {
    let id = &row.summary.id;
    let rec: Recording =
        serde_json::from_str(&row.body).map_err(|e| ReplayError::Unreadable(id.clone(), e.to_string()))?;
    if rec.format != crate::tape::FORMAT {
        return Err(ReplayError::Unreadable(
            id.clone(),
            format!("format {} (this gateway reads {})", rec.format, crate::tape::FORMAT),
        ));
    }
    if rec.truncated {
        return Err(ReplayError::Truncated(id.clone()));
    }
    Ok(rec)
}

/// The component bytes `source` names for a recording of `digest`.
pub async fn component(
    store: &dyn RegistryStore,
    source: ReplaySource,
    digest: &str,
) -> Result<Arc<[u8]>, ReplayError> {
    let digest = match source {
        ReplaySource::Bytes(bytes) => return Ok(bytes),
        ReplaySource::Digest(d) => d.trim_start_matches("sha256:").to_string(),
        ReplaySource::Recorded => digest.to_string(),
    };
    if let Some(bytes) = store.component(&digest).await.map_err(|e| ReplayError::Load(e.to_string()))? {
        return Ok(bytes);
    }
    // Shipped plugins are built in, never uploaded: found by their digest.
    crate::runtime::shipped::NAMES
        .iter()
        .filter_map(|name| crate::runtime::shipped::component(name))
        .find(|bytes| crate::registry::digest(bytes) == digest)
        .map(Arc::from)
        .ok_or(ReplayError::NoComponent(format!("sha256:{digest}")))
}

/// Compile `bytes` as agent `agent` with `settings` (the allow-lists and model route a `--live` replay uses).
pub async fn load(
    runtime: &Runtime,
    agent: &str,
    bytes: Arc<[u8]>,
    settings: AgentSettings,
) -> Result<AgentVersion, ReplayError> {
    let id = AgentId::parse(agent).ok_or_else(|| ReplayError::Load(format!("{agent:?} is not an agent id")))?;
    runtime.load(id, AgentSource::AdminApi, bytes, settings).await.map_err(|e| ReplayError::Load(e.to_string()))
}

/// Replay `rec` on `version` and judge it.
pub async fn replay_recording(version: &AgentVersion, rec: Recording, live: bool) -> Verdict {
    let rec = Arc::new(rec);
    let (result, player) = version.replay(rec.clone(), live).await;
    let error = result.err().map(|e| e.to_string());
    let went_live = player.went_live;
    let verdict =
        crate::tape::judge(&rec.id, &rec.output, rec.error.as_deref(), &player.output, player.divergence, error);
    Verdict { went_live, ..verdict }
}

/// Replay every recording `query` selects on `version` (loaded once).
pub async fn replay_batch(
    sessions: &dyn SessionStore,
    version: &AgentVersion,
    query: RecordingQuery,
    live: bool,
) -> Result<Batch, ReplayError> {
    let mut batch = Batch::default();
    for summary in sessions.recordings(query).await? {
        let Some(row) = sessions.recording(&summary.id).await? else { continue };
        let rec = match parse(&row) {
            Ok(rec) => rec,
            Err(ReplayError::Truncated(_)) => {
                batch.summary.skipped += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let verdict = replay_recording(version, rec, live).await;
        let s = &mut batch.summary;
        *match verdict.outcome {
            "identical" => &mut s.identical,
            "changed" => &mut s.changed,
            "diverged" => &mut s.diverged,
            _ => &mut s.failed,
        } += 1;
        batch.runs.push(verdict);
    }
    Ok(batch)
}

/// True when `caller` may see the recording `summary` (the session owner rule).
fn visible(caller: &Principal, summary: &RecordingSummary) -> bool {
    Visible::to(caller).shows(&SessionOwner { agent: summary.agent.clone(), owner: summary.owner.clone() })
}

impl Agents {
    /// The recorded runs `caller` may see, newest first.
    pub async fn recordings(
        &self,
        caller: &Principal,
        agent: Option<String>,
        limit: usize,
    ) -> Result<Vec<RecordingSummary>, StoreError> {
        let owner = crate::sessions::access::usage_owner(caller);
        let query = RecordingQuery { agent, owner, since: 0, limit };
        let mut list = self.sessions.recordings(query).await?;
        list.retain(|s| visible(caller, s));
        Ok(list)
    }

    /// One recorded run `caller` may see; `None` when unknown or not theirs alike.
    pub async fn recording(&self, caller: &Principal, id: &str) -> Result<Option<RecordingRow>, StoreError> {
        Ok(self.sessions.recording(id).await?.filter(|row| visible(caller, &row.summary)))
    }

    /// Replay the recorded run `id` on `source` (`live`: calls it cannot answer go out).
    pub async fn replay(
        &self,
        caller: &Principal,
        id: &str,
        source: ReplaySource,
        live: bool,
    ) -> Result<Verdict, ReplayError> {
        let row = self.recording(caller, id).await?.ok_or_else(|| ReplayError::NotFound(id.to_string()))?;
        let rec = parse(&row)?;
        let bytes = component(self.store.as_ref(), source, &rec.digest).await?;
        let settings = AgentId::parse(&rec.agent)
            .and_then(|id| self.registry.get(&id))
            .map(|v| v.settings().clone())
            .unwrap_or_default();
        let version = load(&self.runtime, &rec.agent, bytes, settings).await?;
        Ok(replay_recording(&version, rec, live).await)
    }
}
