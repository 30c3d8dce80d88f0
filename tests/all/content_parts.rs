//! Content parts on `/v1/chat/completions`: text parts join with "\n",
//! `input_text` is text, and images, audio and files reach a 0.2 agent and,
//! through the assistant, the model provider intact and in order.

use crate::support::*;
use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

#[tokio::test]
async fn a_0_2_agent_reads_an_image_part_in_json_and_in_a_stream() {
    let gw = TestGateway::start(&chat_config());
    let body = json!({"model": "openclaw", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What do you see?"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
    ]}]});
    let expected = format!("What do you see?\n[image {PNG} detail=low]");
    let res = gw.chat(body.clone()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), expected);

    let mut streamed = body;
    streamed["stream"] = true.into();
    let raw = gw.chat(streamed).send().await.unwrap().text().await.unwrap();
    let text: String = sse_payloads(&raw)
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, expected);
}

#[tokio::test]
async fn text_parts_join_with_a_newline_and_input_text_is_text() {
    let gw = TestGateway::start(&chat_config());
    let body = json!({"model": "openclaw", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "one"}, {"type": "input_text", "text": "two"}, {"type": "text", "text": "three"},
    ]}]});
    let res = gw.chat(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "one\ntwo\nthree");
}

#[tokio::test]
async fn unknown_or_incomplete_parts_are_400_naming_the_part() {
    let gw = TestGateway::start(&chat_config());
    for part in [
        json!({"type": "image_url"}),
        json!({"type": "image_url", "image_url": {"detail": "high"}}),
        json!({"type": "input_audio", "input_audio": {"data": "UklG"}}),
        json!({"type": "file", "file": {}}),
        json!({"type": "hologram"}),
    ] {
        let body = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]});
        let res = gw.chat(body).send().await.unwrap();
        assert_eq!(res.status(), 400, "{part}");
        let (kind, _, param) = error_fields(&res.json().await.unwrap());
        assert_eq!(kind, "invalid_request_error");
        assert_eq!(param.as_deref(), Some("messages[0].content[1]"), "{part}");
    }
}

#[tokio::test]
async fn the_assistant_forwards_every_part_to_the_provider_intact_and_in_order() {
    let mock = MockProvider::start();
    mock.push(Reply::text(&["a cat"]));
    let config = format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
  providers: {{ mock: {{ baseUrl: "{}" }} }},
  agents: {{ entries: {{ main: {{ plugin: "assistant", provider: "mock", model: "m", config: {{ systemPrompt: "Be brief." }} }} }} }},
}}"#,
        mock.url()
    );
    let gw = TestGateway::start(&config);
    let parts = json!([
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "input_text", "text": "what is it?"},
    ]);
    let body = json!({"model": "openclaw", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "earlier"}, {"type": "text", "text": "question"}]},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": parts},
    ]});
    let res = gw.chat(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content(&res.json().await.unwrap()), "a cat");

    let sent = &mock.requests()[0].body["messages"];
    assert_eq!(sent[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(sent[1]["content"], "earlier\nquestion", "text-only messages stay strings, parts joined");
    assert_eq!(sent[2]["content"], "earlier answer");
    let mut expected = parts;
    // `input_text` is text, so it goes out as a `text` part.
    expected[6] = json!({"type": "text", "text": "what is it?"});
    assert_eq!(sent[3]["content"], expected);
}

#[test]
fn the_official_python_sdk_sends_parts_and_reads_what_the_agent_saw() {
    let gw = TestGateway::start(&chat_config());
    crate::openai_sdk::run_sdk_script(&gw, "content_parts_check.py");
}
