//! Frame shapes of the gateway WebSocket protocol, and the bounded outbox
//! every task writes a connection's frames through.

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

/// Protocol version spoken (OpenClaw 2026.9 clients send min 3 or 4, max 4).
pub const PROTOCOL: u64 = 4;

/// Error codes OpenClaw clients know.
pub mod codes {
    /// Bad frame, unknown method, bad params, wrong credentials.
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// Known method that failed.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// Something went wrong inside the gateway.
    pub const INTERNAL: &str = "INTERNAL_ERROR";
}

/// A client request frame.
#[derive(Debug, Deserialize)]
pub struct Request {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Value,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

/// Decode one client text frame into a request.
pub fn decode(text: &str) -> Result<Request, WsError> {
    let request: Request = serde_json::from_str(text).map_err(|e| WsError::invalid(format!("malformed frame: {e}")))?;
    if request.kind != "req" {
        return Err(WsError::invalid("expected a frame of type \"req\""));
    }
    Ok(request)
}

/// A protocol-level failure for one request.
#[derive(Debug, Clone)]
pub struct WsError {
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retryable: bool,
    /// What failed inside the gateway: [`err`] logs it under the request's
    /// id and sends only that id (it may hold SQL, key values, panic text).
    pub hidden: Option<String>,
}

impl WsError {
    /// `INVALID_REQUEST` with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }

    /// Any code with a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: None, retryable: false, hidden: None }
    }

    /// `UNAVAILABLE`, retryable: `what` (a database) cannot be reached. The
    /// driver's words in `detail` (addresses, errno, settings) reach the log only.
    pub fn unavailable(what: &str, detail: impl std::fmt::Display) -> Self {
        let message = format!("The {what} is unavailable; retry shortly");
        Self { retryable: true, hidden: Some(detail.to_string()), ..Self::new(codes::UNAVAILABLE, message) }
    }

    /// `INTERNAL_ERROR` for a failure inside the gateway; `detail` reaches the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self { hidden: Some(detail.to_string()), ..Self::new(codes::INTERNAL, "Internal error") }
    }

    fn json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.details {
            e["details"] = d.clone();
        }
        if self.retryable {
            e["retryable"] = json!(true);
        }
        e
    }
}

/// A frame on its way out. Events get their `seq` when written, so the
/// sequence is strictly ordered per connection whoever produced them.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Value),
    Event { event: &'static str, payload: Value },
    Close { code: u16, reason: String },
}

/// `res ok:true`
pub fn ok(id: &Value, payload: Value) -> Outgoing {
    Outgoing::Frame(json!({"type": "res", "id": id, "ok": true, "payload": payload}))
}

/// `res ok:false`. The one place a WebSocket error meets its request id.
pub fn err(id: &Value, error: &WsError) -> Outgoing {
    let mut e = error.json();
    if let Some(detail) = &error.hidden {
        let id = request_id(id);
        if error.code == codes::INTERNAL {
            tracing::error!(request_id = %id, detail = %detail, "internal error; the client was sent only the request id");
        } else {
            let what = &error.message;
            tracing::warn!(request_id = %id, detail = %detail, "{what}; the client was sent only the request id");
        }
        e["message"] = json!(format!("{}; the gateway logged the details under request id {id}", error.message));
    }
    Outgoing::Frame(json!({"type": "res", "id": id, "ok": false, "error": e}))
}

/// A request frame's id as the log names it (runs log it as `request_id`):
/// as sent when `gateway::request_id` allows it, else a digest of it, so that
/// every line about one frame names the same id and none can forge a field.
pub fn request_id(id: &Value) -> String {
    use sha2::Digest;
    let sent = id.as_str().map_or_else(|| id.to_string(), str::to_string);
    match crate::gateway::request_id(Some(&sent)) {
        Some(safe) => safe.to_string(),
        None => format!("ws-{}", &hex::encode(sha2::Sha256::digest(sent.as_bytes()))[..16]),
    }
}

/// A frame in the outbox, with what its producer wants to know about it.
#[derive(Debug)]
pub struct Queued {
    pub frame: Outgoing,
    /// Released once the frame has been written to the socket (or dropped
    /// with the connection): a run waits for it before its next delta.
    pub receipt: Option<OwnedSemaphorePermit>,
}

/// Where a connection's frames go, in order. Bounded: producers wait for
/// room (backpressure all the way to a run's `emit`); a client that stops
/// taking bytes is disconnected by the writer, which frees every waiter.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Queued>,
    /// Set when the connection stops serving; what is still queued may be
    /// written, but nothing new is wanted.
    ended: Arc<watch::Sender<bool>>,
    /// The sessions this connection follows (`sessions.messages.subscribe`).
    subscriptions: Arc<super::openclaw::Subscriptions>,
}

impl Outbox {
    /// An outbox of `capacity` frames and the receiving end for the writer.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx, ended: Arc::new(watch::channel(false).0), subscriptions: Arc::default() }, rx)
    }

    /// Queue a frame without waiting; false if the outbox is full or gone.
    /// Only for an outbox known to have room (the handshake's answers).
    pub fn send(&self, frame: Outgoing) -> bool {
        self.tx.try_send(Queued { frame, receipt: None }).is_ok()
    }

    /// Queue a frame, waiting for room; false once the connection is gone.
    pub async fn push(&self, frame: Outgoing) -> bool {
        self.push_with_receipt(frame, None).await
    }

    /// [`push`](Self::push), releasing `receipt` once the frame is written.
    pub async fn push_with_receipt(&self, frame: Outgoing, receipt: Option<OwnedSemaphorePermit>) -> bool {
        self.tx.send(Queued { frame, receipt }).await.is_ok()
    }

    /// Queue an event, waiting for room.
    pub async fn event(&self, event: &'static str, payload: Value) -> bool {
        self.push(Outgoing::Event { event, payload }).await
    }

    /// The sessions this connection follows.
    pub fn subscriptions(&self) -> Arc<super::openclaw::Subscriptions> {
        self.subscriptions.clone()
    }

    /// The connection has stopped serving: [`closed`](Self::closed) resolves from now on.
    pub fn end(&self) {
        self.ended.send_replace(true);
    }

    /// Resolves once the connection has stopped serving or can take no more frames.
    pub async fn closed(&self) {
        let mut ended = self.ended.subscribe();
        tokio::select! {
            () = self.tx.closed() => {}
            _ = ended.wait_for(|ended| *ended) => {}
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::sessions::now_ms()
}

#[cfg(test)]
mod internal_error_tests {
    use super::*;

    #[test]
    fn an_internal_error_frame_names_the_request_and_hides_the_detail() {
        let Outgoing::Frame(frame) = err(&json!("7:abc"), &WsError::internal("no such table: sessions")) else {
            panic!("a res frame")
        };
        let text = frame.to_string();
        assert!(text.contains("INTERNAL_ERROR") && text.contains("request id 7:abc"), "{text}");
        assert!(!text.contains("no such table"), "{text}");
    }
}
