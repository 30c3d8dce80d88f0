//! `llm`: model calls through the agent's provider. The route (URL, key,
//! model) stays on the host; the guest only sees events and typed failures.
//! Model access is decided here ([`permitted`]: for a client's per-run model
//! and an agent's per-call one alike), and every call is metered here from
//! the provider's own usage, into the run's [`Meter`] and the metrics.

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use crate::chat::{AgentId, Event, Message, ToolSpec};
use crate::metrics::Metrics;
use crate::providers::{CompletionStream, ModelRoute, ProviderError};
use crate::tape::{Crossing, Failure, LlmRequest, Tape};
use crate::usage::{Cost, Labels, Meter, Sink, Tokens};

/// Completions one run may hold open at once; each is an upstream connection.
const MAX_OPEN_COMPLETIONS: usize = 4;

/// Why a completion could not start or stopped early, as the guest hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmFailure {
    RateLimited(Option<u32>),
    Unauthorized(String),
    BadRequest(String),
    Unavailable(String),
    Timeout(String),
}

/// One completion to start, in the host's terms.
pub struct CompletionRequest {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub params: String,
    pub model: Option<String>,
}

/// The one rule of model access: the entry's model, or one chosen per run
/// (by the client) or per call (by the agent) when the entry sets
/// `allowModelOverride`. `Err` says which key to change.
fn permitted(agent: &AgentId, route: &ModelRoute, requested: Option<&str>) -> Result<String, String> {
    match requested {
        Some(model) if model != route.model && !route.allow_override => Err(format!(
            "agent {agent:?} may not run on a model other than its own \
             (agents.entries.{agent}.allowModelOverride is off)"
        )),
        Some(model) => Ok(model.to_string()),
        None => Ok(route.model.clone()),
    }
}

/// Where the agent's model calls go.
pub struct LlmCapability {
    agent: Arc<AgentId>,
    route: Option<ModelRoute>,
    sink: Arc<dyn Sink>,
}

impl LlmCapability {
    /// Prepare from the entry's `provider`/`model`; usage is counted in `metrics`.
    pub fn new(agent: &AgentId, route: Option<ModelRoute>, metrics: Arc<Metrics>) -> Self {
        Self { agent: Arc::new(agent.clone()), route, sink: Arc::new(MetricsSink(metrics)) }
    }

    /// Whether a run may use `model` (chosen by its client), before it starts.
    pub fn check_run_model(&self, model: &str) -> Result<(), String> {
        let id = &self.agent;
        match &self.route {
            Some(route) => permitted(id, route, Some(model)).map(drop),
            None => Err(format!("agent {id:?} has no model provider, so no model can be chosen for it")),
        }
    }

    /// Per run: no failure seen, no completion open; `model`, when the client
    /// chose one, is asked for on every call of this run that names none;
    /// every call is metered into `meter`.
    pub fn instantiate(&self, model: Option<String>, meter: Meter, tape: Tape) -> LlmState {
        LlmState {
            agent: self.agent.clone(),
            route: self.route.clone(),
            run_model: model,
            meter,
            sink: self.sink.clone(),
            failure: None,
            open: 0,
            traces: Default::default(),
            tape,
            taped: Default::default(),
        }
    }
}

/// Usage into the Prometheus counters.
struct MetricsSink(Arc<Metrics>);

impl Sink for MetricsSink {
    fn used(&self, l: &Labels, tokens: &Tokens, cost: Cost) {
        self.0.llm_usage(&l.agent, &l.model, &l.provider, &l.token, tokens, cost.picos());
    }

    fn unmetered(&self, l: &Labels) {
        self.0.llm_unmetered(&l.agent, &l.model, &l.provider, &l.token);
    }
}

/// One run's model calls.
pub struct LlmState {
    agent: Arc<AgentId>,
    route: Option<ModelRoute>,
    /// The client's model for this run, if it chose one.
    run_model: Option<String>,
    meter: Meter,
    sink: Arc<dyn Sink>,
    /// The last failure the agent saw, cleared by a later success: a run that
    /// then fails is reported to the client as this failure.
    failure: Option<ProviderError>,
    /// `completion` resources the agent holds now.
    open: usize,
    /// The `chat` span of each completion held, by resource; empty while tracing is off.
    traces: std::collections::HashMap<u32, crate::telemetry::ChatSpan>,
    tape: Tape,
    /// Completions held that the tape records or answers, by resource.
    taped: std::collections::HashMap<u32, Taped>,
}

