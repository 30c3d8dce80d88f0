//! The control page: a small web application compiled into the binary
//! (`host/src/http/ui/`, plain HTML, CSS and ES modules, no build step) that
//! speaks the gateway's own WebSocket protocol and HTTP API. Served at `/ui`
//! and, for a browser asking for HTML, at `/` (see [`wants_page`]); off with
//! `gateway.controlUi.enabled: false`.
//!
//! Every response carries a strong `ETag` (the content's sha256) and
//! `Cache-Control: no-cache`, so a browser revalidates with a cheap `304` and
//! never runs a stale script after an upgrade, plus a Content-Security-Policy
//! that allows only this origin's files and WebSocket: no inline script or
//! style, no other hosts, no framing.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!("ui/", $name)) }
    };
}

/// Every file of the page; `index.html` is the page itself.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("client.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("connect.js", "text/javascript; charset=utf-8"),
    asset!("chat.js", "text/javascript; charset=utf-8"),
    asset!("agents.js", "text/javascript; charset=utf-8"),
    asset!("rollouts.js", "text/javascript; charset=utf-8"),
    asset!("sessions.js", "text/javascript; charset=utf-8"),
    asset!("status.js", "text/javascript; charset=utf-8"),
    asset!("usage.js", "text/javascript; charset=utf-8"),
];

/// The `ETag` of each asset, in [`ASSETS`] order: computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = hex::encode(&Sha256::digest(a.body)[..16]);
            HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is a header value")
        })
        .collect()
});

/// `GET /ui`, `/ui/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    page(&headers)
}

/// The page, as `/ui` and `/` serve it.
pub fn page(headers: &HeaderMap) -> Response {
    serve(0, headers)
}

/// `GET /ui/{name}`: one of the page's files.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(i, &headers),
        None => ApiError::not_found().into_response(),
    }
}

/// True for a browser navigating to `/`: a `GET` (or `HEAD`) that is not a
/// WebSocket upgrade and accepts `text/html`. Other clients of `/` (the
/// WebSocket, probes, `curl` with `*/*`) are left as they were.
pub fn wants_page(method: &Method, headers: &HeaderMap) -> bool {
    let upgrade = headers.get(header::UPGRADE).is_some();
    let html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| range.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html")));
    (method == Method::GET || method == Method::HEAD) && !upgrade && html
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || tag.trim().trim_start_matches("W/") == etag);
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let out = response.headers_mut();
    if !fresh {
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    out.insert(header::ETAG, etag.clone());
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::CONTENT_SECURITY_POLICY, csp(headers));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Only this origin: its files, its HTTP API and its WebSocket (named with
/// both schemes, since older browsers do not count `ws:` as `'self'`, and
/// behind a TLS proxy the page is `https` while the gateway sees `http`).
fn csp(headers: &HeaderMap) -> HeaderValue {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| is_host(h));
    let sockets = host.map(|h| format!(" ws://{h} wss://{h}")).unwrap_or_default();
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// A `Host` value that can go into the policy as it is: a name or an
/// address with an optional port, nothing that could end a directive.
fn is_host(host: &str) -> bool {
    !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn browsers_get_the_page_and_other_clients_of_the_root_do_not() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_page(&Method::GET, &headers(&[("accept", browser)])));
        assert!(wants_page(&Method::HEAD, &headers(&[("accept", "TEXT/HTML")])));
        assert!(!wants_page(&Method::GET, &headers(&[("accept", "*/*")])), "curl");
        assert!(!wants_page(&Method::GET, &headers(&[])));
        assert!(!wants_page(&Method::POST, &headers(&[("accept", browser)])));
        assert!(!wants_page(&Method::GET, &headers(&[("accept", browser), ("upgrade", "websocket")])));
    }

    #[test]
    fn the_policy_names_only_a_well_formed_host() {
        let policy = |host: &str| csp(&headers(&[("host", host)])).to_str().unwrap().to_string();
        assert!(policy("127.0.0.1:18789").contains("connect-src 'self' ws://127.0.0.1:18789 wss://127.0.0.1:18789;"));
        assert!(policy("[::1]:80").contains("ws://[::1]:80"));
        let injected = policy("evil; script-src *");
        assert!(injected.contains("connect-src 'self';") && !injected.contains("evil"), "{injected}");
        assert!(!policy("x").contains("unsafe-inline"));
    }

    #[test]
    fn every_asset_is_embedded_and_tagged() {
        assert_eq!(ETAGS.len(), ASSETS.len());
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
        }
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!index.contains("<script>") && !index.contains(" style="), "no inline script or style");
    }
}
