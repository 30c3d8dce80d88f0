//! Recorded runs and replay (issue 26): a sampled run keeps every host call
//! with its answer; `POST /admin/replay` and `wasmclaw replay` run any
//! component on it with no network and say `identical`, `changed` (with a
//! diff), `diverged` (at the first call the recording cannot answer) or
//! `failed`. Listings follow the session owner rule.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::mcp::McpServer;
use crate::pg;
use crate::support::*;

const ALICE: &str = "alice-secret-51c0";
const BOB: &str = "bob-secret-0d7e";
const MCP_KEY: &str = "mcp-replay-key-3b9f";

/// `entries` inside a gateway with the chat endpoint on, the mock provider
/// (when given) and two tokens besides the main secret.
fn config(mock: Option<&MockProvider>, entries: &str) -> String {
    let providers =
        mock.map(|m| format!(r#"providers: {{ mock: {{ baseUrl: "{}" }} }},"#, m.url())).unwrap_or_default();
    format!(
        r#"{{
  gateway: {{
    auth: {{ mode: "token", tokens: [
      {{ name: "alice", tokenEnv: "ALICE_TOKEN", scopes: ["operator.read", "operator.write"] }},
      {{ name: "bob", tokenEnv: "BOB_TOKEN", scopes: ["operator.read", "operator.write"] }},
    ] }},
    http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }},
  }},
  {providers}
  agents: {{ entries: {{ {entries} }} }},
}}"#
    )
}

