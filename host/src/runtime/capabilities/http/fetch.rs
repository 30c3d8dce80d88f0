//! The `http.fetch` import (contract 0.2.2): a whole request in one call, a
//! whole response back. The same exchange as `wasi:http` (policy,
//! credentials, redaction, limits, metrics, traces, tape), without the ~25
//! resource calls a `wasi:http` client makes per request.

use wasmtime_wasi_http::Error;

use super::HttpState;
use super::send::OutBody;

/// A guest's whole request, as the contract's `http.request` carries it.
pub struct FetchRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// A whole response: lower-case header names, in order.
pub struct FetchResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Why a request got no response, as the contract's `http-error` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Denied,
    InternalAddress,
    Timeout,
    TooLarge,
    Failed(String),
}

impl HttpState {
    /// Send one whole request and read the whole response.
    pub async fn fetch(&mut self, request: FetchRequest) -> Result<FetchResponse, FetchError> {
        let parts = head(request.method, &request.url, request.headers)?;
        let answer = self.hooks.exchange(parts, OutBody::Whole(request.body)).await?;
        let headers =
            answer.headers.iter().map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec())).collect();
        Ok(FetchResponse { status: answer.status.as_u16(), headers, body: answer.body })
    }
}

/// The request line and headers; a bad method, URL or header fails here, unsent.
fn head(method: String, url: &str, headers: Vec<(String, Vec<u8>)>) -> Result<http::request::Parts, FetchError> {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| FetchError::Failed(format!("not an HTTP method: {method:?}")))?;
    parts.uri = url.parse().map_err(|e| FetchError::Failed(format!("not a URL: {e}")))?;
    parts.headers.reserve(headers.len());
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| FetchError::Failed(format!("not a header name: {name:?}")))?;
        let value = http::HeaderValue::from_bytes(&value)
            .map_err(|_| FetchError::Failed(format!("not a valid value for header {name}")))?;
        parts.headers.append(name, value);
    }
    Ok(parts)
}

/// The same cases a `wasi:http` client sees, named as the contract names them.
impl From<Error> for FetchError {
    fn from(e: Error) -> Self {
        match e {
            Error::HttpRequestDenied => Self::Denied,
            Error::DestinationIpProhibited => Self::InternalAddress,
            Error::HttpResponseTimeout | Error::ConnectionTimeout => Self::Timeout,
            Error::HttpResponseBodySize(_) => Self::TooLarge,
            Error::InternalError(Some(message)) => Self::Failed(message),
            other => Self::Failed(format!("{other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_method_url_or_header_fails_before_anything_is_sent() {
        let ok = head("POST".into(), "https://api.test/v1?q=1", vec![("X-Key".into(), b"v".to_vec())]).unwrap();
        assert_eq!((ok.method.as_str(), ok.uri.to_string()), ("POST", "https://api.test/v1?q=1".to_string()));
        assert_eq!(ok.headers.get("x-key").unwrap(), "v");
        let failed = |r: Result<_, FetchError>| matches!(r, Err(FetchError::Failed(_)));
        assert!(failed(head("GE T".into(), "https://api.test/", vec![])));
        assert!(failed(head("GET".into(), "https://api.test/a b", vec![])));
        assert!(failed(head("GET".into(), "https://api.test/", vec![("bad name".into(), b"v".to_vec())])));
        assert!(failed(head("GET".into(), "https://api.test/", vec![("x".into(), b"a\nb".to_vec())])));
    }

    #[test]
    fn send_errors_map_to_the_cases_the_sdk_tells_apart() {
        assert_eq!(FetchError::from(Error::HttpRequestDenied), FetchError::Denied);
        assert_eq!(FetchError::from(Error::DestinationIpProhibited), FetchError::InternalAddress);
        assert_eq!(FetchError::from(Error::HttpResponseTimeout), FetchError::Timeout);
        assert_eq!(FetchError::from(Error::HttpResponseBodySize(Some(9))), FetchError::TooLarge);
        assert_eq!(FetchError::from(Error::InternalError(Some("m".into()))), FetchError::Failed("m".into()));
        assert_eq!(FetchError::from(Error::ConnectionRefused), FetchError::Failed("ConnectionRefused".into()));
    }
}
