//! Starting, promoting and ending canary rollouts: durable first (the id's
//! registry record), then live, like installs; and acting on the automatic
//! rollbacks runs decide.

use std::sync::Arc;

use super::{Agents, InstallError};
use crate::chat::AgentId;
use crate::config::{AutoRollback, Sticky};
use crate::registry::{RolloutEnd, RolloutRecord, RolloutState, StoredVersion};
use crate::rollout::{LiveRollout, Trip};
use crate::runtime::{AgentSource, AgentVersion};

/// The candidate of a new rollout.
pub enum Candidate {
    /// Component bytes, checked and kept as an install would.
    Component(Arc<[u8]>),
    /// A component the registry already keeps (sha256, hex).
    Digest(String),
}

/// What a rollout asks for, whoever asks.
pub struct RolloutSpec {
    pub weight: u8,
    pub sticky: Sticky,
    pub auto_rollback: Option<AutoRollback>,
    /// Share of stable runs the candidate also answers from their recordings.
    pub shadow: Option<f64>,
}

/// A request to start (or widen) a rollout, the same JSON through every door.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RolloutRequest {
    candidate: CandidateRequest,
    weight: u8,
    #[serde(default)]
    sticky: Sticky,
    auto_rollback: Option<AutoRollback>,
    shadow: Option<ShadowRequest>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateRequest {
    /// The component, base64.
    component: Option<String>,
    /// `sha256:<hex>` (or bare hex) of a component the registry keeps.
    digest: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowRequest {
    sample: f64,
}

/// A field of a [`RolloutRequest`] that cannot be used: `param` names it.
#[derive(Debug)]
pub struct InvalidRollout {
    pub param: String,
    pub message: String,
}

impl RolloutRequest {
    /// The candidate and spec asked for, checked.
    pub fn check(self) -> Result<(Candidate, RolloutSpec), InvalidRollout> {
        let invalid = |param: &str, message: String| InvalidRollout { param: param.into(), message };
        if self.weight > 100 {
            return Err(invalid("weight", format!("weight {} is over 100", self.weight)));
        }
        if let Some(Err((field, message))) = self.auto_rollback.map(|a| a.check()) {
            return Err(invalid(&format!("autoRollback.{field}"), message));
        }
        let shadow = self.shadow.map(|s| s.sample);
        if let Some(sample) = shadow.filter(|s| !(0.0..=1.0).contains(s)) {
            return Err(invalid("shadow.sample", format!("{sample} is not between 0 and 1")));
        }
        let shadow = shadow.filter(|s| *s > 0.0);
        let candidate = match (self.candidate.component, self.candidate.digest) {
            (Some(b64), None) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| invalid("candidate.component", format!("not base64: {e}")))?;
                Candidate::Component(bytes.into())
            }
            (None, Some(digest)) => {
                let hex = digest.strip_prefix("sha256:").unwrap_or(&digest).to_ascii_lowercase();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let message = format!("{digest:?} is not a sha256 digest (sha256:<64 hex digits>)");
                    return Err(invalid("candidate.digest", message));
                }
                Candidate::Digest(hex)
            }
            _ => {
                let message = "candidate needs exactly one of `component` (base64) and `digest` (sha256:…)";
                return Err(invalid("candidate", message.into()));
            }
        };
        let spec = RolloutSpec { weight: self.weight, sticky: self.sticky, auto_rollback: self.auto_rollback, shadow };
        Ok((candidate, spec))
    }
}

impl Agents {
    /// Serve `candidate` beside `id`'s current version to `spec.weight`
    /// percent of traffic. The same candidate again (while running) keeps
    /// the rollout, its counts and its sessions' versions and changes only
    /// the weight and rules: a canary widens without reshuffling.
    pub async fn start_rollout(
        &self,
        id: &AgentId,
        candidate: Candidate,
        spec: RolloutSpec,
        source: AgentSource,
    ) -> Result<Arc<LiveRollout>, InstallError> {
        let stable = self.registry.get(id).ok_or_else(|| InstallError::NotFound(id.to_string()))?;
        let version = self.candidate_version(id, candidate, &source).await?;
        if version.digest == stable.digest {
            return Err(InstallError::Source(format!(
                "the candidate is {}, the version serving {id:?} already",
                version.digest
            )));
        }
        let ongoing = self.rollouts.get(id).filter(|r| {
            r.state().0 == RolloutState::Running
                && r.candidate.digest == version.digest
                && r.stable_digest == stable.digest
        });
        let record = RolloutRecord {
            id: ongoing.as_ref().map_or_else(|| uuid::Uuid::new_v4().to_string(), |r| r.record.id.clone()),
            candidate: StoredVersion { digest: version.digest.clone(), source: source.to_string() },
            weight: spec.weight,
            sticky: spec.sticky,
            auto_rollback: spec.auto_rollback,
            state: RolloutState::Running,
            reason: None,
            source: if source.from_config() { "config".into() } else { source.to_string() },
            started_at: ongoing.as_ref().map_or_else(crate::registry::now_ms, |r| r.record.started_at),
            shadow: spec.shadow,
        };
        let rollout_id = record.id.clone();
        let written = self.store.start_rollout(id.as_str(), record).await?;
        let written = written.ok_or_else(|| InstallError::NotFound(id.to_string()))?;
        self.show(&written, Some(&version), "rollout-started").await;
        tracing::info!(
            agent = %id, rollout = rollout_id, stable = &stable.digest[..12], candidate = &version.digest[..12],
            weight = spec.weight, sticky = ?spec.sticky, %source, revision = written.revision, "rollout started"
        );
        self.rollouts.get(id).ok_or_else(|| InstallError::NotFound(id.to_string()))
    }

