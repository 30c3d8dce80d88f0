//! Budgets that block (issue 25): a token's or an agent's budget refuses the
//! run that finds it spent, with 429 `budget_exceeded`, `Retry-After` at the
//! window's reset and the budget's name; runs in flight count by their
//! reservations; on PostgreSQL two instances share the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::pg;
use crate::support::*;

const CI_TOKEN: &str = "ci-token-51d0e7";

/// `ci` may spend 20 tokens a day; the agent `paid` $0.00002 in total, at
/// $1 per million tokens either way (10 tokens a run = $0.00001).
fn config(mock: &MockProvider) -> String {
    format!(
        r#"{{
  gateway: {{
    auth: {{ mode: "token", tokens: [
      {{ name: "ci", token: "{CI_TOKEN}", scopes: ["operator.read", "operator.write"],
         budget: {{ tokens: 20, window: "day", timezone: "UTC" }} }},
    ] }},
    http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }},
  }},
  providers: {{ mock: {{ baseUrl: "{}", models: {{ small: {{ price: {{ inputPerMTok: 1, outputPerMTok: 1 }} }} }} }} }},
  agents: {{ entries: {{
    main: {{ plugin: "assistant", provider: "mock", model: "small" }},
    paid: {{ plugin: "assistant", provider: "mock", model: "small", budget: {{ usd: 0.00002, window: "total" }} }},
  }} }},
}}"#,
        mock.url()
    )
}

/// A small request: it reserves 5 tokens, not the default 1024.
fn small(model: &str) -> Value {
    json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

async fn send(gw: &TestGateway, token: &str, body: Value) -> (u16, Value, Option<String>) {
    let res = reqwest::Client::new().post(gw.url("/v1/chat/completions")).bearer_auth(token).json(&body).send().await;
    let res = res.unwrap();
    let status = res.status().as_u16();
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, res.json().await.unwrap(), retry)
}

fn assert_refused(answer: &(u16, Value, Option<String>), budget: &str) {
    let (status, body, _) = answer;
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(budget), "the budget is named: {message}");
}

#[tokio::test]
async fn a_token_budget_refuses_the_run_that_finds_it_spent() {
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["ok"]).with_usage(7, 3));
    let gw = TestGateway::start(&config(&mock));
    for run in 1..=2 {
        let (status, body, _) = send(&gw, CI_TOKEN, small("openclaw:main")).await;
        assert_eq!(status, 200, "run {run} fits (10 of 20 tokens each): {body}");
    }
    let refused = send(&gw, CI_TOKEN, small("openclaw:main")).await;
    assert_refused(&refused, "token:ci");
    let message = refused.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("gateway.auth.tokens[0].budget"), "names the key to raise: {message}");
    let retry: u64 = refused.2.as_deref().expect("Retry-After at the day's end").parse().unwrap();
    assert!((1..=86_400).contains(&retry), "the window resets within a day: {retry}");
    assert_eq!(mock.requests().len(), 2, "the refused run never reached the provider");
    // The steady state: it stays refused, and another principal is not affected.
    assert_refused(&send(&gw, CI_TOKEN, small("openclaw:main")).await, "token:ci");
    let (status, _, _) = send(&gw, TOKEN, small("openclaw:main")).await;
    assert_eq!(status, 200, "the main secret has no budget");

    // The WebSocket door refuses the same way, with the same code.
    let (mut ws, _) = Client::open(&gw).await;
    let hello = ws.call("connect", connect_params(CI_TOKEN)).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let id = ws.request("agent", Some(json!({"message": "hi", "agentId": "main"}))).await;
    ws.response(&id).await;
    let done = ws.response(&id).await;
    assert_eq!(done["payload"]["status"], "error", "{done}");
    assert_eq!(done["payload"]["error"]["code"], "budget_exceeded", "{done}");
    assert!(done["payload"]["summary"].as_str().unwrap().contains("token:ci"), "{done}");
    assert_eq!(mock.requests().len(), 3, "only the main secret's run reached the provider");
}

