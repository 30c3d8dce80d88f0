//! Model providers and the assistant agent (issue 4), against a mock provider on loopback.

use std::time::{Duration, Instant};

use crate::support::*;
use futures::StreamExt;
use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

/// The provider key; it must never reach a client, a log line or the agent.
const KEY: &str = "sk-mock-5ecret-9d2e";

fn config(provider_url: &str, provider_extra: &str, http_extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }}, {http_extra} }} }},
  providers: {{ mock: {{ baseUrl: "{provider_url}", apiKeyEnv: "MOCK_PROVIDER_KEY", {provider_extra} }} }},
  agents: {{ entries: {{
    main: {{ plugin: "assistant", provider: "mock", model: "mock-model", config: {{ systemPrompt: "You are terse." }} }},
    bare: {{ plugin: "assistant" }},
  }} }},
}}"#
    )
}

fn start(provider_url: &str, provider_extra: &str, http_extra: &str) -> TestGateway {
    let config = config(provider_url, provider_extra, http_extra);
    TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("MOCK_PROVIDER_KEY", KEY)])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"))
}

fn as_user(text: &str, user: &str) -> Value {
    json!({"model": "openclaw", "user": user, "messages": [{"role": "user", "content": text}]})
}

fn streaming(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// Each SSE event of a streamed response as it arrives, with its arrival time.
async fn read_events(res: reqwest::Response) -> Vec<(Instant, String)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut body = res.bytes_stream();
    while let Some(bytes) = body.next().await {
        buffer.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            events.push((Instant::now(), buffer[..end].to_string()));
            buffer.drain(..end + 2);
        }
    }
    events
}

fn data(events: &[(Instant, String)]) -> Vec<Value> {
    events
        .iter()
        .filter_map(|(_, e)| e.strip_prefix("data: "))
        .map(|d| if d == "[DONE]" { json!("[DONE]") } else { serde_json::from_str(d).unwrap() })
        .collect()
}

fn roles_and_contents(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().into(), m["content"].as_str().unwrap_or("").into()))
        .collect()
}

async fn assert_no_key(gw: &TestGateway, what: &str) {
    assert!(!what.contains(KEY), "the provider key leaked: {what}");
    assert!(!gw.settled_log().await.contains(KEY), "the provider key reached the log");
}

/// What the assistant sends the provider for a first turn of `text`.
fn first_turn(text: &str) -> Vec<(String, String)> {
    pairs(&[("system", "You are terse."), ("user", text)])
}

/// Ask `text` as `user`, expecting the mock's echo. Returns the session key
/// from the response header and what the provider was sent for this turn.
async fn follow_up(gw: &TestGateway, mock: &MockProvider, user: &str, text: &str) -> (String, Vec<(String, String)>) {
    let res = gw.chat(as_user(text, user)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{user}");
    let key = session_key(&res);
    assert_eq!(content(&res.json().await.unwrap()), format!("You said: {text}"), "{user}");
    (key, roles_and_contents(&mock.requests().last().unwrap().body))
}

#[tokio::test]
async fn the_assistant_streams_the_providers_tokens_as_they_arrive() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["Hel", "lo", " there"]).with_token_delay(Duration::from_millis(150)));
    let gw = start(&mock.url(), "", "");

    let res = gw.chat(streaming(as_user("hi", "ada"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let events = read_events(res).await;
    let contents: Vec<(Instant, String)> = events
        .iter()
        .filter_map(|(at, e)| {
            let chunk: Value = serde_json::from_str(e.strip_prefix("data: ")?).ok()?;
            Some((*at, chunk["choices"][0]["delta"]["content"].as_str().filter(|c| !c.is_empty())?.to_string()))
        })
        .collect();
    let texts: Vec<&str> = contents.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["Hel", "lo", " there"], "one delta per provider token");
    let spread = contents[2].0 - contents[0].0;
    assert!(spread >= Duration::from_millis(200), "tokens were buffered, not streamed: {spread:?} apart");

    let sent = &mock.requests()[0];
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.body["model"], "mock-model");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(
        roles_and_contents(&sent.body),
        [("system".into(), "You are terse.".into()), ("user".into(), "hi".into())]
    );
    assert_no_key(&gw, &format!("{events:?}")).await;
}

