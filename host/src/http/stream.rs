//! The SSE side of chat and legacy completions: one streaming loop, one
//! [`Encoder`] per wire shape.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::chat::Event;
use crate::runs::RunHandle;

/// Turns a run's events into the `data:` payloads of one wire shape, as JSON text.
pub trait Encoder: Send + 'static {
    /// What goes out before any event (chat: the assistant-role chunk).
    fn start(&self) -> Option<String>;
    /// Payloads for one event, in order.
    fn event(&mut self, event: &Event, out: &mut Vec<String>);
    /// The closing payloads of a run that succeeded (finish reason, usage).
    fn finish(&self, out: &mut Vec<String>);
}

/// How long to hold the status line for the agent's first event. Errors found
/// in that window (a provider's 429, say) keep their real HTTP status; after
/// it, the 200 and the role chunk are sent, then a `: ping` comment after each
/// `keep_alive` of silence so proxies keep the connection.
const COMMIT_AFTER: Duration = Duration::from_secs(5);

struct Stream<E> {
    handle: Option<RunHandle>,
    encoder: E,
    pending: VecDeque<SseEvent>,
    /// Turns `true` when the shutdown grace is over.
    grace_over: tokio::sync::watch::Receiver<bool>,
}

impl<E: Encoder> Stream<E> {
    fn push(&mut self, chunks: Vec<String>) {
        self.pending.extend(chunks.into_iter().map(|c| SseEvent::default().data(c)));
    }

    fn push_event(&mut self, event: &Event) {
        let mut chunks = Vec::new();
        self.encoder.event(event, &mut chunks);
        self.push(chunks);
    }

    /// The run is over: closing chunks or an error, then `[DONE]`.
    async fn end(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        match handle.finish().await {
            Ok(()) => {
                let mut chunks = Vec::new();
                self.encoder.finish(&mut chunks);
                self.push(chunks);
            }
            Err(e) => self.push(vec![ApiError::from(e).body().to_string()]),
        }
        self.pending.push_back(SseEvent::default().data("[DONE]"));
    }

    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            let (handle, grace_over) = (self.handle.as_mut()?, &mut self.grace_over);
            let next = tokio::select! {
                event = handle.next() => Some(event),
                _ = grace_over.wait_for(|over| *over) => None,
            };
            match next {
                Some(Some(event)) => self.push_event(&event),
                Some(None) => self.end().await,
                None => {
                    // Cancels the run; nothing half-written reaches the session.
                    self.handle = None;
                    self.push(vec![ApiError::shutting_down().body().to_string()]);
                    self.pending.push_back(SseEvent::default().data("[DONE]"));
                }
            }
        }
    }
}

/// Answer with an SSE stream, or with a plain error if the run fails before it shows any output.
pub async fn respond<E: Encoder>(
    mut handle: RunHandle,
    encoder: E,
    grace_over: tokio::sync::watch::Receiver<bool>,
    keep_alive: Duration,
) -> Result<Response, ApiError> {
    let first = tokio::time::timeout(COMMIT_AFTER.min(keep_alive), handle.next()).await;
    let start = encoder.start();
    let mut stream = Stream { handle: Some(handle), encoder, pending: VecDeque::new(), grace_over };
    stream.push(start.into_iter().collect());
    match first {
        Ok(Some(event)) => stream.push_event(&event),
        Ok(None) => {
            let handle = stream.handle.take().expect("handle present");
            handle.finish().await?;
            let mut chunks = Vec::new();
            stream.encoder.finish(&mut chunks);
            stream.push(chunks);
            stream.pending.push_back(SseEvent::default().data("[DONE]"));
        }
        Err(_still_silent) => {}
    }
    let body = futures::stream::unfold(stream, Stream::next);
    let mut response = Sse::new(body).keep_alive(KeepAlive::new().interval(keep_alive).text("ping")).into_response();
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
