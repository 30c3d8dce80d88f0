//! An agent's outbound requests, deny by default, through two doors: the
//! standard `wasi:http/outgoing-handler` (any WASI HTTP client works in a
//! guest) and the contract's `http.fetch` (0.2.2, one call per request).
//! Both go through [`RunHooks::exchange`]: every request passes the agent's
//! policy (allow rules, internal addresses, per-run limits) before anything
//! leaves the host; credentials are added after the check and redacted from
//! what comes back.

mod fetch;
mod oauth;
mod policy;
mod redact;
mod send;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpHooks};

pub use fetch::{FetchError, FetchRequest};
pub use oauth::TokenSource;
pub use policy::{AllowRule, Credential, CredentialValue, HttpLimits, HttpPolicy, Target, is_internal};

use super::memory::RunMemory;
use crate::chat::AgentId;
use crate::metrics::Metrics;
use crate::telemetry;

/// Under `wasmclaw dev` there is no config file to edit: denials name the
/// command-line flag that allows the request instead of the config key.
static DEV_FLAGS: AtomicBool = AtomicBool::new(false);

/// Make every later denial name `wasmclaw dev --allow` (set once by `dev`).
pub fn name_dev_flags_in_denials() {
    DEV_FLAGS.store(true, Ordering::Relaxed);
}

/// An agent version's outbound HTTP, prepared at load.
pub struct HttpCapability {
    shared: Arc<Shared>,
}

/// What every run of one version shares.
struct Shared {
    agent: AgentId,
    /// `None`: the agent has no `http` block; every request is denied.
    policy: Option<HttpPolicy>,
    metrics: Arc<Metrics>,
    /// The agent's MCP servers (`config.mcpServers`): their client spans name the JSON-RPC method.
    mcp_servers: Vec<String>,
}

impl HttpCapability {
    /// Prepare from the agent's policy and settings (`config`).
    pub fn new(
        agent: &AgentId,
        policy: Option<HttpPolicy>,
        config: &std::collections::BTreeMap<String, String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mcp_servers = config
            .get("mcpServers")
            .map(|list| list.split([',', ' ', '\n']).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        Self { shared: Arc::new(Shared { agent: agent.clone(), policy, metrics, mcp_servers }) }
    }

    /// Per run: no request sent yet; bodies count against `memory`.
    pub fn instantiate(&self, run_id: &str, memory: &Arc<RunMemory>, tape: crate::tape::Tape) -> HttpState {
        HttpState {
            ctx: WasiHttpCtx::new(),
            hooks: RunHooks {
                shared: self.shared.clone(),
                run_id: run_id.to_string(),
                sent: 0,
                memory: memory.clone(),
                tape,
            },
        }
    }
}

/// One run's outbound HTTP.
pub struct HttpState {
    pub ctx: WasiHttpCtx,
    pub hooks: RunHooks,
}

/// The policy as wasmtime-wasi-http asks for it, with the run's counters.
pub struct RunHooks {
    shared: Arc<Shared>,
    run_id: String,
    /// Requests sent so far in this run.
    sent: u32,
    /// The run's memory account: request and response bodies the host
    /// buffers count against `limits.memoryBytes`.
    memory: Arc<RunMemory>,
    /// Records each request, or answers it from a recording.
    tape: crate::tape::Tape,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for RunHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        use tracing::Instrument;
        let (parts, body) = request.into_parts();
        let answer = self.exchange(parts, send::OutBody::Guest(body));
        // wasmtime-wasi-http spawns this future on a task of its own: carry the
        // run's span (the client's request id) into its log lines.
        Box::new(async move { answer.await?.into_wasi() }.in_current_span())
    }
}

/// A request's answer on its way: what [`RunHooks::exchange`] hands both doors.
type Exchange = std::pin::Pin<Box<dyn Future<Output = wasmtime_wasi_http::Result<send::Answer>> + Send>>;

