//! Session keys: which conversation a run belongs to, per docs/WIRE.md.

use sha2::{Digest, Sha256};

use super::access::MAIN_SECRET_OWNER;
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

/// Pick the session for a request of principal `owner`: explicit key, else
/// one derived from `user` and the principal, else a fresh one.
pub fn resolve(
    agent: &AgentId,
    explicit: Option<&str>,
    user: Option<&str>,
    owner: &str,
) -> Result<SessionKey, InvalidSessionKey> {
    if let Some(key) = explicit {
        validate(agent, key)?;
        // Main sessions are derived names: nobody may take another's first.
        let main = format!("agent:{agent}:main");
        if (key == main || key.starts_with(&format!("{main}:"))) && key != main_key(agent, owner) {
            return Err(InvalidSessionKey("is another principal's main session; send no key to use your own".into()));
        }
        return Ok(SessionKey { key: key.to_string(), persistent: true });
    }
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        return Ok(SessionKey { key: user_key(agent, user, owner), persistent: true });
    }
    Ok(SessionKey { key: format!("agent:{agent}:openai:{}", uuid::Uuid::new_v4()), persistent: false })
}

/// The session `user` names for principal `owner`. Anyone can compute it, so
/// only a request that derives it may create it (see `access::may_create`).
pub(super) fn user_key(agent: &AgentId, user: &str, owner: &str) -> String {
    let mut hash = Sha256::new();
    // The main secret keeps the key it always had, so sessions made
    // before owners existed stay its own; every other principal's `user`
    // names its own session. Length-prefixed: no two pairs hash alike.
    if owner != MAIN_SECRET_OWNER {
        hash.update((owner.len() as u64).to_le_bytes());
        hash.update(owner.as_bytes());
    }
    hash.update(user.as_bytes());
    format!("{}{}", user_key_prefix(agent), &hex::encode(hash.finalize())[..32])
}

/// What every key derived from `user` for `agent` starts with.
pub(super) fn user_key_prefix(agent: &AgentId) -> String {
    format!("agent:{agent}:openai-user:")
}

/// The WebSocket's default session of `agent` for principal `owner`: OpenClaw's
/// `agent:<id>:main` for the main secret (so OpenClaw's CLI finds it),
/// `agent:<id>:main:<principal>` for a named token. Token names are
/// `[A-Za-z0-9._-]`, so the key is always valid.
pub fn main_key(agent: &AgentId, owner: &str) -> String {
    if owner == MAIN_SECRET_OWNER { format!("agent:{agent}:main") } else { format!("agent:{agent}:main:{owner}") }
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

    fn resolve(agent: &AgentId, explicit: Option<&str>, user: Option<&str>) -> Result<SessionKey, InvalidSessionKey> {
        super::resolve(agent, explicit, user, MAIN_SECRET_OWNER)
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
    fn user_keys_are_per_principal_and_the_main_secret_keeps_its_old_ones() {
        // Pinned: the key every session made by `user: "alice"` before owners existed has.
        let old = format!("agent:main:openai-user:{}", &hex::encode(Sha256::digest(b"alice"))[..32]);
        assert_eq!(resolve(&main(), None, Some("alice")).unwrap().key, old);
        let app = super::resolve(&main(), None, Some("alice"), "app").unwrap().key;
        let web = super::resolve(&main(), None, Some("alice"), "web").unwrap().key;
        assert!(app != old && web != old && app != web, "{app} {web}");
        assert_eq!(app, super::resolve(&main(), None, Some("alice"), "app").unwrap().key, "stable per principal");
        // No principal/user pair can produce another's key by moving characters across.
        assert_ne!(
            super::resolve(&main(), None, Some("bc"), "a").unwrap().key,
            super::resolve(&main(), None, Some("c"), "ab").unwrap().key
        );
    }

    #[test]
    fn default_websocket_sessions_are_per_principal() {
        assert_eq!(main_key(&main(), MAIN_SECRET_OWNER), "agent:main:main");
        assert_eq!(main_key(&main(), "app"), "agent:main:main:app");
        assert!(super::resolve(&main(), Some(&main_key(&main(), "a.b-c_1")), None, "a.b-c_1").is_ok());
        // Nobody can claim another principal's main session before it exists.
        for (key, owner) in [
            ("agent:main:main", "app"),
            ("agent:main:main:web", "app"),
            ("agent:main:main:app", MAIN_SECRET_OWNER),
            ("agent:main:main:app:x", "app"),
        ] {
            assert!(super::resolve(&main(), Some(key), None, owner).is_err(), "{key} as {owner}");
        }
        assert!(super::resolve(&main(), Some("agent:main:main"), None, MAIN_SECRET_OWNER).is_ok());
        assert!(super::resolve(&main(), Some("agent:main:mainly"), None, "app").is_ok(), "only main itself");
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
