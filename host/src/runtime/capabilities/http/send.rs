//! Sending an admitted request: through a client whose resolver refuses
//! internal addresses (unless the rule named the host), with no redirects
//! followed, under the run's limits (bodies count against its memory);
//! credentials added here and redacted from the response before the guest
//! reads it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error, WasiBody};

use super::oauth::resource_metadata;
use super::redact::redact;
use super::{Admitted, CredentialValue, SendResult, Shared, is_internal};
use crate::config::Secret;
use crate::runtime::capabilities::memory::{MemoryHold, RunMemory};
use crate::telemetry;

/// Resolves names to public addresses only: the address connected to is one
/// of these, so a name that points inside cannot be used to get there.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.iter().copied().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() && !all.is_empty() {
                return Err(
                    Box::new(InternalAddress(name.as_str().to_string())) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A name resolved to internal addresses only.
#[derive(Debug)]
struct InternalAddress(String);

impl std::fmt::Display for InternalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves to an internal address", self.0)
    }
}

impl std::error::Error for InternalAddress {}

/// `strict`: internal addresses refused; else any address (the rule named the host).
fn client(strict: bool) -> &'static reqwest::Client {
    static STRICT: OnceLock<reqwest::Client> = OnceLock::new();
    static OPEN: OnceLock<reqwest::Client> = OnceLock::new();
    let build = |strict: bool| {
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(std::time::Duration::from_secs(30));
        let builder = if strict { builder.dns_resolver(Arc::new(PublicOnly)) } else { builder };
        builder.build().expect("a client with these settings builds")
    };
    if strict { STRICT.get_or_init(|| build(true)) } else { OPEN.get_or_init(|| build(false)) }
}

/// An outbound request's client span, whether it goes to an MCP server, and
/// whether it carries the span's `traceparent` (`http.propagateTrace`).
pub(super) struct Trace {
    pub span: telemetry::HttpClientSpan,
    pub mcp: bool,
    pub propagate: bool,
}

/// A request's body as a door hands it over: still being written by the
/// guest (`wasi:http`), or whole (`http.fetch`).
pub(super) enum OutBody {
    Guest(WasiBody),
    Whole(Vec<u8>),
}

impl OutBody {
    /// The whole body, counted against the run's memory (`hold`).
    pub(super) async fn collect(self, hold: &mut MemoryHold, max: usize) -> Result<Vec<u8>, Error> {
        match self {
            Self::Guest(body) => collect_within(body, hold, max).await,
            Self::Whole(bytes) if hold.grow(bytes.len()) => Ok(bytes),
            Self::Whole(_) => Err(over_memory("request", max)),
        }
    }

    /// Read to the end without keeping more than `keep` bytes: a refused
    /// request's body (clients such as wstd write it after `handle` and would
    /// otherwise report a broken stream instead of the refusal).
    pub(super) async fn drain(self, keep: usize) -> Vec<u8> {
        match self {
            Self::Guest(mut body) => {
                let mut kept = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref().filter(|_| kept.len() < keep) {
                        kept.extend_from_slice(data);
                    }
                }
                kept
            }
            Self::Whole(mut bytes) => {
                // A recording keeps this: not the refused body's whole allocation.
                bytes.truncate(keep);
                bytes.shrink_to_fit();
                bytes
            }
        }
    }
}

/// A whole response, redacted, as both doors hand it to the guest. `hold`
/// keeps its body counted on the run's memory until the guest takes it.
pub(super) struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub hold: Option<MemoryHold>,
}

impl Answer {
    /// As `wasi:http` hands it over: the body keeps its hold until the guest drops it.
    pub(super) fn into_wasi(self) -> SendResult {
        let Self { status, headers, body, hold } = self;
        let body = Full::new(Bytes::from(body)).map_err(|never| match never {}).map_frame(move |frame| {
            let _held = &hold;
            frame
        });
        let mut response = http::Response::new(body.boxed_unsync());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok((response, Box::new(std::future::ready(Ok(())))))
    }
}