    /// End `id`'s rollout by `end`; the rollout as it ended (`None` once removed).
    pub async fn end_rollout(&self, id: &AgentId, end: RolloutEnd) -> Result<Option<Arc<LiveRollout>>, InstallError> {
        let action = end.action();
        let live = self.rollouts.get(id).ok_or_else(|| InstallError::NoRollout(id.to_string()))?;
        let wants_running = !matches!(end, RolloutEnd::Remove);
        if wants_running && live.state().0 != RolloutState::Running {
            return Err(InstallError::RolloutOver { id: id.to_string(), state: live.state().0.as_str() });
        }
        let written = self.store.end_rollout(id.as_str(), None, end).await?;
        // Another instance ended it meanwhile: say what stands now.
        let written = written.ok_or_else(|| InstallError::NoRollout(id.to_string()))?;
        self.show(&written, None, action).await;
        tracing::info!(agent = %id, rollout = live.record.id, action, revision = written.revision, "rollout changed");
        Ok(self.rollouts.get(id))
    }

    /// Roll back the rollout a run's rule tripped on (already out of this
    /// instance's traffic), durably, so every instance follows.
    pub(super) async fn roll_back(&self, trip: Trip) {
        tracing::warn!(
            agent = %trip.agent, rollout = trip.rollout_id, reason = trip.reason,
            "rollout rolled back: all traffic returns to the stable version (agents.entries.<id>.rollout.autoRollback)"
        );
        let end = RolloutEnd::RollBack(trip.reason);
        match self.store.end_rollout(trip.agent.as_str(), Some(&trip.rollout_id), end).await {
            Ok(Some(record)) => {
                self.show(&record, None, "rollout-rolled-back").await;
            }
            Ok(None) => {} // ended or replaced meanwhile
            Err(e) => tracing::error!(
                agent = %trip.agent, error = %e,
                "the rollback could not be kept in the registry; this instance serves stable, others may not"
            ),
        }
    }

    /// The loaded candidate: bytes checked as an install checks them and kept
    /// in the registry, or a component the registry has.
    async fn candidate_version(
        &self,
        id: &AgentId,
        candidate: Candidate,
        source: &AgentSource,
    ) -> Result<Arc<AgentVersion>, InstallError> {
        match candidate {
            Candidate::Component(bytes) => {
                if bytes.len() > self.max_component_bytes {
                    return Err(InstallError::TooLarge { size: bytes.len(), limit: self.max_component_bytes });
                }
                let settings = self.settings_for(id)?;
                let version = Arc::new(self.runtime.load(id.clone(), source.clone(), bytes.clone(), settings).await?);
                self.store.put_component(&version.digest, bytes).await?;
                Ok(version)
            }
            Candidate::Digest(digest) => {
                let stored = StoredVersion { digest: digest.clone(), source: source.to_string() };
                self.version_of(id, &stored, None).await.map_err(|e| match e {
                    InstallError::Source(_) => InstallError::UnknownComponent(digest),
                    e => e,
                })
            }
        }
    }

    /// Make `entry`'s `rollout` run (config source), or end a rollout the
    /// config started once the entry no longer names one.
    pub(super) async fn apply_entry_rollout(
        &self,
        config: &crate::config::Config,
        id: &AgentId,
        rollout: Option<&crate::config::RolloutConfig>,
    ) -> Result<(), InstallError> {
        let Some(rollout) = rollout else {
            if self.rollouts.get(id).is_some_and(|r| r.record.source == "config") {
                self.end_rollout(id, RolloutEnd::Remove).await?;
            }
            return Ok(());
        };
        let entry = crate::config::AgentEntry::plugin(&rollout.plugin);
        let key = format!("{}.rollout", id.as_str());
        let (source, bytes, _) = self.entry_component(config, &key, &entry).await?;
        let spec = RolloutSpec {
            weight: rollout.weight,
            sticky: rollout.sticky,
            auto_rollback: rollout.auto_rollback,
            shadow: None,
        };
        self.start_rollout(id, Candidate::Component(bytes), spec, source).await.map(drop)
    }
}

/// Act on the rollbacks runs decide, for as long as `agents` lives.
pub(super) fn watch_trips(agents: &Arc<Agents>) {
    let Some(mut trips) = agents.trips_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
    let weak = Arc::downgrade(agents);
    tokio::spawn(async move {
        while let Some(trip) = trips.recv().await {
            let Some(agents) = weak.upgrade() else { return };
            agents.roll_back(trip).await;
        }
    });
}
