//! Agent id → the version serving it now and the one before (for rollback).
//! A change is one atomic store; a run holds an `Arc` to the version it
//! started on, and an old version is freed when its last run ends. Each id
//! remembers the durable registry's revision it shows, so a late or repeated
//! change never replaces a newer one.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::AgentVersion;
use crate::chat::AgentId;

/// One agent's versions.
#[derive(Clone)]
pub struct AgentSlot {
    pub current: Arc<AgentVersion>,
    pub previous: Option<Arc<AgentVersion>>,
}

/// What an id shows: `None` once removed.
#[derive(Clone)]
struct Entry {
    slot: Option<AgentSlot>,
    revision: u64,
}

/// The live set of agents.
#[derive(Default)]
pub struct AgentRegistry {
    agents: ArcSwap<HashMap<AgentId, Entry>>,
}

impl AgentRegistry {
    /// The version serving `id` now.
    pub fn get(&self, id: &AgentId) -> Option<Arc<AgentVersion>> {
        self.slot(id).map(|s| s.current)
    }

    /// Current and previous versions of `id`.
    pub fn slot(&self, id: &AgentId) -> Option<AgentSlot> {
        self.agents.load().get(id).and_then(|e| e.slot.clone())
    }

    /// The revision `id` shows, removals included; `None` if never seen.
    pub fn revision(&self, id: &AgentId) -> Option<u64> {
        self.agents.load().get(id).map(|e| e.revision)
    }

    /// A loaded version of `id` with `digest`, current or previous.
    pub fn find(&self, id: &AgentId, digest: &str) -> Option<Arc<AgentVersion>> {
        let slot = self.slot(id)?;
        std::iter::once(slot.current).chain(slot.previous).find(|v| v.digest == digest)
    }

    /// Every agent's current version, sorted by id.
    pub fn list(&self) -> Vec<Arc<AgentVersion>> {
        let mut all: Vec<_> =
            self.agents.load().values().filter_map(|e| e.slot.as_ref().map(|s| s.current.clone())).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Show `slot` (or, with `None`, nothing) for `id` at `revision`; false,
    /// changing nothing, when `id` already shows that revision or a newer one.
    pub fn apply(&self, id: &AgentId, slot: Option<AgentSlot>, revision: u64) -> bool {
        let mut applied = false;
        self.agents.rcu(|current| {
            applied = current.get(id).is_none_or(|e| e.revision < revision);
            let mut next = HashMap::clone(current);
            if applied {
                next.insert(id.clone(), Entry { slot: slot.clone(), revision });
            }
            next
        });
        applied
    }
}
