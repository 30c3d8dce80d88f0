//! Every SSE answer of the HTTP door: one streaming loop (hold the status
//! line for the first event, keep-alive pings, shutdown grace, a hang-up
//! cancels the run) and one [`Wire`] per wire shape. Chat and legacy
//! completions are `data:`-only shapes, written as an [`Encoder`]; the
//! Responses API names its events and stores the finished object.
//!
//! Frames are written straight into one [`SseWriter`] buffer (JSON with
//! `serde_json::to_writer`), and every event the run has ready when the
//! body is polled goes out in one body frame. The keep-alive is one timer
//! per stream, moved on only when it fires.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::{Instant, Sleep};

use super::error::ApiError;
use crate::chat::Event;
use crate::runs::RunHandle;

/// The SSE bytes of a response not yet handed to the connection.
#[derive(Default)]
pub struct SseWriter {
    buf: BytesMut,
}

impl SseWriter {
    /// One `data:` event holding `value` as JSON (compact JSON has no line breaks).
    pub fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        self.buf.put_slice(b"data: ");
        serde_json::to_writer((&mut self.buf).writer(), value).expect("SSE payloads serialize");
        self.buf.put_slice(b"\n\n");
    }

    /// One `data:` event holding `text` (a line each for text with line breaks).
    pub fn data(&mut self, text: &str) {
        self.lines(b"data: ", text);
        self.buf.put_u8(b'\n');
    }

    /// One event named `kind` holding `data`.
    pub fn named(&mut self, kind: &str, data: &str) {
        self.lines(b"event: ", kind);
        self.lines(b"data: ", data);
        self.buf.put_u8(b'\n');
    }

    fn lines(&mut self, field: &[u8], text: &str) {
        for line in text.split(['\n', '\r']) {
            self.buf.put_slice(field);
            self.buf.put_slice(line.as_bytes());
            self.buf.put_u8(b'\n');
        }
    }

    fn ping(&mut self) {
        self.buf.put_slice(b": ping\n\n");
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// The `data` of every event written so far, for tests of the encoders.
    #[cfg(test)]
    pub fn payloads(&self) -> Vec<String> {
        let text = std::str::from_utf8(&self.buf).expect("UTF-8");
        text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_string).collect()
    }
}

/// One wire shape of a stream: what goes out first, per run event, after a
/// run that succeeded, and after one that failed once the stream had begun.
pub trait Wire: Send + 'static {
    /// Events before any of the run's.
    fn start(&mut self, out: &mut SseWriter);
    /// Events for one run event, in order.
    fn event(&mut self, event: &Event, out: &mut SseWriter);
    /// The closing events of a run that succeeded; an error here is reported
    /// like a failed run (before the first byte: with its HTTP status).
    fn finish(&mut self, out: &mut SseWriter) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// The closing events of a run that failed after the stream began.
    fn failed(&mut self, error: &ApiError, out: &mut SseWriter);
}

/// Turns a run's events into the `data:` payloads of one `[DONE]`-terminated
/// shape (chat and legacy completions), written as JSON.
pub trait Encoder: Send + 'static {
    /// What goes out before any event (chat: the assistant-role chunk).
    fn start(&self, out: &mut SseWriter);
    /// Payloads for one event, in order.
    fn event(&mut self, event: &Event, out: &mut SseWriter);
    /// The closing payloads of a run that succeeded (finish reason, usage).
    fn finish(&self, out: &mut SseWriter);
}

/// An [`Encoder`]'s payloads as `data:` lines, errors as OpenAI's error body, then `[DONE]`.
pub struct DataLines<E>(pub E);

impl<E: Encoder> Wire for DataLines<E> {
    fn start(&mut self, out: &mut SseWriter) {
        self.0.start(out);
    }

    fn event(&mut self, event: &Event, out: &mut SseWriter) {
        self.0.event(event, out);
    }

    async fn finish(&mut self, out: &mut SseWriter) -> Result<(), ApiError> {
        self.0.finish(out);
        out.data("[DONE]");
        Ok(())
    }

    fn failed(&mut self, error: &ApiError, out: &mut SseWriter) {
        out.json(&error.body());
        out.data("[DONE]");
    }
}

