//! One run's work inside its task: the budget reservation, the session's
//! owner check, the agent's run and the turn's commit.

use std::sync::Arc;

use super::budget;
use super::settle::BudgetCheck;
use crate::auth::Principal;
use crate::chat::{Message, RunRequest};
use crate::runtime::{AgentVersion, RunError, RunEvents};
use crate::sessions::{Access, RunMark, SessionStore, StoreError, StoreFuture, Turn, access};

/// One run's work inside its task.
pub(super) struct Job {
    /// Stored with the turn's messages.
    pub(super) mark: RunMark,
    pub(super) agent: Arc<AgentVersion>,
    /// Who asked: the session must be one they may run in.
    pub(super) caller: Principal,
    /// Present for persistent sessions: the turn, its lane place already taken.
    pub(super) begin: Option<StoreFuture<Turn>>,
    /// The client's new messages, appended with the reply on success.
    pub(super) turn: Vec<Message>,
    /// The run's model usage, metered by the `llm` capability.
    pub(super) meter: crate::usage::Meter,
    pub(super) budget: BudgetCheck,
    pub(super) store: Arc<dyn SessionStore>,
    /// Off unless this run is recorded.
    pub(super) tape: crate::tape::Tape,
}

impl Job {
    pub(super) async fn run(self, request: RunRequest, events: RunEvents) -> Result<(), RunError> {
        let b = &self.budget;
        let principal = self.caller.name();
        b.budgets
            .reserve(
                self.store.as_ref(),
                principal,
                self.agent.id.as_str(),
                b.agent_budget,
                budget::Budgets::hold(&request.run_id, b.estimate, self.agent.limits().time_budget),
                &b.holds,
            )
            .await?;
        let Some(begin) = self.begin else {
            // Per-request session: nothing to load, nothing kept.
            return self.agent.run(request, events, None, self.meter, self.tape).await.map(drop);
        };
        let mut turn = begin.await?;
        match &turn.existing {
            Some(existing) => {
                // Refused exactly as an unknown session would be read: the
                // caller learns nothing of another principal's session.
                if !access::permits(&self.caller, existing, Access::Run) {
                    return Err(RunError::SessionNotFound(request.session_key));
                }
                if existing.agent != request.agent_id {
                    let owner = existing.agent.clone();
                    return Err(StoreError::WrongAgent { key: request.session_key, owner }.into());
                }
            }
            None => {
                let user = request.user.as_deref();
                if !access::may_create(&self.caller, &self.agent.id, &request.session_key, user) {
                    return Err(RunError::SessionNotFound(request.session_key));
                }
            }
        }
        let session = std::mem::take(&mut turn.session);
        if self.tape.is_on() {
            self.tape.session_read(&session);
        }
        let tape = self.tape.clone();
        let outcome = self.agent.run(request, events, Some(session), self.meter.clone(), self.tape).await?;
        if tape.is_on() {
            tape.state_written(&outcome.state_changes);
        }
        let mut messages = self.turn;
        messages.extend(outcome.reply.to_messages());
        turn.commit_run(self.mark, messages, outcome.state_changes).await?;
        Ok(())
    }
}
