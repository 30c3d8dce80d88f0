//! Who may do what with a session: the one access rule, which every door
//! (HTTP, WebSocket, the run path) calls rather than deciding for itself.
//!
//! A session belongs to the principal whose turn created it. Its owner may
//! read, run in (join, continue) and delete it, as long as the owner may
//! still use the session's agent. A principal with `operator.admin` and no
//! agent restriction (the main secret, an unrestricted admin token) may also
//! read and delete every session (the control page's and the operator's
//! cleanup), but never runs in another principal's session: a turn would be
//! written into their transcript. For everyone else another principal's
//! session does not exist (404, as an unknown one).

use super::key::{user_key, user_key_prefix};
use super::store::{SessionOwner, SessionStore, StoreError};
use crate::auth::{Principal, Scope};
use crate::chat::AgentId;

/// The owner the main secret's sessions record, and every session made
/// before sessions had owners.
pub const MAIN_SECRET_OWNER: &str = "operator";

/// What a caller wants to do with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// List it, read its history.
    Read,
    /// Run a turn in it: join by key or `user`, continue by `previous_response_id`.
    Run,
    /// Reset or delete it (its stored responses go with it).
    Delete,
}

/// True when `caller` may do `access` on `session`.
pub fn permits(caller: &Principal, session: &SessionOwner, access: Access) -> bool {
    if is_owner(caller, &session.owner, &session.agent) {
        return true;
    }
    access != Access::Run && reads_all(caller)
}

/// True when `caller` is `owner` and may still use `agent`: what owning a
/// session or a stored response means.
pub fn is_owner(caller: &Principal, owner: &str, agent: &str) -> bool {
    owner == caller.name() && caller.may_use_named(agent)
}

/// True when `caller` owns a conversation of `owner`, bound to `agent` once
/// a response has run in it: the same rule as for its session.
pub fn owns_conversation(caller: &Principal, owner: &str, agent: Option<&str>) -> bool {
    match agent {
        Some(agent) => is_owner(caller, owner, agent),
        None => owner == caller.name(),
    }
}

/// True when a run of `caller` that sent `user` may create the session `key`
/// of `agent` (it does not exist yet). A key of the form `user` derives is
/// made only by the request that derives it: anyone can compute another
/// principal's, and taking it first would lock its owner out of its `user`.
pub fn may_create(caller: &Principal, agent: &AgentId, key: &str, user: Option<&str>) -> bool {
    !key.starts_with(&user_key_prefix(agent))
        || user.filter(|u| !u.is_empty()).is_some_and(|u| user_key(agent, u, caller.name()) == key)
}

/// Whose usage `caller` may read: `None` for everyone's (the principals
/// that read every session), else its own name.
pub fn usage_owner(caller: &Principal) -> Option<String> {
    (!reads_all(caller)).then(|| caller.name().to_string())
}

/// True for the principals that see every session.
fn reads_all(caller: &Principal) -> bool {
    caller.allows(Scope::Admin) && caller.may_use_every_agent()
}

/// Which sessions a listing shows `caller` (applied by the store, so that
/// pages are full): [`permits`] with [`Access::Read`] as a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// Only sessions of this owner; `None`: every owner.
    pub owner: Option<String>,
    /// Only sessions of these agents; `None`: every agent.
    pub agents: Option<Vec<String>>,
}

impl Visible {
    /// What `caller` may list.
    pub fn to(caller: &Principal) -> Self {
        if reads_all(caller) {
            return Self::default();
        }
        let agents = caller.agent_allow_list().map(|ids| ids.iter().map(ToString::to_string).collect());
        Self { owner: Some(caller.name().to_string()), agents }
    }

    /// True when a listing shows `session`.
    pub fn shows(&self, session: &SessionOwner) -> bool {
        self.owner.as_ref().is_none_or(|o| *o == session.owner)
            && self.agents.as_ref().is_none_or(|a| a.contains(&session.agent))
    }
}

