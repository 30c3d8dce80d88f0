//! Session keys: which conversation a run belongs to, per docs/WIRE.md.

use sha2::{Digest, Sha256};

use crate::chat::AgentId;

/// Longest key a client may choose.
pub const MAX_KEY_BYTES: usize = 256;

/// Prefixes the gateway keeps for its own sessions.
const RESERVED_PREFIXES: &[&str] = &["cron:", "subagent:", "hook:", "system:"];

/// The session a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub key: String,
    /// False for the fresh per-request sessions that are never stored.
    pub persistent: bool,
}

/// A client-chosen session key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session key: {0}")]
pub struct InvalidSessionKey(pub String);

/// Pick the session: explicit key, else one derived from `user`, else a fresh one.
pub fn resolve(agent: &AgentId, explicit: Option<&str>, user: Option<&str>) -> Result<SessionKey, InvalidSessionKey> {
    if let Some(key) = explicit {
        validate(agent, key)?;
        return Ok(SessionKey { key: key.to_string(), persistent: true });
    }
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        let hash = hex::encode(Sha256::digest(user.as_bytes()));
        return Ok(SessionKey { key: format!("agent:{agent}:openai-user:{}", &hash[..32]), persistent: true });
    }
    Ok(SessionKey { key: format!("agent:{agent}:openai:{}", uuid::Uuid::new_v4()), persistent: false })
}

fn validate(agent: &AgentId, key: &str) -> Result<(), InvalidSessionKey> {
    let bad = |why: &str| Err(InvalidSessionKey(why.to_string()));
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return bad("must be 1 to 256 bytes");
    }
    if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return bad("must be printable ASCII");
    }
    if RESERVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return bad("uses a reserved prefix");
    }
    if let Some(rest) = key.strip_prefix("agent:") {
        let owner = rest.split(':').next().unwrap_or_default();
        if !owner.eq_ignore_ascii_case(agent.as_str()) {
            return bad(&format!("belongs to agent {owner:?}, not {:?}", agent.as_str()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main() -> AgentId {
        AgentId::parse("main").unwrap()
    }

    #[test]
    fn user_keys_are_stable_and_per_agent() {
        let a = resolve(&main(), None, Some("alice")).unwrap();
        assert_eq!(a, resolve(&main(), None, Some("alice")).unwrap());
        assert!(a.persistent);
        assert!(a.key.starts_with("agent:main:openai-user:") && a.key.len() == "agent:main:openai-user:".len() + 32);
        assert_ne!(a.key, resolve(&main(), None, Some("bob")).unwrap().key);
    }

    #[test]
    fn fresh_keys_differ_and_are_not_kept() {
        let a = resolve(&main(), None, None).unwrap();
        let b = resolve(&main(), None, None).unwrap();
        assert_ne!(a.key, b.key);
        assert!(!a.persistent && a.key.starts_with("agent:main:openai:"));
    }

    #[test]
    fn explicit_keys_are_validated() {
        assert_eq!(resolve(&main(), Some("my-chat"), Some("u")).unwrap().key, "my-chat");
        assert!(resolve(&main(), Some("agent:main:x"), None).is_ok());
        for bad in ["", "cron:nightly", "subagent:x", "agent:other:x", "tab\there", "ü", &"k".repeat(257)] {
            assert!(resolve(&main(), Some(bad), None).is_err(), "{bad:?}");
        }
    }
}
