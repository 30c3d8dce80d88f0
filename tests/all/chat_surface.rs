//! The chat-completions surface beyond the basics (issue 17): the parameter
//! rule, `n`, routing details, `GET /v1/models/{id}`, the legacy
//! `/v1/completions`, CORS and the `x-openclaw-model` header, against the
//! real binary and, where a model is involved, the mock provider.

use crate::support::*;
use serde_json::{Value, json};
use wasmclaw_mock_provider::MockProvider;

/// `main` = the assistant on the mock provider; `free` may take a per-request
/// model, `echo` has no provider at all.
pub(crate) fn assistant_config(mock: &MockProvider, http_extra: &str) -> String {
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} {http_extra} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ entries: {{
    main: {{ plugin: "assistant", provider: "mock", model: "small" }},
    free: {{ plugin: "assistant", provider: "mock", model: "small", allowModelOverride: true }},
    echo: {{ plugin: "echo" }},
  }} }},
}}"#,
        mock.url()
    )
}

async fn json_of(res: reqwest::Response) -> Value {
    res.json().await.unwrap()
}

#[tokio::test]
async fn every_field_the_gateway_does_not_consume_reaches_the_provider_as_sent() {
    let mock = MockProvider::start();
    let gw = TestGateway::start(&assistant_config(&mock, ""));
    let passed = json!({
        "max_completion_tokens": 7, "presence_penalty": 0.5, "frequency_penalty": -0.25,
        "logit_bias": {"50256": -100}, "logprobs": true, "top_logprobs": 2, "reasoning_effort": "low",
        "metadata": {"team": "qa"}, "temperature": 1, "seed": 42, "stop": ["\n\n"],
        "response_format": {"type": "text"}, "a_parameter_from_next_year": {"deep": [1, "two"]},
    });
    let mut body = ask("openclaw", "hi");
    body.as_object_mut().unwrap().extend(passed.as_object().unwrap().clone());
    body["user"] = "alice".into();
    let res = gw.chat(body).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", gw.log());
    assert_eq!(content(&json_of(res).await), "You said: hi");
    let sent = &mock.requests()[0].body;
    for (name, value) in passed.as_object().unwrap() {
        assert_eq!(&sent[name], value, "{name} arrives under its own name, unchanged: {sent}");
    }
    assert!(sent.get("max_tokens").is_none(), "max_completion_tokens is not renamed: {sent}");
    assert_eq!(sent["model"], "small", "the route's model, not the client's `model`");
    assert!(sent.get("user").is_none() && sent.get("n").is_none(), "fields the gateway consumes stay here");
}

#[tokio::test]
async fn more_than_one_choice_is_refused_never_answered_with_one() {
    let gw = TestGateway::start(&chat_config());
    for n in [2, 0] {
        let mut body = ask("openclaw", "hi");
        body["n"] = n.into();
        let res = gw.chat(body).send().await.unwrap();
        assert_eq!(res.status(), 400, "n = {n}");
        let body = json_of(res).await;
        let (kind, _, param) = error_fields(&body);
        assert_eq!((kind.as_str(), param.as_deref()), ("invalid_request_error", Some("n")));
        assert!(body["error"]["message"].as_str().unwrap().contains("single choice"), "{body}");
    }
    let mut body = ask("openclaw", "one");
    body["n"] = 1.into();
    assert_eq!(content(&json_of(gw.chat(body).send().await.unwrap()).await), "one");
}

#[tokio::test]
async fn model_prefixes_match_in_any_case_and_empty_headers_count_as_absent() {
    let gw = TestGateway::start(&chat_config());
    for model in ["OpenClaw:beta", "OPENCLAW/beta", "Agent:BETA", "openclaw:beta"] {
        let body = json_of(gw.chat(ask(model, "hi")).send().await.unwrap()).await;
        assert_eq!(content(&body), "beta:hi", "{model}: {body}");
        assert_eq!(body["model"], model, "the model is echoed as sent");
    }
    for model in ["OpenClaw", "OPENCLAW/Default"] {
        assert_eq!(content(&json_of(gw.chat(ask(model, "hi")).send().await.unwrap()).await), "hi", "{model}");
    }
    // Empty routing and session headers: as if not sent.
    let res = gw
        .chat(ask("openclaw:beta", "hi"))
        .header("x-openclaw-agent-id", "")
        .header("x-openclaw-session-key", "")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(session_key(&res).starts_with("agent:beta:"), "{:?}", res.headers());
    assert_eq!(content(&json_of(res).await), "beta:hi");
    let mut body = ask("openclaw", "hi");
    body["user"] = "carol".into();
    let first = session_key(&gw.chat(body.clone()).header("x-openclaw-session-key", " ").send().await.unwrap());
    let again = session_key(&gw.chat(body).send().await.unwrap());
    assert_eq!(first, again, "an empty session header falls back to `user`, as if absent");
}

