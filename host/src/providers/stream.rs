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
use crate::usage::Call;

type SseEvents = Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, String>> + Send>>;

/// Most bytes one SSE event may take (its lines together). The parser keeps
/// an unfinished event in memory, so a provider sending a line that never
/// ends must meet a limit; real chunks are a few hundred bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

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
    /// The host's meter for this call, fed the provider's usage.
    call: Option<Call>,
    /// The model that answered, as the provider names it (`model` of its chunks).
    model: Option<String>,
}

impl CompletionStream {
    pub(super) fn new(provider: String, response: reqwest::Response, idle: Duration, secrets: Arc<[Secret]>) -> Self {
        let mut size = EventSize::default();
        let body = response.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| e.to_string())?;
            if size.take(&chunk) > MAX_EVENT_BYTES {
                return Err(format!(
                    "the provider sent more than {} MiB in one SSE event (a line that never ends?)",
                    MAX_EVENT_BYTES >> 20
                ));
            }
            Ok(chunk)
        });
        let events = body.eventsource().map(|r| r.map_err(|e| e.to_string()));
        let events = Box::pin(events);
        Self {
            provider,
            secrets,
            events,
            pending: VecDeque::new(),
            idle,
            saw_finish: false,
            done: false,
            call: None,
            model: None,
        }
    }

    /// A completion answered from a recording (`tape`): its events, then the end.
    pub fn replayed(provider: String, events: Vec<Event>) -> Self {
        Self {
            provider,
            secrets: Arc::from(Vec::new()),
            events: Box::pin(futures::stream::empty()),
            pending: events.into(),
            idle: Duration::ZERO,
            saw_finish: true,
            done: true,
            call: None,
            model: None,
        }
    }

    /// Meter this completion as `call`; it settles when the stream is dropped.
    pub fn metered(mut self, call: Call) -> Self {
        self.call = Some(call);
        self
    }

    /// The model that answered, once a chunk has named it.
    pub fn response_model(&self) -> Option<&str> {
        self.model.as_deref()
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
                    match wire::chunk_events(&event.data, &mut events, &mut self.model) {
                        Err(message) => {
                            self.done = true;
                            return Err(unavailable(message));
                        }
                        Ok(Some(tokens)) => {
                            if let Some(call) = &mut self.call {
                                call.report(tokens);
                            }
                        }
                        Ok(None) => {}
                    }
                    self.saw_finish |= events.iter().any(|e| matches!(e, Event::Finish(_)));
                    self.pending.extend(events);
                }
            }
        }
    }
}

/// The size of the SSE event being received: bytes since the last blank
/// line, line ends (`\n`, `\r`, `\r\n`) not counted.
#[derive(Default)]
struct EventSize {
    event: usize,
    line: usize,
    after_cr: bool,
}

impl EventSize {
    /// Count `chunk` in; the size of the event it leaves unfinished.
    fn take(&mut self, chunk: &[u8]) -> usize {
        for &b in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    if self.line == 0 {
                        self.event = 0;
                    }
                    self.line = 0;
                }
                _ => {
                    self.line += 1;
                    self.event += 1;
                }
            }
        }
        self.event
    }
}

#[cfg(test)]
mod tests {
    use super::EventSize;

    #[test]
    fn an_event_is_measured_to_its_blank_line_whatever_the_line_ends() {
        for blank in ["\n\n", "\r\n\r\n", "\r\r"] {
            let mut size = EventSize::default();
            let first = format!("data: {{}}{}data: ", blank.get(..blank.len() / 2).unwrap());
            assert_eq!(size.take(first.as_bytes()), 14, "{blank:?}: lines of one event add up");
            assert_eq!(size.take(format!("x{blank}").as_bytes()), 0, "{blank:?}: a blank line ends it");
        }
        let mut size = EventSize::default();
        let endless = vec![b'a'; 1 << 16];
        size.take(b"data: ");
        for _ in 0..100 {
            size.take(&endless);
        }
        assert_eq!(size.take(b""), 6 + 100 * (1 << 16), "a line that never ends keeps growing the count");
    }
}
