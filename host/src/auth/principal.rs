//! Who is calling, and what they may do: OpenClaw's operator scopes.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::rate::RequestRate;
use crate::chat::AgentId;

/// One of OpenClaw's operator scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Models, lists, histories, health details.
    Read,
    /// Runs (chat completions, `agent`, `chat.*`) and session reset/delete.
    Write,
    /// Agent install, rollback and removal; metrics behind auth.
    Admin,
}

impl Scope {
    /// Every scope, least first.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// The wire name (`operator.read`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "operator.read",
            Self::Write => "operator.write",
            Self::Admin => "operator.admin",
        }
    }

    /// The scope a wire name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// `write` includes `read`, `admin` includes both, so clients that ask
    /// for the higher scope keep working for what the lower one allows.
    pub fn includes(self, other: Scope) -> bool {
        self >= other
    }
}

/// An authenticated caller: a name for logs and ownership, its scopes, the
/// agents it may use and its request rate.
#[derive(Debug, Clone)]
pub struct Principal {
    name: Arc<str>,
    scopes: Arc<[Scope]>,
    /// `None`: every agent.
    agents: Option<Arc<BTreeSet<AgentId>>>,
    /// Shared by every request and connection of this principal.
    rate: Option<Arc<RequestRate>>,
}

impl Principal {
    /// The holder of the gateway's main secret: every scope, every agent, no rate limit.
    pub fn operator() -> Self {
        Self { name: "operator".into(), scopes: Scope::ALL.into(), agents: None, rate: None }
    }

    /// A named token's principal.
    pub fn token(name: &str, scopes: Vec<Scope>, agents: Option<BTreeSet<AgentId>>, rate: Option<RequestRate>) -> Self {
        Self { name: name.into(), scopes: scopes.into(), agents: agents.map(Arc::new), rate: rate.map(Arc::new) }
    }

    /// The name logs, metrics and run ownership use (never the secret).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scopes granted.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// True when a granted scope includes `needed`.
    pub fn allows(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|s| s.includes(needed))
    }

    /// True when this principal may use `agent`; others behave as unknown.
    pub fn may_use(&self, agent: &AgentId) -> bool {
        self.agents.as_ref().is_none_or(|allowed| allowed.contains(agent))
    }

    /// True when no agent allow-list applies.
    pub fn may_use_every_agent(&self) -> bool {
        self.agents.is_none()
    }

    /// The agents this principal may use; `None`: every agent.
    pub fn agent_allow_list(&self) -> Option<&BTreeSet<AgentId>> {
        self.agents.as_deref()
    }

    /// [`may_use`](Self::may_use) for an id as stored (sessions keep their agent as text).
    pub fn may_use_named(&self, agent: &str) -> bool {
        self.agents.is_none() || AgentId::parse(agent).is_some_and(|id| self.may_use(&id))
    }

    /// Count one request against the rate limit: `Err(seconds)` when over it.
    pub fn admit(&self) -> Result<(), u64> {
        self.rate.as_ref().map_or(Ok(()), |rate| rate.admit())
    }

    /// The same principal with only the requested scopes it holds (a
    /// WebSocket client asks for the least it needs); unknown names are ignored.
    pub fn narrowed(&self, requested: &[Scope]) -> Self {
        let scopes = Scope::ALL.into_iter().filter(|s| requested.contains(s) && self.allows(*s)).collect::<Vec<_>>();
        let scopes = scopes.into();
        Self { scopes, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_scopes_include_lower_ones() {
        assert!(Scope::Admin.includes(Scope::Read) && Scope::Admin.includes(Scope::Write));
        assert!(Scope::Write.includes(Scope::Read) && !Scope::Write.includes(Scope::Admin));
        assert!(!Scope::Read.includes(Scope::Write));
        let operator = Principal::operator();
        assert!(Scope::ALL.into_iter().all(|s| operator.allows(s)));
        assert_eq!(Scope::parse("operator.write"), Some(Scope::Write));
        assert_eq!(Scope::parse("operator.pairing"), None);
    }

    #[test]
    fn narrowing_grants_only_what_was_asked_and_held() {
        let app = Principal::token("app", vec![Scope::Write], None, None);
        assert_eq!(app.narrowed(&[Scope::Read]).scopes(), [Scope::Read]);
        assert_eq!(app.narrowed(&[Scope::Read, Scope::Admin]).scopes(), [Scope::Read]);
        assert!(app.narrowed(&[Scope::Admin]).scopes().is_empty());
        let main = AgentId::parse("main").unwrap();
        let limited = Principal::token("l", vec![Scope::Read], Some([main.clone()].into()), None);
        assert!(limited.may_use(&main) && !limited.may_use(&AgentId::parse("other").unwrap()));
    }
}