/// Send a request and read the whole response within the run's limits. The
/// request and response bodies the host buffers count against the run's
/// memory (`memory`) for as long as they are held. One path for both doors.
pub(super) async fn send(
    shared: Arc<Shared>,
    run_id: String,
    request: http::Request<OutBody>,
    admitted: Admitted,
    memory: Arc<RunMemory>,
    trace: Trace,
    tape: crate::tape::Tape,
) -> Result<Answer, Error> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let Admitted { target, label, literal, credentials, limits } = admitted;
    let origin = target.origin();
    let method = parts.method.clone();
    // What the guest sent, before the host adds a trace header or credentials (recording only).
    let mut taped = tape.is_on().then(|| {
        let mut headers = parts.headers.clone();
        for credential in &credentials {
            headers.remove(&credential.header);
        }
        (parts.uri.to_string(), crate::tape::header_pairs(&headers), Bytes::new())
    });
    let outcome = tokio::time::timeout(limits.timeout, async {
        let http::request::Parts { method, mut headers, .. } = parts;
        let mut request_hold = memory.hold();
        let body = Bytes::from(body.collect(&mut request_hold, memory.max()).await?);
        if let Some((_, _, taped_body)) = &mut taped {
            *taped_body = body.clone();
        }
        if trace.mcp {
            trace.span.mcp(&body);
        }
        // After naming the span: a span whose context was taken keeps its name.
        if trace.propagate
            && let Some(traceparent) = telemetry::inject(trace.span.span())
        {
            headers.insert("traceparent", traceparent);
        }
        if !credentials.is_empty() {
            // A compressed answer could carry the credential past redaction.
            headers.insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
        }
        // The injected value replaces the guest's: a server reading the first of two could take the guest's.
        for credential in &credentials {
            headers.remove(&credential.header);
        }
        // Every value injected, redacted from the answer.
        let mut secrets: Vec<Secret> = Vec::new();
        let mut retried = false;
        // Only an OAuth retry sends twice: the first attempt takes the headers, a retry a copy kept for it.
        let oauth = credentials.iter().any(|c| matches!(c.value, CredentialValue::OAuth(_)));
        let spare = oauth.then(|| headers.clone());
        let mut headers = Some(headers);
        let response = loop {
            let headers = headers.take().or_else(|| spare.clone()).unwrap_or_default();
            let mut builder = client(!literal).request(method.clone(), target.url.clone()).headers(headers);
            let mut tokens = Vec::new();
            for credential in &credentials {
                match &credential.value {
                    CredentialValue::Static { value, secret } => {
                        builder = builder.header(credential.header.clone(), value.expose());
                        secrets.push(secret.clone());
                    }
                    CredentialValue::OAuth(source) => {
                        let token = source.token().await.map_err(|e| Error::InternalError(Some(e.0)))?;
                        builder = builder.header(credential.header.clone(), format!("Bearer {}", token.expose()));
                        secrets.push(token.clone());
                        tokens.push((source, token));
                    }
                }
            }
            let response = builder.body(body.clone()).send().await.map_err(|e| send_error(&e))?;
            if response.status() != http::StatusCode::UNAUTHORIZED || tokens.is_empty() {
                break response;
            }
            // Revoked or expired early: drop the token and try once with a fresh one.
            for (source, token) in &tokens {
                source.forget(token).await;
            }
            if retried {
                let url = resource_metadata(response.headers())
                    .filter(|url| !secrets.iter().any(|s| url.contains(s.expose())));
                let keys: Vec<&str> = tokens.iter().map(|(source, _)| source.key.as_str()).collect();
                let keys = keys.join(", ");
                let metadata = url.map_or_else(String::new, |url| {
                    format!("; its protected resource metadata (RFC 9728) is at {url}")
                });
                tracing::warn!(
                    agent = %shared.agent, run_id, origin, path = target.path,
                    "outbound HTTP: the server refused a fresh OAuth token from {keys}{metadata}"
                );
                return Err(Error::InternalError(Some(format!(
                    "wasmclaw: {origin} answered 401 to a fresh OAuth token ({keys}){metadata}"
                ))));
            }
            tracing::info!(agent = %shared.agent, run_id, origin, path = target.path, "outbound HTTP: 401, retrying once with a fresh OAuth token");
            retried = true;
        };
        drop(request_hold);
        let announced = response.content_length().and_then(|n| usize::try_from(n).ok());
        // Headers taken, not copied: the response is read as a plain body from here on.
        let (response, mut stream) = http::Response::from(response).into_parts();
        let (status, mut headers) = (response.status, response.headers);
        if status == http::StatusCode::UNAUTHORIZED
            && let Some(url) = resource_metadata(&headers).filter(|url| !secrets.iter().any(|s| url.contains(s.expose())))
        {
            let agent = &shared.agent;
            tracing::warn!(
                %agent, run_id, origin, path = target.path, resource_metadata = url,
                "outbound HTTP answered 401 naming its protected resource metadata (RFC 9728): \
                 an oauth credential in agents.entries.{agent}.http.credentials can authorize it"
            );
        }
        if !credentials.is_empty()
            && let Some(encoding) = headers.get(http::header::CONTENT_ENCODING)
            && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(Error::InternalError(Some(format!(
                "wasmclaw: refused a compressed response ({}) to a request carrying a credential: it could hide the credential",
                String::from_utf8_lossy(encoding.as_bytes())
            ))));
        }
        let mut hold = memory.hold();
        let mut bytes = Vec::new();
        while let Some(frame) = stream.frame().await {
            let Ok(chunk) = frame.map_err(|e| send_error(&e))?.into_data() else { continue };
            let needed = bytes.len() + chunk.len();
            if needed > limits.max_response_bytes {
                return Err(Error::HttpResponseBodySize(Some(limits.max_response_bytes as u64)));
            }
            if !push_counted(&mut bytes, &chunk, &mut hold, announced.map(|n| n.min(limits.max_response_bytes))) {
                return Err(over_memory("response", memory.max()));
            }
        }
        if !secrets.is_empty() {
            // Scanning megabytes for every spelling is CPU work: off the async workers.
            (headers, bytes) = tokio::task::spawn_blocking(move || {
                for secret in &secrets {
                    redact(&mut headers, &mut bytes, secret.expose());
                }
                (headers, bytes)
            })
            .await
            .map_err(|_| Error::InternalError(Some("wasmclaw: redacting the response failed".into())))?;
        }
        Ok(Answer { status, headers, body: bytes, hold: Some(hold) })
    })
    .await
    .unwrap_or(Err(Error::HttpResponseTimeout));
    let took = started.elapsed();
    let outcome_label = match &outcome {
        Ok(answer) => answer.status.as_str(),
        Err(e) => error_label(e),
    };
    match &outcome {
        Ok(answer) => trace.span.answered(answer.status.as_u16()),
        Err(e) => trace.span.failed(error_label(e)),
    }
    let agent = &shared.agent;
    shared.metrics.agent_http(agent.as_str(), Some(&label), outcome_label, Some(took));
    // The run's span carries the client's request id.
    let ms = took.as_secs_f64() * 1000.0;
    match &outcome {
        Ok(answer) => tracing::debug!(
            %agent, run_id, %method, origin, path = target.path, status = answer.status.as_u16(), ms,
            "outbound HTTP"
        ),
        Err(e) => {
            let limit = match e {
                Error::HttpResponseBodySize(_) => " (http.limits.maxResponseBytes)",
                Error::HttpResponseTimeout => " (http.limits.timeoutMs)",
                e if error_label(e) == "memory" => " (limits.memoryBytes)",
                _ => "",
            };
            tracing::warn!(
                %agent, run_id, %method, origin, path = target.path, ms, error = ?e,
                "outbound HTTP failed{limit}"
            )
        }
    }
    if let Some((uri, request_headers, request_body)) = taped {
        let response = match &outcome {
            Ok(answer) => Ok(crate::tape::HttpResponse {
                status: answer.status.as_u16(),
                headers: crate::tape::header_pairs(&answer.headers),
                body: crate::tape::Blob(answer.body.clone()),
            }),
            Err(e) => Err(super::taped_error(e)),
        };
        let body = crate::tape::Blob(request_body.to_vec());
        tape.http_done(crate::tape::HttpCall {
            method: method.to_string(),
            uri,
            headers: request_headers,
            body,
            response,
        });
    }
    outcome
}