#[tokio::test]
async fn models_retrieve_answers_for_openclaw_and_each_agent_and_404s_otherwise() {
    let gw = TestGateway::start(&chat_config());
    let get = |path: &str| reqwest::Client::new().get(gw.url(path)).bearer_auth(TOKEN).send();
    for (path, id) in [
        ("/v1/models/openclaw", "openclaw"),
        ("/v1/models/openclaw/beta", "openclaw/beta"),
        ("/v1/models/openclaw%2Fmain", "openclaw/main"),
        ("/v1/models/OpenClaw:beta", "openclaw/beta"),
    ] {
        let res = get(path).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body = json_of(res).await;
        assert_eq!(body["id"], id, "{path}");
        assert_eq!((body["object"].as_str(), body["owned_by"].as_str()), (Some("model"), Some("wasmclaw")));
        assert!(body["created"].as_u64().is_some());
    }
    for path in ["/v1/models/openclaw/nobody", "/v1/models/gpt-4o"] {
        let res = get(path).await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let (_, code, _) = error_fields(&json_of(res).await);
        assert_eq!(code.as_deref(), Some("model_not_found"));
    }
    let res = reqwest::Client::new().get(gw.url("/v1/models/openclaw")).send().await.unwrap();
    assert_eq!(res.status(), 401, "same scope as the list");
}

fn legacy(gw: &TestGateway, body: Value) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(gw.url("/v1/completions")).bearer_auth(TOKEN).json(&body)
}

#[tokio::test]
async fn legacy_completions_run_the_prompt_as_one_user_message() {
    let gw = TestGateway::start(&chat_config());
    let res =
        legacy(&gw, json!({"model": "openclaw:beta", "prompt": "once upon", "user": "dora"})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(session_key(&res).starts_with("agent:beta:"));
    let body = json_of(res).await;
    assert_eq!(body["object"], "text_completion");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"), "{body}");
    assert_eq!(body["model"], "openclaw:beta");
    assert_eq!(body["choices"][0]["text"], "beta:once upon");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0].get("logprobs").is_some_and(Value::is_null));
    assert!(body["usage"]["total_tokens"].as_u64().is_some());

    let body = json_of(legacy(&gw, json!({"prompt": ["listed"], "echo": true})).send().await.unwrap()).await;
    assert_eq!(body["choices"][0]["text"], "listedlisted", "echo puts the prompt first");

    for (bad, param) in [
        (json!({"prompt": ["a", "b"]}), "prompt"),
        (json!({"prompt": [1, 2]}), "prompt"),
        (json!({"model": "openclaw"}), "prompt"),
        (json!({"prompt": "x", "n": 2}), "n"),
        (json!({"prompt": "x", "best_of": 3}), "best_of"),
    ] {
        let res = legacy(&gw, bad.clone()).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(error_fields(&json_of(res).await).2.as_deref(), Some(param), "{bad}");
    }
    let res = legacy(&gw, json!({"model": "openclaw:nobody", "prompt": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 404, "same routing and errors as chat");
    let res = reqwest::Client::new().post(gw.url("/v1/completions")).json(&json!({"prompt": "x"})).send().await;
    assert_eq!(res.unwrap().status(), 401, "same auth as chat");
}

#[tokio::test]
async fn legacy_completions_stream_text_completion_chunks_then_done() {
    let gw = TestGateway::start(&chat_config());
    let body = json!({"prompt": "streamed words", "stream": true, "stream_options": {"include_usage": true}});
    let res = legacy(&gw, body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let payloads = sse_payloads(&res.text().await.unwrap());
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = payloads[..payloads.len() - 1].iter().map(|p| serde_json::from_str(p).unwrap()).collect();
    let (usage, rest) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().is_some());
    let text: String = rest.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(text, "streamed words");
    assert!(rest.iter().all(|c| c["object"] == "text_completion" && c["id"] == rest[0]["id"]));
    let (last, before) = rest.split_last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(before.iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn legacy_parameters_reach_the_provider() {
    let mock = MockProvider::start();
    let gw = TestGateway::start(&assistant_config(&mock, ""));
    let res = legacy(&gw, json!({"prompt": "hi", "max_tokens": 16, "temperature": 0})).send().await.unwrap();
    assert_eq!(json_of(res).await["choices"][0]["text"], "You said: hi");
    let sent = &mock.requests()[0].body;
    assert_eq!((sent["max_tokens"].clone(), sent["temperature"].clone()), (json!(16), json!(0)), "{sent}");
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "hi"}]));
}

