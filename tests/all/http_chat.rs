//! POST /v1/chat/completions against a real gateway process, per WIRE.md.

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test]
async fn disabled_endpoint_is_not_found() {
    let gw = TestGateway::start("{}");
    let res = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().contains_key("x-request-id"));
    let (kind, _, _) = error_fields(&res.json().await.unwrap());
    assert_eq!(kind, "invalid_request_error");
    let models = reqwest::Client::new().get(gw.url("/v1/models")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(models.status(), 404);
    // Health needs no auth and is always there.
    for path in ["/health", "/healthz", "/ready", "/readyz"] {
        assert_eq!(reqwest::get(gw.url(path)).await.unwrap().status(), 200, "{path}");
    }
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let gw = TestGateway::start(&chat_config());
    for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE] {
        let res = reqwest::Client::new()
            .request(method.clone(), gw.url("/v1/chat/completions"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method}");
        assert_eq!(res.headers()["allow"], "POST");
        error_fields(&res.json().await.unwrap());
    }
}

#[tokio::test]
async fn echo_returns_the_input_exactly() {
    let gw = TestGateway::start(&chat_config());
    let input = "hi  there\tfriend ünïcode ";
    let res = gw.chat(ask("openclaw", input)).header("x-openclaw-agent-id", "main").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(body["model"], "openclaw");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(content(&body), input);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"], json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}));
}

