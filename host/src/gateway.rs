//! Everything a running gateway shares between requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::runs::Agents;

/// State shared by every connection of one gateway.
pub struct Gateway {
    pub config: Config,
    pub auth: Authenticator,
    pub agents: Agents,
    ready: AtomicBool,
}

impl Gateway {
    /// Resolve credentials and load every agent; fails with a message an operator can act on.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let auth = Authenticator::from_config(&config.gateway.auth, |k| std::env::var(k).ok())?;
        let agents = Agents::from_config(&config).await?;
        Ok(Arc::new(Self { config, auth, agents, ready: AtomicBool::new(true) }))
    }

    /// True once agents are loaded and until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Report not-ready from now on (shutdown has begun).
    pub fn begin_drain(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}