impl RunHooks {
    /// One outbound request, whichever door it came through (`wasi:http` or
    /// `http.fetch`): answered from a recording, refused, or sent under the
    /// policy. Admission happens now, in order; the sending in the future.
    fn exchange(&mut self, parts: http::request::Parts, body: send::OutBody) -> Exchange {
        if let Some(live) = self.tape.replay_live() {
            return self.replay(parts, body, live);
        }
        match self.admit(&parts.method, &parts.uri) {
            Ok(admitted) => {
                let span = telemetry::HttpClientSpan::start(&parts.method, &parts.uri);
                let mcp = !span.span().is_none() && self.shared.is_mcp(&parts.uri);
                let propagate = self.shared.policy.as_ref().is_some_and(|p| p.propagate_trace);
                let trace = send::Trace { span, mcp, propagate };
                let (shared, run_id, memory, tape) =
                    (self.shared.clone(), self.run_id.clone(), self.memory.clone(), self.tape.clone());
                let request = http::Request::from_parts(parts, body);
                Box::pin(send::send(shared, run_id, request, admitted, memory, trace, tape))
            }
            // Take the body before refusing (see `OutBody::drain`); a large one
            // costs nothing, dropped frame by frame.
            Err(e) => {
                // A refusal is an answer the guest saw: a recording keeps it, so a replay refuses alike.
                let tape = self.tape.clone();
                Box::pin(async move {
                    let kept = body.drain(if tape.is_on() { MAX_REFUSED_BODY } else { 0 }).await;
                    if tape.is_on() {
                        let (method, uri) = (parts.method.to_string(), parts.uri.to_string());
                        let body = crate::tape::Blob(kept);
                        let response = Err(taped_error(&e));
                        tape.http_done(crate::tape::HttpCall { method, uri, headers: vec![], body, response });
                    }
                    Err(e)
                })
            }
        }
    }
}

/// Most of a refused request's body a recording keeps (a longer one will not match in replay).
const MAX_REFUSED_BODY: usize = 1 << 20;

/// A send error as a recording keeps it.
pub(super) fn taped_error(e: &wasmtime_wasi_http::Error) -> String {
    match e {
        wasmtime_wasi_http::Error::InternalError(Some(message)) => format!("internal: {message}"),
        other => format!("{other:?}"),
    }
}

/// The error a recording kept, as the guest heard it then.
fn replayed_error(text: String) -> wasmtime_wasi_http::Error {
    use wasmtime_wasi_http::Error;
    match text.as_str() {
        "HttpRequestDenied" => Error::HttpRequestDenied,
        "HttpRequestUriInvalid" => Error::HttpRequestUriInvalid,
        "HttpResponseTimeout" => Error::HttpResponseTimeout,
        "DestinationIpProhibited" => Error::DestinationIpProhibited,
        "ConnectionRefused" => Error::ConnectionRefused,
        _ => Error::InternalError(Some(text.strip_prefix("internal: ").unwrap_or(&text).to_string())),
    }
}

/// What the guest hears when a replay sends a request the recording cannot answer.
const DIVERGED: &str = "wasmclaw replay: the recording has no answer for this request (the run diverged)";

impl RunHooks {
    /// A replayed run's request: answered from the recording; with `live`,
    /// one it cannot answer goes out for real, under the same policy.
    fn replay(&mut self, parts: http::request::Parts, body: send::OutBody, live: bool) -> Exchange {
        use wasmtime_wasi_http::Error;
        let admitted = live.then(|| self.admit(&parts.method, &parts.uri));
        let (shared, run_id, memory, tape) =
            (self.shared.clone(), self.run_id.clone(), self.memory.clone(), self.tape.clone());
        Box::pin(async move {
            let mut hold = memory.hold();
            let bytes = body.collect(&mut hold, memory.max()).await?;
            drop(hold);
            match tape.http_request(parts.method.as_str(), &parts.uri.to_string(), &bytes) {
                crate::tape::Crossing::Answered(call) => {
                    let recorded = call.response.map_err(replayed_error)?;
                    let status = http::StatusCode::from_u16(recorded.status)
                        .map_err(|_| Error::InternalError(Some("recorded status".into())))?;
                    let mut headers = http::HeaderMap::new();
                    for (name, value) in recorded.headers {
                        if let (Ok(name), Ok(value)) =
                            (http::HeaderName::try_from(name), http::HeaderValue::try_from(value))
                        {
                            headers.append(name, value);
                        }
                    }
                    Ok(send::Answer { status, headers, body: recorded.body.0, hold: None })
                }
                crate::tape::Crossing::Live(_) => match admitted {
                    Some(Ok(admitted)) => {
                        let span = telemetry::HttpClientSpan::start(&parts.method, &parts.uri);
                        let trace = send::Trace { span, mcp: false, propagate: false };
                        let request = http::Request::from_parts(parts, send::OutBody::Whole(bytes));
                        send::send(shared, run_id, request, admitted, memory, trace, Default::default()).await
                    }
                    Some(Err(e)) => Err(e),
                    None => Err(Error::InternalError(Some(DIVERGED.into()))),
                },
                crate::tape::Crossing::Diverged => Err(Error::InternalError(Some(DIVERGED.into()))),
            }
        })
    }
}

