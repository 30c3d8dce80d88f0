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

/// What a `model` names: `openclaw` or `openclaw/default` (any case) is the
/// default agent; `openclaw:<id>`, `openclaw/<id>`, `agent:<id>` (prefix in
/// any case) that agent. `None` for anything else.
pub fn agent_of_model(model: &str, default: &AgentId) -> Option<AgentId> {
    let model = model.trim();
    if model.eq_ignore_ascii_case("openclaw") || model.eq_ignore_ascii_case("openclaw/default") {
        return Some(default.clone());
    }
    ["openclaw:", "openclaw/", "agent:"].iter().find_map(|prefix| {
        let head = model.get(..prefix.len()).filter(|h| h.eq_ignore_ascii_case(prefix))?;
        AgentId::parse(&model[head.len()..])
    })
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{AgentId, agent_of_model};

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

    #[test]
    fn model_prefixes_match_in_any_case() {
        let main = AgentId::parse("main").unwrap();
        let of = |m: &str| agent_of_model(m, &main).map(|a| a.to_string());
        for (model, agent) in [
            ("openclaw", "main"),
            ("OpenClaw", "main"),
            ("openclaw/DEFAULT", "main"),
            ("OpenClaw:beta", "beta"),
            ("OPENCLAW/beta", "beta"),
            ("Agent:Beta", "beta"),
            (" openclaw:beta ", "beta"),
        ] {
            assert_eq!(of(model).as_deref(), Some(agent), "{model}");
        }
        for bad in ["gpt-4o", "openclaw:", "agent:", "openclawbeta", "openclaw:a/b", "é:beta"] {
            assert_eq!(of(bad), None, "{bad}");
        }
    }
}