#[tokio::test]
async fn a_second_call_from_the_same_user_sends_the_earlier_turn_once() {
    let mock = MockProvider::start();
    let gw = start(&mock.url(), "", "");
    let first: Value = gw.chat(as_user("My name is Ada", "ada")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&first), "You said: My name is Ada");

    // The client resends the whole conversation, as most do.
    let mut again = as_user("", "ada");
    again["messages"] = json!([
        {"role": "user", "content": "My name is Ada"},
        {"role": "assistant", "content": "You said: My name is Ada"},
        {"role": "user", "content": "What is my name?"},
    ]);
    let res = gw.chat(again).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // And a client that sends only the new message.
    let res = gw.chat(as_user("Still there?", "ada")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let requests = mock.requests();
    let pairs = |list: &[(&str, &str)]| list.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect::<Vec<_>>();
    assert_eq!(
        roles_and_contents(&requests[1].body),
        pairs(&[
            ("system", "You are terse."),
            ("user", "My name is Ada"),
            ("assistant", "You said: My name is Ada"),
            ("user", "What is my name?"),
        ])
    );
    assert_eq!(
        roles_and_contents(&requests[2].body),
        pairs(&[
            ("system", "You are terse."),
            ("user", "My name is Ada"),
            ("assistant", "You said: My name is Ada"),
            ("user", "What is my name?"),
            ("assistant", "You said: What is my name?"),
            ("user", "Still there?"),
        ])
    );
    let other: Value = gw.chat(as_user("Who am I?", "grace")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&other), "You said: Who am I?");
    assert_eq!(roles_and_contents(&mock.requests()[3].body).len(), 2, "another user starts fresh");
}

#[tokio::test]
async fn usage_and_finish_reasons_reach_the_client() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["cut", " short"]).with_finish("length"));
    let gw = start(&mock.url(), "", "");
    let body: Value = gw.chat(as_user("one two three", "u")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    // The mock counts words: system prompt (3) + "one two three" (3); two tokens out.
    assert_eq!(body["usage"], json!({"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}));

    let mut body = streaming(as_user("four five", "v"));
    body["stream_options"] = json!({"include_usage": true});
    let chunks = data(&read_events(gw.chat(body).send().await.unwrap()).await);
    let n = chunks.len();
    assert_eq!(chunks[n - 1], "[DONE]");
    assert_eq!(chunks[n - 2]["choices"], json!([]));
    assert_eq!(chunks[n - 2]["usage"]["prompt_tokens"], 5);
    assert_eq!(chunks[n - 2]["usage"]["completion_tokens"], 4, "'You said: four five' is four tokens");
    assert_eq!(chunks[n - 3]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn tools_pass_through_and_tool_calls_stream_back_with_their_index() {
    let mock = MockProvider::start();
    mock.push(Reply::tool_call("call_1", "get_weather", r#"{"city":"Paris"}"#));
    let gw = start(&mock.url(), "", "");
    let mut body = streaming(as_user("Weather in Paris?", "t"));
    body["tools"] = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    body["tool_choice"] = json!("auto");
    let chunks = data(&read_events(gw.chat(body).send().await.unwrap()).await);
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(calls[0][0]["id"], "call_1");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c[0]["index"] == 0), "every fragment carries its index: {calls:?}");
    let arguments: String = calls.iter().filter_map(|c| c[0]["function"]["arguments"].as_str()).collect();
    assert_eq!(arguments, r#"{"city":"Paris"}"#);
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));

    let sent = &mock.requests()[0].body;
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["function"]["parameters"]["properties"]["city"]["type"], "string");
    assert_eq!(sent["tool_choice"], "auto");
}

#[tokio::test]
async fn a_whole_reply_with_a_tool_call_has_null_content_as_openai_sends_it() {
    let mock = MockProvider::start();
    mock.push(Reply::tool_call("call_9", "get_time", r#"{"tz":"UTC"}"#));
    let gw = start(&mock.url(), "", "");
    let res = gw.chat(as_user("What time is it?", "w")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null(), "content is null, not \"\": {body}");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_9", "type": "function", "function": {"name": "get_time", "arguments": r#"{"tz":"UTC"}"#}}])
    );
}

#[tokio::test]
async fn provider_failures_map_to_statuses_clients_understand() {
    let mock = MockProvider::start();
    let gw = start(&mock.url(), "timeoutMs: 400", "");

    mock.push(Reply::status(429, Some(7), "slow down"));
    let res = gw.chat(as_user("a", "r1")).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers().get("retry-after").unwrap(), "7", "Retry-After is passed on");
    let (_, body) = expect_error_body(&gw, res, "upstream_rate_limited").await;
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Streaming requests keep the real status too: the failure comes before the first byte.
    mock.push(Reply::status(429, Some(3), "slow down"));
    let res = gw.chat(streaming(as_user("a", "r2"))).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers().get("retry-after").unwrap().to_str().unwrap()), (429, "3"));

    for code in [401, 403] {
        mock.push(Reply::status(code, None, &format!("Incorrect API key provided: {KEY}")));
        let res = gw.chat(as_user("a", "r3")).send().await.unwrap();
        assert_eq!(res.status(), 502, "upstream {code}");
        assert_eq!(res.headers().get("x-should-retry").unwrap(), "false", "a wrong key does not heal by retrying");
        let (_, body) = expect_error_body(&gw, res, "upstream_unauthorized").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("providers.mock"), "{body}");
    }

    mock.push(Reply::hang());
    let started = Instant::now();
    let res = gw.chat(as_user("a", "r4")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(3), "timeouts are not retried: {:?}", started.elapsed());
    expect_error_body(&gw, res, "upstream_timeout").await;

    mock.push(Reply::status(400, None, "max_tokens is too large"));
    let res = gw.chat(as_user("a", "r5")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let (_, body) = expect_error_body(&gw, res, "upstream_bad_request").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("max_tokens is too large"));

    // Nothing failed was written to the sessions: every run above has ended
    // (each response came after its run), and none left a session behind…
    assert_eq!(gw.session_keys().await, Vec::<String>::new(), "failed runs were stored");
    // …so each user's next turn starts from nothing, for the provider and in the transcript.
    for user in ["r1", "r2", "r3", "r4", "r5"] {
        let (key, sent) = follow_up(&gw, &mock, user, "ok?").await;
        assert_eq!(sent, first_turn("ok?"), "{user}: a failed turn was sent to the provider again");
        let kept = pairs(&[("user", "ok?"), ("assistant", "You said: ok?")]);
        assert_eq!(gw.transcript(&key).await, kept, "{user}: only the turn that worked is kept");
    }
    // The gateway is fine afterwards.
    let body: Value = gw.chat(as_user("ok?", "r6")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&body), "You said: ok?");
}