fn start(config: &str, extra: &[(&str, &str)]) -> TestGateway {
    let mut env = vec![("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)];
    env.extend_from_slice(extra);
    TestGateway::start_with(config, &env).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

/// One chat turn of `agent` as `token` in session `key`: status and reply text.
async fn turn(gw: &TestGateway, token: &str, agent: &str, key: &str, text: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(token)
        .header("x-openclaw-session-key", key)
        .json(&ask(&format!("agent:{agent}"), text))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or_default();
    (status, content(&body))
}

async fn get(gw: &TestGateway, token: &str, path: &str) -> (u16, Value) {
    let res = reqwest::Client::new().get(gw.url(path)).bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

/// The recorded runs of `agent` the main secret sees, newest first.
async fn runs(gw: &TestGateway, agent: &str) -> Vec<Value> {
    let (status, body) = get(gw, TOKEN, &format!("/runs?agent={agent}&limit=1000")).await;
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().clone()
}

/// Wait until `agent` has `n` recorded runs; they are written after the response.
async fn recorded(gw: &TestGateway, agent: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} recorded runs of {agent}"), async || Some(runs(gw, agent).await).filter(|r| r.len() == n))
        .await
}

async fn replay(gw: &TestGateway, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new().post(gw.url("/admin/replay")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

fn b64(path: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

#[tokio::test]
async fn an_echo_run_replays_identically_and_an_agent_without_record_keeps_no_row() {
    let gw =
        start(&config(None, r#"main: { plugin: "echo", record: { sample: 1.0 } }, plain: { plugin: "echo" },"#), &[]);
    assert_eq!(turn(&gw, TOKEN, "plain", "agent:plain:s1", "not kept").await, (200, "not kept".into()));
    assert_eq!(turn(&gw, TOKEN, "main", "agent:main:s1", "hello tape").await, (200, "hello tape".into()));
    let list = recorded(&gw, "main", 1).await;
    let run = &list[0];
    assert_eq!((run["agent"].as_str(), run["sessionKey"].as_str()), (Some("main"), Some("agent:main:s1")), "{run}");
    assert_eq!((run["outcome"].as_str(), run["truncated"].as_bool()), (Some("ok"), Some(false)));
    let id = run["id"].as_str().unwrap();

    let (status, rec) = get(&gw, TOKEN, &format!("/runs/{id}")).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["request"]["messages"][0]["content"], "hello tape");
    let served = format!("sha256:{}", rec["digest"].as_str().unwrap());
    assert_eq!(run["digest"], served.as_str(), "the version that served the run is in its recording");
    let echo_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(ECHO_WASM).unwrap()));
    assert_eq!(rec["digest"], echo_digest.as_str());
    assert_eq!(rec["output"], json!([{"Text": "hello "}, {"Text": "tape"}]), "the events as streamed: {rec}");

    // Same component, same recording: the same output, every time.
    let (status, first) = replay(&gw, json!({"runId": id})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["outcome"], "identical", "{first}");
    assert_eq!(first["replayed"], first["recorded"]);
    assert!(first["replayed"].as_str().unwrap().starts_with("hello tape"), "{first}");
    let (_, again) = replay(&gw, json!({"runId": id, "component": b64(ECHO_WASM)})).await;
    assert_eq!((again["outcome"].as_str(), &again["replayed"]), (Some("identical"), &first["replayed"]));
    let (_, by_digest) = replay(&gw, json!({"runId": id, "digest": served})).await;
    assert_eq!((by_digest["outcome"].as_str(), &by_digest["replayed"]), (Some("identical"), &first["replayed"]));
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (status, body) = replay(&gw, json!({"runId": id, "digest": unknown})).await;
    assert_eq!((status, error_fields(&body).2.as_deref()), (400, Some("digest")), "{body}");
    assert_eq!(recorded(&gw, "main", 1).await.len(), 1, "a replay is not recorded again");

    // Recording off costs no row, and nothing arrives later either.
    let until = Instant::now() + Duration::from_secs(2);
    holds_until("no recording of plain", until, async || runs(&gw, "plain").await.is_empty()).await;

    // Unknown runs are 404 in the OpenAI error shape.
    let (status, body) = get(&gw, TOKEN, "/runs/no-such-run").await;
    assert_eq!(status, 404);
    assert_eq!(error_fields(&body).1.as_deref(), Some("run_not_found"), "{body}");
    let (status, _) = replay(&gw, json!({"runId": "no-such-run"})).await;
    assert_eq!(status, 404);

    // The CLI reads the store itself and says the same.
    let out = cli(gw.state_dir())
        .args(["replay", "--config"])
        .arg(gw.state_dir().join("gateway.json5"))
        .args([id, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((verdict["outcome"].as_str(), &verdict["replayed"]), (Some("identical"), &first["replayed"]));
}

#[tokio::test]
async fn the_assistant_replays_its_model_and_server_tool_calls_with_both_stopped() {
    let server = tokio::task::spawn_blocking(|| McpServer::start(false)).await.unwrap();
    let mock = MockProvider::start();
    let entry = format!(
        r#"research: {{ plugin: "assistant", provider: "mock", model: "mock-model", record: {{ sample: 1.0 }},
           http: {{ allow: ["{url}"], credentials: [{{ match: "{url}", header: "Authorization", prefix: "Bearer ",
                   valueEnv: "MCP_TEST_KEY" }}] }},
           config: {{ mcpServers: "{url}" }} }},"#,
        url = server.url()
    );
    let gw = start(&config(Some(&mock), &entry), &[("MCP_TEST_KEY", MCP_KEY)]);
    mock.push(Reply::tool_call("call_add", "add", r#"{"a": 2, "b": 3}"#));
    mock.push(Reply::text(&["Two and three ", "make five."]));
    let (status, text) = turn(&gw, TOKEN, "research", "agent:research:r1", "add 2 and 3").await;
    assert_eq!((status, text.as_str()), (200, "Two and three make five."), "{}", gw.log());
    let id = recorded(&gw, "research", 1).await[0]["id"].as_str().unwrap().to_string();
    let (_, rec) = get(&gw, TOKEN, &format!("/runs/{id}")).await;
    assert_eq!(rec["llm"].as_array().unwrap().len(), 2, "both model calls: {rec}");
    assert!(!rec["http"].as_array().unwrap().is_empty(), "the MCP server's requests: {rec}");
    assert!(rec["output"].to_string().contains("the sum is 5"), "the server tool's result: {rec}");
    // The credential went out with every request, and is nowhere in the recording.
    assert!(server.seen().iter().all(|r| r.to_string().contains(MCP_KEY)), "{:?}", server.seen());
    assert!(!rec.to_string().contains(MCP_KEY), "the injected credential is not recorded: {rec}");

    // Nothing to reach: the provider and the MCP server are gone.
    let model_calls = mock.requests().len();
    drop(mock);
    drop(server);
    let (status, verdict) = replay(&gw, json!({"runId": id})).await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["outcome"], "identical", "{verdict}");
    let replayed = verdict["replayed"].as_str().unwrap();
    assert!(
        replayed.contains("Two and three make five.") && replayed.contains("[server tool call_add] add"),
        "{replayed}"
    );
    assert_eq!(model_calls, 2);
    let (_, again) = replay(&gw, json!({"runId": id})).await;
    assert_eq!(again["replayed"], verdict["replayed"], "byte for byte");
}

#[tokio::test]
async fn a_changed_component_is_changed_and_another_model_question_diverges_at_that_call() {
    let mock = MockProvider::start();
    let entries = r#"
      main: { plugin: "echo", record: { sample: 1.0 }, config: { prefix: "v2:" } },
      helper: { plugin: "assistant", provider: "mock", model: "mock-model", allowModelOverride: true,
                record: { sample: 1.0 }, config: { fault: "llm-model", model: "other-model" } },"#;
    let gw = start(&config(Some(&mock), entries), &[]);
    assert_eq!(turn(&gw, TOKEN, "main", "agent:main:c1", "line one").await.0, 200);
    mock.push(Reply::text(&["recorded ", "answer"]));
    assert_eq!(turn(&gw, TOKEN, "helper", "agent:helper:c1", "question").await, (200, "recorded answer".into()));
    let echo_run = recorded(&gw, "main", 1).await[0]["id"].as_str().unwrap().to_string();
    let helper_run = recorded(&gw, "helper", 1).await[0]["id"].as_str().unwrap().to_string();

    // The faults fixture echoes with the entry's `prefix`: the same run, another output.
    let (status, v) = replay(&gw, json!({"runId": echo_run, "component": b64(FAULTS_WASM)})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "changed", "{v}");
    assert_eq!((v["recorded"].as_str(), v["replayed"].as_str()), (Some("line one"), Some("v2:line one")));
    assert_eq!(v["diff"], json!(["-line one", "+v2:line one"]));
    // The same as a batch from the CLI: a regression suite of recorded traffic.
    let batch = |json: bool| {
        let mut cmd = cli(gw.state_dir());
        cmd.args(["replay", "--config"]).arg(gw.state_dir().join("gateway.json5"));
        cmd.args(["--agent", "main", "--since", "1h", "--plugin", FAULTS_WASM]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let report: Value = serde_json::from_str(&batch(true)).unwrap();
    assert_eq!(report["summary"], json!({"identical": 0, "changed": 1, "diverged": 0, "failed": 0, "skipped": 0}));
    assert_eq!(report["runs"][0]["runId"], echo_run.as_str());
    let table = batch(false);
    let row = table.lines().find(|l| l.starts_with(&echo_run)).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(row.split_whitespace().nth(1), Some("changed"), "{table}");
    assert!(table.contains("0 identical, 1 changed, 0 diverged, 0 failed"), "{table}");

    // As `llm-model` it asks for another model: the recording has no answer.
    let requests = mock.requests().len();
    let (status, v) = replay(&gw, json!({"runId": helper_run, "component": b64(FAULTS_WASM)})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "diverged", "{v}");
    let divergence = &v["divergence"];
    assert_eq!(divergence["call"], "llm #1", "{v}");
    assert_eq!(divergence["recorded"]["model"], Value::Null, "{v}");
    assert_eq!(divergence["new"]["model"], "other-model", "{v}");
    assert_eq!(divergence["new"]["messages"][0]["content"], "question", "{v}");
    assert_eq!(mock.requests().len(), requests, "a replay sends nothing");

    // `live` lets that call go out for real, through the entry's provider.
    mock.push(Reply::text(&["live ", "answer"]));
    let (status, v) = replay(&gw, json!({"runId": helper_run, "component": b64(FAULTS_WASM), "live": true})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "changed", "{v}");
    assert!(v["replayed"].as_str().unwrap().starts_with("live answer"), "{v}");
    assert_eq!(v["wentLive"], 1, "{v}");
    assert_eq!(mock.requests().last().unwrap().body["model"], "other-model");
}

#[tokio::test]
async fn runs_belong_to_their_principal() {
    let gw = start(&config(None, r#"main: { plugin: "echo", record: { sample: 1.0 } },"#), &[]);
    assert_eq!(turn(&gw, ALICE, "main", "agent:main:alice", "from alice").await.0, 200);
    assert_eq!(turn(&gw, BOB, "main", "agent:main:bob", "from bob").await.0, 200);
    let all = recorded(&gw, "main", 2).await;
    let id_of = |key: &str| all.iter().find(|r| r["sessionKey"] == key).unwrap()["id"].as_str().unwrap().to_string();
    let (alice_run, bob_run) = (id_of("agent:main:alice"), id_of("agent:main:bob"));

    let (status, mine) = get(&gw, ALICE, "/runs").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = mine["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [alice_run.as_str()], "a token sees its own runs only");
    assert_eq!(get(&gw, ALICE, &format!("/runs/{alice_run}")).await.0, 200);
    let (status, body) = get(&gw, ALICE, &format!("/runs/{bob_run}")).await;
    assert_eq!(
        (status, error_fields(&body).1.as_deref()),
        (404, Some("run_not_found")),
        "another's run does not exist"
    );
    // Newest first for the main secret, who sees both.
    let newest: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(newest, [bob_run.as_str(), alice_run.as_str()]);
    // Replay is an admin's: a read/write token is refused.
    let res = reqwest::Client::new()
        .post(gw.url("/admin/replay"))
        .bearer_auth(ALICE)
        .json(&json!({"runId": alice_run}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn half_the_runs_are_recorded_at_sample_one_half() {
    let gw = start(&config(None, r#"main: { plugin: "echo", record: { sample: 0.5 } },"#), &[]);
    for i in 0..200 {
        assert_eq!(turn(&gw, TOKEN, "main", &format!("agent:main:s{i}"), "x").await.0, 200);
    }
    // Binomial(200, 0.5): 60..=140 is more than eight standard deviations wide.
    let count = eventually("the sampled recordings written", async || {
        let n = runs(&gw, "main").await.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        (n >= 60 && runs(&gw, "main").await.len() == n).then_some(n)
    })
    .await;
    assert!(count <= 140, "{count} of 200 recorded at sample 0.5");
}

#[tokio::test]
async fn a_recording_past_max_bytes_is_kept_truncated_and_not_replayed() {
    let gw = start(&config(None, r#"main: { plugin: "echo", record: { sample: 1.0, maxBytes: 4096 } },"#), &[]);
    let long = "y".repeat(10_000);
    assert_eq!(turn(&gw, TOKEN, "main", "agent:main:t1", &long).await, (200, long.clone()));
    let run = recorded(&gw, "main", 1).await[0].clone();
    assert_eq!(run["truncated"], true, "{run}");
    let id = run["id"].as_str().unwrap();
    let (_, rec) = get(&gw, TOKEN, &format!("/runs/{id}")).await;
    assert_eq!(rec["truncated"], true);
    assert!(rec["output"].as_array().unwrap().is_empty(), "a truncated recording keeps no crossings: {rec}");
    let (status, body) = replay(&gw, json!({"runId": id})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("record.maxBytes"), "{body}");
    gw.wait_for_log("the truncation", |log| log.contains("run recording truncated")).await;
}

#[tokio::test]
async fn recordings_past_retain_days_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(None, r#"main: { plugin: "echo", record: { sample: 1.0, retainDays: 1 } },"#);
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)];
    let gw = TestGateway::start_in_with(dir.path(), &conf, &env);
    assert_eq!(turn(&gw, TOKEN, "main", "agent:main:p1", "old").await.0, 200);
    assert_eq!(turn(&gw, TOKEN, "main", "agent:main:p2", "new").await.0, 200);
    let list = recorded(&gw, "main", 2).await;
    drop(gw);
    // Two days pass for one of them.
    let old = list.iter().find(|r| r["sessionKey"] == "agent:main:p1").unwrap()["id"].as_str().unwrap().to_string();
    let db = rusqlite::Connection::open(dir.path().join("sessions.sqlite")).unwrap();
    let two_days_ago =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 2 * 86_400_000;
    let changed = db
        .execute(
            "UPDATE recordings SET expires_at = ?1 WHERE id = ?2",
            rusqlite::params![two_days_ago + 86_400_000, old],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let gw = TestGateway::start_in_with(dir.path(), &conf, &env);
    let left = recorded(&gw, "main", 1).await;
    assert_eq!(left[0]["sessionKey"], "agent:main:p2");
    gw.wait_for_log("the prune", |log| log.contains("recorded runs past")).await;
}

#[tokio::test]
async fn recordings_live_in_postgresql_in_cluster_mode() {
    let db = pg::Server::start();
    let url = db.database().await;
    let conf = config(None, r#"main: { plugin: "echo", record: { sample: 1.0 } },"#);
    let (a, b) = (start(&conf, &[("WASMCLAW_DATABASE_URL", &url)]), start(&conf, &[("WASMCLAW_DATABASE_URL", &url)]));
    assert_eq!(turn(&a, ALICE, "main", "agent:main:pg", "on postgres").await.0, 200);
    // Recorded on one instance, listed and replayed on the other.
    let id = recorded(&b, "main", 1).await[0]["id"].as_str().unwrap().to_string();
    let (status, v) = replay(&b, json!({"runId": id})).await;
    assert_eq!((status, v["outcome"].as_str()), (200, Some("identical")), "{v}");
    let (_, mine) = get(&b, BOB, "/runs").await;
    assert!(mine["runs"].as_array().unwrap().is_empty(), "bob sees none of alice's runs: {mine}");
}

#[tokio::test]
async fn a_python_agent_replays_identically_clocks_random_and_model_call_included() {
    let tmp = tempfile::tempdir().unwrap();
    let (wasm, state) = crate::languages::python_example(tmp.path()).await;
    let mock = MockProvider::start();
    mock.push(Reply::text(&["Par", "is."]));
    let entry = format!(
        r#"calc: {{ plugin: "{}", provider: "mock", model: "m", record: {{ sample: 1.0 }}, config: {{ systemPrompt: "Be brief." }} }},"#,
        wasm.display()
    );
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)];
    let gw = TestGateway::start_in_with(&state, &config(Some(&mock), &entry), &env);
    assert_eq!(turn(&gw, TOKEN, "calc", "agent:calc:py", "calc: 6 * (3 + 4)").await, (200, "42".into()));
    assert_eq!(turn(&gw, TOKEN, "calc", "agent:calc:py", "Capital of France?").await, (200, "Paris.".into()));
    let runs = recorded(&gw, "calc", 2).await;
    drop(mock);
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        let (status, v) = replay(&gw, json!({"runId": id})).await;
        assert_eq!((status, v["outcome"].as_str()), (200, Some("identical")), "{v}");
        let (_, again) = replay(&gw, json!({"runId": id})).await;
        assert_eq!(again["replayed"], v["replayed"], "byte for byte");
    }
    let (_, rec) = get(&gw, TOKEN, &format!("/runs/{}", runs[0]["id"].as_str().unwrap())).await;
    assert_eq!(rec["llm"].as_array().unwrap().len(), 1, "the model call of the second turn: {rec}");
    assert_eq!(rec["history"].as_array().unwrap().len(), 2, "the first turn, read from the session: {rec}");
}

#[tokio::test]
async fn a_shadow_candidate_answers_recorded_runs_never_a_client_and_stops_with_the_traffic() {
    // `record` is off: shadow runs record the stable run for the comparison only.
    let gw = start(&config(None, r#"main: { plugin: "echo", config: { prefix: "cand:" } },"#), &[]);
    let rollout =
        |method| reqwest::Client::new().request(method, gw.url("/admin/agents/main/rollout")).bearer_auth(TOKEN);
    // Weight 0: every client meets the stable echo; the faults candidate only shadows it.
    let body = json!({"candidate": {"component": b64(FAULTS_WASM)}, "weight": 0, "shadow": {"sample": 1.0}});
    let res = rollout(reqwest::Method::PUT).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let started: Value = res.json().await.unwrap();
    assert_eq!(started["shadow"]["runs"], 0, "{started}");
    let shadow =
        async || rollout(reqwest::Method::GET).send().await.unwrap().json::<Value>().await.unwrap()["shadow"].clone();
    for i in 0..5 {
        let text = format!("message {i}");
        assert_eq!(turn(&gw, TOKEN, "main", &format!("agent:main:sh{i}"), &text).await, (200, text.clone()));
        // Each shadow run is compared (or skipped while one is in flight) after the client has its answer.
        eventually("the shadow run counted", async || {
            let s = shadow().await;
            (s["runs"].as_u64().unwrap() + s["skipped"].as_u64().unwrap() == i + 1).then_some(())
        })
        .await;
    }
    let s = shadow().await;
    assert!(s["runs"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["changed"], s["runs"], "the candidate prefixes its answer: {s}");
    assert_eq!((s["identical"].as_u64(), s["diverged"].as_u64(), s["failed"].as_u64()), (Some(0), Some(0), Some(0)));
    let example = &s["examples"][0];
    assert_eq!(example["outcome"], "changed", "{s}");
    assert!(example["replayed"].as_str().unwrap().starts_with("cand:message"), "{s}");
    assert!(example["recorded"].as_str().unwrap().starts_with("message"), "{s}");
    // No recording is kept for a shadow run when `record` is off.
    assert!(runs(&gw, "main").await.is_empty());
    // Steady state: no traffic, no more shadow runs.
    let until = Instant::now() + Duration::from_secs(2);
    holds_until("the shadow counts stay", until, async || shadow().await == s).await;
}

#[tokio::test]
async fn a_refused_outbound_request_is_part_of_the_recording_and_refused_again_in_replay() {
    let entry = format!(r#"probe: {{ plugin: "{FAULTS_WASM}", record: {{ sample: 1.0 }} }},"#);
    let gw = start(&config(None, &entry), &[]);
    let (status, text) = turn(&gw, TOKEN, "probe", "agent:probe:h1", "http-post http://203.0.113.9/x 3").await;
    assert_eq!(status, 200);
    assert!(text.starts_with("3 -> error:"), "no http block: the request is refused: {text}");
    let id = recorded(&gw, "probe", 1).await[0]["id"].as_str().unwrap().to_string();
    let (_, rec) = get(&gw, TOKEN, &format!("/runs/{id}")).await;
    assert_eq!(rec["http"][0]["response"], json!({"Err": "HttpRequestDenied"}), "{rec}");
    let (status, v) = replay(&gw, json!({"runId": id})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "identical", "{v}");
    assert_eq!(v["replayed"].as_str(), Some(text.as_str()));
}

#[tokio::test]
async fn a_model_call_the_host_refused_is_refused_again_in_replay() {
    // No provider: the host refuses the call itself, and the run fails.
    let entry = format!(
        r#"nomodel: {{ plugin: "{FAULTS_WASM}", record: {{ sample: 1.0 }}, config: {{ fault: "llm-model" }} }},"#
    );
    let gw = start(&config(None, &entry), &[]);
    let (status, _) = turn(&gw, TOKEN, "nomodel", "agent:nomodel:m1", "hi").await;
    assert_ne!(status, 200);
    let run = recorded(&gw, "nomodel", 1).await[0].clone();
    assert_eq!(run["outcome"], "error", "{run}");
    let id = run["id"].as_str().unwrap();
    let (status, v) = replay(&gw, json!({"runId": id})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "identical", "{v}");
    assert!(v["recorded"].as_str().unwrap().contains("has no model provider"), "{v}");
}

#[tokio::test]
async fn recordings_still_queued_at_a_graceful_shutdown_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(None, r#"main: { plugin: "echo", record: { sample: 1.0 } },"#);
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)];
    let mut gw = TestGateway::start_in_with(dir.path(), &conf, &env);
    for i in 0..5 {
        assert_eq!(turn(&gw, TOKEN, "main", &format!("agent:main:bye{i}"), "last words").await.0, 200);
    }
    // At once: the writer gathers recordings for longer than a shutdown takes.
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(30)).expect("the gateway exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let gw = TestGateway::start_in_with(dir.path(), &conf, &env);
    let kept = recorded(&gw, "main", 5).await;
    assert!(kept.iter().all(|r| r["sessionKey"].as_str().unwrap().starts_with("agent:main:bye")), "{kept:?}");
}
