//! Who is calling, and what they may do: OpenClaw's operator scopes.

use std::sync::Arc;

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

/// An authenticated caller: a name for logs and ownership, and its scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    name: Arc<str>,
    scopes: Vec<Scope>,
}

impl Principal {
    /// The holder of the gateway's main secret: every scope.
    pub fn operator() -> Self {
        Self { name: "operator".into(), scopes: Scope::ALL.to_vec() }
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
}