async fn expect_error_body(
    gw: &TestGateway,
    res: reqwest::Response,
    code: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(error_fields(&body).1.as_deref(), Some(code), "{body}");
    assert_no_key(gw, &text).await;
    (headers, body)
}

#[tokio::test]
async fn unreachable_providers_are_retried_then_reported_as_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let gw = start(&url, "maxRetries: 2", "");
    let res = gw.chat(as_user("a", "x")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let (_, body) = expect_error_body(&gw, res, "upstream_unavailable").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("cannot connect"), "{body}");
    let log = gw.settled_log().await;
    assert_eq!(log.matches("provider call failed; retrying").count(), 2, "{log}");
}

#[tokio::test]
async fn server_errors_are_retried_before_the_first_byte() {
    let mock = MockProvider::start();
    mock.push(Reply::status(503, None, "overloaded"));
    mock.push(Reply::status(502, None, "bad gateway"));
    let gw = start(&mock.url(), "maxRetries: 2", "");
    let body: Value = gw.chat(as_user("third time", "y")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&body), "You said: third time");
    assert_eq!(mock.requests().len(), 3);

    mock.push(Reply::status(500, None, "down"));
    mock.push(Reply::status(500, None, "down"));
    mock.push(Reply::status(500, None, "down"));
    let res = gw.chat(as_user("again", "y")).send().await.unwrap();
    assert_eq!(res.status(), 502, "after maxRetries the failure is reported");
    assert_eq!(mock.requests().len(), 6);
}

#[tokio::test]
async fn a_stream_the_provider_breaks_off_ends_in_an_error_event() {
    let mock = MockProvider::start();
    mock.push(Reply::break_after(&["partial", " answer"]).with_token_delay(Duration::from_millis(20)));
    let gw = start(&mock.url(), "", "");
    let res = gw.chat(streaming(as_user("go", "m"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let chunks = data(&read_events(res).await);
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "partial answer");
    let n = chunks.len();
    assert_eq!(chunks[n - 1], "[DONE]");
    assert_eq!(chunks[n - 2]["error"]["code"], "upstream_unavailable", "{:?}", chunks[n - 2]);
    assert!(chunks.iter().all(|c| c["choices"][0]["finish_reason"].is_null()), "no finish after a failure");
    // The error event came after the run ended; it left no session behind.
    assert_eq!(gw.session_keys().await, Vec::<String>::new(), "a broken reply was stored");
    // The user's next turn starts from nothing: the broken one is neither replayed nor kept.
    let (key, sent) = follow_up(&gw, &mock, "m", "again").await;
    assert_eq!(sent, first_turn("again"), "the broken turn was sent to the provider again");
    let kept = pairs(&[("user", "again"), ("assistant", "You said: again")]);
    assert_eq!(gw.transcript(&key).await, kept, "a broken reply is not kept");
}

#[tokio::test]
async fn a_client_that_hangs_up_closes_the_upstream_request() {
    let mock = MockProvider::start();
    mock.push(Reply::tokens(100).with_token_delay(Duration::from_millis(50)));
    let gw = start(&mock.url(), "", "");
    let res = gw.chat(streaming(as_user("long story", "c"))).send().await.unwrap();
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("tok1") {
        seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(body);
    let hung_up = Instant::now();
    while mock.closed_early() == 0 && hung_up.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.closed_early(), 1, "the mock saw the upstream connection close within a second");
    assert_eq!(mock.completed(), 0);
    let cancelled = r#"wasmclaw_run_failures_total{agent="main",kind="cancelled"} 1"#;
    gw.wait_for_metrics(&[cancelled]).await;

    // The user's next turn queues behind the cancelled run on the same
    // session, so it sees whatever that run left: nothing.
    let (key, sent) = follow_up(&gw, &mock, "c", "short one").await;
    assert_eq!(sent, first_turn("short one"), "the cancelled turn was sent to the provider again");
    let kept = pairs(&[("user", "short one"), ("assistant", "You said: short one")]);
    assert_eq!(gw.transcript(&key).await, kept, "a cancelled run is not appended to the transcript");
    let metrics = gw.metrics().await;
    assert!(metrics.lines().any(|l| l == cancelled), "one cancelled run, still: {metrics}");
}

#[tokio::test]
async fn a_slow_first_token_gets_keep_alive_pings() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["finally"]).with_first_token_delay(Duration::from_millis(1500)));
    let gw = start(&mock.url(), "", "sseKeepAliveMs: 300");
    let started = Instant::now();
    let res = gw.chat(streaming(as_user("think hard", "k"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(1200), "headers went out before the first token");
    let events = read_events(res).await;
    let first_text = events.iter().position(|(_, e)| e.contains("finally")).unwrap();
    let pings = events[..first_text].iter().filter(|(_, e)| e.starts_with(':')).count();
    assert!(pings >= 2, "expected pings while waiting: {events:?}");
}

#[tokio::test]
async fn an_agent_without_a_provider_says_how_to_configure_one() {
    let mock = MockProvider::start();
    let gw = start(&mock.url(), "", "");
    let res = gw.chat(as_user("hi", "n")).header("x-openclaw-agent-id", "bare").send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("agents.entries.bare.provider"), "{message}");
    assert!(mock.requests().is_empty());
}

