//! The spans of a run, named and attributed per the GenAI semantic
//! conventions (v1.41.0). Each constructor returns `Span::none()` while
//! tracing is off. A run's `invoke_agent` span travels with its task (a task
//! local), so capabilities parent their spans on it explicitly: the log's
//! own spans (a request's id) stay as they were.

use std::future::Future;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::settings;
use crate::chat::{Event, FinishReason, Message, ToolCall, ToolResult};

/// The target of every span meant for the exporter (and kept out of the log).
pub const RUN_SPAN_TARGET: &str = "wasmclaw_trace";

/// Most bytes of reply text a `chat` span keeps with `captureContent`.
const MAX_CAPTURED: usize = 64 * 1024;

tokio::task_local! {
    static RUN: Span;
}

/// Run `work` as the run of `span`: capabilities find it with [`run_span`].
pub async fn in_run<F: Future>(span: Span, work: F) -> F::Output {
    if span.is_none() { work.await } else { RUN.scope(span, work).await }
}

/// The `invoke_agent` span of the run this task belongs to (none when off).
pub fn run_span() -> Span {
    if settings().is_none() {
        return Span::none();
    }
    RUN.try_with(Span::clone).unwrap_or_else(|_| Span::none())
}

/// A door's HTTP server span; continues the request's `traceparent` when
/// `telemetry.trustIncomingTraceparent` allows it. WebSocket upgrades get
/// none: their frames do ([`ws_server_span`]).
pub fn server_span<B>(request: &http::Request<B>, peer: std::net::SocketAddr) -> Span {
    let Some(settings) = settings() else { return Span::none() };
    if request.headers().contains_key(http::header::UPGRADE) {
        return Span::none();
    }
    let (method, path) = (request.method().as_str(), request.uri().path());
    let span = tracing::info_span!(
        target: RUN_SPAN_TARGET, "http_server",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        http.request.method = method,
        url.path = path,
        url.scheme = "http",
        client.address = %peer.ip(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    if settings.trust_incoming && request.headers().contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    span
}

/// The server span has answered with `status`.
pub fn responded(span: &Span, status: u16) {
    if span.is_none() {
        return;
    }
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// A WebSocket request frame's server span (`method` is the protocol's).
pub fn ws_server_span(method: &str) -> Span {
    if settings().is_none() {
        return Span::none();
    }
    tracing::info_span!(
        target: RUN_SPAN_TARGET, "ws_server",
        otel.name = %format!("ws {method}"),
        otel.kind = "server",
        rpc.system = "openclaw-gateway",
        rpc.method = method,
    )
}

/// `invoke_agent {agent}` for one run, a child of the caller's span.
pub fn invoke_agent(agent: &str, digest: &str, session: &str, run_id: &str) -> Span {
    if settings().is_none() {
        return Span::none();
    }
    tracing::info_span!(
        target: RUN_SPAN_TARGET, "invoke_agent",
        otel.name = %format!("invoke_agent {agent}"),
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = agent,
        gen_ai.agent.id = agent,
        gen_ai.agent.version = digest,
        gen_ai.conversation.id = session,
        wasmclaw.run.id = run_id,
        otel.status_code = Empty,
        error.type = Empty,
    )
}

/// The run of `span` failed as `kind` (a stable error kind, never a message).
pub fn failed(span: &Span, kind: &str) {
    if span.is_none() {
        return;
    }
    span.record("otel.status_code", "error");
    span.record("error.type", kind);
}

/// `chat {model}`: one model call, from its start to the end of its stream.
pub struct ChatSpan {
    span: Span,
    /// `gen_ai.response.model` is set (once: every chunk names the same model).
    model_known: bool,
    /// The reply text so far, with `captureContent` only.
    text: Option<String>,
}

impl ChatSpan {
    /// A call of `model` on `provider` with the request parameters `params` (JSON).
    pub fn start(provider: &str, model: &str, params: &str, messages: &[Message]) -> Self {
        let Some(settings) = settings() else { return Self { span: Span::none(), model_known: true, text: None } };
        let run = run_span();
        let span = tracing::info_span!(
            target: RUN_SPAN_TARGET, parent: &run, "chat",
            otel.name = %format!("chat {model}"),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = provider,
            gen_ai.request.model = model,
            gen_ai.response.model = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        for (key, value) in request_params(params) {
            span.set_attribute(key, value);
        }
        if settings.capture_content {
            span.set_attribute("gen_ai.input.messages", messages_json(messages));
        }
        Self { span, model_known: false, text: settings.capture_content.then(String::new) }
    }

    /// The span, to send its `traceparent` to the provider.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The model that answered, as the provider's reply names it.
    pub fn response_model(&mut self, model: Option<&str>) {
        if let Some(model) = model.filter(|_| !self.model_known) {
            self.span.record("gen_ai.response.model", model);
            self.model_known = true;
        }
    }

    /// An event of the stream, as the agent receives it.
    pub fn observe(&mut self, event: &Event) {
        if self.span.is_none() {
            return;
        }
        match event {
            Event::Usage(usage) => {
                self.span.record("gen_ai.usage.input_tokens", i64::from(usage.prompt_tokens));
                self.span.record("gen_ai.usage.output_tokens", i64::from(usage.completion_tokens));
            }
            Event::Finish(reason) => {
                let reason = match reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                    FinishReason::ToolCalls => "tool_call",
                };
                let reasons = opentelemetry::Array::String(vec![opentelemetry::StringValue::from(reason)]);
                self.span.set_attribute("gen_ai.response.finish_reasons", Value::Array(reasons));
            }
            Event::Text(text) => {
                if let Some(kept) = self.text.as_mut() {
                    let room = MAX_CAPTURED.saturating_sub(kept.len());
                    kept.push_str(cut(text, room));
                }
            }
            _ => {}
        }
    }

    /// The call failed as `kind`.
    pub fn failed(&self, kind: &str) {
        failed(&self.span, kind);
    }
}

impl Drop for ChatSpan {
    fn drop(&mut self) {
        if let Some(text) = self.text.take() {
            let output = serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]);
            self.span.set_attribute("gen_ai.output.messages", output.to_string());
        }
    }
}

/// `execute_tool {name}`: a tool the agent ran itself, until its result.
pub fn tool_span(call: &ToolCall) -> Span {
    let Some(settings) = settings() else { return Span::none() };
    let run = run_span();
    let span = tracing::info_span!(
        target: RUN_SPAN_TARGET, parent: &run, "execute_tool",
        otel.name = %format!("execute_tool {}", call.name),
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = call.name.as_str(),
        gen_ai.tool.call.id = call.id.as_str(),
        gen_ai.tool.type = "extension",
        otel.status_code = Empty,
        error.type = Empty,
    );
    if settings.capture_content {
        span.set_attribute("gen_ai.tool.call.arguments", call.arguments.clone());
    }
    span
}

/// The tool of `span` returned `result`.
pub fn tool_returned(span: &Span, result: &ToolResult) {
    let Some(settings) = settings() else { return };
    if result.is_error {
        failed(span, "tool_error");
    }
    if settings.capture_content {
        span.set_attribute("gen_ai.tool.call.result", result.output.clone());
    }
}

/// An outbound request's client span: the URL without query or credentials.
pub struct HttpClientSpan(Span);

impl HttpClientSpan {
    /// `method` to `uri`, under the run's span.
    pub fn start(method: &http::Method, uri: &http::Uri) -> Self {
        if settings().is_none() {
            return Self(Span::none());
        }
        let run = run_span();
        let (host, port) = (uri.host().unwrap_or_default(), uri.port_u16());
        let scheme = uri.scheme_str().unwrap_or("http");
        let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
        // The authority without any `user:password@`.
        let authority = uri.authority().and_then(|a| a.as_str().rsplit('@').next()).unwrap_or(host);
        let url = format!("{scheme}://{authority}{}", uri.path());
        Self(tracing::info_span!(
            target: RUN_SPAN_TARGET, parent: &run, "http_client",
            otel.name = method.as_str(),
            otel.kind = "client",
            http.request.method = method.as_str(),
            url.full = %url,
            server.address = host,
            server.port = i64::from(port),
            http.response.status_code = Empty,
            mcp.method.name = Empty,
            gen_ai.tool.name = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        ))
    }

    /// The span, to send its `traceparent` and to carry the send's log lines.
    pub fn span(&self) -> &Span {
        &self.0
    }

    /// The request went to an MCP server: name the JSON-RPC method (and the
    /// tool of a `tools/call`) read from `body`.
    pub fn mcp(&self, body: &[u8]) {
        if self.0.is_none() {
            return;
        }
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else { return };
        let Some(method) = request["method"].as_str() else { return };
        let method = cut(method, 128);
        self.0.record("mcp.method.name", method);
        let tool = (method == "tools/call").then(|| request["params"]["name"].as_str()).flatten();
        match tool.map(|t| cut(t, 128)) {
            Some(tool) => {
                self.0.record("gen_ai.tool.name", tool);
                self.0.record("otel.name", format!("{method} {tool}").as_str());
            }
            None => {
                self.0.record("otel.name", method);
            }
        }
    }

    /// The server answered `status`.
    pub fn answered(&self, status: u16) {
        if self.0.is_none() {
            return;
        }
        self.0.record("http.response.status_code", i64::from(status));
        if status >= 400 {
            self.0.record("otel.status_code", "error");
            self.0.record("error.type", status.to_string().as_str());
        }
    }

    /// The request failed as `kind` before an answer.
    pub fn failed(&self, kind: &str) {
        failed(&self.0, kind);
    }
}

/// The W3C `traceparent` of `span`, when tracing is on and the span is real.
pub fn inject(span: &Span) -> Option<http::HeaderValue> {
    if span.is_none() {
        return None;
    }
    let mut carrier = Carrier(None);
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0.and_then(|v| http::HeaderValue::from_str(&v).ok())
}

/// A guest log line as an event of the run's span.
pub fn log_event(span: &Span, level: tracing::Level, stream: Option<&'static str>, text: &str) {
    let mut attributes = vec![KeyValue::new("log.level", level.as_str()), KeyValue::new("message", text.to_string())];
    if let Some(stream) = stream {
        attributes.push(KeyValue::new("log.iostream", stream));
    }
    span.add_event("guest.log", attributes);
}

/// The request parameters the conventions name, from the agent's params JSON.
fn request_params(params: &str) -> Vec<(&'static str, Value)> {
    let Ok(serde_json::Value::Object(params)) = serde_json::from_str::<serde_json::Value>(params) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let float = |k: &str| params.get(k).and_then(serde_json::Value::as_f64);
    let int = |k: &str| params.get(k).and_then(serde_json::Value::as_i64);
    for (key, name) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
    ] {
        if let Some(v) = float(key) {
            out.push((name, Value::F64(v)));
        }
    }
    if let Some(v) = int("max_completion_tokens").or_else(|| int("max_tokens")) {
        out.push(("gen_ai.request.max_tokens", Value::I64(v)));
    }
    if let Some(v) = int("seed") {
        out.push(("gen_ai.request.seed", Value::I64(v)));
    }
    out
}

/// Messages as the conventions' `gen_ai.input.messages` JSON.
fn messages_json(messages: &[Message]) -> String {
    let messages: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let role = format!("{:?}", m.role).to_lowercase();
            let mut parts = Vec::new();
            if !m.content.is_empty() {
                parts.push(serde_json::json!({"type": "text", "content": m.content}));
            }
            for call in &m.tool_calls {
                parts.push(serde_json::json!({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}));
            }
            if let Some(id) = &m.tool_call_id {
                parts = vec![serde_json::json!({"type": "tool_call_response", "id": id, "response": m.content})];
            }
            serde_json::json!({"role": role, "parts": parts})
        })
        .collect();
    serde_json::Value::Array(messages).to_string()
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Takes the `traceparent` the propagator writes.
struct Carrier(Option<String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_conventions_request_parameters_are_read_from_params() {
        let params = super::request_params(r#"{"temperature":0.5,"max_tokens":64,"user":"x"}"#);
        let keys: Vec<_> = params.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["gen_ai.request.temperature", "gen_ai.request.max_tokens"]);
        assert!(super::request_params("not json").is_empty());
    }
}
