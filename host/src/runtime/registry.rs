//! Agent id → the version currently serving it. Swaps are one atomic store;
//! a run holds an `Arc` to the version it started on.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{AgentId, AgentVersion};

/// The live set of agents.
#[derive(Default)]
pub struct AgentRegistry {
    agents: ArcSwap<HashMap<AgentId, Arc<AgentVersion>>>,
}

impl AgentRegistry {
    /// The version serving `id` now.
    pub fn get(&self, id: &AgentId) -> Option<Arc<AgentVersion>> {
        self.agents.load().get(id).cloned()
    }

    /// Every agent, sorted by id.
    pub fn list(&self) -> Vec<Arc<AgentVersion>> {
        let mut all: Vec<_> = self.agents.load().values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Make `version` serve its id; returns the version it replaced.
    pub fn install(&self, version: Arc<AgentVersion>) -> Option<Arc<AgentVersion>> {
        let mut previous = None;
        self.agents.rcu(|current| {
            let mut next = HashMap::clone(current);
            previous = next.insert(version.id.clone(), version.clone());
            next
        });
        previous
    }
}
