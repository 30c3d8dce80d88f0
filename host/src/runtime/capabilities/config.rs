//! `config`: the string map from the agent's entry.

use std::collections::BTreeMap;
use std::sync::Arc;

/// The map, shared by every run of one version.
pub struct ConfigCapability(Arc<BTreeMap<String, String>>);

/// One run's view of it; reads go through the run's tape.
pub struct ConfigState(Arc<BTreeMap<String, String>>, crate::tape::Tape);

impl ConfigCapability {
    /// Prepare from the entry's `config`.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self(Arc::new(values))
    }

    /// Per run: a shared reference, no copy.
    pub fn instantiate(&self, tape: crate::tape::Tape) -> ConfigState {
        ConfigState(self.0.clone(), tape)
    }
}

impl ConfigState {
    /// The value of `key`, if the operator set one.
    pub fn get(&self, key: &str) -> Option<String> {
        let live = || self.0.get(key).cloned();
        if self.1.is_on() { self.1.config(key, live) } else { live() }
    }
}
