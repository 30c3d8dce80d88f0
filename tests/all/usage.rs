//! Usage metered by the host (issue 25): what clients get as `usage` is the
//! sum of the run's model calls as the provider reported them, whatever the
//! agent claims; prices turn it into cost; the metrics count both.

use crate::support::*;
use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

/// `liar` calls the model `calls` times and then claims 999999/888888
/// tokens; `quiet` calls twice and claims nothing; `main` is the assistant.
/// `small` is priced, so cost can be checked to the last digit.
fn config(mock: &MockProvider) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }}, responses: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}", models: {{
    small: {{ price: {{ inputPerMTok: 0.1, outputPerMTok: 0.2, cachedInputPerMTok: 0.05 }} }},
  }} }} }},
  agents: {{ entries: {{
    main: {{ plugin: "assistant", provider: "mock", model: "small" }},
    liar: {{ plugin: "{FAULTS_WASM}", provider: "mock", model: "small", config: {{ fault: "usage-lie" }} }},
    quiet: {{ plugin: "{FAULTS_WASM}", provider: "mock", model: "small",
             config: {{ fault: "usage-lie", calls: "2", claim: "none" }} }},
  }} }},
}}"#,
        mock.url()
    )
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body
}

/// The JSON `data:` payloads of an SSE body (with or without `event:`
/// lines), `[DONE]` left out.
async fn payloads(res: reqwest::Response) -> Vec<Value> {
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

fn responses(gw: &TestGateway, body: Value) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(gw.url("/v1/responses")).bearer_auth(TOKEN).json(&body)
}

#[tokio::test]
async fn a_guest_claiming_usage_changes_nothing_clients_see() {
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["fine"]).with_usage(7, 2));
    let gw = TestGateway::start(&config(&mock));
    let want = json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9});

    let body: Value = gw.chat(ask("openclaw:liar", "hi")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&body), "fine");
    assert_eq!(body["usage"], want, "chat, whole: the provider's figures, not the agent's claim");

    let chunks = payloads(gw.chat(streamed(ask("openclaw:liar", "hi"))).send().await.unwrap()).await;
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], want, "chat, streamed");

    let body: Value =
        responses(&gw, json!({"model": "openclaw:liar", "input": "hi"})).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["usage"]["input_tokens"], 7, "responses, whole: {body}");
    assert_eq!(body["usage"]["output_tokens"], 2);

    let events = payloads(
        responses(&gw, json!({"model": "openclaw:liar", "input": "hi", "stream": true})).send().await.unwrap(),
    )
    .await;
    let done = events.iter().find(|e| e["type"] == "response.completed").expect("a response.completed event");
    assert_eq!(done["response"]["usage"]["input_tokens"], 7, "responses, streamed: {done}");
    assert_eq!(done["response"]["usage"]["total_tokens"], 9);

    let legacy: Value = reqwest::Client::new()
        .post(gw.url("/v1/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "openclaw:liar", "prompt": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["usage"], want, "legacy completions: {legacy}");

    // Five runs of 7 input tokens each.
    let metrics = gw
        .wait_for_metrics(&[
            r#"wasmclaw_llm_tokens_total{kind="input",agent="liar",model="small",provider="mock",token="operator"} 35"#,
        ])
        .await;
    // Only the model counters: other series (durations, bytes) may hold any digits.
    let llm: Vec<&str> = metrics.lines().filter(|l| l.starts_with("wasmclaw_llm_")).collect();
    assert!(
        !llm.iter().any(|l| l.contains("999999") || l.contains("888888")),
        "the claim reaches no counter:\n{llm:#?}"
    );
}

#[tokio::test]
async fn a_runs_usage_is_the_sum_of_its_model_calls() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["first"]).with_usage(7, 2));
    mock.push(Reply::text(&["second"]).with_usage(5, 3));
    let gw = TestGateway::start(&config(&mock));
    let body: Value = gw.chat(ask("openclaw:quiet", "hi")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&body), "second");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}),
        "both calls, though the agent reported neither"
    );
}

