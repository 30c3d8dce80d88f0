//! A completion streaming in from a provider, pulled one event at a time by the agent.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};

use std::sync::Arc;

use super::ProviderError;
use super::wire;
use crate::chat::Event;
use crate::config::Secret;

type SseEvents = Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, String>> + Send>>;

/// The `completion` resource an agent holds. Dropping it drops the response
/// body, which closes the upstream connection.
pub struct CompletionStream {
    provider: String,
    /// The provider's credentials, redacted from any message passed on.
    secrets: Arc<[Secret]>,
    events: SseEvents,
    pending: VecDeque<Event>,
    /// Longest wait for the next chunk.
    idle: Duration,
    saw_finish: bool,
    done: bool,
}

impl CompletionStream {
    pub(super) fn new(provider: String, response: reqwest::Response, idle: Duration, secrets: Arc<[Secret]>) -> Self {
        let events = response.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string()));
        let events = Box::pin(events);
        Self { provider, secrets, events, pending: VecDeque::new(), idle, saw_finish: false, done: false }
    }

    /// The next event, `None` once the provider has finished.
    pub async fn next(&mut self) -> Result<Option<Event>, ProviderError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.done {
                return Ok(None);
            }
            let next = tokio::time::timeout(self.idle, self.events.next()).await;
            let unavailable = |message: String| ProviderError::Unavailable {
                provider: self.provider.clone(),
                message: super::redact(&self.secrets, message),
            };
            match next {
                Err(_) => {
                    self.done = true;
                    let ms = self.idle.as_millis() as u64;
                    return Err(ProviderError::Timeout { provider: self.provider.clone(), ms });
                }
                Ok(None) if self.saw_finish => self.done = true,
                Ok(None) => {
                    self.done = true;
                    return Err(unavailable("the stream ended before the reply was finished".into()));
                }
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return Err(unavailable(format!("the stream broke off: {e}")));
                }
                Ok(Some(Ok(event))) if event.data.trim() == "[DONE]" => self.done = true,
                Ok(Some(Ok(event))) => {
                    let mut events = Vec::new();
                    if let Err(message) = wire::chunk_events(&event.data, &mut events) {
                        self.done = true;
                        return Err(unavailable(message));
                    }
                    self.saw_finish |= events.iter().any(|e| matches!(e, Event::Finish(_)));
                    self.pending.extend(events);
                }
            }
        }
    }
}
