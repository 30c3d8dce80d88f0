//! Sending an admitted request: through a client whose resolver refuses
//! internal addresses (unless the rule named the host), with no redirects
//! followed, under the run's limits; credentials added here and redacted
//! from the response before the guest reads it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error, WasiBody};

use super::{Admitted, SendResult, Shared, is_internal};

/// What replaces a credential's value wherever it shows up in a response.
const REDACTED: &str = "[REDACTED]";

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

/// Send `request` and read the whole response within the run's limits.
pub(super) async fn send(
    shared: Arc<Shared>,
    run_id: String,
    request: http::Request<WasiBody>,
    admitted: Admitted,
) -> SendResult {
    let started = Instant::now();
    let Admitted { target, literal, credentials, limits } = admitted;
    let (agent, origin, method) = (shared.agent.clone(), target.origin(), request.method().clone());
    let request_id = uuid::Uuid::new_v4().to_string();
    let outcome = tokio::time::timeout(limits.timeout, async {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let mut builder = client(!literal).request(parts.method, parts.uri.to_string()).headers(parts.headers);
        for credential in &credentials {
            builder = builder.header(credential.header.clone(), credential.value.expose());
        }
        let response = builder.body(body).send().await.map_err(|e| send_error(&e))?;
        let status = response.status();
        let mut headers = response.headers().clone();
        let mut bytes = Vec::new();
        let mut stream = response;
        while let Some(chunk) = stream.chunk().await.map_err(|e| send_error(&e))? {
            if bytes.len() + chunk.len() > limits.max_response_bytes {
                return Err(Error::HttpResponseBodySize(Some(limits.max_response_bytes as u64)));
            }
            bytes.extend_from_slice(&chunk);
        }
        for credential in &credentials {
            redact(&mut headers, &mut bytes, credential.secret.expose());
        }
        Ok((status, headers, bytes))
    })
    .await
    .unwrap_or(Err(Error::HttpResponseTimeout));
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let label = match &outcome {
        Ok((status, ..)) => status.as_str().to_string(),
        Err(e) => error_label(e).to_string(),
    };
    shared.metrics.agent_http(agent.as_str(), &origin, &label, Some(started.elapsed()));
    match &outcome {
        Ok((status, ..)) => tracing::debug!(
            %agent, run_id, request_id, %method, origin, path = target.path, status = status.as_u16(), ms,
            "outbound HTTP"
        ),
        Err(e) => {
            let limit = match e {
                Error::HttpResponseBodySize(_) => " (http.limits.maxResponseBytes)",
                Error::HttpResponseTimeout => " (http.limits.timeoutMs)",
                _ => "",
            };
            tracing::warn!(
                %agent, run_id, request_id, %method, origin, path = target.path, ms, error = ?e,
                "outbound HTTP failed{limit}"
            )
        }
    }
    let (status, headers, bytes) = outcome?;
    let mut response =
        http::Response::new(Full::new(Bytes::from(bytes)).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok((response, Box::new(std::future::ready(Ok(())))))
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
        _ => "error",
    }
}

/// Replace `secret` in header values and the body.
fn redact(headers: &mut http::HeaderMap, body: &mut Vec<u8>, secret: &str) {
    if secret.is_empty() {
        return;
    }
    for value in headers.values_mut() {
        if let Ok(text) = value.to_str()
            && text.contains(secret)
        {
            *value = http::HeaderValue::from_str(&text.replace(secret, REDACTED)).expect("was a valid value");
        }
    }
    let needle = secret.as_bytes();
    if body.windows(needle.len()).any(|w| w == needle) {
        let mut out = Vec::with_capacity(body.len());
        let mut i = 0;
        while i < body.len() {
            if body[i..].starts_with(needle) {
                out.extend_from_slice(REDACTED.as_bytes());
                i += needle.len();
            } else {
                out.push(body[i]);
                i += 1;
            }
        }
        *body = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_redacted_from_headers_and_body() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-echo", "Bearer s3cret-value".parse().unwrap());
        let mut body = br#"{"auth":"Bearer s3cret-value","again":"s3cret-value"}"#.to_vec();
        redact(&mut headers, &mut body, "s3cret-value");
        assert_eq!(headers["x-echo"], "Bearer [REDACTED]");
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"auth":"Bearer [REDACTED]","again":"[REDACTED]"}"#);
    }
}