#[tokio::test]
async fn a_call_without_usage_is_counted_unmetered_not_guessed() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["no", " figures"]).without_usage());
    let gw = TestGateway::start(&config(&mock));
    let body: Value = gw.chat(ask("openclaw:main", "hi")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&body), "no figures");
    assert_eq!(body["usage"], json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}));
    let metrics = gw
        .wait_for_metrics(&[
            r#"wasmclaw_llm_calls_unmetered_total{agent="main",model="small",provider="mock",token="operator"} 1"#,
        ])
        .await;
    assert!(!metrics.contains(r#"wasmclaw_llm_tokens_total{kind="input",agent="main""#), "{metrics}");
    let log = gw.wait_for_log("the unmetered call", |l| l.contains("recorded unmetered")).await;
    assert!(log.contains("stream_options.include_usage"), "the log says what to look at:\n{log}");
    // The ledger shows the call as unmetered, with no tokens made up for it.
    let row = eventually("the run in the ledger", async || {
        let body = gw.get_json("/usage?groupBy=agent").await;
        body["usage"].as_array().and_then(|rows| rows.first().cloned())
    })
    .await;
    assert_eq!(
        (&row["agent"], &row["llmCalls"], &row["unmeteredCalls"], &row["inputTokens"], &row["costUsd"]),
        (&json!("main"), &json!(1), &json!(1), &json!(0), &json!(0)),
        "{row}"
    );
}

#[tokio::test]
async fn prices_add_up_exactly_in_the_metrics() {
    let mock = MockProvider::start();
    // $0.1 + $0.2 a run at a million tokens each way; three runs are $0.9
    // exactly, where a float sum says 0.8999999999999999.
    mock.set_default(Reply::text(&["priced"]).with_usage(1_000_000, 1_000_000));
    let gw = TestGateway::start(&config(&mock));
    for _ in 0..3 {
        let res = gw.chat(ask("openclaw:main", "hi")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    gw.wait_for_metrics(&[
        r#"wasmclaw_llm_cost_usd_total{agent="main",model="small",token="operator"} 0.9"#,
        r#"wasmclaw_llm_tokens_total{kind="output",agent="main",model="small",provider="mock",token="operator"} 3000000"#,
    ])
    .await;

    // Cached prompt tokens are counted apart and priced at their own rate.
    mock.set_default(Reply::text(&["cached"]).with_details(2, 0));
    let body: Value = gw.chat(ask("openclaw:main", "one two three four")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&body), "cached");
    gw.wait_for_metrics(&[
        r#"wasmclaw_llm_tokens_total{kind="cached_input",agent="main",model="small",provider="mock",token="operator"} 2"#,
    ])
    .await;
}

#[tokio::test]
async fn a_model_the_operator_did_not_price_or_name_is_labelled_other() {
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["ok"]).with_usage(3, 1));
    let config = config(&mock).replace(
        r#"main: { plugin: "assistant", provider: "mock", model: "small" }"#,
        r#"main: { plugin: "assistant", provider: "mock", model: "small", allowModelOverride: true }"#,
    );
    assert!(config.contains("allowModelOverride"));
    let gw = TestGateway::start(&config);
    let res = gw.chat(ask("openclaw:main", "hi")).header("x-openclaw-model", "client-chosen-9f1").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(mock.requests()[0].body["model"], "client-chosen-9f1");
    let metrics = gw
        .wait_for_metrics(&[
            r#"wasmclaw_llm_tokens_total{kind="input",agent="main",model="other",provider="mock",token="operator"} 3"#,
        ])
        .await;
    assert!(!metrics.contains("client-chosen-9f1"), "a client's model name never becomes a label");
}

const ALICE: &str = "alice-token-3c1f";
const BOB: &str = "bob-token-88e2";

/// `alice` and `bob` may read and run; `ops` is an unrestricted admin.
fn ledger_config(mock: &MockProvider) -> String {
    config(mock).replace(
        "gateway: {",
        &format!(
            r#"gateway: {{ auth: {{ mode: "token", tokens: [
      {{ name: "alice", token: "{ALICE}", scopes: ["operator.read", "operator.write"] }},
      {{ name: "bob", token: "{BOB}", scopes: ["operator.read", "operator.write"] }},
    ] }},"#
        ),
    )
}