/// The request body, counted against the run's memory. Past the limit the
/// rest is read and dropped (the guest is still writing it), and the request
/// fails without being sent.
pub(super) async fn collect_within(mut body: WasiBody, hold: &mut MemoryHold, max: usize) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    let mut over = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        over = over || !push_counted(&mut bytes, &data, hold, None);
    }
    if over { Err(over_memory("request", max)) } else { Ok(bytes) }
}

/// Append `data` if the run's memory holds the buffer's new allocation. What
/// the buffer allocates is what counts: sized from the `announced` length
/// when there is one, doubled (and counted) when it must grow.
fn push_counted(bytes: &mut Vec<u8>, data: &[u8], hold: &mut MemoryHold, announced: Option<usize>) -> bool {
    let needed = bytes.len() + data.len();
    if needed > bytes.capacity() {
        let wanted = announced.filter(|n| *n >= needed).unwrap_or(needed.max(bytes.capacity() * 2));
        if !hold.grow(wanted - bytes.capacity()) {
            return false;
        }
        bytes.reserve_exact(wanted - bytes.len());
    }
    bytes.extend_from_slice(data);
    true
}

/// The start of the message of a body the run's memory could not hold.
const OVER_MEMORY: &str = "wasmclaw: the run's memory limit";

/// A body that did not fit in what is left of the run's memory.
fn over_memory(which: &str, max: usize) -> Error {
    Error::InternalError(Some(format!(
        "{OVER_MEMORY} ({max} bytes, limits.memoryBytes) leaves no room for this {which} body"
    )))
}

