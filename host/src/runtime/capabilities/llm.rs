//! `llm`: model calls through the agent's provider. The route (URL, key,
//! model) stays on the host; the guest only sees events and typed failures.

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use crate::chat::{AgentId, Event, Message, ToolSpec};
use crate::providers::{CompletionStream, ModelRoute, ProviderError};

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

/// Where the agent's model calls go.
pub struct LlmCapability {
    agent: Arc<AgentId>,
    route: Option<ModelRoute>,
}

impl LlmCapability {
    /// Prepare from the entry's `provider`/`model`.
    pub fn new(agent: &AgentId, route: Option<ModelRoute>) -> Self {
        Self { agent: Arc::new(agent.clone()), route }
    }

    /// Per run: no failure seen, no completion open; `model`, when the client
    /// chose one (checked against `allowModelOverride` before the run),
    /// replaces the entry's for every call of this run.
    pub fn instantiate(&self, model: Option<String>) -> LlmState {
        let mut route = self.route.clone();
        if let (Some(route), Some(model)) = (route.as_mut(), model) {
            route.model = model;
        }
        LlmState { agent: self.agent.clone(), route, failure: None, open: 0, traces: Default::default() }
    }
}

/// One run's model calls.
pub struct LlmState {
    agent: Arc<AgentId>,
    route: Option<ModelRoute>,
    /// The last failure the agent saw, cleared by a later success: a run that
    /// then fails is reported to the client as this failure.
    failure: Option<ProviderError>,
    /// `completion` resources the agent holds now.
    open: usize,
    /// The `chat` span of each completion held, by resource; empty while tracing is off.
    traces: std::collections::HashMap<u32, crate::telemetry::ChatSpan>,
}

impl LlmState {
    /// Start a completion; the stream lives in `table` as a guest resource.
    pub async fn complete(
        &mut self,
        table: &mut ResourceTable,
        req: CompletionRequest,
    ) -> wasmtime::Result<Result<Resource<CompletionStream>, LlmFailure>> {
        let id = &self.agent;
        let Some(route) = self.route.clone() else {
            return Ok(Err(LlmFailure::Unavailable(format!(
                "agent {id:?} has no model provider; set agents.entries.{id}.provider and .model"
            ))));
        };
        let model = match req.model {
            Some(model) if model != route.model && !route.allow_override => {
                return Ok(Err(LlmFailure::BadRequest(format!(
                    "agent {id:?} may not choose its model (agents.entries.{id}.allowModelOverride is off)"
                ))));
            }
            Some(model) => model,
            None => route.model.clone(),
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
                let stream = table.push(stream)?;
                if !chat.span().is_none() {
                    self.traces.insert(stream.rep(), chat);
                }
                Ok(Ok(stream))
            }
            Err(e) => {
                chat.failed(e.kind());
                Ok(Err(self.failed(e)))
            }
        }
    }

    /// The next event of a completion the guest holds.
    pub async fn next<T>(
        &mut self,
        table: &mut ResourceTable,
        this: &Resource<CompletionStream>,
        to_guest: impl Fn(Event) -> Option<T>,
    ) -> wasmtime::Result<Result<Option<T>, LlmFailure>> {
        loop {
            // An event the guest's world cannot carry is skipped, not an end.
            let next = table.get_mut(this)?.next().await;
            if let Some(chat) = self.traces.get_mut(&this.rep()) {
                match &next {
                    Ok(Some(event)) => chat.observe(event),
                    Ok(None) => drop(self.traces.remove(&this.rep())),
                    Err(e) => chat.failed(e.kind()),
                }
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
        table.delete(this)?;
        self.open -= 1;
        Ok(())
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
            ProviderError::Unavailable { .. } => LlmFailure::Unavailable(message),
            ProviderError::Timeout { .. } => LlmFailure::Timeout(message),
        };
        self.failure = Some(e);
        for_agent
    }
}
