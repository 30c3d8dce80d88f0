//! Agent id → the version serving it now and the one before (for rollback).
//! A change is one atomic store; a run holds an `Arc` to the version it
//! started on, and an old version is freed when its last run ends.

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

/// The live set of agents.
#[derive(Default)]
pub struct AgentRegistry {
    agents: ArcSwap<HashMap<AgentId, AgentSlot>>,
}

impl AgentRegistry {
    /// The version serving `id` now.
    pub fn get(&self, id: &AgentId) -> Option<Arc<AgentVersion>> {
        self.agents.load().get(id).map(|s| s.current.clone())
    }

    /// Current and previous versions of `id`.
    pub fn slot(&self, id: &AgentId) -> Option<AgentSlot> {
        self.agents.load().get(id).cloned()
    }

    /// Every agent's current version, sorted by id.
    pub fn list(&self) -> Vec<Arc<AgentVersion>> {
        let mut all: Vec<_> = self.agents.load().values().map(|s| s.current.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Make `version` serve its id; the replaced version becomes the rollback target.
    pub fn install(&self, version: Arc<AgentVersion>) -> Option<Arc<AgentVersion>> {
        let mut replaced = None;
        self.agents.rcu(|current| {
            let mut next = HashMap::clone(current);
            let previous = next.get(&version.id).map(|s| s.current.clone());
            replaced = previous.clone();
            next.insert(version.id.clone(), AgentSlot { current: version.clone(), previous });
            next
        });
        replaced
    }

    /// Swap current and previous; `None` when there is nothing to roll back to.
    pub fn rollback(&self, id: &AgentId) -> Option<Arc<AgentVersion>> {
        let mut restored = None;
        self.agents.rcu(|current| {
            let mut next = HashMap::clone(current);
            restored = None;
            if let Some(slot) = next.get_mut(id)
                && let Some(previous) = slot.previous.take()
            {
                slot.previous = Some(std::mem::replace(&mut slot.current, previous.clone()));
                restored = Some(previous);
            }
            next
        });
        restored
    }

    /// Stop serving `id`; returns its current version if it existed.
    pub fn remove(&self, id: &AgentId) -> Option<Arc<AgentVersion>> {
        let mut removed = None;
        self.agents.rcu(|current| {
            let mut next = HashMap::clone(current);
            removed = next.remove(id).map(|s| s.current);
            next
        });
        removed
    }
}