/// The WASI error a guest sees for a failed send.
fn send_error(e: &reqwest::Error) -> Error {
    let internal = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .any(|e| e.downcast_ref::<InternalAddress>().is_some());
    if internal {
        tracing::warn!(error = %e, "outbound HTTP denied: the name resolves to an internal address");
        Error::DestinationIpProhibited
    } else if e.is_timeout() {
        Error::HttpResponseTimeout
    } else if e.is_connect() {
        Error::ConnectionRefused
    } else {
        // The cause only: reqwest's own message repeats the URL, query included.
        let cause = std::error::Error::source(e).map_or_else(|| "the request failed".to_string(), |c| c.to_string());
        Error::InternalError(Some(cause))
    }
}

/// A short stable outcome for metrics.
fn error_label(e: &Error) -> &'static str {
    match e {
        Error::DestinationIpProhibited => "denied",
        Error::HttpResponseTimeout => "timeout",
        Error::HttpResponseBodySize(_) => "too_large",
        Error::ConnectionRefused => "refused",
        Error::InternalError(Some(message)) if message.starts_with(OVER_MEMORY) => "memory",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::capabilities::memory::MemoryCapability;

    fn body(len: usize) -> WasiBody {
        Full::new(Bytes::from(vec![7u8; len])).map_err(|never| match never {}).boxed_unsync()
    }

    #[tokio::test]
    async fn a_request_body_past_the_run_memory_fails_that_request_only() {
        let limiter = MemoryCapability::new(4 << 20).instantiate();
        let account = limiter.account();
        let mut hold = account.hold();
        let err = collect_within(body(5 << 20), &mut hold, account.max()).await.unwrap_err();
        assert!(
            matches!(&err, Error::InternalError(Some(m)) if m.contains("limits.memoryBytes") && m.contains("request body")),
            "{err:?}"
        );
        assert_eq!(error_label(&err), "memory");
        drop(hold);
        let mut hold = account.hold();
        assert_eq!(collect_within(body(3 << 20), &mut hold, account.max()).await.unwrap().len(), 3 << 20);
    }
}