fn preflight(gw: &TestGateway, origin: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, x-stainless-os")
}

#[tokio::test]
async fn cors_answers_preflights_without_auth_for_listed_origins_only() {
    let config = chat_config().replacen("http: {", r#"http: { cors: { allowedOrigins: ["https://app.example"] }, "#, 1);
    let gw = TestGateway::start(&config);
    let res = preflight(&gw, "https://app.example").send().await.unwrap();
    assert_eq!(res.status(), 204, "no credentials needed for a preflight");
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("authorization"));

    let res = preflight(&gw, "https://evil.example").send().await.unwrap();
    assert_eq!(res.status(), 401, "an unlisted origin's preflight meets auth like any request");
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let res = gw.chat(ask("openclaw", "hi")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
    let exposed = res.headers()["access-control-expose-headers"].to_str().unwrap().to_string();
    assert!(exposed.contains("x-openclaw-session-key"), "{exposed}");
    let res = gw.chat(ask("openclaw", "hi")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"), "unlisted: no CORS headers");
    let res = reqwest::Client::new().post(gw.url("/v1/chat/completions")).header("origin", "https://app.example");
    let res = res.json(&ask("openclaw", "hi")).send().await.unwrap();
    assert_eq!(res.status(), 401, "a listed origin still needs credentials for the request itself");
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example", "so the page can read why");
}

#[tokio::test]
async fn cors_is_off_by_default_and_bad_origins_stop_start_up() {
    let gw = TestGateway::start(&chat_config());
    let res = preflight(&gw, "https://app.example").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let res = gw.chat(ask("openclaw", "hi")).header("origin", "https://app.example").send().await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let bad = chat_config().replacen("http: {", r#"http: { cors: { allowedOrigins: ["app.example/path"] }, "#, 1);
    let log = TestGateway::start_with(&bad, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)]).err().expect("must not start");
    assert!(log.contains("gateway.http.cors.allowedOrigins"), "{log}");
}

#[tokio::test]
async fn the_model_header_replaces_the_model_for_agents_that_allow_it_only() {
    let mock = MockProvider::start();
    let gw = TestGateway::start(&assistant_config(&mock, ""));
    let res = gw.chat(ask("openclaw:free", "hi")).header("x-openclaw-model", "large").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&json_of(res).await), "You said: hi");
    assert_eq!(mock.requests()[0].body["model"], "large");
    // The override is for that request only.
    let res = gw.chat(ask("openclaw:free", "again")).header("x-openclaw-model", "").send().await.unwrap();
    assert_eq!(res.status(), 200, "an empty header is absent");
    assert_eq!(mock.requests()[1].body["model"], "small");

    for agent in ["openclaw:main", "openclaw:echo"] {
        let res = gw.chat(ask(agent, "hi")).header("x-openclaw-model", "large").send().await.unwrap();
        assert_eq!(res.status(), 400, "{agent}");
        let body = json_of(res).await;
        assert_eq!(error_fields(&body).0, "invalid_request_error");
        if agent.ends_with("main") {
            assert!(body["error"]["message"].as_str().unwrap().contains("allowModelOverride"), "{body}");
        }
    }
    let res = legacy(&gw, json!({"model": "openclaw:main", "prompt": "x"})).header("x-openclaw-model", "large");
    assert_eq!(res.send().await.unwrap().status(), 400, "the legacy endpoint follows the same rule");
    assert_eq!(mock.requests().len(), 2, "a refused model never reaches the provider");
}
