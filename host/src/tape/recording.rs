//! A recorded run in its compact JSON form: what the run asked for, every
//! host crossing in order with its answer, and what it put out. Bodies are
//! blobs (text when they are UTF-8, base64 otherwise); the component is
//! named by its digest only (the registry keeps the bytes).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::chat::{Event, Message, RunRequest, ToolSpec};
use crate::providers::ProviderError;

/// The version of this form; a reader refuses others.
pub const FORMAT: u32 = 1;

/// One recorded run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    pub format: u32,
    /// The run's id.
    pub id: String,
    pub agent: String,
    /// sha256 of the component that served the run, hex.
    pub digest: String,
    /// The contract version it was built against.
    pub world: String,
    /// The principal that made the run (its owner).
    pub owner: String,
    pub started_at_ms: u64,
    pub request: RunRequest,
    /// `false` for a throw-away session (no history, nothing kept).
    pub persistent: bool,
    /// The transcript the run read, oldest first.
    #[serde(default)]
    pub history: Vec<Message>,
    /// The session state as the run found it.
    #[serde(default)]
    pub state: BTreeMap<String, Blob>,
    /// `config.get` reads and their answers.
    #[serde(default)]
    pub config: BTreeMap<String, Option<String>>,
    /// The seed of the guest's random generators (hex): replay sees the same bytes.
    pub seed: String,
    #[serde(default)]
    pub clocks: Clocks,
    #[serde(default)]
    pub llm: Vec<LlmCall>,
    #[serde(default)]
    pub http: Vec<HttpCall>,
    #[serde(default)]
    pub memo: Vec<MemoRead>,
    /// The events the run streamed (the host's metered usage left out).
    #[serde(default)]
    pub output: Vec<Event>,
    /// The writes the run made to its session state (`null`: deleted).
    #[serde(default)]
    pub state_changes: BTreeMap<String, Option<Blob>>,
    /// `ok`, or `error` with [`Recording::error`].
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The recording reached `record.maxBytes` and stopped: not replayable.
    pub truncated: bool,
    /// Bytes the recording holds (counted against `record.maxBytes`).
    pub bytes: usize,
}

/// Clock readings in the order the guest made them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Clocks {
    /// `wasi:clocks/wall-clock` readings, nanoseconds since the epoch.
    #[serde(default)]
    pub wall: Vec<u64>,
    /// `wasi:clocks/monotonic-clock` readings, nanoseconds.
    #[serde(default)]
    pub monotonic: Vec<u64>,
}

/// One model completion: the request in host terms and what it streamed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LlmCall {
    pub request: LlmRequest,
    /// The events in stream order.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Why it did not start or stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// A completion request as the guest made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LlmRequest {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    pub params: String,
    /// The model the guest or the client asked for (`None`: the entry's).
    #[serde(default)]
    pub model: Option<String>,
}

/// A provider failure, enough to tell the guest the same again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub kind: String,
    pub provider: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub retry_after: Option<u32>,
    #[serde(default)]
    pub ms: u64,
}

impl Failure {
    /// The recorded form of `e`.
    pub fn of(e: &ProviderError) -> Self {
        let mut f = Self {
            kind: e.kind().into(),
            provider: String::new(),
            message: String::new(),
            status: 0,
            retry_after: None,
            ms: 0,
        };
        match e {
            ProviderError::RateLimited { provider, retry_after } => {
                (f.provider, f.retry_after) = (provider.clone(), *retry_after)
            }
            ProviderError::Unauthorized { provider, status } => (f.provider, f.status) = (provider.clone(), *status),
            ProviderError::BadRequest { provider, status, message } => {
                (f.provider, f.status, f.message) = (provider.clone(), *status, message.clone())
            }
            ProviderError::Unavailable { provider, message } | ProviderError::Redirected { provider, message } => {
                (f.provider, f.message) = (provider.clone(), message.clone())
            }
            ProviderError::Timeout { provider, ms } => (f.provider, f.ms) = (provider.clone(), *ms),
        }
        f
    }

    /// The provider error it records.
    pub fn to_error(&self) -> ProviderError {
        let provider = self.provider.clone();
        match self.kind.as_str() {
            "rate_limited" => ProviderError::RateLimited { provider, retry_after: self.retry_after },
            "unauthorized" => ProviderError::Unauthorized { provider, status: self.status },
            "bad_request" => ProviderError::BadRequest { provider, status: self.status, message: self.message.clone() },
            "timeout" => ProviderError::Timeout { provider, ms: self.ms },
            "redirected" => ProviderError::Redirected { provider, message: self.message.clone() },
            _ => ProviderError::Unavailable { provider, message: self.message.clone() },
        }
    }
}

