//! The mock provider's tool-using model (`mock-provider --tool-calls`)
//! behind the shipped assistant: a client sees a whole tool round without a
//! real model, as the README's tool and MCP sections describe.

use serde_json::{Value, json};
use wasmclaw_mock_provider::{MockProvider, Reply};

use crate::support::*;

#[tokio::test]
async fn the_assistant_on_a_tool_calling_mock_calls_the_clients_tool_then_reports_its_result() {
    let mock = MockProvider::start();
    mock.set_default(Reply::call_tools());
    let config = format!(
        r#"{{ gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }},
          providers: {{ mock: {{ baseUrl: "{}" }} }},
          agents: {{ entries: {{ helper: {{ plugin: "assistant", provider: "mock", model: "m" }} }} }} }}"#,
        mock.url()
    );
    let gw = TestGateway::start(&config);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"]}}}]);
    let mut body = ask("agent:helper", "Weather in Paris?");
    body["tools"] = tools.clone();
    let res = gw.chat(body.clone()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["choices"][0]["finish_reason"], "tool_calls", "{first}");
    let call = &first["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "sample", "unit": "c"}));

    // The client runs its tool and sends the result with the conversation.
    let messages = body["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"}));
    let res = gw.chat(body.clone()).send().await.unwrap();
    let second: Value = res.json().await.unwrap();
    assert_eq!(content(&second), "tool said: sunny, 21 C", "{second}");
    assert_eq!(second["choices"][0]["finish_reason"], "stop");

    // Streamed, the call arrives in pieces with its index, as from a real model.
    let mut streamed = ask("agent:helper", "And tomorrow?");
    streamed["tools"] = tools;
    streamed["stream"] = json!(true);
    let raw = gw.chat(streamed).send().await.unwrap().text().await.unwrap();
    let chunks: Vec<Value> = sse_payloads(&raw).iter().filter_map(|p| serde_json::from_str(p).ok()).collect();
    let pieces: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&pieces).unwrap(), json!({"city": "sample", "unit": "c"}), "{raw}");
    assert_eq!(mock.requests().len(), 3, "one model call per turn");
}