#[tokio::test]
async fn model_and_header_route_to_agents() {
    let gw = TestGateway::start(&chat_config());
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        (Some("openclaw"), None, "hi"),
        (Some("openclaw/default"), None, "hi"),
        (None, None, "hi"),
        (Some("openclaw:beta"), None, "beta:hi"),
        (Some("openclaw/beta"), None, "beta:hi"),
        (Some("agent:beta"), None, "beta:hi"),
        (Some("agent:BETA"), None, "beta:hi"),
        (Some("openclaw:main"), None, "hi"),
        // The header wins and `model` is then not used for routing.
        (Some("openclaw:main"), Some("beta"), "beta:hi"),
        (Some("agent:nobody"), Some("main"), "hi"),
    ];
    for (model, header, expected) in cases {
        let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
        if let Some(m) = model {
            body["model"] = json!(m);
        }
        let mut req = gw.chat(body);
        if let Some(h) = header {
            req = req.header("x-openclaw-agent-id", *h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{model:?} {header:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(content(&body), *expected, "{model:?} {header:?}");
        assert_eq!(body["model"], model.unwrap_or("openclaw"));
    }
}

#[tokio::test]
async fn unknown_agent_is_404_model_not_found() {
    let gw = TestGateway::start(&chat_config());
    for (model, header) in [
        ("openclaw:nobody", None),
        ("agent:nobody", None),
        ("gpt-4o", None),
        ("openclaw", Some("nobody")),
        ("openclaw", Some("../etc")),
    ] {
        let mut req = gw.chat(ask(model, "hi"));
        if let Some(h) = header {
            req = req.header("x-openclaw-agent-id", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 404, "{model} {header:?}");
        let (kind, code, _) = error_fields(&res.json().await.unwrap());
        assert_eq!((kind.as_str(), code.as_deref()), ("invalid_request_error", Some("model_not_found")));
    }
}

#[tokio::test]
async fn session_keys_follow_user_and_header() {
    let gw = TestGateway::start(&chat_config());
    let key = |res: &reqwest::Response| res.headers()["x-openclaw-session-key"].to_str().unwrap().to_string();
    let a = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    let b = gw.chat(ask("openclaw", "hi")).send().await.unwrap();
    assert!(key(&a).starts_with("agent:main:openai:"));
    assert_ne!(key(&a), key(&b), "a fresh key per call without user");

    let with_user = |user: &str| {
        let mut body = ask("openclaw", "hi");
        body["user"] = json!(user);
        gw.chat(body).send()
    };
    let u1 = key(&with_user("alice").await.unwrap());
    let u2 = key(&with_user("alice").await.unwrap());
    let u3 = key(&with_user("bob").await.unwrap());
    assert_eq!(u1, u2, "same user, same key");
    assert_ne!(u1, u3);
    assert!(u1.starts_with("agent:main:openai-user:") && u1.len() == "agent:main:openai-user:".len() + 32, "{u1}");

    let given =
        gw.chat(ask("openclaw", "hi")).header("x-openclaw-session-key", "agent:main:my-chat").send().await.unwrap();
    assert_eq!(key(&given), "agent:main:my-chat");

    for bad in ["cron:nightly", "agent:beta:other", &"k".repeat(300)] {
        let res = gw.chat(ask("openclaw", "hi")).header("x-openclaw-session-key", bad).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let (_, _, param) = error_fields(&res.json().await.unwrap());
        assert_eq!(param.as_deref(), Some("x-openclaw-session-key"));
    }
}

async fn stream_raw(gw: &TestGateway, body: Value) -> (reqwest::header::HeaderMap, String) {
    let res = gw.chat(body).header("x-openclaw-agent-id", "main").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    (headers, res.text().await.unwrap())
}

#[tokio::test]
async fn stream_framing_and_chunk_order() {
    let gw = TestGateway::start(&chat_config());
    let mut body = ask("openclaw", "hi there  you");
    body["stream"] = json!(true);
    let (headers, raw) = stream_raw(&gw, body).await;
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.contains_key("x-openclaw-session-key") && headers.contains_key("x-request-id"));

    let payloads = sse_payloads(&raw);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1].iter().map(|p| serde_json::from_str(p).unwrap()).collect();
    let first = &chunks[0];
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!((&c["id"], &c["created"], &c["model"]), (&first["id"], &first["created"], &first["model"]));
        assert!(c.get("usage").is_none(), "no usage key without include_usage: {c}");
    }
    assert_eq!(first["choices"][0]["delta"], json!({"role": "assistant"}), "the role only: content comes with text");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let middle = &chunks[1..chunks.len() - 1];
    let words: Vec<&str> = middle.iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    assert_eq!(words, ["hi ", "there  ", "you"], "one chunk per word, whitespace kept");
    assert!(middle.iter().all(|c| c["choices"][0]["finish_reason"].is_null() && c["choices"][0]["index"] == 0));
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk() {
    let gw = TestGateway::start(&chat_config());
    let mut body = ask("openclaw", "a b");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (_, raw) = stream_raw(&gw, body).await;
    let payloads = sse_payloads(&raw);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1].iter().map(|p| serde_json::from_str(p).unwrap()).collect();
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["total_tokens"], 0);
    assert!(rest.iter().all(|c| c["usage"].is_null() && c.get("usage").is_some()), "other chunks carry usage:null");
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn bad_bodies_are_400_in_openai_shape() {
    let gw = TestGateway::start(&chat_config());
    let client = reqwest::Client::new();
    let cases: &[(&str, Option<&str>)] = &[
        ("{not json", None),
        ("", None),
        ("[]", None),
        (r#"{"model":"openclaw"}"#, None),
        (r#"{"messages":[]}"#, Some("messages")),
        (r#"{"messages":"hi"}"#, Some("messages")),
        (r#"{"messages":[{"role":"user","content":5}]}"#, Some("messages[0].content")),
        (r#"{"messages":[{"content":"hi"}]}"#, Some("messages[0]")),
        (r#"{"messages":[{"role":"wizard","content":"hi"}]}"#, Some("messages[0].role")),
        (r#"{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#, Some("stream")),
        (r#"{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#, Some("temperature")),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"video_url","video_url":{"url":"x"}}]}]}"#,
            Some("messages[0].content[0]"),
        ),
        (r#"{"messages":[{"role":"user","content":"hi"}]} trailing"#, None),
    ];
    for (body, param) in cases {
        let res = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        assert!(res.headers().contains_key("x-request-id"));
        let (kind, _, got_param) = error_fields(&res.json().await.unwrap());
        assert_eq!(kind, "invalid_request_error", "{body}");
        if param.is_some() {
            assert_eq!(got_param.as_deref(), *param, "{body}");
        }
    }
}

#[tokio::test]
async fn accepted_shapes_unknown_fields_and_text_parts() {
    let gw = TestGateway::start(&chat_config());
    let body = json!({
        "model": "openclaw", "frobnicate": {"x": 1}, "temperature": 0.2, "top_p": null, "stop": ["x"],
        "max_completion_tokens": 5, "seed": 3, "n": 1, "logprobs": false,
        "messages": [
            {"role": "developer", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]},
        ],
    });
    let res = gw.chat(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "part one, \npart two");
}

#[tokio::test]
async fn oversize_body_is_413() {
    let config = chat_config().replacen("http: {", "http: { maxBodyBytes: 1024,", 1);
    let gw = TestGateway::start(&config);
    let res = gw.chat(ask("openclaw", &"x".repeat(4096))).send().await.unwrap();
    assert_eq!(res.status(), 413);
    let (_, code, _) = error_fields(&res.json().await.unwrap());
    assert_eq!(code.as_deref(), Some("request_too_large"));
    // Under the limit still works.
    let res = gw.chat(ask("openclaw", "small")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "small");
}

#[tokio::test]
async fn models_lists_openclaw_and_each_agent() {
    let gw = TestGateway::start(&chat_config());
    let res = reqwest::Client::new().get(gw.url("/v1/models")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["openclaw", "openclaw/beta", "openclaw/main"]);
    for m in body["data"].as_array().unwrap() {
        assert_eq!((m["object"].as_str(), m["owned_by"].as_str()), (Some("model"), Some("wasmclaw")));
        assert!(m["created"].as_u64().is_some());
    }
    let res = reqwest::Client::new().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn trapping_plugin_is_500_and_the_next_request_succeeds() {
    let gw = TestGateway::start(&faults_config(&["trap", "panic", "text-then-trap"]));
    for agent in ["fault-trap", "fault-panic"] {
        let res = gw.chat(ask(&format!("agent:{agent}"), "hi")).send().await.unwrap();
        assert_eq!(res.status(), 500, "{agent}");
        let (kind, _, _) = error_fields(&res.json().await.unwrap());
        assert_eq!(kind, "server_error");
        // Streaming: the failure happens before any output, so the status is still real.
        let mut body = ask(&format!("agent:{agent}"), "hi");
        body["stream"] = json!(true);
        let res = gw.chat(body).send().await.unwrap();
        assert_eq!(res.status(), 500, "{agent} streaming");
        assert_eq!(res.headers()["content-type"], "application/json");

        let ok = gw.chat(ask("openclaw", "still here")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(content(&ok.json().await.unwrap()), "still here");
    }
    // A trap after output has begun becomes an SSE error event, then [DONE].
    let mut body = ask("agent:fault-text-then-trap", "hi");
    body["stream"] = json!(true);
    let res = gw.chat(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let payloads = sse_payloads(&res.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let error: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(error_fields(&error).0, "server_error");
    let text: Value = serde_json::from_str(&payloads[1]).unwrap();
    assert_eq!(text["choices"][0]["delta"]["content"], "partial ");
    // The failure is logged with the request id the client got back.
    let res = gw.chat(ask("agent:fault-trap", "hi")).header("x-request-id", "req-trace-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-trace-42");
    let failed = |l: &str| l.contains("run failed") && l.contains("req-trace-42");
    gw.wait_for_log("the failure under the client's request id", |log| log.lines().any(failed)).await;
    // The panic message reached the log through the guest's stderr.
    gw.wait_for_log("the guest's panic message", |log| log.contains("the faults agent panics on request")).await;
}

#[tokio::test]
async fn agent_errors_map_to_their_status() {
    let gw = TestGateway::start(&faults_config(&["invalid", "unavailable", "failed"]));
    for (agent, status, retry_after) in [("invalid", 400, false), ("unavailable", 503, true), ("failed", 500, false)] {
        let res = gw.chat(ask(&format!("agent:fault-{agent}"), "hi")).send().await.unwrap();
        assert_eq!(res.status(), status, "{agent}");
        assert_eq!(res.headers().contains_key("retry-after"), retry_after, "{agent}");
        let body: Value = res.json().await.unwrap();
        error_fields(&body);
        assert!(body["error"]["message"].as_str().unwrap().contains("faults agent"), "{body}");
    }
}

#[tokio::test]
async fn plugins_have_no_environment_and_no_filesystem() {
    let gw = TestGateway::start(&faults_config(&["env", "stdout"]));
    let res = gw.chat(ask("agent:fault-env", "hi")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "env=0 fs=false");
    let res = gw.chat(ask("agent:fault-stdout", "hi")).send().await.unwrap();
    assert_eq!(content(&res.json().await.unwrap()), "hi");
    // Guest output is copied to the log on its own schedule, not before the response.
    for stream in ["stdout", "stderr"] {
        let line = format!("hello from the guest's {stream}");
        gw.wait_for_log(&format!("the guest's {stream}"), |log| log.contains(&line)).await;
    }
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_run() {
    let config = faults_config(&["slow"]).replace(r#"fault: "slow""#, r#"fault: "slow", delayMs: "150""#);
    let gw = TestGateway::start(&config);
    let mut body = ask("agent:fault-slow", "one two three four five six seven eight nine ten");
    body["stream"] = json!(true);
    let started = std::time::Instant::now();
    let mut res = gw.chat(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(res);
    gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="fault-slow",kind="cancelled"} 1"#]).await;
    gw.wait_for_log("the cancellation", |log| log.contains("run cancelled")).await;
    // The whole reply would take 1.5 s: until well past that, it never finishes.
    let until = started + std::time::Duration::from_millis(2500);
    holds_until("the run must not complete after the client left", until, async || {
        !gw.settled_log().await.contains("run finished")
    })
    .await;
    // The gateway still serves.
    let ok = gw.chat(ask("openclaw", "after")).send().await.unwrap();
    assert_eq!(content(&ok.json().await.unwrap()), "after");
}

#[tokio::test]
async fn a_client_that_disconnects_before_a_whole_reply_cancels_the_run() {
    let config = faults_config(&["slow"]).replace(r#"fault: "slow""#, r#"fault: "slow", delayMs: "300""#);
    let gw = TestGateway::start(&config);
    // Non-streaming: the door sends nothing before the end, so only the
    // connection closing can tell it the client left.
    let request = gw.chat(ask("agent:fault-slow", "one two three four five six seven eight nine ten")).send();
    let client = tokio::spawn(request);
    eventually("the run is under way", async || {
        let agents = gw.get_json("/admin/agents").await;
        agents["agents"].as_array().unwrap().iter().any(|a| a["inFlight"] == 1).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    client.abort();
    gw.wait_for_metrics(&[r#"wasmclaw_run_failures_total{agent="fault-slow",kind="cancelled"} 1"#]).await;
    gw.wait_for_log("the cancellation", |log| log.contains("run cancelled")).await;
    // The whole reply would take 3 s: until well past that, it never finishes.
    holds_until(
        "the run must not complete after the client left",
        started + std::time::Duration::from_secs(4),
        async || !gw.settled_log().await.contains("run finished"),
    )
    .await;
    let ok = gw.chat(ask("openclaw", "after")).send().await.unwrap();
    assert_eq!(content(&ok.json().await.unwrap()), "after");
}

#[tokio::test]
async fn a_whole_reply_times_its_first_event_when_the_agent_emits_it_not_when_the_reply_is_sent() {
    let config = faults_config(&["slow"]).replace(r#"fault: "slow""#, r#"fault: "slow", delayMs: "3000""#);
    let gw = TestGateway::start(&config);
    let key = "agent:fault-slow:first-event";
    let turn = async |text: &str| {
        let res = gw.chat(ask("agent:fault-slow", text)).header("x-openclaw-session-key", key).send().await.unwrap();
        assert_eq!(res.status(), 200);
        content(&res.json().await.unwrap())
    };
    // The first turn's only event comes after its 3 s pause; the second
    // says "[turn 2] " at once, then pauses 3 s before its word.
    assert_eq!(turn("a").await, "a");
    let started = std::time::Instant::now();
    assert_eq!(turn("b").await, "[turn 2] b");
    assert!(started.elapsed() >= std::time::Duration::from_millis(2900), "the reply came after the pause");
    let metrics = gw.metrics().await;
    for line in [
        r#"wasmclaw_run_first_event_seconds_count{agent="fault-slow"} 2"#,
        // Only the second turn's first event came within a second of its start.
        r#"wasmclaw_run_first_event_seconds_bucket{agent="fault-slow",le="1"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in:\n{metrics}");
    }
}
