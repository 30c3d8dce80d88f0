//! The `response` object and the semantic stream events, built from a run's
//! events by one [`Encoder`]: the JSON answer and the SSE stream are the same
//! fold, so item ids and texts agree between a stream and a later `GET`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::tools::Namespaced;
use crate::chat::{Event, FinishReason, ToolCallDelta, Usage};
use crate::http::error::ApiError;

/// What the `response` object echoes of the request, besides its output.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub previous_response_id: Option<String>,
    pub store: bool,
    /// Request fields the object repeats (`instructions`, `tools`, `temperature`, …).
    pub echo: Map<String, Value>,
    /// Namespaced tools by flat name: their calls go out as `namespace` + `name`.
    pub namespaced: Namespaced,
}

impl Meta {
    /// A new `resp_…` id for `model` (echoed as the client sent it).
    pub fn new(model: String, previous_response_id: Option<String>, store: bool, echo: Map<String, Value>) -> Self {
        let created_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let id = new_id("resp");
        Self { id, created_at, model, previous_response_id, store, echo, namespaced: Namespaced::default() }
    }

    /// The id of output item `index`: `{prefix}_{response}_{index}`, so that an
    /// `item_reference` finds its response by primary key ([`response_of`]).
    fn item_id(&self, prefix: &str, index: usize) -> String {
        let response = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{response}_{index}")
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The `resp_…` id an output item id was made under, if it is one of ours.
pub fn response_of(item_id: &str) -> Option<String> {
    let (_, rest) = item_id.split_once('_')?;
    let (response, index) = rest.rsplit_once('_')?;
    let ours = response.len() == 32 && response.bytes().all(|b| b.is_ascii_hexdigit()) && index.parse::<u32>().is_ok();
    ours.then(|| format!("resp_{response}"))
}

/// One output item as it grows.
#[derive(Debug)]
enum Item {
    Message { id: String, text: String, done: bool },
    Call { id: String, call_id: String, name: String, arguments: String, done: bool },
}

impl Item {
    fn json(&self, namespaced: &Namespaced) -> Value {
        match self {
            Item::Message { id, text, done } => {
                let content = if *done { json!([output_text(text)]) } else { json!([]) };
                json!({"type": "message", "id": id, "status": status(*done), "role": "assistant", "content": content})
            }
            Item::Call { id, call_id, name, arguments, done } => {
                let mut item = json!({
                    "type": "function_call", "id": id, "call_id": call_id, "name": name,
                    "arguments": arguments, "status": status(*done),
                });
                if let Some((namespace, name)) = namespaced.split(name) {
                    (item["name"], item["namespace"]) = (json!(name), json!(namespace));
                }
                item
            }
        }
    }
}

fn status(done: bool) -> &'static str {
    if done { "completed" } else { "in_progress" }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// One SSE event: its `event:` name and its JSON `data:`.
pub type StreamEvent = (&'static str, String);

/// The text delta, typed: a stream sends one per token.
#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

/// Folds run events into output items, and (when streaming) into the
/// semantic events, each with the next `sequence_number`.
pub struct Encoder {
    meta: Meta,
    items: Vec<Item>,
    /// The message item text is going to, if one is open.
    open_message: Option<usize>,
    /// Tool-call index → item index.
    calls: Vec<(u32, usize)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    sequence: u64,
    /// False when only the whole object is wanted.
    streaming: bool,
    out: Vec<StreamEvent>,
}

impl Encoder {
    /// An encoder for one response; `streaming` turns event output on.
    pub fn new(meta: Meta, streaming: bool) -> Self {
        Self {
            meta,
            items: Vec::new(),
            open_message: None,
            calls: Vec::new(),
            usage: None,
            finish: None,
            sequence: 0,
            streaming,
            out: Vec::new(),
        }
    }

    /// Events produced since the last call.
    pub fn take(&mut self) -> Vec<StreamEvent> {
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, kind: &'static str, mut payload: Value) {
        if !self.streaming {
            return;
        }
        payload["type"] = json!(kind);
        payload["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        self.out.push((kind, payload.to_string()));
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) {
        let response = self.object("in_progress", None);
        self.emit("response.created", json!({"response": response}));
        let response = self.object("in_progress", None);
        self.emit("response.in_progress", json!({"response": response}));
    }

    /// Fold one run event in.
    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Text(t) if !t.is_empty() => self.text(t),
            // Tools the agent ran itself are not the client's to see here.
            Event::Text(_) | Event::Reasoning(_) | Event::ServerTool(_) => {}
            Event::ToolCall(delta) => self.tool_call(delta),
            Event::Usage(u) => self.usage = Some(*u),
            Event::Finish(f) => self.finish = Some(*f),
        }
    }

    fn text(&mut self, text: &str) {
        let index = match self.open_message {
            Some(index) => index,
            None => self.open_message_item(),
        };
        let Item::Message { id, text: whole, .. } = &mut self.items[index] else { unreachable!("open message") };
        whole.push_str(text);
        if self.streaming {
            let delta = TextDelta {
                kind: "response.output_text.delta",
                sequence_number: self.sequence,
                item_id: id,
                output_index: index,
                content_index: 0,
                delta: text,
                logprobs: [],
            };
            let data = serde_json::to_string(&delta).expect("a delta serializes");
            self.sequence += 1;
            self.out.push(("response.output_text.delta", data));
        }
    }

    fn open_message_item(&mut self) -> usize {
        let index = self.items.len();
        let id = self.meta.item_id("msg", index);
        let item = Item::Message { id: id.clone(), text: String::new(), done: false };
        let json = item.json(&self.meta.namespaced);
        self.emit("response.output_item.added", json!({"output_index": index, "item": json}));
        self.items.push(item);
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        self.emit(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        );
        self.open_message = Some(index);
        index
    }

    fn close_message(&mut self) {
        let Some(index) = self.open_message.take() else { return };
        let Item::Message { id, text, done } = &mut self.items[index] else { unreachable!("open message") };
        *done = true;
        let (id, text) = (id.clone(), text.clone());
        let at = json!({"item_id": id, "output_index": index, "content_index": 0});
        let mut done_text = at.clone();
        done_text["text"] = json!(text);
        done_text["logprobs"] = json!([]);
        self.emit("response.output_text.done", done_text);
        let mut part = at;
        part["part"] = json!({"type": "output_text", "text": text, "annotations": []});
        self.emit("response.content_part.done", part);
        let item = self.items[index].json(&self.meta.namespaced);
        self.emit("response.output_item.done", json!({"output_index": index, "item": item}));
    }

    fn tool_call(&mut self, delta: &ToolCallDelta) {
        let index = match self.calls.iter().find(|(i, _)| *i == delta.index) {
            Some((_, index)) => *index,
            None => {
                self.close_message();
                let index = self.items.len();
                let call_id = delta.id.clone().unwrap_or_else(|| new_id("call"));
                let name = delta.name.clone().unwrap_or_default();
                let id = self.meta.item_id("fc", index);
                let item = Item::Call { id, call_id, name, arguments: String::new(), done: false };
                let json = item.json(&self.meta.namespaced);
                self.emit("response.output_item.added", json!({"output_index": index, "item": json}));
                self.items.push(item);
                self.calls.push((delta.index, index));
                index
            }
        };
        let Item::Call { id, name, arguments, .. } = &mut self.items[index] else { unreachable!("call item") };
        if let (Some(late), true) = (&delta.name, name.is_empty()) {
            name.clone_from(late);
        }
        arguments.push_str(&delta.arguments);
        if !delta.arguments.is_empty() {
            let id = id.clone();
            self.emit(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": delta.arguments}),
            );
        }
    }

    /// The run succeeded: close every item and return the finished object
    /// (the caller stores it, then calls [`completed`](Self::completed)).
    pub fn finish(&mut self) -> Value {
        if self.items.is_empty() {
            self.open_message_item();
        }
        self.close_message();
        for index in 0..self.items.len() {
            let Item::Call { id, name, arguments, done, .. } = &mut self.items[index] else { continue };
            if *done {
                continue;
            }
            *done = true;
            let name = self.meta.namespaced.split(name).map_or(name.as_str(), |(_, inner)| inner);
            let payload = json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments});
            self.emit("response.function_call_arguments.done", payload);
            let item = self.items[index].json(&self.meta.namespaced);
            self.emit("response.output_item.done", json!({"output_index": index, "item": item}));
        }
        let status = if self.finish == Some(FinishReason::Length) { "incomplete" } else { "completed" };
        self.object(status, None)
    }

