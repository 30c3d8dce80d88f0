//! Host-held OAuth 2.0 credentials: the client-credentials grant (RFC 6749
//! §4.4) with the RFC 8707 `resource` indicator. The host fetches the access
//! token, caches it until shortly before it expires, and adds it as a bearer
//! token; the guest never sees it, nor the client's id and secret.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::Secret;

/// Largest token response read: a token endpoint answers in a few hundred bytes.
const MAX_TOKEN_RESPONSE: usize = 64 << 10;
/// How long the token endpoint may take to answer.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// What `application/x-www-form-urlencoded` escapes (a space as `%20`, which decodes the same).
const FORM: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');
/// Lifetime assumed when the endpoint sends no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// One credential's token endpoint and client, and its cached token.
pub struct TokenSource {
    /// `agents.entries.<id>.http.credentials[i].oauth`, for errors and logs.
    pub key: String,
    token_url: reqwest::Url,
    client_id: Secret,
    client_secret: Secret,
    scope: Option<String>,
    resource: Option<String>,
    /// Held across a fetch, so that concurrent runs fetch once.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: Secret,
    /// When to stop using it: shortly before the endpoint said it expires.
    until: Instant,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("key", &self.key).field("token_url", &self.token_url.as_str()).finish()
    }
}

/// A token that could not be had; the message names the config key, never a secret.
#[derive(Debug)]
pub struct TokenError(pub String);

impl TokenSource {
    /// Check `token_url`: https, or http to a loopback host only (a token
    /// endpoint on the same machine, as in development).
    pub fn new(
        key: String,
        token_url: &str,
        client_id: Secret,
        client_secret: Secret,
        scope: Option<String>,
        resource: Option<String>,
    ) -> Result<Self, String> {
        let url = reqwest::Url::parse(token_url).map_err(|e| format!("{token_url:?} is not a URL: {e}"))?;
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let loopback =
            host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(format!("{token_url:?} must be https (plain http only to a loopback host)")),
        }
        let cached = tokio::sync::Mutex::new(None);
        Ok(Self { key, token_url: url, client_id, client_secret, scope, resource, cached })
    }

    /// The cached token, or a fresh one when there is none or it is about to expire.
    pub async fn token(&self) -> Result<Secret, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.until) {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        // Refresh a little early: a request sent just before expiry must not carry a dead token.
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        *cached = Some(Cached { token: token.clone(), until: Instant::now() + lifetime - margin });
        Ok(token)
    }

    /// Forget `token` (the resource server refused it); a newer one stays.
    pub async fn forget(&self, token: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == *token) {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<(Secret, Duration), TokenError> {
        let fail = |why: String| {
            tracing::warn!(key = self.key, token_url = %self.token_url, "OAuth token request failed: {why}");
            TokenError(format!("wasmclaw: no OAuth token for this request ({}): {why}", self.key))
        };
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
        let encode = |s: &str| percent_encoding::utf8_percent_encode(s, FORM).to_string();
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        let request = client()
            .post(self.token_url.clone())
            .basic_auth(encode(self.client_id.expose()), Some(encode(self.client_secret.expose())))
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send();
        let read = async {
            let mut response = request.await.map_err(|e| {
                let what = if e.is_timeout() { "timed out" } else { "could not be reached" };
                format!("the token endpoint {what}")
            })?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|_| "the token response broke off".to_string())? {
                if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
                    return Err(format!("the token response exceeds {MAX_TOKEN_RESPONSE} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(TOKEN_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(format!("the token endpoint took over {}s", TOKEN_TIMEOUT.as_secs())))
            .map_err(fail)?;
        parse_token_response(status, &body).map_err(fail)
    }
}

/// The token and its lifetime from a token endpoint's answer. An error
/// quotes the endpoint's `error` code (RFC 6749 §5.2) and never the body.
fn parse_token_response(status: http::StatusCode, body: &[u8]) -> Result<(Secret, Duration), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
        error: Option<String>,
    }
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    if !status.is_success() {
        let code = answer.and_then(|a| a.error).filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()));
        return Err(match code {
            Some(code) => format!("the token endpoint answered {} ({code})", status.as_u16()),
            None => format!("the token endpoint answered {}", status.as_u16()),
        });
    }
    let answer = answer.ok_or("the token response is not JSON")?;
    let token = answer.access_token.filter(|t| !t.is_empty()).ok_or("the token response has no access_token")?;
    if let Some(kind) = answer.token_type.filter(|k| !k.eq_ignore_ascii_case("bearer")) {
        return Err(format!("the token type is {kind:?}, not Bearer"));
    }
    // Some servers send the number as a string.
    let seconds = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let lifetime = seconds.map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((Secret::new(token), lifetime))
}

/// The client for token endpoints: no redirects (a redirect would carry the
/// client's secret elsewhere), no proxy.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TOKEN_TIMEOUT)
            .build()
            .expect("a client with these settings builds")
    })
}

/// The `resource_metadata` URL of a `WWW-Authenticate: Bearer …` challenge
/// (RFC 9728 §5.1), if the response carries one.
pub fn resource_metadata(headers: &http::HeaderMap) -> Option<String> {
    headers.get_all(http::header::WWW_AUTHENTICATE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let at = v.to_ascii_lowercase().find("resource_metadata=")?;
        let rest = &v[at + "resource_metadata=".len()..];
        let url = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next()?,
            None => rest.split([',', ' ']).next()?,
        };
        // Only a URL, and short: it goes to a log line and to the guest.
        (url.len() <= 2048 && reqwest::Url::parse(url).is_ok()).then(|| url.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> Result<TokenSource, String> {
        TokenSource::new("k".into(), url, Secret::new("id".into()), Secret::new("s".into()), None, None)
    }

    #[test]
    fn token_urls_must_be_https_or_loopback() {
        for ok in ["https://auth.example.com/token", "http://127.0.0.1:9/t", "http://localhost:9/t", "http://[::1]/t"] {
            assert!(source(ok).is_ok(), "{ok}");
        }
        for bad in ["http://auth.example.com/token", "http://10.0.0.1/t", "ftp://127.0.0.1/t", "not a url"] {
            assert!(source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_responses_give_the_token_and_its_lifetime() {
        let ok = http::StatusCode::OK;
        let (token, life) =
            parse_token_response(ok, br#"{"access_token":"t1","token_type":"bearer","expires_in":120}"#).unwrap();
        assert_eq!((token.expose(), life), ("t1", Duration::from_secs(120)));
        let (_, life) = parse_token_response(ok, br#"{"access_token":"t","expires_in":"30"}"#).unwrap();
        assert_eq!(life, Duration::from_secs(30));
        assert_eq!(parse_token_response(ok, br#"{"access_token":"t"}"#).unwrap().1, DEFAULT_LIFETIME);
        assert!(parse_token_response(ok, br#"{"access_token":"t","token_type":"mac"}"#).is_err());
        assert!(parse_token_response(ok, br#"{"token_type":"bearer"}"#).is_err());
        let err = parse_token_response(
            http::StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"secret s3cr3t wrong"}"#,
        )
        .unwrap_err();
        assert_eq!(err, "the token endpoint answered 401 (invalid_client)");
    }

    #[test]
    fn resource_metadata_is_read_from_the_bearer_challenge() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(resource_metadata(&headers), None);
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            r#"Bearer error="invalid_token", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            resource_metadata(&headers).as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        headers.insert(http::header::WWW_AUTHENTICATE, "Bearer resource_metadata=nonsense".parse().unwrap());
        assert_eq!(resource_metadata(&headers), None);
    }
}
