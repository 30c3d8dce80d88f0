//! The host side of the `llm` import: model calls through the agent's provider.

use wasmtime::component::Resource;

use super::bindings::wasmclaw::agent::llm;
use super::bindings::{CompletionRequest, Event, LlmError};
use super::state::RunState;
use crate::providers::{CompletionStream, ProviderError};

/// Completions one run may hold open at once; each is an upstream connection.
const MAX_OPEN_COMPLETIONS: usize = 4;

impl llm::Host for RunState {
    async fn complete(
        &mut self,
        req: CompletionRequest,
    ) -> wasmtime::Result<Result<Resource<CompletionStream>, LlmError>> {
        let Some(route) = self.llm.clone() else {
            let id = &self.agent_id;
            return Ok(Err(LlmError::Unavailable(format!(
                "agent {id:?} has no model provider; set agents.entries.{id}.provider and .model"
            ))));
        };
        let model = match req.model {
            Some(model) if model != route.model && !route.allow_override => {
                let id = &self.agent_id;
                return Ok(Err(LlmError::BadRequest(format!(
                    "agent {id:?} may not choose its model (agents.entries.{id}.allowModelOverride is off)"
                ))));
            }
            Some(model) => model,
            None => route.model.clone(),
        };
        if self.open_completions >= MAX_OPEN_COMPLETIONS {
            return Ok(Err(LlmError::BadRequest(format!(
                "at most {MAX_OPEN_COMPLETIONS} completions may be open at once; drop one first"
            ))));
        }
        match route.provider.start(&model, &req.messages, &req.tools, &req.params).await {
            Ok(stream) => {
                self.llm_failure = None;
                self.open_completions += 1;
                Ok(Ok(self.table.push(stream)?))
            }
            Err(e) => Ok(Err(self.failed(e))),
        }
    }
}

impl llm::HostCompletion for RunState {
    async fn next(&mut self, this: Resource<CompletionStream>) -> wasmtime::Result<Result<Option<Event>, LlmError>> {
        let result = self.table.get_mut(&this)?.next().await;
        Ok(result.map_err(|e| self.failed(e)))
    }

    fn drop(&mut self, this: Resource<CompletionStream>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.open_completions -= 1;
        Ok(())
    }
}

impl RunState {
    /// Remember the failure for the run's outcome and tell the agent.
    fn failed(&mut self, e: ProviderError) -> LlmError {
        let message = e.to_string();
        let for_agent = match &e {
            ProviderError::RateLimited { retry_after, .. } => LlmError::RateLimited(*retry_after),
            ProviderError::Unauthorized { .. } => LlmError::Unauthorized(message),
            ProviderError::BadRequest { .. } => LlmError::BadRequest(message),
            ProviderError::Unavailable { .. } => LlmError::Unavailable(message),
            ProviderError::Timeout { .. } => LlmError::Timeout(message),
        };
        self.llm_failure = Some(e);
        for_agent
    }
}