    /// The terminal event for a finished object: `response.completed` (or
    /// `response.incomplete` when the model ran out of tokens).
    pub fn completed(&mut self, response: Value) {
        let kind = if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.emit(kind, json!({"response": response}));
    }

    /// The run failed after the stream began: `response.failed` with the error.
    pub fn failed(&mut self, error: &ApiError) {
        let response = self.object("failed", Some(error));
        self.emit("response.failed", json!({"response": response}));
    }

    /// The `response` object in its current state.
    fn object(&self, status: &str, error: Option<&ApiError>) -> Value {
        let output: Vec<Value> = if status == "in_progress" {
            Vec::new()
        } else {
            self.items.iter().map(|i| i.json(&self.meta.namespaced)).collect()
        };
        let usage = self.usage.unwrap_or_default();
        let usage = (status != "in_progress").then(|| {
            json!({
                "input_tokens": usage.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            })
        });
        let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
        let error = error.map(|e| json!({"code": e.code.unwrap_or(e.kind), "message": e.message}));
        let m = &self.meta;
        let mut object = json!({
            "id": m.id, "object": "response", "created_at": m.created_at, "status": status, "model": m.model,
            "output": output, "error": error, "incomplete_details": incomplete, "usage": usage,
            "previous_response_id": m.previous_response_id, "store": m.store,
            "instructions": null, "metadata": {}, "parallel_tool_calls": true, "temperature": null,
            "top_p": null, "max_output_tokens": null, "tool_choice": "auto", "tools": [], "reasoning": null,
            "text": {"format": {"type": "text"}}, "truncation": "disabled", "user": null,
        });
        for (key, value) in &m.echo {
            if !value.is_null() {
                object[key] = value.clone();
            }
        }
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::new("openclaw".into(), None, true, Map::new())
    }