async fn usage_of(gw: &TestGateway, token: &str, query: &str) -> Value {
    let res = reqwest::Client::new().get(gw.url(&format!("/usage{query}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.unwrap()
}

async fn run_as(gw: &TestGateway, token: &str, model: &str) {
    let res = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&ask(model, "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_ledger_sums_runs_by_agent_token_model_and_day_and_each_token_sees_its_own() {
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["ok"]).with_usage(1_000_000, 1_000_000));
    let gw = TestGateway::start(&ledger_config(&mock));
    for _ in 0..2 {
        run_as(&gw, ALICE, "openclaw:main").await;
    }
    run_as(&gw, BOB, "openclaw:main").await;
    // The liar claims a million times more; the ledger keeps the provider's figures.
    run_as(&gw, BOB, "openclaw:liar").await;

    // Writes are batched after the run: wait for all four runs.
    let by_token = eventually("four runs in the ledger", async || {
        let body = usage_of(&gw, TOKEN, "?groupBy=token").await;
        let runs: u64 = body["usage"].as_array()?.iter().map(|r| r["runs"].as_u64().unwrap()).sum();
        (runs == 4).then_some(body)
    })
    .await;
    let row = |token: &str, runs: u64, cost: f64| {
        json!({"token": token, "inputTokens": runs * 1_000_000, "outputTokens": runs * 1_000_000,
               "cachedInputTokens": 0, "reasoningTokens": 0, "costUsd": cost, "runs": runs,
               "llmCalls": runs, "unmeteredCalls": 0})
    };
    // $0.1 + $0.2 per run, summed exactly (a float sum of three says 0.9000000000000001).
    assert_eq!(by_token["usage"], json!([row("alice", 2, 0.6), row("bob", 2, 0.6)]));

    let by_agent = usage_of(&gw, TOKEN, "?groupBy=agent").await;
    let agents: Vec<(&str, u64)> = by_agent["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["agent"].as_str().unwrap(), r["runs"].as_u64().unwrap()))
        .collect();
    assert_eq!(agents, [("liar", 1), ("main", 3)]);
    let by_model = usage_of(&gw, TOKEN, "?groupBy=model").await;
    assert_eq!(by_model["usage"][0]["model"], "small");
    assert_eq!(by_model["usage"][0]["costUsd"], json!(1.2));
    let by_day = usage_of(&gw, TOKEN, "?groupBy=day").await;
    let day = by_day["usage"][0]["day"].as_str().unwrap().to_string();
    assert_eq!(by_day["usage"].as_array().unwrap().len(), 1, "{by_day}");
    assert_eq!(day.len(), 10, "YYYY-MM-DD: {day}");
    // A range that ends before today holds nothing; one that names today holds all.
    assert_eq!(usage_of(&gw, TOKEN, "?groupBy=day&to=2000-01-01").await["usage"], json!([]));
    let today = usage_of(&gw, TOKEN, &format!("?groupBy=day&from={day}&to={day}")).await;
    assert_eq!(today["usage"][0]["runs"], 4);

    // A token sees its own rows only.
    let alice = usage_of(&gw, ALICE, "?groupBy=token").await;
    assert_eq!(alice["usage"], json!([row("alice", 2, 0.6)]));
    let alice_agents = usage_of(&gw, ALICE, "?groupBy=agent").await;
    assert_eq!(alice_agents["usage"].as_array().unwrap().len(), 1, "{alice_agents}");

    // Bad parameters get the OpenAI error shape, naming the parameter.
    let res = reqwest::Client::new().get(gw.url("/usage?groupBy=planet")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["param"], "groupBy", "{body}");
    let res = reqwest::Client::new().get(gw.url("/usage")).send().await.unwrap();
    assert_eq!(res.status(), 401, "operator.read is needed");

    // The WebSocket method answers the same, under the same rule.
    let (mut ws, _) = Client::open(&gw).await;
    let hello = ws.call("connect", connect_params(ALICE)).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let answer = ws.call("usage.get", json!({"groupBy": "token"})).await;
    assert_eq!(answer["payload"]["usage"], alice["usage"], "{answer}");
}

#[tokio::test]
async fn usage_still_queued_at_a_graceful_shutdown_reaches_the_ledger() {
    let mock = MockProvider::start();
    mock.set_default(Reply::text(&["fine"]).with_usage(7, 2));
    let dir = tempfile::tempdir().unwrap();
    let mut gw = TestGateway::start_in(dir.path(), &config(&mock));
    for _ in 0..3 {
        let body: Value = gw.chat(ask("openclaw:main", "hi")).send().await.unwrap().json().await.unwrap();
        assert_eq!(content(&body), "fine");
    }
    // At once: the ledger's writer gathers rows for 50 ms, a shutdown may take less.
    gw.terminate();
    let status = gw.wait_exit(std::time::Duration::from_secs(30)).expect("the gateway exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let gw = TestGateway::start_in(dir.path(), &config(&mock));
    let row = eventually("the three runs in the ledger", async || {
        let body = gw.get_json("/usage?groupBy=agent").await;
        body["usage"].as_array().and_then(|rows| rows.first().cloned()).filter(|row| row["runs"] == 3)
    })
    .await;
    assert_eq!((&row["agent"], &row["inputTokens"]), (&json!("main"), &json!(21)), "{row}");
}
