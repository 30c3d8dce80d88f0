//! Agent ids as the wire spells them.

/// A validated agent id: `[a-z0-9][a-z0-9_-]{0,63}`, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// Validate (case-insensitively) and normalise an id.
    pub fn parse(raw: &str) -> Option<Self> {
        let id = raw.to_ascii_lowercase();
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        (first_ok && rest_ok && id.len() <= 64).then_some(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::AgentId;

    #[test]
    fn agent_ids_follow_the_wire_pattern() {
        assert_eq!(AgentId::parse("Main").unwrap().as_str(), "main");
        for ok in ["a", "0", "beta_2", "x-y", &"a".repeat(64)] {
            assert!(AgentId::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "-a", "_a", "a/b", "../x", "a b", "é", &"a".repeat(65)] {
            assert!(AgentId::parse(bad).is_none(), "{bad}");
        }
    }
}