/// A completion on the tape.
enum Taped {
    /// Its events are recorded under this index.
    Recording(usize),
    /// Answered from the recording; ends with this failure, if it did.
    Replayed(Option<Failure>),
}

/// The recorded `kind` of calls the host refused before any provider.
const REFUSED_UNAVAILABLE: &str = "refused_unavailable";
const REFUSED_BAD_REQUEST: &str = "refused_bad_request";

/// What the guest hears when a replay asks a model question the recording cannot answer.
const DIVERGED: &str = "wasmclaw replay: the recording has no answer for this model call (the run diverged)";

impl LlmState {
    /// Start a completion; the stream lives in `table` as a guest resource.
    pub async fn complete(
        &mut self,
        table: &mut ResourceTable,
        req: CompletionRequest,
    ) -> wasmtime::Result<Result<Resource<CompletionStream>, LlmFailure>> {
        let mut recording = None;
        if self.tape.is_on() {
            let request = LlmRequest {
                messages: req.messages.clone(),
                tools: req.tools.clone(),
                params: req.params.clone(),
                model: req.model.clone().or_else(|| self.run_model.clone()),
            };
            match self.tape.llm_start(request) {
                Crossing::Live(index) => recording = index,
                Crossing::Diverged => return Ok(Err(LlmFailure::Unavailable(DIVERGED.into()))),
                Crossing::Answered(call) => return self.replayed(table, call),
            }
        }
        let id = &self.agent;
        let Some(route) = self.route.clone() else {
            let why = format!("agent {id:?} has no model provider; set agents.entries.{id}.provider and .model");
            return Ok(Err(self.refused(recording, LlmFailure::Unavailable(why))));
        };
        let model = match permitted(id, &route, req.model.as_deref().or(self.run_model.as_deref())) {
            Ok(model) => model,
            Err(why) => return Ok(Err(self.refused(recording, LlmFailure::BadRequest(why)))),
        };
        if self.open >= MAX_OPEN_COMPLETIONS {
            return Ok(Err(LlmFailure::BadRequest(format!(
                "at most {MAX_OPEN_COMPLETIONS} completions may be open at once; drop one first"
            ))));
        }
        let chat = crate::telemetry::ChatSpan::start(route.provider.name(), &model, &req.params, &req.messages);
        let started = route.provider.start(&model, &req.messages, &req.tools, &req.params);
        match tracing::Instrument::instrument(started, chat.span().clone()).await {
            Ok(stream) => {
                self.failure = None;
                self.open += 1;
                let price = route.provider.price(&model);
                // A name the operator never configured must not become a label.
                let known = model == route.model || price.is_some();
                let labels = Labels {
                    agent: id.to_string(),
                    provider: route.provider.name().to_string(),
                    model: if known { model } else { "other".into() },
                    token: self.meter.principal().to_string(),
                };
                let call = self.meter.start_call(labels, price, self.sink.clone());
                let stream = table.push(stream.metered(call))?;
                if let Some(index) = recording {
                    self.taped.insert(stream.rep(), Taped::Recording(index));
                }
                if !chat.span().is_none() {
                    self.traces.insert(stream.rep(), chat);
                }
                Ok(Ok(stream))
            }
            Err(e) => {
                chat.failed(e.kind());
                if let Some(index) = recording {
                    self.tape.llm_failed(index, Failure::of(&e));
                }
                Ok(Err(self.failed(e)))
            }
        }
    }