#[tokio::test]
async fn an_agent_budget_in_dollars_refuses_whoever_asks() {
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["ok"]).with_usage(7, 3));
    let gw = TestGateway::start(&config(&mock));
    assert_eq!(send(&gw, TOKEN, small("openclaw:paid")).await.0, 200);
    // A second principal spends the rest: the budget is the agent's.
    assert_eq!(send(&gw, CI_TOKEN, small("openclaw:paid")).await.0, 200);
    let refused = send(&gw, TOKEN, small("openclaw:paid")).await;
    assert_refused(&refused, "agent:paid");
    assert_eq!(refused.2, None, "a total budget never resets: no Retry-After");
    assert_eq!(send(&gw, TOKEN, small("openclaw:main")).await.0, 200, "other agents run on");
}

#[tokio::test]
async fn runs_in_flight_count_by_their_reservations() {
    let mock = MockProvider::start();
    let gate = Arc::new(AtomicBool::new(false));
    mock.set_default(Reply::text(&["ok"]).with_usage(2, 1).with_gate(gate.clone()));
    let gw = Arc::new(TestGateway::start(&config(&mock)));
    // Each reserves 8 of ci's 20 tokens: the third still starts (16 < 20),
    // the fourth finds 24 reserved and is refused while they run.
    let reserving = |gw: Arc<TestGateway>| async move {
        let mut body = small("openclaw:main");
        body["max_tokens"] = json!(8);
        send(&gw, CI_TOKEN, body).await
    };
    let running: Vec<_> = (0..3).map(|_| tokio::spawn(reserving(gw.clone()))).collect();
    eventually("three runs at the provider", async || (mock.requests().len() == 3).then_some(())).await;
    assert_refused(&reserving(gw.clone()).await, "token:ci");
    gate.store(true, Ordering::SeqCst);
    for run in running {
        let (status, body, _) = run.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Settled to what they used (3 tokens each): 9 of 20 spent, room again.
    let (status, body, _) = reserving(gw.clone()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_restart_on_sqlite_keeps_what_was_spent_and_forgets_what_was_held() {
    let mock = MockProvider::start();
    let gate = Arc::new(AtomicBool::new(false));
    // The first run holds 15 of ci's 20 tokens and never finishes while its process lives.
    mock.push(Reply::text(&["late"]).with_usage(1, 1).with_gate(gate));
    mock.set_default(Reply::text(&["ok"]).with_usage(2, 1));
    let dir = tempfile::tempdir().unwrap();
    let mut gw = TestGateway::start_in(dir.path(), &config(&mock));
    let held = {
        let mut body = small("openclaw:main");
        body["max_tokens"] = json!(15);
        let request = reqwest::Client::new().post(gw.url("/v1/chat/completions")).bearer_auth(CI_TOKEN).json(&body);
        tokio::spawn(request.send())
    };
    eventually("the held run at the provider", async || (mock.requests().len() == 1).then_some(())).await;
    // 3 spent per run: 15 held + 3 spent + 3 spent = 21 refuses the third.
    for run in 1..=2 {
        let (status, body, _) = send(&gw, CI_TOKEN, small("openclaw:main")).await;
        assert_eq!(status, 200, "run {run}: {body}");
    }
    assert_refused(&send(&gw, CI_TOKEN, small("openclaw:main")).await, "token:ci");
    // What was spent is written with the ledger: once /usage has both runs, it is on disk.
    eventually("both runs in the ledger", async || {
        let body = gw.get_json("/usage?groupBy=token").await;
        let ci = body["usage"].as_array()?.iter().find(|r| r["token"] == "ci")?.clone();
        (ci["runs"] == 2).then_some(())
    })
    .await;
    gw.kill9();
    let _ = held.await;

    let gw = TestGateway::start_in(dir.path(), &config(&mock));
    let budget = eventually("ci's budget after the restart", async || {
        let body = gw.get_json("/usage").await;
        body["budgets"].as_array()?.iter().find(|x| x["name"] == "token:ci").cloned()
    })
    .await;
    assert_eq!((budget["spentTokens"].as_u64(), budget["reservedTokens"].as_u64()), (Some(6), Some(0)), "{budget}");
    // The dead process's hold is gone: a run reserving 8 fits beside the 6 spent.
    let mut body = small("openclaw:main");
    body["max_tokens"] = json!(8);
    let (status, answer, _) = send(&gw, CI_TOKEN, body).await;
    assert_eq!(status, 200, "{answer}");
    for _ in 0..3 {
        let (status, answer, _) = send(&gw, CI_TOKEN, small("openclaw:main")).await;
        assert_eq!(status, 200, "{answer}");
    }
    // 6 + 4 × 3 = 18 spent: one more fits (18 < 20), then the budget is spent for good.
    assert_eq!(send(&gw, CI_TOKEN, small("openclaw:main")).await.0, 200);
    assert_refused(&send(&gw, CI_TOKEN, small("openclaw:main")).await, "token:ci");
}

#[tokio::test]
async fn two_instances_on_postgres_share_one_budget() {
    let db = pg::Server::start();
    let url = db.database().await;
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["ok"]).with_usage(7, 3));
    let start = || {
        TestGateway::start_with(&config(&mock), &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", &url)])
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    };
    let (a, b) = (start(), start());
    for gw in [&a, &b] {
        let (status, body, _) = send(gw, CI_TOKEN, small("openclaw:main")).await;
        assert_eq!(status, 200, "{body}\n{}", gw.log());
    }
    // 20 of 20 spent, half on each instance: both refuse.
    assert_refused(&send(&a, CI_TOKEN, small("openclaw:main")).await, "token:ci");
    assert_refused(&send(&b, CI_TOKEN, small("openclaw:main")).await, "token:ci");
    assert_eq!(mock.requests().len(), 2);
    // Either instance answers /usage for both.
    let usage = eventually("both runs in the shared ledger", async || {
        let body = b.get_json("/usage?groupBy=token").await;
        (body["usage"][0]["runs"] == 2).then_some(body)
    })
    .await;
    assert_eq!(usage["usage"][0]["token"], "ci", "{usage}");
    assert_eq!(usage["usage"][0]["outputTokens"], 6);
}

#[tokio::test]
async fn a_dead_instance_s_reservation_stops_counting_after_the_run_deadline() {
    let db = pg::Server::start();
    let url = db.database().await;
    let mock = MockProvider::start();
    // The first call never answers while its instance lives; later ones do.
    let never = Arc::new(AtomicBool::new(false));
    mock.push(Reply::text(&["late"]).with_usage(1, 1).with_gate(never));
    mock.set_default(Reply::text(&["ok"]).with_usage(2, 1));
    // `main`'s runs end within 2 s, so a reservation counts for 2 s plus the margin at most.
    let config = config(&mock).replace(
        r#"main: { plugin: "assistant", provider: "mock", model: "small" }"#,
        r#"main: { plugin: "assistant", provider: "mock", model: "small", limits: { timeoutMs: 2000 } }"#,
    );
    assert!(config.contains("timeoutMs"), "{config}");
    let start = || {
        TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", &url)])
            .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
    };
    let (mut a, b) = (start(), start());

    // A run on `a` reserves all 20 of ci's tokens, then `a` dies mid-run: it never settles.
    let all = |gw: &TestGateway| {
        let mut body = small("openclaw:main");
        body["max_tokens"] = json!(20);
        reqwest::Client::new().post(gw.url("/v1/chat/completions")).bearer_auth(CI_TOKEN).json(&body).send()
    };
    let doomed = tokio::spawn(all(&a));
    eventually("the run on a at the provider", async || (!mock.requests().is_empty()).then_some(())).await;
    a.kill9();
    let _ = doomed.await;
    assert_refused(&send(&b, CI_TOKEN, small("openclaw:main")).await, "token:ci");

    // Past the dead run's deadline and margin, b admits runs again (no sleep: asked until it does).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let admitted = loop {
        let answer = send(&b, CI_TOKEN, small("openclaw:main")).await;
        if answer.0 == 200 {
            break answer;
        }
        assert_refused(&answer, "token:ci");
        assert!(std::time::Instant::now() < deadline, "b still refuses a minute later:\n{}", b.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(admitted.1["choices"][0]["message"]["content"], "ok", "{}", admitted.1);
    let log = b.wait_for_log("the expiry logged", |log| log.contains("never settled")).await;
    assert!(log.lines().any(|l| l.contains("never settled") && l.contains("token:ci")), "{log}");

    // Steady state: nothing stays held, and only b's run counts as spent (3 tokens).
    let budget = eventually("no reservation held", async || {
        let body = b.get_json("/usage").await;
        let ci = body["budgets"].as_array()?.iter().find(|x| x["name"] == "token:ci")?.clone();
        (ci["reservedTokens"] == 0).then_some(ci)
    })
    .await;
    assert_eq!(budget["spentTokens"], 3, "{budget}");
}
