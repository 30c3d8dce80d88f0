//! The SSE side of `/v1/responses`: `event:` + `data:` lines, the semantic
//! events in order, keep-alive comments while the agent is silent, and the
//! run cancelled when the client goes away (dropping the stream drops the
//! [`RunHandle`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::Keeper;
use super::object::Encoder;
use crate::http::error::ApiError;
use crate::runs::RunHandle;

/// How long to hold the status line for the agent's first event, as the chat
/// stream does: errors found in that window keep their real HTTP status.
const COMMIT_AFTER: Duration = Duration::from_secs(5);

struct Stream {
    handle: Option<RunHandle>,
    encoder: Encoder,
    keeper: Keeper,
    pending: VecDeque<SseEvent>,
    grace_over: tokio::sync::watch::Receiver<bool>,
}

impl Stream {
    fn flush(&mut self) {
        let events = self.encoder.take();
        self.pending.extend(events.into_iter().map(|(kind, data)| SseEvent::default().event(kind).data(data)));
    }

    /// The run is over: store the response, then the terminal event.
    async fn end(&mut self) {
        let Some(handle) = self.handle.take() else { return };
        let outcome = match handle.finish().await {
            Ok(()) => self.complete().await,
            Err(e) => Err(ApiError::from(e)),
        };
        if let Err(e) = outcome {
            self.encoder.failed(&e);
        }
        self.flush();
    }

    /// Close the items, store the finished object, then `response.completed`.
    async fn complete(&mut self) -> Result<(), ApiError> {
        let response = self.encoder.finish();
        self.keeper.keep(&response).await?;
        self.encoder.completed(response);
        Ok(())
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
                Some(Some(event)) => {
                    self.encoder.event(&event);
                    self.flush();
                }
                Some(None) => self.end().await,
                None => {
                    // Cancels the run; nothing half-written reaches the session.
                    self.handle = None;
                    self.encoder.failed(&ApiError::shutting_down());
                    self.flush();
                }
            }
        }
    }
}

/// Answer with an SSE stream, or with a plain error if the run fails before it shows any output.
pub async fn respond(
    mut handle: RunHandle,
    mut encoder: Encoder,
    keeper: Keeper,
    grace_over: tokio::sync::watch::Receiver<bool>,
    keep_alive: Duration,
) -> Result<Response, ApiError> {
    let first = tokio::time::timeout(COMMIT_AFTER.min(keep_alive), handle.next()).await;
    encoder.start();
    let mut stream = Stream { handle: None, encoder, keeper, pending: VecDeque::new(), grace_over };
    match first {
        Ok(Some(event)) => {
            stream.encoder.event(&event);
            stream.handle = Some(handle);
        }
        Ok(None) => {
            // Over before it said anything: a failure keeps its HTTP status.
            handle.finish().await?;
            stream.complete().await?;
        }
        Err(_still_silent) => stream.handle = Some(handle),
    }
    stream.flush();
    let body = futures::stream::unfold(stream, Stream::next);
    let mut response = Sse::new(body).keep_alive(KeepAlive::new().interval(keep_alive).text("ping")).into_response();
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
