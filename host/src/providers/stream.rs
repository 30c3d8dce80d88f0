//! A completion streaming in from a provider, pulled one event at a time by the agent.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::ProviderError;
use super::sse::{MAX_EVENT_BYTES, SseParser, TooLarge};
use super::wire;
use crate::chat::Event;
use crate::config::Secret;
use crate::usage::Call;

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The `completion` resource an agent holds. Dropping it drops the response
/// body, which closes the upstream connection.
pub struct CompletionStream {
    provider: String,
    /// The provider's credentials, redacted from any message passed on.
    secrets: Arc<[Secret]>,
    body: Body,
    sse: SseParser,
    pending: VecDeque<Event>,
    /// Longest wait for the next chunk.
    idle: Duration,
    /// One timer for the whole stream: when it fires early (bytes came
    /// meanwhile) it is set again from `last_bytes`, so a chunk costs no
    /// timer operation.
    deadline: Pin<Box<Sleep>>,
    last_bytes: Instant,
    saw_finish: bool,
    done: bool,
    /// The host's meter for this call, fed the provider's usage.
    call: Option<Call>,
    /// The model that answered, as the provider names it (`model` of its chunks).
    model: Option<String>,
}

/// Why reading the body stopped.
enum ReadError {
    Idle,
    Broken(String),
}

impl CompletionStream {
    pub(super) fn new(provider: String, response: reqwest::Response, idle: Duration, secrets: Arc<[Secret]>) -> Self {
        let now = Instant::now();
        Self {
            provider,
            secrets,
            body: Box::pin(response.bytes_stream()),
            sse: SseParser::default(),
            pending: VecDeque::new(),
            idle,
            deadline: Box::pin(tokio::time::sleep_until(now + idle)),
            last_bytes: now,
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
            body: Box::pin(futures::stream::empty()),
            sse: SseParser::default(),
            pending: events.into(),
            idle: Duration::ZERO,
            // Never polled: the stream is done before it would read.
            deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
            last_bytes: Instant::now(),
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
            if let Some(data) = self.sse.next() {
                self.data(&data)?;
                continue;
            }
            let chunk = match self.read().await {
                Ok(chunk) => chunk,
                Err(ReadError::Idle) => {
                    self.done = true;
                    let ms = self.idle.as_millis() as u64;
                    return Err(ProviderError::Timeout { provider: self.provider.clone(), ms });
                }
                Err(ReadError::Broken(e)) => return Err(self.unavailable(format!("the stream broke off: {e}"))),
            };
            match chunk {
                Some(chunk) => {
                    if self.sse.push(chunk) == Err(TooLarge) {
                        let mib = MAX_EVENT_BYTES >> 20;
                        return Err(self.unavailable(format!(
                            "the stream broke off: the provider sent more than {mib} MiB in one SSE event \
                             (a line that never ends?)"
                        )));
                    }
                }
                None if self.saw_finish => self.done = true,
                None => return Err(self.unavailable("the stream ended before the reply was finished".into())),
            }
        }
    }

    /// One event's `data`: `[DONE]`, or a chunk of events.
    fn data(&mut self, data: &Bytes) -> Result<(), ProviderError> {
        if data.trim_ascii() == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let before = self.pending.len();
        match wire::chunk_events(data, &mut self.pending, &mut self.model) {
            Err(message) => return Err(self.unavailable(message)),
            Ok(Some(tokens)) => {
                if let Some(call) = &mut self.call {
                    call.report(tokens);
                }
            }
            Ok(None) => {}
        }
        self.saw_finish |= self.pending.range(before..).any(|e| matches!(e, Event::Finish(_)));
        Ok(())
    }

    /// The next chunk of the body, within `idle` of the last one.
    async fn read(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            tokio::select! {
                biased;
                chunk = self.body.next() => {
                    self.last_bytes = Instant::now();
                    return chunk.transpose().map_err(|e| ReadError::Broken(e.to_string()));
                }
                () = &mut self.deadline => {
                    let due = self.last_bytes + self.idle;
                    if Instant::now() >= due {
                        return Err(ReadError::Idle);
                    }
                    self.deadline.as_mut().reset(due);
                }
            }
        }
    }

    /// The stream is over with `message`, secrets taken out.
    fn unavailable(&mut self, message: String) -> ProviderError {
        self.done = true;
        ProviderError::Unavailable { provider: self.provider.clone(), message: super::redact(&self.secrets, message) }
    }
}
