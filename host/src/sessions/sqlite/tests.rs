//! The SQLite store's own tests: turns, owners, paging, migrations, files.

use super::*;
use crate::chat::Role;

fn msg(role: Role, content: &str) -> Message {
    Message::text(role, content)
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, 2).unwrap()
}

#[tokio::test]
async fn turns_state_and_ownership_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.sqlite"));
    let turn = store.begin_turn("k", "main", "app").await.unwrap();
    assert!(turn.session.history.is_empty() && turn.existing.is_none());
    let state = StateChanges::from([("n".to_string(), Some(b"1".to_vec()))]);
    turn.commit(vec![msg(Role::User, "hi"), msg(Role::Assistant, "hi")], state).await.unwrap();
    let turn = store.begin_turn("k", "main", "app").await.unwrap();
    assert_eq!(turn.existing, Some(SessionOwner { agent: "main".into(), owner: "app".into() }));
    assert_eq!(turn.session.state.get("n").map(Vec::as_slice), Some(&b"1"[..]));
    turn.commit(vec![msg(Role::User, "again")], StateChanges::from([("n".into(), None)])).await.unwrap();
    let data = store.begin_turn("k", "main", "app").await.unwrap().session;
    assert_eq!(data.history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hi", "again"]);
    assert!(data.state.is_empty());
    // Nobody writes into a session of another agent or another owner.
    let wrong_agent = store.begin_turn("k", "beta", "app").await.unwrap();
    let written = wrong_agent.commit(vec![msg(Role::User, "x")], StateChanges::new()).await;
    assert!(matches!(written, Err(StoreError::WrongAgent { .. })), "{written:?}");
    let wrong_owner = store.begin_turn("k", "main", "web").await.unwrap();
    let written = wrong_owner.commit(vec![msg(Role::User, "x")], StateChanges::new()).await;
    assert!(matches!(written, Err(StoreError::WrongOwner(_))), "{written:?}");
    let page = store.list(SessionQuery::everything(Some("main".into()))).await.unwrap();
    assert_eq!((page.sessions[0].message_count, page.sessions[0].owner.as_str()), (3, "app"));
    assert_eq!(store.owner("k").await.unwrap(), Some(SessionOwner { agent: "main".into(), owner: "app".into() }));
    assert!(!store.delete("k", "web").await.unwrap(), "only the owner's session is deleted");
    assert!(store.delete("k", "app").await.unwrap());
    assert!(store.transcript("k").await.unwrap().is_none());
    assert_eq!(store.owner("k").await.unwrap(), None);
}

#[tokio::test]
async fn a_turn_waits_for_the_turn_begun_before_it_on_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.sqlite"));
    let first = store.begin_turn("k", "main", "operator").await.unwrap();
    // Begun (lane taken) before the first commits: it must see that commit.
    let mut second = store.begin_turn("k", "main", "operator");
    let other = store.begin_turn("other", "main", "operator").await.unwrap();
    assert!(other.session.history.is_empty(), "another key never waits");
    assert!(futures::poll!(&mut second).is_pending(), "the second turn must wait for the first");
    first.commit(vec![msg(Role::User, "one")], StateChanges::new()).await.unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), second).await.unwrap().unwrap();
    assert_eq!(second.session.history.len(), 1);
    // A dropped turn (a failed run) frees the lane without writing.
    drop(second);
    let third = tokio::time::timeout(std::time::Duration::from_secs(10), store.begin_turn("k", "main", "operator"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.session.history.len(), 1);
}

#[tokio::test]
async fn migrations_run_once_and_reopen_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let turn = open(&path).begin_turn("k", "a", "operator").await.unwrap();
    turn.commit(vec![msg(Role::User, "x")], StateChanges::new()).await.unwrap();
    let store = open(&path);
    assert_eq!(store.transcript("k").await.unwrap().unwrap().messages.len(), 1);
}

#[tokio::test]
async fn sessions_made_before_owners_belong_to_the_main_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    {
        // A file as the previous version left it: three steps, one session.
        let conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..3] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute("INSERT INTO sessions (key, agent_id, created_at, updated_at) VALUES ('old', 'main', 1, 1)", [])
            .unwrap();
    }
    let store = open(&path);
    let old = store.owner("old").await.unwrap().unwrap();
    assert_eq!(old.owner, super::super::MAIN_SECRET_OWNER);
}

#[tokio::test]
async fn listings_page_by_activity_and_show_only_what_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.sqlite"));
    for (key, agent, owner) in
        [("a", "main", "app"), ("b", "main", "web"), ("c", "beta", "app"), ("d", "main", "app"), ("e", "main", "app")]
    {
        let turn = store.begin_turn(key, agent, owner).await.unwrap();
        turn.commit(vec![msg(Role::User, key)], StateChanges::new()).await.unwrap();
    }
    // Every session, two at a time, most recent first (ties by key), each exactly once.
    let mut seen = Vec::new();
    let mut query = SessionQuery { limit: 2, ..SessionQuery::everything(None) };
    loop {
        let page = store.list(query.clone()).await.unwrap();
        assert!(page.sessions.len() <= 2);
        seen.extend(page.sessions.iter().map(|s| s.key.clone()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let mut expected = store.list(SessionQuery::everything(None)).await.unwrap().sessions;
    expected.sort_by(|x, y| y.last_activity.cmp(&x.last_activity).then(x.key.cmp(&y.key)));
    assert_eq!(seen, expected.iter().map(|s| s.key.clone()).collect::<Vec<_>>());
    assert_eq!(seen.len(), 5);
    // Another principal's sessions and agents outside an allow-list are filtered in the query.
    let visible = super::super::Visible { owner: Some("app".into()), agents: Some(vec!["main".into()]) };
    let page = store.list(SessionQuery { visible, limit: 2, ..SessionQuery::everything(None) }).await.unwrap();
    let keys: Vec<_> = page.sessions.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys.len(), 2, "a full page of what is visible: {keys:?}");
    assert!(keys.iter().all(|k| ["a", "d", "e"].contains(k)), "{keys:?}");
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&path, 10).err().expect("corrupt file must not open").to_string();
    assert!(err.contains("bad.sqlite"), "{err}");
}

#[tokio::test]
async fn a_turn_keeps_the_run_that_wrote_it_and_messages_stored_before_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    {
        // A file as the previous version left it: nine steps, one message.
        let conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..9] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 9).unwrap();
        conn.execute("INSERT INTO sessions (key, agent_id, created_at, updated_at) VALUES ('k', 'main', 1, 1)", [])
            .unwrap();
        conn.execute(
            "INSERT INTO messages (session_key, role, content, created_at) VALUES ('k', 'user', 'old', 1)",
            [],
        )
        .unwrap();
    }
    let store = open(&path);
    let turn = store.begin_turn("k", "main", "operator").await.unwrap();
    let run = RunMark { run_id: "r1".into(), idempotency_key: Some("k1".into()) };
    turn.commit_run(run.clone(), vec![msg(Role::User, "new"), msg(Role::Assistant, "new")], StateChanges::new())
        .await
        .unwrap();
    let runs: Vec<_> = store.transcript("k").await.unwrap().unwrap().messages.into_iter().map(|m| m.run).collect();
    assert_eq!(runs, [None, Some(run.clone()), Some(run)]);
}