    /// The next event of a completion the guest holds. While `outbox` holds
    /// the guest's events, a provider not ready at once gets one yield before
    /// the run waits (and hands them over): its next chunk may be a wake away.
    pub async fn next<T>(
        &mut self,
        table: &mut ResourceTable,
        this: &Resource<CompletionStream>,
        outbox: Option<&super::outbox::Outbox>,
        to_guest: impl Fn(Event) -> Option<T>,
    ) -> wasmtime::Result<Result<Option<T>, LlmFailure>> {
        loop {
            // An event the guest's world cannot carry is skipped, not an end.
            let stream = table.get_mut(this)?;
            let next = super::outbox::ready_or_after_a_yield(outbox, stream.next()).await;
            if let Some(chat) = self.traces.get_mut(&this.rep()) {
                chat.response_model(stream.response_model());
                match &next {
                    Ok(Some(event)) => chat.observe(event),
                    Ok(None) => drop(self.traces.remove(&this.rep())),
                    Err(e) => chat.failed(e.kind()),
                }
            }
            match (self.taped.get_mut(&this.rep()), &next) {
                (Some(Taped::Recording(index)), Ok(Some(event))) => self.tape.llm_event(*index, event),
                (Some(Taped::Recording(index)), Err(e)) => self.tape.llm_failed(*index, Failure::of(e)),
                (Some(Taped::Replayed(failure)), Ok(None)) => {
                    if let Some(failure) = failure.take() {
                        return Ok(Err(self.failed(failure.to_error())));
                    }
                }
                _ => {}
            }
            match next {
                Ok(Some(event)) => match to_guest(event) {
                    Some(event) => return Ok(Ok(Some(event))),
                    None => continue,
                },
                Ok(None) => return Ok(Ok(None)),
                Err(e) => return Ok(Err(self.failed(e))),
            }
        }
    }

    /// The guest dropped a completion: close the upstream request.
    pub fn close(&mut self, table: &mut ResourceTable, this: Resource<CompletionStream>) -> wasmtime::Result<()> {
        self.traces.remove(&this.rep());
        self.taped.remove(&this.rep());
        table.delete(this)?;
        self.open -= 1;
        Ok(())
    }

    /// A completion answered from the recording: no provider, no cost.
    fn replayed(
        &mut self,
        table: &mut ResourceTable,
        call: crate::tape::LlmCall,
    ) -> wasmtime::Result<Result<Resource<CompletionStream>, LlmFailure>> {
        // Recorded as failing before its first event: it failed to start.
        if call.events.is_empty()
            && let Some(failure) = call.failure
        {
            return Ok(Err(match failure.kind.as_str() {
                // The host refused it, no provider involved: the same words again.
                REFUSED_UNAVAILABLE => LlmFailure::Unavailable(failure.message),
                REFUSED_BAD_REQUEST => LlmFailure::BadRequest(failure.message),
                _ => self.failed(failure.to_error()),
            }));
        }
        if self.open >= MAX_OPEN_COMPLETIONS {
            return Ok(Err(LlmFailure::BadRequest(format!(
                "at most {MAX_OPEN_COMPLETIONS} completions may be open at once; drop one first"
            ))));
        }
        self.open += 1;
        self.failure = None;
        let provider = call.failure.as_ref().map(|f| f.provider.clone()).unwrap_or_default();
        let stream = table.push(CompletionStream::replayed(provider, call.events))?;
        self.taped.insert(stream.rep(), Taped::Replayed(call.failure));
        Ok(Ok(stream))
    }

    /// A call the host refused before any provider: recorded as such, so a replay refuses alike.
    fn refused(&self, recording: Option<usize>, failure: LlmFailure) -> LlmFailure {
        if let Some(index) = recording {
            let (kind, message) = match &failure {
                LlmFailure::BadRequest(m) => (REFUSED_BAD_REQUEST, m.clone()),
                LlmFailure::Unavailable(m) => (REFUSED_UNAVAILABLE, m.clone()),
                _ => (REFUSED_UNAVAILABLE, String::new()),
            };
            let f =
                Failure { kind: kind.into(), provider: String::new(), message, status: 0, retry_after: None, ms: 0 };
            self.tape.llm_failed(index, f);
        }
        failure
    }

    /// The provider failure behind a failed run, if the agent saw one last.
    pub fn take_failure(&mut self) -> Option<ProviderError> {
        self.failure.take()
    }

    /// Remember the failure for the run's outcome and tell the agent.
    fn failed(&mut self, e: ProviderError) -> LlmFailure {
        let message = e.to_string();
        let for_agent = match &e {
            ProviderError::RateLimited { retry_after, .. } => LlmFailure::RateLimited(*retry_after),
            ProviderError::Unauthorized { .. } => LlmFailure::Unauthorized(message),
            ProviderError::BadRequest { .. } => LlmFailure::BadRequest(message),
            ProviderError::Unavailable { .. } | ProviderError::Redirected { .. } => LlmFailure::Unavailable(message),
            ProviderError::Timeout { .. } => LlmFailure::Timeout(message),
        };
        self.failure = Some(e);
        for_agent
    }
}
