//! Frame shapes of the gateway WebSocket protocol, and the bounded outbox
//! every task writes a connection's frames through.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

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
}

impl WsError {
    /// `INVALID_REQUEST` with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { code: codes::INVALID_REQUEST, message: message.into(), details: None, retryable: false }
    }

    /// Any code with a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: None, retryable: false }
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

/// `res ok:false`
pub fn err(id: &Value, error: &WsError) -> Outgoing {
    Outgoing::Frame(json!({"type": "res", "id": id, "ok": false, "error": error.json()}))
}

/// Where a connection's frames go. Bounded: a reader too slow to drain it is
/// disconnected instead of growing memory.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    overflow: Arc<Notify>,
}

impl Outbox {
    /// An outbox of `capacity` frames and the receiving end for the writer.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Outgoing>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Notify::new());
        (Self { tx, overflow: overflow.clone() }, rx, overflow)
    }

    /// Queue a frame; false once the connection is gone or overflowing.
    pub fn send(&self, frame: Outgoing) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queue an event.
    pub fn event(&self, event: &'static str, payload: Value) -> bool {
        self.send(Outgoing::Event { event, payload })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::sessions::now_ms()
}
