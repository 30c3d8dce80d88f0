//! Whole answers from the model, and the tokens a run's model calls used.

use std::cell::Cell;
use std::collections::BTreeMap;

use crate::llm::{CompletionRequest, LlmError};
use crate::{Event, FinishReason, ToolCall, ToolCallDelta, Usage};

thread_local! {
    /// Tokens used by this run's completions so far (a fresh instance per
    /// run in the gateway; reset per run by the test host).
    static USED: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// Tokens every model call of this run has used so far: the last usage each
/// completion reported, summed over completions.
pub fn usage() -> Usage {
    let (prompt_tokens, completion_tokens) = USED.with(Cell::get);
    Usage { prompt_tokens, completion_tokens }
}

/// Start counting from zero (a new run).
pub(crate) fn reset_usage() {
    USED.with(|u| u.set((0, 0)));
}

/// A completion reported `now` after reporting `before` (providers may report
/// cumulative counts more than once): count only the difference.
pub(crate) fn count_usage(before: Option<Usage>, now: Usage) {
    let before = before.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: 0 });
    USED.with(|u| {
        let (p, c) = u.get();
        let p = p.saturating_sub(before.prompt_tokens).saturating_add(now.prompt_tokens);
        let c = c.saturating_sub(before.completion_tokens).saturating_add(now.completion_tokens);
        u.set((p, c));
    });
}

/// A whole answer of the model, collected from its stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextCompletion {
    /// The reply text.
    pub text: String,
    /// Reasoning the model streamed apart from the text, if any.
    pub reasoning: String,
    /// Tool calls the model made, assembled from their pieces, by index.
    pub tool_calls: Vec<ToolCall>,
    /// What the provider reported for this call.
    pub usage: Option<Usage>,
    /// Why the model stopped, if the provider said.
    pub finish: Option<FinishReason>,
}

impl TextCompletion {
    /// Fold one streamed event into the answer.
    pub fn push(&mut self, event: &Event) {
        match event {
            Event::Text(t) => self.text.push_str(t),
            Event::Reasoning(t) => self.reasoning.push_str(t),
            Event::ToolCall(delta) => {
                let index = delta.index as usize;
                if self.tool_calls.len() <= index {
                    self.tool_calls.resize(index + 1, empty_call());
                }
                apply(&mut self.tool_calls[index], delta);
            }
            Event::Usage(u) => self.usage = Some(*u),
            Event::Finish(f) => self.finish = Some(*f),
        }
    }
}

fn empty_call() -> ToolCall {
    ToolCall { id: String::new(), name: String::new(), arguments: String::new() }
}

/// One streamed piece into its call: the id and name when it has them, the arguments appended.
fn apply(call: &mut ToolCall, delta: &ToolCallDelta) {
    if let Some(id) = &delta.id {
        call.id.clone_from(id);
    }
    if let Some(name) = &delta.name {
        call.name.clone_from(name);
    }
    call.arguments.push_str(&delta.arguments);
}

/// Tool calls assembled from their streamed pieces ([`Event::ToolCall`]),
/// keyed by the model's index: for agents that handle each piece as it
/// comes (routing some calls, passing others on) rather than folding the
/// whole answer with [`TextCompletion`].
///
/// ```
/// # use wasmclaw_sdk::{llm::ToolCallAssembly, ToolCallDelta};
/// let mut calls = ToolCallAssembly::default();
/// calls.push(&ToolCallDelta { index: 0, id: Some("c1".into()), name: Some("add".into()), arguments: r#"{"a":"#.into() });
/// calls.push(&ToolCallDelta { index: 0, id: None, name: None, arguments: "1}".into() });
/// assert_eq!(calls.into_calls()[0].arguments, r#"{"a":1}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallAssembly {
    calls: BTreeMap<u32, ToolCall>,
}

impl ToolCallAssembly {
    /// Add a piece; the call it belongs to, so far.
    pub fn push(&mut self, delta: &ToolCallDelta) -> &ToolCall {
        let call = self.calls.entry(delta.index).or_insert_with(empty_call);
        apply(call, delta);
        call
    }

    /// The call at the model's `index`, if a piece of it came.
    pub fn get(&self, index: u32) -> Option<&ToolCall> {
        self.calls.get(&index)
    }

    /// Whether no piece came.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls so far, by index.
    pub fn calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.calls.values()
    }

    /// The calls, by index.
    pub fn into_calls(self) -> Vec<ToolCall> {
        self.calls.into_values().collect()
    }
}

/// Run a completion to its end and return the whole answer (text, tool
/// calls, usage). Its usage counts towards [`usage`].
///
/// ```no_run
/// # use wasmclaw_sdk::{llm, AgentError, Message, Output};
/// # fn run(out: &Output) -> Result<(), AgentError> {
/// let draft = llm::complete_text(&llm::CompletionRequest::new(vec![Message::user("Write a haiku")]))?;
/// let review = llm::complete_text(&llm::CompletionRequest::new(vec![
///     Message::system("Improve this haiku; answer with the haiku only."),
///     Message::user(draft.text),
/// ]))?;
/// out.text(&review.text)?;
/// out.llm_usage()?; // both calls, summed
/// # Ok(())
/// # }
/// ```
pub fn complete_text(request: &CompletionRequest) -> Result<TextCompletion, LlmError> {
    let mut answer = TextCompletion::default();
    for event in crate::llm::stream(request)? {
        answer.push(&event?);
    }
    Ok(answer)
}
