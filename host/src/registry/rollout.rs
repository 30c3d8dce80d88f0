//! A rollout as the registry keeps it: the candidate beside an id's current
//! version, its weight and rules, and how it ended. It lives in the id's
//! record, so it is as durable and cluster-wide as the record (and every
//! change to it is a new revision that other instances follow).

use serde::{Deserialize, Serialize};

use super::{Record, StoredVersion};
use crate::config::{AutoRollback, Sticky};

/// One id's rollout, running or ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// New for every rollout started: sessions are assigned by it, and a
    /// late rollback decision cannot end a newer rollout.
    pub id: String,
    pub candidate: StoredVersion,
    /// Percent of traffic the candidate serves while running.
    pub weight: u8,
    pub sticky: Sticky,
    pub auto_rollback: Option<AutoRollback>,
    pub state: RolloutState,
    /// Why it was rolled back.
    pub reason: Option<String>,
    /// Who started it (`admin-api`, `config`, …).
    pub source: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    /// Share of the stable version's runs the candidate also answers, off the
    /// response path, from their recordings (`None`: no shadow runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<f64>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutState {
    Running,
    /// The candidate became current.
    Promoted,
    /// All traffic went back to the stable version.
    RolledBack,
}

impl RolloutState {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolledBack",
        }
    }
}

/// How a rollout ends.
#[derive(Debug, Clone)]
pub enum RolloutEnd {
    /// The candidate becomes current; the old current the rollback target.
    Promote,
    /// All traffic goes back to stable, for `reason`.
    RollBack(String),
    /// Forget the rollout; the stable version keeps serving.
    Remove,
}

impl RolloutEnd {
    /// An operator's rollback, with who asked as its reason.
    pub fn rolled_back_by(principal: &str) -> Self {
        Self::RollBack(format!("rolled back by {principal}"))
    }

    /// The change's name, as announced (`agents.changed`) and notified.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Promote => "rollout-promoted",
            Self::RollBack(_) => "rollout-rolled-back",
            Self::Remove => "rollout-ended",
        }
    }
}

/// What one write makes of an id's record.
pub(super) struct Versions {
    pub current: Option<StoredVersion>,
    pub previous: Option<StoredVersion>,
    pub rollout: Option<RolloutRecord>,
}

/// `rollout` started over `old`: only beside a serving version.
pub(super) fn started(old: Option<&Record>, rollout: RolloutRecord) -> Option<Versions> {
    let old = old?;
    old.current.as_ref()?;
    Some(Versions { current: old.current.clone(), previous: old.previous.clone(), rollout: Some(rollout) })
}

/// `old`'s rollout ended by `end`; `None` (nothing written) when there is
/// none, it is another one than `only`, or it is over and `end` needs it running.
pub(super) fn ended(old: Option<&Record>, only: Option<&str>, end: RolloutEnd) -> Option<Versions> {
    let old = old?;
    let rollout = old.rollout.as_ref().filter(|r| only.is_none_or(|id| r.id == id))?;
    let running = rollout.state == RolloutState::Running;
    match end {
        RolloutEnd::Remove => {
            Some(Versions { current: old.current.clone(), previous: old.previous.clone(), rollout: None })
        }
        RolloutEnd::RollBack(reason) => running.then(|| Versions {
            current: old.current.clone(),
            previous: old.previous.clone(),
            rollout: Some(RolloutRecord { state: RolloutState::RolledBack, reason: Some(reason), ..rollout.clone() }),
        }),
        RolloutEnd::Promote => {
            let promoted = RolloutRecord { state: RolloutState::Promoted, ..rollout.clone() };
            let mut versions = super::installed_over(Some(old), rollout.candidate.clone())?;
            versions.rollout = Some(promoted);
            running.then_some(versions)
        }
    }
}

/// The rollout column's text.
pub(super) fn to_text(rollout: Option<&RolloutRecord>) -> Option<String> {
    rollout.map(|r| serde_json::to_string(r).expect("a rollout serializes"))
}

/// The rollout column read back; text this version cannot read is logged and dropped.
pub(super) fn from_text(id: &str, text: Option<String>) -> Option<RolloutRecord> {
    let text = text?;
    serde_json::from_str(&text)
        .inspect_err(
            |e| tracing::warn!(agent = id, error = %e, "the registry's rollout for this agent is unreadable; ignored"),
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(digest: &str) -> StoredVersion {
        StoredVersion { digest: digest.into(), source: "admin-api".into() }
    }

    fn record(rollout: Option<RolloutRecord>) -> Record {
        Record {
            id: "main".into(),
            current: Some(version("a")),
            previous: Some(version("z")),
            updated_at: 1,
            revision: 1,
            rollout,
        }
    }

    fn rollout(id: &str) -> RolloutRecord {
        RolloutRecord {
            id: id.into(),
            candidate: version("b"),
            weight: 10,
            sticky: Sticky::Session,
            auto_rollback: None,
            state: RolloutState::Running,
            reason: None,
            source: "admin-api".into(),
            started_at: 1,
            shadow: None,
        }
    }

    #[test]
    fn promote_installs_the_candidate_and_keeps_the_old_current_as_rollback_target() {
        let v = ended(Some(&record(Some(rollout("r1")))), None, RolloutEnd::Promote).unwrap();
        assert_eq!(v.current.unwrap().digest, "b");
        assert_eq!(v.previous.unwrap().digest, "a");
        assert_eq!(v.rollout.unwrap().state, RolloutState::Promoted);
    }

    #[test]
    fn a_rollback_ends_only_the_running_rollout_it_was_decided_for() {
        let old = record(Some(rollout("r2")));
        assert!(ended(Some(&old), Some("r1"), RolloutEnd::RollBack("late".into())).is_none());
        let v = ended(Some(&old), Some("r2"), RolloutEnd::RollBack("errors".into())).unwrap();
        let back = v.rollout.unwrap();
        assert_eq!((back.state, back.reason.as_deref()), (RolloutState::RolledBack, Some("errors")));
        assert_eq!(v.current.unwrap().digest, "a", "stable keeps serving");
        let over = record(Some(back));
        assert!(ended(Some(&over), None, RolloutEnd::Promote).is_none(), "an ended rollout cannot be promoted");
        assert!(ended(Some(&over), None, RolloutEnd::Remove).unwrap().rollout.is_none());
        assert!(ended(Some(&record(None)), None, RolloutEnd::Remove).is_none());
    }

    #[test]
    fn no_rollout_without_a_serving_version() {
        let removed = Record { current: None, ..record(None) };
        assert!(started(Some(&removed), rollout("r")).is_none());
        assert!(started(None, rollout("r")).is_none());
    }
}
