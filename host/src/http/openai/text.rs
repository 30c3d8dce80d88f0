//! `POST /v1/completions`, the legacy endpoint LlamaIndex's `OpenAILike` calls:
//! a `prompt` in, the `text_completion` shape out (whole or streamed).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::params;
use super::request::{StreamOptions, parse_json};
use super::response::{Completion, UsageJson};
use crate::chat::{Event, FinishReason, Reply, Usage, finish_reason};
use crate::http::error::ApiError;
use crate::http::stream::{Encoder, SseWriter};

/// The fields the gateway consumes; everything else is `rest`, the agent's `params`.
#[derive(Debug, Deserialize)]
pub struct TextRequest {
    pub model: Option<String>,
    pub prompt: Option<Value>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    pub n: Option<u32>,
    pub best_of: Option<u32>,
    /// Put the prompt in front of the generated text.
    pub echo: Option<bool>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TextRequest {
    /// Parse a body; errors name the offending field in `param`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let request: Self = parse_json(body)?;
        params::one_choice("n", request.n)?;
        params::one_choice("best_of", request.best_of)?;
        request.prompt_text()?;
        Ok(request)
    }

    /// The prompt: a string or a list of one string (token arrays and batches are refused).
    pub fn prompt_text(&self) -> Result<&str, ApiError> {
        let refuse = || {
            ApiError::invalid_request(
                "`prompt` must be a string or a list of one string; token arrays and several prompts are not served",
                Some("prompt".into()),
            )
        };
        match &self.prompt {
            Some(Value::String(text)) => Ok(text),
            Some(Value::Array(items)) if items.len() == 1 => items[0].as_str().ok_or_else(refuse),
            _ => Err(refuse()),
        }
    }

    /// True for `stream: true`.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The text that goes before the generated text (`echo: true`).
    fn echoed(&self) -> &str {
        if self.echo.unwrap_or(false) { self.prompt_text().unwrap_or_default() } else { "" }
    }

    /// The fields the gateway does not consume, for the agent's `params`.
    pub fn params(&self) -> Result<Value, ApiError> {
        params::agent_params(&self.rest)
    }

    /// The non-streaming `text_completion` body.
    pub fn whole(&self, completion: &Completion, reply: &Reply) -> Value {
        let text = format!("{}{}", self.echoed(), reply.text);
        let choice =
            TextChoice { text: &text, index: 0, logprobs: None, finish_reason: Some(name(reply.finish_reason())) };
        let body = TextCompletion {
            id: &completion.id,
            object: "text_completion",
            created: completion.created,
            model: &completion.model,
            choices: &[choice],
            usage: Some(Some(reply.usage.into())),
        };
        serde_json::to_value(body).expect("serializes: no maps with non-string keys")
    }

    /// An encoder for this request's stream.
    pub fn encoder(&self, completion: Completion) -> TextEncoder {
        let include_usage = self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        TextEncoder { completion, include_usage, echo: self.echoed().to_string(), finish: None, usage: None }
    }
}

/// Legacy completions know no tool calls: an agent's calls end the text as `stop`.
fn name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::ToolCalls => "stop",
    }
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [TextChoice<'a>],
    /// Absent on stream chunks unless usage was asked for; then `null` but on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageJson>>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// Turns run events into streamed `text_completion` objects.
pub struct TextEncoder {
    completion: Completion,
    include_usage: bool,
    echo: String,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl TextEncoder {
    fn chunk(&self, choices: &[TextChoice<'_>], usage: Option<UsageJson>, out: &mut SseWriter) {
        let chunk = TextCompletion {
            id: &self.completion.id,
            object: "text_completion",
            created: self.completion.created,
            model: &self.completion.model,
            choices,
            usage: self.include_usage.then_some(usage),
        };
        out.json(&chunk);
    }

    fn text(&self, text: &str, out: &mut SseWriter) {
        self.chunk(&[TextChoice { text, index: 0, logprobs: None, finish_reason: None }], None, out);
    }
}

impl Encoder for TextEncoder {
    /// Nothing, unless the prompt is echoed.
    fn start(&self, out: &mut SseWriter) {
        if !self.echo.is_empty() {
            self.text(&self.echo, out);
        }
    }

    fn event(&mut self, event: &Event, out: &mut SseWriter) {
        match event {
            Event::Text(t) if !t.is_empty() => self.text(t, out),
            Event::Usage(u) => self.usage = Some(*u),
            Event::Finish(f) => self.finish = Some(*f),
            Event::Text(_) | Event::Reasoning(_) | Event::ToolCall(_) | Event::ServerTool(_) => {}
        }
    }

    /// The finish reason on an empty text, then usage when asked for.
    fn finish(&self, out: &mut SseWriter) {
        let reason = name(finish_reason(self.finish, false));
        self.chunk(&[TextChoice { text: "", index: 0, logprobs: None, finish_reason: Some(reason) }], None, out);
        if self.include_usage {
            self.chunk(&[], Some(self.usage.into()), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_is_one_string() {
        for ok in [r#"{"prompt":"hi"}"#, r#"{"prompt":["hi"]}"#] {
            assert_eq!(TextRequest::parse(ok.as_bytes()).unwrap().prompt_text().unwrap(), "hi");
        }
        for bad in [r#"{}"#, r#"{"prompt":["a","b"]}"#, r#"{"prompt":[1,2]}"#, r#"{"prompt":5}"#, r#"{"prompt":[]}"#] {
            assert_eq!(TextRequest::parse(bad.as_bytes()).unwrap_err().param.as_deref(), Some("prompt"), "{bad}");
        }
        let e = TextRequest::parse(br#"{"prompt":"hi","best_of":3}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("best_of"));
    }
}