/// One outbound HTTP request as the guest sent it (the host's injected
/// credentials are never in it) and the answer it got (already redacted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpCall {
    pub method: String,
    pub uri: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub body: Blob,
    pub response: Result<HttpResponse, String>,
}

/// A response as the guest read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub body: Blob,
}

/// One `memo.get` and what it found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemoRead {
    pub key: String,
    pub value: Option<Blob>,
}

/// Bytes kept as text when they are UTF-8, else as base64.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BlobForm {
    Text(String),
    Base64 { base64: String },
}

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                BlobForm::Base64 { base64: base64::engine::general_purpose::STANDARD.encode(&self.0) }.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match BlobForm::deserialize(d)? {
            BlobForm::Text(text) => Ok(Blob(text.into_bytes())),
            BlobForm::Base64 { base64 } => {
                base64::engine::general_purpose::STANDARD.decode(base64).map(Blob).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// Header pairs as text (a value that is not UTF-8 is kept lossily).
pub fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{FinishReason, Role};

    #[test]
    fn blobs_are_text_when_they_can_be_and_base64_otherwise() {
        let text = serde_json::to_string(&Blob(b"hi \"there\"".to_vec())).unwrap();
        assert_eq!(text, r#""hi \"there\"""#);
        let binary = serde_json::to_string(&Blob(vec![0xff, 0, 1])).unwrap();
        assert_eq!(binary, r#"{"base64":"/wAB"}"#);
        for json in [text, binary] {
            let back: Blob = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json, "round trip");
        }
    }

    #[test]
    fn a_recording_reads_back_as_written() {
        let request = RunRequest {
            run_id: "r".into(),
            agent_id: "a".into(),
            session_key: "k".into(),
            messages: vec![Message::text(Role::User, "hello")],
            tools: vec![],
            user: None,
            params: "{}".into(),
            model: None,
        };
        let rec = Recording {
            format: FORMAT,
            id: "r".into(),
            agent: "a".into(),
            digest: "d".into(),
            world: "0.2.0".into(),
            owner: "operator".into(),
            started_at_ms: 7,
            request,
            persistent: true,
            history: vec![Message::text(Role::Assistant, "before")],
            state: [("k".to_string(), Blob(vec![0xfe]))].into(),
            config: [("greeting".to_string(), Some("hi".to_string()))].into(),
            seed: "00".into(),
            clocks: Clocks { wall: vec![1, 2], monotonic: vec![3] },
            llm: vec![LlmCall {
                request: LlmRequest { messages: vec![], tools: vec![], params: "{}".into(), model: None },
                events: vec![Event::Text("x".into()), Event::Finish(FinishReason::Stop)],
                failure: Some(Failure::of(&ProviderError::RateLimited { provider: "p".into(), retry_after: Some(3) })),
            }],
            http: vec![HttpCall {
                method: "POST".into(),
                uri: "http://x/".into(),
                headers: vec![("a".into(), "b".into())],
                body: Blob(b"{}".to_vec()),
                response: Ok(HttpResponse { status: 200, headers: vec![], body: Blob(vec![0, 159]) }),
            }],
            memo: vec![MemoRead { key: "m".into(), value: None }],
            output: vec![Event::Text("out".into())],
            state_changes: [("k".to_string(), None)].into(),
            outcome: "ok".into(),
            error: None,
            truncated: false,
            bytes: 10,
        };
        let json = serde_json::to_string(&rec).unwrap();
        let back: Recording = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(back.llm[0].failure.as_ref().unwrap().to_error().kind(), "rate_limited");
        assert!(json.contains(r#""startedAtMs":7"#), "camelCase keys: {json}");
    }

    #[test]
    fn every_provider_failure_replays_as_itself() {
        let provider = || "p".to_string();
        let all = [
            ProviderError::RateLimited { provider: provider(), retry_after: Some(3) },
            ProviderError::Unauthorized { provider: provider(), status: 401 },
            ProviderError::BadRequest { provider: provider(), status: 422, message: "m".into() },
            ProviderError::Unavailable { provider: provider(), message: "m".into() },
            ProviderError::Redirected { provider: provider(), message: "m".into() },
            ProviderError::Timeout { provider: provider(), ms: 5 },
        ];
        for e in all {
            assert_eq!(Failure::of(&e).to_error(), e);
        }
    }
}