    fn call(index: u32, id: Option<&str>, arguments: &str) -> Event {
        Event::ToolCall(ToolCallDelta {
            index,
            id: id.map(str::to_string),
            name: id.map(|_| "f".to_string()),
            arguments: arguments.into(),
        })
    }

    #[test]
    fn a_stream_numbers_its_events_and_the_final_object_matches_it() {
        let mut encoder = Encoder::new(meta(), true);
        encoder.start();
        for e in [Event::Text("Hel".into()), Event::Text("lo".into()), call(0, Some("c1"), ""), call(0, None, "{}")] {
            encoder.event(&e);
        }
        let response = encoder.finish();
        encoder.completed(response.clone());
        let events = encoder.take();
        let kinds: Vec<&str> = events.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, (kind, data)) in events.iter().enumerate() {
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!((data["type"].as_str(), data["sequence_number"].as_u64()), (Some(*kind), Some(n as u64)));
        }
        assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(response["output"][1]["call_id"], "c1");
        assert_eq!(response["output"][1]["arguments"], "{}");
        let delta: Value = serde_json::from_str(&events[4].1).unwrap();
        assert_eq!(delta["item_id"], response["output"][0]["id"]);
    }

    #[test]
    fn an_empty_reply_is_one_empty_message_and_a_length_stop_is_incomplete() {
        let mut encoder = Encoder::new(meta(), false);
        encoder.event(&Event::Finish(FinishReason::Length));
        let response = encoder.finish();
        assert_eq!(response["status"], "incomplete");
        assert_eq!(response["output"][0]["content"][0]["text"], "");
        assert!(encoder.take().is_empty(), "no events unless streaming");
    }

    #[test]
    fn a_namespaced_call_goes_out_with_its_namespace_and_item_ids_name_their_response() {
        let declared = super::super::tools::chat_tools(&[serde_json::json!({
            "type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}],
        })])
        .unwrap();
        let mut meta = meta();
        meta.namespaced = declared.namespaced;
        let mut encoder = Encoder::new(meta.clone(), true);
        encoder.event(&Event::Text("Spawning.".into()));
        encoder.event(&Event::ToolCall(ToolCallDelta {
            index: 0,
            id: Some("c1".into()),
            name: Some("multi_agent_v1__spawn_agent".into()),
            arguments: "{}".into(),
        }));
        let response = encoder.finish();
        let call = &response["output"][1];
        assert_eq!((call["name"].as_str(), call["namespace"].as_str()), (Some("spawn_agent"), Some("multi_agent_v1")));
        let done = encoder.take().into_iter().find(|(k, _)| *k == "response.function_call_arguments.done").unwrap();
        assert_eq!(serde_json::from_str::<Value>(&done.1).unwrap()["name"], "spawn_agent");
        for item in response["output"].as_array().unwrap() {
            assert_eq!(response_of(item["id"].as_str().unwrap()).as_deref(), Some(meta.id.as_str()), "{item}");
        }
        assert_eq!(response_of("msg_abc"), None);
        assert_eq!(response_of(&meta.id), None, "a response id is not an item id");
    }
}
