//! Every SSE answer of the HTTP door: one streaming loop (hold the status
//! line for the first event, keep-alive pings, shutdown grace, a hang-up
//! cancels the run) and one [`Wire`] per wire shape. Chat and legacy
//! completions are `data:`-only shapes, written as an [`Encoder`]; the
//! Responses API names its events and stores the finished object.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::chat::Event;
use crate::runs::RunHandle;

/// One wire shape of a stream: what goes out first, per run event, after a
/// run that succeeded, and after one that failed once the stream had begun.
pub trait Wire: Send + 'static {
    /// Events before any of the run's.
    fn start(&mut self, out: &mut Vec<SseEvent>);
    /// Events for one run event, in order.
    fn event(&mut self, event: &Event, out: &mut Vec<SseEvent>);
    /// The closing events of a run that succeeded; an error here is reported
    /// like a failed run (before the first byte: with its HTTP status).
    fn finish(&mut self, out: &mut Vec<SseEvent>) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// The closing events of a run that failed after the stream began.
    fn failed(&mut self, error: &ApiError, out: &mut Vec<SseEvent>);
}

/// Turns a run's events into the `data:` payloads of one `[DONE]`-terminated
/// shape (chat and legacy completions), as JSON text.
pub trait Encoder: Send + 'static {
    /// What goes out before any event (chat: the assistant-role chunk).
    fn start(&self) -> Option<String>;
    /// Payloads for one event, in order.
    fn event(&mut self, event: &Event, out: &mut Vec<String>);
    /// The closing payloads of a run that succeeded (finish reason, usage).
    fn finish(&self, out: &mut Vec<String>);
}

/// An [`Encoder`]'s payloads as `data:` lines, errors as OpenAI's error body, then `[DONE]`.
pub struct DataLines<E>(pub E);

fn data(payloads: Vec<String>, out: &mut Vec<SseEvent>) {
    out.extend(payloads.into_iter().map(|p| SseEvent::default().data(p)));
}

impl<E: Encoder> Wire for DataLines<E> {
    fn start(&mut self, out: &mut Vec<SseEvent>) {
        data(self.0.start().into_iter().collect(), out);
    }

    fn event(&mut self, event: &Event, out: &mut Vec<SseEvent>) {
        let mut payloads = Vec::new();
        self.0.event(event, &mut payloads);
        data(payloads, out);
    }

    async fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), ApiError> {
        let mut payloads = Vec::new();
        self.0.finish(&mut payloads);
        payloads.push("[DONE]".into());
        data(payloads, out);
        Ok(())
    }

    fn failed(&mut self, error: &ApiError, out: &mut Vec<SseEvent>) {
        data(vec![error.body().to_string(), "[DONE]".into()], out);
    }
}

/// How long to hold the status line for the agent's first event. Errors found
/// in that window (a provider's 429, say) keep their real HTTP status; after
/// it, the 200 and the opening events are sent, then a `: ping` comment after
/// each `keep_alive` of silence so proxies keep the connection.
const COMMIT_AFTER: Duration = Duration::from_secs(5);

struct Stream<W> {
    handle: Option<RunHandle>,
    wire: W,
    pending: VecDeque<SseEvent>,
    /// Turns `true` when the shutdown grace is over.
    grace_over: tokio::sync::watch::Receiver<bool>,
}

impl<W: Wire> Stream<W> {
    fn with(&mut self, write: impl FnOnce(&mut W, &mut Vec<SseEvent>)) {
        let mut out = Vec::new();
        write(&mut self.wire, &mut out);
        self.pending.extend(out);
    }

    /// The run is over: closing events, or the failure.
    async fn end(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let mut out = Vec::new();
        let outcome = match handle.finish().await {
            Ok(()) => self.wire.finish(&mut out).await,
            Err(e) => Err(ApiError::from(e)),
        };
        if let Err(e) = outcome {
            self.wire.failed(&e, &mut out);
        }
        self.pending.extend(out);
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
                Some(Some(event)) => self.with(|wire, out| wire.event(&event, out)),
                Some(None) => self.end().await,
                None => {
                    // Cancels the run; nothing half-written reaches the session.
                    self.handle = None;
                    self.with(|wire, out| wire.failed(&ApiError::shutting_down(), out));
                }
            }
        }
    }
}

/// Answer with an SSE stream, or with a plain error if the run fails before it shows any output.
pub async fn respond<W: Wire>(
    mut handle: RunHandle,
    wire: W,
    grace_over: tokio::sync::watch::Receiver<bool>,
    keep_alive: Duration,
) -> Result<Response, ApiError> {
    let first = tokio::time::timeout(COMMIT_AFTER.min(keep_alive), handle.next()).await;
    let mut stream = Stream { handle: None, wire, pending: VecDeque::new(), grace_over };
    stream.with(|wire, out| wire.start(out));
    match first {
        Ok(Some(event)) => {
            stream.with(|wire, out| wire.event(&event, out));
            stream.handle = Some(handle);
        }
        Ok(None) => {
            // Over before it said anything: a failure keeps its HTTP status.
            handle.finish().await?;
            let mut out = Vec::new();
            stream.wire.finish(&mut out).await?;
            stream.pending.extend(out);
        }
        Err(_still_silent) => stream.handle = Some(handle),
    }
    // The body is polled after the handler returned: a failure in it must still name the request.
    let request_id = super::error::request_id();
    let body = futures::stream::unfold(stream, move |s| super::error::in_request(request_id.clone(), s.next()));
    let mut response = Sse::new(body).keep_alive(KeepAlive::new().interval(keep_alive).text("ping")).into_response();
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