/// The session `key` if it exists and `caller` may do `access` on it; `None`
/// otherwise, so a refused caller cannot tell it from an unknown key. Reads
/// one row, never the transcript.
pub async fn check(
    store: &dyn SessionStore,
    caller: &Principal,
    key: &str,
    access: Access,
) -> Result<Option<SessionOwner>, StoreError> {
    let session = store.owner(key).await?;
    Ok(session.filter(|s| permits(caller, s, access)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(owner: &str, agent: &str) -> SessionOwner {
        SessionOwner { owner: owner.into(), agent: agent.into() }
    }

    fn token(name: &str, scopes: Vec<Scope>, agents: Option<&[&str]>) -> Principal {
        let agents = agents.map(|ids| ids.iter().map(|a| AgentId::parse(a).unwrap()).collect());
        Principal::token(name, scopes, agents, None)
    }

    #[test]
    fn the_main_secret_owns_what_it_made_and_what_came_before_owners() {
        assert_eq!(Principal::operator().name(), MAIN_SECRET_OWNER);
    }

    #[test]
    fn owners_do_everything_others_nothing_and_unrestricted_admins_read_and_delete() {
        let app = token("app", vec![Scope::Write], None);
        let other = token("other", vec![Scope::Write], None);
        let mine = session("app", "main");
        let all = [Access::Read, Access::Run, Access::Delete];
        assert!(all.iter().all(|a| permits(&app, &mine, *a)));
        assert!(all.iter().all(|a| !permits(&other, &mine, *a)));
        for admin in [Principal::operator(), token("root", vec![Scope::Admin], None)] {
            assert!(permits(&admin, &mine, Access::Read) && permits(&admin, &mine, Access::Delete));
            assert!(!permits(&admin, &mine, Access::Run), "nobody runs in another principal's session");
        }
        let limited_admin = token("lim", vec![Scope::Admin], Some(&["main"]));
        assert!(
            all.iter().all(|a| !permits(&limited_admin, &mine, *a)),
            "an agent restriction makes an admin a tenant"
        );
        // An owner that lost the agent loses its sessions of that agent.
        let narrowed = token("app", vec![Scope::Write], Some(&["beta"]));
        assert!(all.iter().all(|a| !permits(&narrowed, &mine, *a)));
    }

    #[test]
    fn only_the_request_that_derives_a_user_key_creates_it() {
        let main = AgentId::parse("main").unwrap();
        let (app, other) = (token("app", vec![Scope::Write], None), token("other", vec![Scope::Write], None));
        let apps = user_key(&main, "carol", "app");
        assert!(may_create(&app, &main, &apps, Some("carol")));
        assert!(!may_create(&app, &main, &apps, None), "named, not derived");
        assert!(!may_create(&other, &main, &apps, Some("carol")), "another principal's");
        assert!(!may_create(&app, &main, &apps, Some("dave")));
        let operators = user_key(&main, "carol", MAIN_SECRET_OWNER);
        assert!(
            !may_create(&app, &main, &operators, None)
                && may_create(&Principal::operator(), &main, &operators, Some("carol"))
        );
        assert!(may_create(&other, &main, "my-chat", None) && may_create(&other, &main, "agent:main:x", None));
    }

    #[test]
    fn a_listing_shows_exactly_what_may_be_read() {
        let callers = [
            Principal::operator(),
            token("app", vec![Scope::Read], None),
            token("app", vec![Scope::Write], Some(&["main"])),
            token("lim", vec![Scope::Admin], Some(&["beta"])),
        ];
        let sessions =
            [session("app", "main"), session("app", "beta"), session("operator", "main"), session("lim", "beta")];
        for caller in &callers {
            let visible = Visible::to(caller);
            for s in &sessions {
                assert_eq!(visible.shows(s), permits(caller, s, Access::Read), "{} on {s:?}", caller.name());
            }
        }
    }
}