#[test]
fn a_missing_key_variable_stops_start_up_with_its_name() {
    let config = config("http://127.0.0.1:9/v1", "", "");
    let log = TestGateway::start_with(&config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)]).err().expect("must not start");
    assert!(log.contains("MOCK_PROVIDER_KEY"), "{log}");
}

#[test]
fn config_errors_name_the_provider_key() {
    let bad = config("ftp://nowhere", "", "");
    let log = TestGateway::start_with(&bad, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("MOCK_PROVIDER_KEY", KEY)])
        .err()
        .expect("must not start");
    assert!(log.contains("providers.mock.baseUrl"), "{log}");
    let unknown = config("http://127.0.0.1:9/v1", "", "").replace(r#"provider: "mock""#, r#"provider: "nope""#);
    let log = TestGateway::start_with(&unknown, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("MOCK_PROVIDER_KEY", KEY)])
        .err()
        .expect("must not start");
    assert!(log.contains("agents.entries.main.provider"), "{log}");
}

#[tokio::test]
async fn an_agent_may_choose_its_model_only_when_the_operator_allows_it() {
    let mock = MockProvider::start();
    let config = format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ entries: {{
    fixed: {{ plugin: "{FAULTS_WASM}", provider: "mock", model: "small", config: {{ fault: "llm-model", model: "large" }} }},
    free: {{ plugin: "{FAULTS_WASM}", provider: "mock", model: "small", allowModelOverride: true,
            config: {{ fault: "llm-model", model: "large" }} }},
  }} }},
}}"#,
        mock.url()
    );
    let gw = TestGateway::start(&config);
    let res = gw.chat(ask("openclaw:fixed", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("allowModelOverride"), "{body}");
    assert!(mock.requests().is_empty(), "a refused override never reaches the provider");

    let body: Value = gw.chat(ask("openclaw:free", "hi")).send().await.unwrap().json().await.unwrap();
    assert_eq!(content(&body), "You said: hi");
    assert_eq!(mock.requests()[0].body["model"], "large");
}

#[tokio::test]
async fn a_provider_changed_in_the_config_file_applies_live() {
    let (old, new) = (MockProvider::start(), MockProvider::start());
    old.set_default(Reply::text(&["old"]));
    new.set_default(Reply::text(&["new"]));
    let gw = start(&old.url(), "", "");
    let answer = |gw: &TestGateway| {
        let request = gw.chat(as_user("which?", "live"));
        async move { content(&request.send().await.unwrap().json::<Value>().await.unwrap()) }
    };
    assert_eq!(answer(&gw).await, "old");
    let path = gw.state_dir().join("gateway.json5");
    std::fs::write(&path, config(&new.url(), "", "")).unwrap();
    let started = Instant::now();
    while answer(&gw).await != "new" {
        assert!(started.elapsed() < Duration::from_secs(10), "the new provider never took over:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.wait_for_log("the provider change", |log| log.contains("providers changed")).await;
}
