//! Canary rollouts (issue 26): a candidate version beside the current one,
//! split by weight and sticky per session, rolled back on its own when it
//! fails or is slow, promoted or ended by an operator; durable and seen by
//! every instance.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::hot_swap::admin;
use crate::pg;
use crate::support::*;

/// `main` = echo; `settings` is `main`'s config map, which the candidate
/// (the faults fixture) reads: echo ignores it.
fn config(settings: &str) -> String {
    format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{ main: {{ plugin: "echo", config: {{ {settings} }} }} }} }} }}"#
    )
}

fn faults_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(FAULTS_WASM).unwrap())
}

fn sha256_of(path: &str) -> String {
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(path).unwrap())))
}

async fn put_rollout(gw: &TestGateway, body: Value) -> (u16, Value) {
    let res = admin(gw, reqwest::Method::PUT, "/main/rollout").json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

async fn rollout(gw: &TestGateway) -> Value {
    let res = admin(gw, reqwest::Method::GET, "/main/rollout").send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", gw.log());
    res.json().await.unwrap()
}

/// One chat turn of `main` (in `user`'s session when given): status, the
/// version header, the reply text.
async fn turn(client: &reqwest::Client, gw: &TestGateway, user: Option<&str>, text: &str) -> (u16, String, String) {
    let mut body = ask("agent:main", text);
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    let res = client.post(gw.url("/v1/chat/completions")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    let version = res.headers().get("x-wasmclaw-agent-version").map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap_or_default();
    (status, version.unwrap_or_default(), content(&body))
}

/// The version each of `users` meets (one turn each, eight at a time).
async fn versions_met(gw: &TestGateway, users: &[String]) -> HashMap<String, String> {
    let client = reqwest::Client::new();
    futures::stream::iter(users)
        .map(|user| {
            let client = &client;
            async move {
                let (status, version, _) = turn(client, gw, Some(user), "hi").await;
                assert_eq!(status, 200);
                (user.clone(), version)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

#[tokio::test]
async fn weight_50_splits_sessions_evenly_and_a_session_never_moves() {
    let gw = TestGateway::start(&config(r#"prefix: "canary:""#));
    let (status, started) = put_rollout(&gw, json!({"candidate": {"component": faults_b64()}, "weight": 50})).await;
    assert_eq!(status, 200, "{started}");
    let (stable, candidate) = (sha256_of(ECHO_WASM), sha256_of(FAULTS_WASM));
    assert_eq!((started["state"].as_str(), started["sticky"].as_str()), (Some("running"), Some("session")));
    assert_eq!((&started["stable"]["digest"], &started["candidate"]["digest"]), (&json!(stable), &json!(candidate)));

    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let first = versions_met(&gw, &users).await;
    let on_candidate = first.values().filter(|v| **v == candidate).count();
    assert_eq!(first.values().filter(|v| **v == stable).count() + on_candidate, 1000, "every run names its version");
    assert!((450..=550).contains(&on_candidate), "{on_candidate} of 1000 sessions met the candidate at weight 50");

    // Each session's later turns meet the version its first did, and the
    // reply is that version's (the candidate prefixes, echo does not).
    let again = versions_met(&gw, &users[..200]).await;
    for (user, version) in &again {
        assert_eq!(version, &first[user], "{user} moved");
    }
    let client = reqwest::Client::new();
    let someone_on_candidate = users.iter().find(|u| first[*u] == candidate).unwrap();
    assert_eq!(turn(&client, &gw, Some(someone_on_candidate), "again").await.2, "canary:again");

    // Requests without a session are split by weight run by run.
    let mut stateless = HashMap::<String, usize>::new();
    for _ in 0..200 {
        *stateless.entry(turn(&client, &gw, None, "hi").await.1).or_default() += 1;
    }
    let c = stateless.get(&candidate).copied().unwrap_or(0);
    assert!((50..=150).contains(&c), "{c} of 200 stateless runs met the candidate: {stateless:?}");

    // The counts, per version, here and in the metrics.
    let now = rollout(&gw).await;
    let runs = |role: &str| now[role]["runs"].as_u64().unwrap();
    assert_eq!(runs("stable") + runs("candidate"), 1000 + 200 + 1 + 200, "{now}");
    assert_eq!(runs("candidate") as usize, on_candidate + again.values().filter(|v| **v == candidate).count() + 1 + c);
    assert!(now["candidate"]["p95Ms"].as_f64().unwrap() > 0.0);
    let metrics = gw.metrics().await;
    let line = format!(
        r#"wasmclaw_rollout_runs_total{{agent="main",version="{candidate}",role="candidate"}} {}"#,
        runs("candidate")
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    assert_eq!(metrics.matches("wasmclaw_rollout_runs_total{").count(), 2, "one series per version only");
}

#[tokio::test]
async fn weight_0_serves_only_stable_and_weight_100_only_the_candidate() {
    let gw = TestGateway::start(&config(""));
    let (stable, candidate) = (sha256_of(ECHO_WASM), sha256_of(FAULTS_WASM));
    let client = reqwest::Client::new();
    let (status, body) = put_rollout(&gw, json!({"candidate": {"component": faults_b64()}, "weight": 0})).await;
    assert_eq!(status, 200, "{body}");
    for i in 0..60 {
        let user = format!("u{i}");
        assert_eq!(turn(&client, &gw, Some(&user), "hi").await.1, stable);
        assert_eq!(turn(&client, &gw, None, "hi").await.1, stable);
    }
    // The same candidate again widens the rollout: same id, counts kept.
    let (status, widened) = put_rollout(&gw, json!({"candidate": {"digest": candidate}, "weight": 100})).await;
    assert_eq!(status, 200, "{widened}");
    assert_eq!(widened["id"], body["id"], "widening keeps the rollout");
    assert_eq!(widened["stable"]["runs"], 120);
    for i in 0..60 {
        let user = format!("u{i}");
        assert_eq!(turn(&client, &gw, Some(&user), "hi").await, (200, candidate.clone(), "faults:hi".into()));
        assert_eq!(turn(&client, &gw, None, "hi").await.1, candidate);
    }
    let now = rollout(&gw).await;
    assert_eq!((now["stable"]["runs"].as_u64(), now["candidate"]["runs"].as_u64()), (Some(120), Some(120)));
}

#[tokio::test]
async fn a_failing_candidate_is_rolled_back_after_min_runs_and_stable_serves_everyone() {
    let gw = TestGateway::start(&config(r#"fault: "failed""#));
    let mut watcher = Client::connect(&gw).await;
    let body = json!({"candidate": {"component": faults_b64()}, "weight": 50, "sticky": "none",
                      "autoRollback": {"minRuns": 5, "maxErrorRate": 0.5}});
    let (status, started) = put_rollout(&gw, body).await;
    assert_eq!(status, 200, "{started}");
    let client = reqwest::Client::new();
    let (stable, candidate) = (sha256_of(ECHO_WASM), sha256_of(FAULTS_WASM));

    let mut failures = 0;
    let ended = eventually("the candidate rolled back", async || {
        let (status, version, _) = turn(&client, &gw, None, "hi").await;
        if status != 200 {
            assert_eq!(version, candidate, "only the candidate fails");
            failures += 1;
        }
        let now = rollout(&gw).await;
        (now["state"] == "rolledBack").then_some(now)
    })
    .await;
    assert_eq!(ended["candidate"]["runs"], 5, "judged at minRuns: {ended}");
    assert_eq!((ended["candidate"]["errors"].as_u64(), failures), (Some(5), 5));
    let reason = ended["reason"].as_str().unwrap();
    assert!(reason.contains("autoRollback.maxErrorRate 0.5"), "{reason}");
    let changed =
        watcher.until(|f| f["event"] == "agents.changed" && f["payload"]["action"] == "rollout-rolled-back").await;
    assert_eq!(changed["payload"]["id"], "main");
    let log = gw.wait_for_log("the rollback logged", |log| log.contains("rollout rolled back")).await;
    assert!(log.lines().any(|l| l.contains("rollout rolled back") && l.contains("WARN")), "{log}");

    // Steady state: every run meets stable, the candidate's count stays put,
    // and a rolled-back rollout cannot be promoted.
    let until = Instant::now() + Duration::from_secs(2);
    holds_until("every run meets stable after the rollback", until, async || {
        turn(&client, &gw, None, "hi").await == (200, stable.clone(), "hi".into())
    })
    .await;
    assert_eq!(rollout(&gw).await["candidate"]["runs"], 5);
    let res = admin(&gw, reqwest::Method::POST, "/main/rollout/promote").send().await.unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(error_fields(&res.json().await.unwrap()).1.as_deref(), Some("rollout_not_running"));
}

#[tokio::test]
async fn a_slow_candidate_is_rolled_back_on_its_p95() {
    let gw = TestGateway::start(&config(r#"fault: "slow", delayMs: "500""#));
    let body = json!({"candidate": {"component": faults_b64()}, "weight": 50, "sticky": "none",
                      "autoRollback": {"minRuns": 5, "maxP95Ratio": 3}});
    assert_eq!(put_rollout(&gw, body).await.0, 200);
    let client = reqwest::Client::new();
    let ended = eventually("the slow candidate rolled back", async || {
        assert_eq!(turn(&client, &gw, None, "hi").await.0, 200, "slow is not failed");
        let now = rollout(&gw).await;
        (now["state"] == "rolledBack").then_some(now)
    })
    .await;
    assert!(ended["reason"].as_str().unwrap().contains("autoRollback.maxP95Ratio 3"), "{ended}");
    assert_eq!(ended["candidate"]["errors"], 0);
    assert!(ended["candidate"]["p95Ms"].as_f64().unwrap() >= 500.0, "{ended}");
}

#[tokio::test]
async fn promote_makes_the_candidate_current_and_delete_leaves_stable_serving() {
    let gw = TestGateway::start(&config(""));
    let (stable, candidate) = (sha256_of(ECHO_WASM), sha256_of(FAULTS_WASM));
    let client = reqwest::Client::new();

    // Ended: stable keeps serving, and there is no rollout to read.
    assert_eq!(put_rollout(&gw, json!({"candidate": {"component": faults_b64()}, "weight": 100})).await.0, 200);
    assert_eq!(turn(&client, &gw, None, "hi").await.1, candidate);
    assert_eq!(admin(&gw, reqwest::Method::DELETE, "/main/rollout").send().await.unwrap().status(), 200);
    assert_eq!(turn(&client, &gw, None, "hi").await, (200, stable.clone(), "hi".into()));
    let res = admin(&gw, reqwest::Method::GET, "/main/rollout").send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(error_fields(&res.json().await.unwrap()).1.as_deref(), Some("rollout_not_found"));

    // Promoted: the candidate serves everyone and the old current is the rollback target.
    let (status, _) = put_rollout(&gw, json!({"candidate": {"digest": candidate}, "weight": 10})).await;
    assert_eq!(status, 200, "the candidate's bytes are kept: its digest is enough");
    let res = admin(&gw, reqwest::Method::POST, "/main/rollout/promote").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let promoted: Value = res.json().await.unwrap();
    assert_eq!(promoted["state"], "promoted");
    assert_eq!((&promoted["stable"]["digest"], &promoted["candidate"]["digest"]), (&json!(stable), &json!(candidate)));
    for _ in 0..20 {
        assert_eq!(turn(&client, &gw, None, "hi").await, (200, candidate.clone(), "faults:hi".into()));
    }
    let agent = gw.get_json("/admin/agents/main").await;
    assert_eq!(format!("sha256:{}", agent["digest"].as_str().unwrap()), candidate);
    assert_eq!(format!("sha256:{}", agent["previous"]["digest"].as_str().unwrap()), stable);
    assert_eq!(admin(&gw, reqwest::Method::POST, "/main/rollback").send().await.unwrap().status(), 200);
    assert_eq!(turn(&client, &gw, None, "hi").await.1, stable, "rolled back as after an install");
}

#[tokio::test]
async fn bad_rollout_requests_say_which_field() {
    let gw = TestGateway::start(&config(""));
    let b64 = faults_b64();
    let cases = [
        (json!({"candidate": {"component": b64}, "weight": 101}), 400, "weight"),
        (json!({"candidate": {"component": b64}, "weight": 5, "shadow": {"sample": 1.5}}), 400, "shadow.sample"),
        (json!({"candidate": {}, "weight": 5}), 400, "candidate"),
        (json!({"candidate": {"digest": "sha256:xyz"}, "weight": 5}), 400, "candidate.digest"),
        (
            json!({"candidate": {"component": b64}, "weight": 5, "autoRollback": {"maxErrorRate": 2}}),
            400,
            "autoRollback.maxErrorRate",
        ),
        (json!({"candidate": {"component": b64}, "weight": 5, "sticky": "forever"}), 400, "sticky"),
    ];
    for (body, status, param) in cases {
        let (got, answer) = put_rollout(&gw, body).await;
        assert_eq!((got, error_fields(&answer).2.as_deref()), (status, Some(param)), "{answer}");
    }
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (status, answer) = put_rollout(&gw, json!({"candidate": {"digest": unknown}, "weight": 5})).await;
    assert_eq!((status, error_fields(&answer).1.as_deref()), (404, Some("component_not_found")), "{answer}");
    let echo = base64::engine::general_purpose::STANDARD.encode(std::fs::read(ECHO_WASM).unwrap());
    let (status, answer) = put_rollout(&gw, json!({"candidate": {"component": echo}, "weight": 5})).await;
    assert_eq!(status, 400, "the stable version is no candidate: {answer}");
    // A shadow of nothing is accepted: it asks for no shadow runs.
    let body = json!({"candidate": {"component": b64}, "weight": 5, "shadow": {"sample": 0}});
    assert_eq!(put_rollout(&gw, body).await.0, 200);
    let reader = reqwest::Client::new().post(gw.url("/admin/agents/main/rollout/promote")).send().await.unwrap();
    assert_eq!(reader.status(), 401, "rollouts need the admin credential");
}

#[tokio::test]
async fn a_rollout_survives_a_restart_and_sessions_keep_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<String> = (0..40).map(|i| format!("kept-{i}")).collect();
    let (id, before) = {
        let gw = TestGateway::start_in(dir.path(), &config(""));
        let (status, started) = put_rollout(&gw, json!({"candidate": {"component": faults_b64()}, "weight": 50})).await;
        assert_eq!(status, 200);
        (started["id"].clone(), versions_met(&gw, &users).await)
    };
    let gw = TestGateway::start_in(dir.path(), &config(""));
    let now = rollout(&gw).await;
    assert_eq!((&now["id"], now["state"].as_str(), now["weight"].as_u64()), (&id, Some("running"), Some(50)));
    assert_eq!(versions_met(&gw, &users).await, before, "sessions met the same versions after the restart");
}

#[tokio::test]
async fn a_rollout_from_config_and_from_the_cli() {
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  agents: {{ entries: {{
    main: {{ plugin: "echo", rollout: {{ plugin: "{FAULTS_WASM}", weight: 100 }} }},
    other: {{ plugin: "echo" }},
  }} }} }}"#
    );
    let gw = TestGateway::start(&config);
    let client = reqwest::Client::new();
    assert_eq!(turn(&client, &gw, None, "hi").await.2, "faults:hi");
    assert_eq!(rollout(&gw).await["source"], "config");

    let out = cli(gw.state_dir())
        .args(["agents", "rollout", "other", FAULTS_WASM, "--weight", "100", "--url", &gw.base])
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("running") && printed.contains("100"), "{printed}");
    let res = gw.chat(ask("agent:other", "hi")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "faults:hi");

    // Dropping the key from the entry ends the rollout the config started;
    // the one started through the API stays.
    std::fs::write(
        gw.state_dir().join("gateway.json5"),
        config.replace(&format!(r#", rollout: {{ plugin: "{FAULTS_WASM}", weight: 100 }}"#), ""),
    )
    .unwrap();
    eventually("the config's rollout ended", async || {
        let res = admin(&gw, reqwest::Method::GET, "/main/rollout").send().await.unwrap();
        (res.status() == 404).then_some(())
    })
    .await;
    assert_eq!(turn(&client, &gw, None, "hi").await.2, "hi");
    let other = admin(&gw, reqwest::Method::GET, "/other/rollout").send().await.unwrap();
    assert_eq!(other.json::<Value>().await.unwrap()["state"], "running");
}

#[tokio::test]
async fn a_rollout_and_its_rollback_reach_every_instance_on_postgresql() {
    let server = pg::Server::start();
    let url = server.database().await;
    let instance = || {
        TestGateway::start_with(
            &config(r#"fault: "failed""#),
            &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", &url)],
        )
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    };
    let (a, b) = (instance(), instance());
    let candidate = sha256_of(FAULTS_WASM);
    let body = json!({"candidate": {"component": faults_b64()}, "weight": 100,
                      "autoRollback": {"minRuns": 3, "maxErrorRate": 0.5}});
    let (status, started) = put_rollout(&a, body).await;
    assert_eq!(status, 200, "{started}");
    let client = reqwest::Client::new();
    // B routes the same way: the same rollout, so a session meets the same version there.
    let seen = eventually("B serving the rollout", async || {
        let res = admin(&b, reqwest::Method::GET, "/main/rollout").send().await.unwrap();
        if res.status() != 200 {
            return None;
        }
        Some(res.json::<Value>().await.unwrap())
    })
    .await;
    assert_eq!(seen["id"], started["id"]);
    // The candidate fails on B; B rolls it back, and A follows.
    for _ in 0..3 {
        assert_eq!(turn(&client, &b, Some("someone"), "hi").await.1, candidate);
    }
    let on_a = eventually("A following B's rollback", async || {
        let now = rollout(&a).await;
        (now["state"] == "rolledBack").then_some(now)
    })
    .await;
    assert!(on_a["reason"].as_str().unwrap().contains("maxErrorRate"), "{on_a}");
    assert_eq!(on_a["candidate"]["runs"], 0, "counts are per instance");
    assert_eq!(turn(&client, &a, Some("someone"), "hi").await, (200, sha256_of(ECHO_WASM), "hi".into()));
    // And one that survives both instances: a third starting now serves it as it stands.
    drop((a, b));
    let c = instance();
    assert_eq!(rollout(&c).await["state"], "rolledBack");
}

#[tokio::test]
async fn rollouts_over_the_websocket() {
    let gw = TestGateway::start(&config(""));
    let (mut admin, _) = Client::open(&gw).await;
    let mut params = connect_params(TOKEN);
    params["scopes"] = json!(["operator.admin"]);
    assert_eq!(admin.call("connect", params).await["ok"], true);
    let candidate = sha256_of(FAULTS_WASM);
    let res = admin
        .call("agents.rollout", json!({"agentId": "main", "candidate": {"component": faults_b64()}, "weight": 100}))
        .await;
    assert_eq!(
        (res["payload"]["state"].as_str(), res["payload"]["candidate"]["digest"].as_str()),
        (Some("running"), Some(candidate.as_str())),
        "{res}"
    );
    let changed = admin.until(|f| f["event"] == "agents.changed").await;
    assert_eq!(changed["payload"]["action"], "rollout-started");
    let client = reqwest::Client::new();
    assert_eq!(turn(&client, &gw, None, "hi").await.1, candidate);
    let res = admin.call("agents.rollout.get", json!({"agentId": "main"})).await;
    assert_eq!(res["payload"]["candidate"]["runs"], 1, "{res}");
    let res = admin.call("agents.rollout", json!({"agentId": "main", "candidate": {}, "weight": 5})).await;
    assert_eq!(res["ok"], false, "a bad request is refused: {res}");
    assert!(res["error"]["message"].as_str().unwrap().contains("candidate"), "{res}");
    let res = admin.call("agents.rollout.promote", json!({"agentId": "main"})).await;
    assert_eq!(res["payload"]["state"], "promoted", "{res}");
    let res = admin.call("agents.rollout.end", json!({"agentId": "main"})).await;
    assert_eq!(res["payload"]["ended"], true, "{res}");
    let res = admin.call("agents.rollout.get", json!({"agentId": "main"})).await;
    assert_eq!(res["ok"], false, "no rollout once ended: {res}");
    assert_eq!(turn(&client, &gw, None, "hi").await.1, candidate, "the promoted candidate stays current");
}