impl Shared {
    /// True when `uri` is one of the agent's MCP servers (or under one).
    fn is_mcp(&self, uri: &http::Uri) -> bool {
        let url = uri.to_string();
        self.mcp_servers.iter().any(|server| url.starts_with(server.trim_end_matches('/')))
    }
}

/// A request that passed the policy, and what the sender must do with it.
pub(super) struct Admitted {
    target: Target,
    /// The allow rule's origin: the metric label (a guest picks `target`).
    label: String,
    /// The rule names its host literally: internal addresses are allowed.
    literal: bool,
    credentials: Vec<Credential>,
    limits: HttpLimits,
}

impl RunHooks {
    /// Decide before anything leaves the host.
    fn admit(&mut self, method: &http::Method, uri: &http::Uri) -> wasmtime_wasi_http::Result<Admitted> {
        use wasmtime_wasi_http::Error;
        let agent = &self.shared.agent;
        let method = method.as_str();
        let Some(target) = Target::of(uri) else { return Err(Error::HttpRequestUriInvalid) };
        let denied = |why: &str| {
            let key = match DEV_FLAGS.load(Ordering::Relaxed) {
                true => format!("wasmclaw dev --allow {}", target.origin()),
                false => format!("agents.entries.{agent}.http.allow"),
            };
            tracing::warn!(
                %agent, run_id = self.run_id, method, origin = target.origin(), path = target.path,
                key, "outbound HTTP denied: {why}"
            );
            // No origin label: the guest chose it, and would choose a new one each time.
            self.shared.metrics.agent_http(agent.as_str(), None, "denied", None);
            Err(Error::HttpRequestDenied)
        };
        let Some(policy) = &self.shared.policy else { return denied("the agent has no http block") };
        let Some(rule) = policy.allowed(&target) else {
            return match policy.path_outside(&target) {
                Some(prefixes) => denied(&format!(
                    "the path did not match: the rules for this origin allow only paths under {}",
                    prefixes.join(", ")
                )),
                None => denied("the origin is in no allow rule"),
            };
        };
        let (literal, label) = (rule.literal(), rule.origin());
        if !literal && target.host.parse().is_ok_and(is_internal) {
            return denied("an internal address needs a rule that names it");
        }
        if self.sent >= policy.limits.max_requests {
            tracing::warn!(
                %agent, run_id = self.run_id, method, origin = target.origin(), limit = policy.limits.max_requests,
                "outbound HTTP refused: the run reached http.limits.maxRequestsPerRun"
            );
            self.shared.metrics.agent_http(agent.as_str(), Some(&label), "limited", None);
            return Err(Error::InternalError(Some(format!(
                "wasmclaw: this run reached its limit of {} outbound requests (http.limits.maxRequestsPerRun)",
                policy.limits.max_requests
            ))));
        }
        self.sent += 1;
        let credentials = policy.credentials_for(&target).cloned().collect();
        Ok(Admitted { target, label, literal, credentials, limits: policy.limits.clone() })
    }
}
