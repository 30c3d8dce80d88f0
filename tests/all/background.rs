//! Background responses (issue 27, item 4): the official `openai` SDK
//! creates, polls, resumes a stream it hung up on and cancels; the bounds
//! (runs per principal, event bytes kept) answer clearly; another token
//! gets 404.

use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

use crate::openai_sdk::run_sdk_script;
use crate::support::*;

/// `main` echoes, `slow` echoes a word per pause, `sleeper` never answers; `extra` goes
/// into `gateway.http.endpoints.responses`.
fn config(extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{
    auth: {{ mode: "token", tokens: [
      {{ name: "alice", tokenEnv: "ALICE_TOKEN", scopes: ["operator.write"] }},
      {{ name: "bob", tokenEnv: "BOB_TOKEN", scopes: ["operator.write"] }},
    ] }},
    http: {{ endpoints: {{ responses: {{ enabled: true, {extra} }} }} }},
  }},
  agents: {{ entries: {{
    main: {{ plugin: "echo" }},
    slow: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "slow", delayMs: "150" }} }},
    sleeper: {{ plugin: "{FAULTS_WASM}", config: {{ fault: "sleep" }} }},
  }} }},
}}"#
    )
}

const ALICE: &str = "alice-secret-1";
const BOB: &str = "bob-secret-2";

fn start(extra: &str) -> TestGateway {
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)];
    TestGateway::start_with(&config(extra), &env).unwrap_or_else(|log| panic!("gateway failed:\n{log}"))
}

async fn send(request: RequestBuilder) -> (u16, Value) {
    let res = request.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn create(gw: &TestGateway, token: &str, model: &str, input: &str) -> RequestBuilder {
    let body = json!({"model": model, "input": input, "background": true});
    Client::new().post(gw.url("/v1/responses")).bearer_auth(token).json(&body)
}

fn get(gw: &TestGateway, token: &str, path: &str) -> RequestBuilder {
    Client::new().get(gw.url(path)).bearer_auth(token)
}

fn cancel(gw: &TestGateway, token: &str, id: &str) -> RequestBuilder {
    Client::new().post(gw.url(&format!("/v1/responses/{id}/cancel"))).bearer_auth(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_creates_polls_resumes_and_cancels() {
    let gw = start("");
    let script_gw = &gw;
    tokio::task::block_in_place(|| run_sdk_script(script_gw, "background_check.py"));
    // The cancel reached the run, and nothing else failed.
    let metrics = gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="sleeper",kind="cancelled"} 1"#]).await;
    let failures: Vec<&str> = metrics.lines().filter(|l| l.starts_with("wasmclaw_run_failures_total{")).collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
}

#[tokio::test]
async fn background_responses_are_bounded_per_principal_and_their_owners_alone() {
    let gw = start("maxBackgroundPerPrincipal: 2");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = send(create(&gw, ALICE, "openclaw:sleeper", "zzz")).await;
        assert_eq!((status, &body["status"]), (200, &json!("in_progress")), "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (status, body) = send(create(&gw, ALICE, "openclaw:sleeper", "zzz")).await;
    assert_eq!((status, error_fields(&body).1.as_deref()), (429, Some("too_many_background_responses")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("maxBackgroundPerPrincipal"), "{body}");
    // Another principal has its own bound, and sees none of alice's.
    let (status, body) = send(create(&gw, BOB, "openclaw", "mine")).await;
    assert_eq!(status, 200, "{body}");
    for request in [
        get(&gw, BOB, &format!("/v1/responses/{}", ids[0])),
        get(&gw, BOB, &format!("/v1/responses/{}?stream=true&starting_after=0", ids[0])),
        cancel(&gw, BOB, &ids[0]),
        cancel(&gw, TOKEN, &ids[0]),
    ] {
        let (status, body) = send(request).await;
        assert_eq!((status, error_fields(&body).1.as_deref()), (404, Some("response_not_found")), "{body}");
    }
    let (status, body) = send(get(&gw, ALICE, &format!("/v1/responses/{}", ids[0]))).await;
    assert_eq!((status, &body["status"]), (200, &json!("in_progress")), "bob's cancel did nothing: {body}");

    // A cancel frees a place; cancelling again changes nothing.
    let (status, body) = send(cancel(&gw, ALICE, &ids[0])).await;
    assert_eq!((status, &body["status"]), (200, &json!("cancelled")), "{body}");
    let (status, body) = send(cancel(&gw, ALICE, &ids[0])).await;
    assert_eq!((status, &body["status"]), (200, &json!("cancelled")), "{body}");
    let (status, body) = send(create(&gw, ALICE, "openclaw", "room again")).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{id}");
    eventually("the echo finishes", async || {
        (send(get(&gw, ALICE, &path)).await.1["status"] == "completed").then_some(())
    })
    .await;
    // Steady state: the cancelled run stays cancelled, the count of cancelled runs stays 1.
    let cancelled = format!("/v1/responses/{}", ids[0]);
    holds_until("a cancelled response stays cancelled", Instant::now() + Duration::from_secs(2), async || {
        send(get(&gw, ALICE, &cancelled)).await.1["status"] == "cancelled"
    })
    .await;
    gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="sleeper",kind="cancelled"} 1"#]).await;
    // A response that was never background cannot be cancelled or streamed again.
    let plain = json!({"model": "openclaw", "input": "plain"});
    let (_, plain) = send(Client::new().post(gw.url("/v1/responses")).bearer_auth(ALICE).json(&plain)).await;
    let plain_id = plain["id"].as_str().unwrap();
    assert_eq!(send(cancel(&gw, ALICE, plain_id)).await.0, 400);
    let (status, body) = send(get(&gw, ALICE, &format!("/v1/responses/{plain_id}?stream=true"))).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("stream")), "{body}");
}

#[tokio::test]
async fn the_events_kept_for_a_resume_are_bounded_in_bytes() {
    let gw = start("backgroundEventBytes: 3000");
    let words: String = (0..40).map(|i| format!("w{i} ")).collect();
    let body = json!({"model": "openclaw:slow", "input": words.trim_end(), "background": true});
    let (status, started) = send(Client::new().post(gw.url("/v1/responses")).bearer_auth(ALICE).json(&body)).await;
    assert_eq!(status, 200, "{started}");
    let path = format!("/v1/responses/{}", started["id"].as_str().unwrap());
    eventually("the slow echo finishes", async || {
        (send(get(&gw, ALICE, &path)).await.1["status"] == "completed").then_some(())
    })
    .await;
    // The oldest events are gone: a resume from the start says so, and names the key.
    let (status, body) = send(get(&gw, ALICE, &format!("{path}?stream=true&starting_after=0"))).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("starting_after")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("backgroundEventBytes"), "{body}");
    // The newest ones are still there: from the first kept one on, numbered on, ending with
    // the completed response, and within the bound.
    let mut after = 0;
    let raw = loop {
        after += 1;
        assert!(after < 100, "no event kept at all");
        let res = get(&gw, ALICE, &format!("{path}?stream=true&starting_after={after}")).send().await.unwrap();
        if res.status() == 200 {
            break res.text().await.unwrap();
        }
    };
    let datas: Vec<Value> =
        raw.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    let numbers: Vec<u64> = datas.iter().map(|d| d["sequence_number"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (after + 1..after + 1 + numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "{raw}");
    let bytes: usize = raw.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::len).sum();
    assert!(bytes <= 3000, "{bytes} bytes of events kept");
    let last = datas.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{raw}");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], words.trim_end(), "{last}");
}