/// How long to hold the status line for the agent's first event. Errors found
/// in that window (a provider's 429, say) keep their real HTTP status; after
/// it, the 200 and the opening events are sent, then a `: ping` comment after
/// each `keep_alive` of silence so proxies keep the connection.
const COMMIT_AFTER: Duration = Duration::from_secs(5);

/// Most bytes of events gathered into one body frame.
const MAX_FRAME_BYTES: usize = 64 << 10;

struct Stream<W> {
    handle: Option<RunHandle>,
    wire: W,
    out: SseWriter,
    /// Turns `true` when the shutdown grace is over.
    grace_over: tokio::sync::watch::Receiver<bool>,
    keep_alive: Duration,
    /// Fires at the earliest moment a ping may be due; `last_frame` says whether it is.
    ping: Pin<Box<Sleep>>,
    last_frame: Instant,
}

enum Step {
    Event(Option<Event>),
    Grace,
    Ping,
}

impl<W: Wire> Stream<W> {
    /// The run is over: closing events, or the failure.
    async fn end(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let outcome = match handle.finish().await {
            Ok(()) => self.wire.finish(&mut self.out).await,
            Err(e) => Err(ApiError::from(e)),
        };
        if let Err(e) = outcome {
            self.wire.failed(&e, &mut self.out);
        }
    }

    /// `event`, and whatever else the run has ready, into the same frame.
    fn with_ready(&mut self, event: Event) {
        self.wire.event(&event, &mut self.out);
        while self.out.buf.len() < MAX_FRAME_BYTES
            && let Some(event) = self.handle.as_mut().and_then(RunHandle::try_next)
        {
            self.wire.event(&event, &mut self.out);
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if !self.out.is_empty() {
                self.last_frame = Instant::now();
                return Some((Ok(self.out.take()), self));
            }
            let handle = self.handle.as_mut()?;
            let grace_over = &mut self.grace_over;
            let step = tokio::select! {
                biased;
                event = handle.next() => Step::Event(event),
                _ = grace_over.wait_for(|over| *over) => Step::Grace,
                () = &mut self.ping => Step::Ping,
            };
            match step {
                Step::Event(Some(event)) => self.with_ready(event),
                Step::Event(None) => self.end().await,
                Step::Grace => {
                    // Cancels the run; nothing half-written reaches the session.
                    self.handle = None;
                    self.wire.failed(&ApiError::shutting_down(), &mut self.out);
                }
                Step::Ping => {
                    let due = self.last_frame + self.keep_alive;
                    if Instant::now() >= due {
                        self.out.ping();
                        self.ping.as_mut().reset(Instant::now() + self.keep_alive);
                    } else {
                        self.ping.as_mut().reset(due);
                    }
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
    let now = Instant::now();
    let mut stream = Stream {
        handle: None,
        wire,
        out: SseWriter::default(),
        grace_over,
        keep_alive,
        ping: Box::pin(tokio::time::sleep_until(now + keep_alive)),
        last_frame: now,
    };
    stream.wire.start(&mut stream.out);
    match first {
        Ok(Some(event)) => {
            // A burst the run handed over with its first event goes out with the headers.
            stream.handle = Some(handle);
            stream.with_ready(event);
        }
        Ok(None) => {
            // Over before it said anything: a failure keeps its HTTP status.
            handle.finish().await?;
            stream.wire.finish(&mut stream.out).await?;
        }
        Err(_still_silent) => stream.handle = Some(handle),
    }
    // The body is polled after the handler returned: a failure in it must still name the request.
    let request_id = super::error::request_id();
    let body = futures::stream::unfold(stream, move |s| super::error::in_request(request_id.clone(), s.next()));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_written_as_sse() {
        let mut out = SseWriter::default();
        out.json(&serde_json::json!({"a": "x\ny"}));
        out.data("[DONE]");
        out.named("response.created", "{}");
        out.data("two\nlines");
        out.ping();
        assert_eq!(
            std::str::from_utf8(&out.take()).unwrap(),
            "data: {\"a\":\"x\\ny\"}\n\ndata: [DONE]\n\nevent: response.created\ndata: {}\n\n\
             data: two\ndata: lines\n\n: ping\n\n"
        );
        assert!(out.is_empty(), "taken");
    }
}
