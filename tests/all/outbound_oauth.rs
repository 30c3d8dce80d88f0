//! OAuth for remote servers, done by the host (issue 27, item 8): a
//! credential `{ match, oauth: { tokenUrl, clientIdEnv, clientSecretEnv,
//! scope, resource } }` makes the gateway run the client-credentials grant,
//! cache the token, refresh it, and inject it; the guest never sees it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;

use crate::outbound::{fetch, gateway};
use crate::support::*;

const CLIENT_ID: &str = "wasmclaw-test-client";
const CLIENT_SECRET: &str = "cs-7a6b5c4d3e2f1a0b";
/// Every token the server issues starts with this: a reply or log containing it leaked one.
const TOKEN_PREFIX: &str = "at-e1d2c3b4";

/// The authorization server and the resource server it protects, on one port.
#[derive(Default)]
struct Auth {
    /// Token requests answered.
    issued: AtomicUsize,
    /// `expires_in` of the next token.
    lifetime: AtomicU64,
    /// Tokens the resource server accepts (revoking clears it).
    valid: Mutex<Vec<String>>,
    /// Each token request's form, as sent.
    forms: Mutex<Vec<HashMap<String, String>>>,
}

async fn auth_server() -> (SocketAddr, Arc<Auth>) {
    let auth = Arc::new(Auth { lifetime: AtomicU64::new(3600), ..Default::default() });
    let app = axum::Router::new()
        .route(
            "/token",
            post(|State(auth): State<Arc<Auth>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>| async move {
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Basic {basic}")) {
                    return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#).into_response();
                }
                auth.forms.lock().unwrap().push(form);
                let n = auth.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let token = format!("{TOKEN_PREFIX}-{n}");
                auth.valid.lock().unwrap().push(token.clone());
                let lifetime = auth.lifetime.load(Ordering::SeqCst);
                axum::Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime}))
                    .into_response()
            }),
        )
        .route(
            "/mcp",
            get(|State(auth): State<Arc<Auth>>, headers: HeaderMap| async move {
                let sent = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let ok = sent.strip_prefix("Bearer ").is_some_and(|t| auth.valid.lock().unwrap().iter().any(|v| v == t));
                if !ok {
                    return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer error=\"invalid_token\"")], "no")
                        .into_response();
                }
                ([("x-echo", sent.clone())], format!("welcome, {sent}")).into_response()
            }),
        )
        .route(
            "/guarded",
            get(|headers: HeaderMap| async move {
                let host = headers.get("host").unwrap().to_str().unwrap().to_string();
                let challenge =
                    format!(r#"Bearer resource_metadata="http://{host}/.well-known/oauth-protected-resource/guarded""#);
                (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)], "authorize first").into_response()
            }),
        )
        .with_state(auth.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, auth)
}

/// An agent `http` block allowing `addr`, with an oauth credential for `path`.
fn oauth_http(addr: SocketAddr, path: &str, token_url: &str) -> String {
    format!(
        r#", http: {{ allow: ["http://{addr}"], credentials: [{{ match: "http://{addr}{path}",
            oauth: {{ tokenUrl: "{token_url}", clientIdEnv: "TEST_OAUTH_ID", clientSecretEnv: "TEST_OAUTH_SECRET",
                      scope: "tools:read tools:call", resource: "http://{addr}/mcp" }} }}] }}"#
    )
}

const ENV: [(&str, &str); 2] = [("TEST_OAUTH_ID", CLIENT_ID), ("TEST_OAUTH_SECRET", CLIENT_SECRET)];

/// Nothing the client, the log or the metrics show carries a token or the client secret.
async fn assert_nothing_leaked(gw: &TestGateway, replies: &[String]) {
    for reply in replies {
        assert!(!reply.contains(TOKEN_PREFIX) && !reply.contains(CLIENT_SECRET), "{reply}");
    }
    let log = gw.log();
    assert!(!log.contains(TOKEN_PREFIX) && !log.contains(CLIENT_SECRET), "the log shows a secret:\n{log}");
    let metrics = gw.metrics().await;
    assert!(!metrics.contains(TOKEN_PREFIX) && !metrics.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn one_token_serves_many_runs_and_never_reaches_the_guest() {
    let (addr, auth) = auth_server().await;
    let http = oauth_http(addr, "/mcp", &format!("http://{addr}/token"));
    let gw = gateway(&[("caller", &http)], &ENV).unwrap();
    let mcp = format!("http://{addr}/mcp");
    let mut replies = Vec::new();
    for _ in 0..3 {
        let reply = fetch(&gw, "caller", &[mcp.clone(), mcp.clone()]).await;
        assert_eq!(
            reply.matches(&format!("{mcp} -> 200 [x-echo: Bearer [REDACTED]] welcome, Bearer [REDACTED]")).count(),
            2,
            "{reply}"
        );
        replies.push(reply);
    }
    assert_eq!(auth.issued.load(Ordering::SeqCst), 1, "one token for six requests in three runs");
    let form = auth.forms.lock().unwrap()[0].clone();
    assert_eq!(form.get("grant_type").map(String::as_str), Some("client_credentials"));
    assert_eq!(form.get("scope").map(String::as_str), Some("tools:read tools:call"));
    assert_eq!(form.get("resource"), Some(&mcp), "the RFC 8707 resource indicator");
    // The raw client answer too, not only the reply text.
    let raw = gw.chat(ask("agent:caller", &mcp)).send().await.unwrap().text().await.unwrap();
    replies.push(raw);
    assert_nothing_leaked(&gw, &replies).await;
}

#[tokio::test]
async fn a_refused_or_expired_token_is_replaced() {
    let (addr, auth) = auth_server().await;
    let http = oauth_http(addr, "/mcp", &format!("http://{addr}/token"));
    let gw = gateway(&[("caller", &http)], &ENV).unwrap();
    let mcp = format!("http://{addr}/mcp");
    let ok = format!("{mcp} -> 200");
    let mut replies = vec![fetch(&gw, "caller", std::slice::from_ref(&mcp)).await];
    assert_eq!(auth.issued.load(Ordering::SeqCst), 1);
    // Revoked at the resource server: its 401 drops the token, one retry with a fresh one.
    auth.valid.lock().unwrap().clear();
    let reply = fetch(&gw, "caller", std::slice::from_ref(&mcp)).await;
    assert!(reply.contains(&ok), "{reply}");
    assert_eq!(auth.issued.load(Ordering::SeqCst), 2);
    replies.push(reply);
    let reply = fetch(&gw, "caller", std::slice::from_ref(&mcp)).await;
    assert!(reply.contains(&ok), "{reply}");
    assert_eq!(auth.issued.load(Ordering::SeqCst), 2, "the fresh token is cached in turn");
    // Short-lived tokens are fetched again once they are about to expire.
    auth.lifetime.store(1, Ordering::SeqCst);
    auth.valid.lock().unwrap().clear();
    let reply = fetch(&gw, "caller", std::slice::from_ref(&mcp)).await;
    assert!(reply.contains(&ok), "{reply}");
    assert_eq!(auth.issued.load(Ordering::SeqCst), 3);
    auth.lifetime.store(3600, Ordering::SeqCst);
    eventually("a new token once the short one expired", async || {
        let reply = fetch(&gw, "caller", std::slice::from_ref(&mcp)).await;
        assert!(reply.contains(&ok), "{reply}");
        (auth.issued.load(Ordering::SeqCst) == 4).then_some(())
    })
    .await;
    for _ in 0..2 {
        let reply = fetch(&gw, "caller", std::slice::from_ref(&mcp)).await;
        assert!(reply.contains(&ok), "{reply}");
    }
    assert_eq!(auth.issued.load(Ordering::SeqCst), 4, "the long-lived token then serves every run");
    assert_nothing_leaked(&gw, &replies).await;
}

#[tokio::test]
async fn a_401_naming_resource_metadata_is_reported_with_its_url() {
    let (addr, auth) = auth_server().await;
    let http = oauth_http(addr, "/guarded", &format!("http://{addr}/token"));
    let plain = format!(r#", http: {{ allow: ["http://{addr}"] }}"#);
    let gw = gateway(&[("caller", &http), ("plain", &plain)], &ENV).unwrap();
    let guarded = format!("http://{addr}/guarded");
    let metadata = format!("http://{addr}/.well-known/oauth-protected-resource/guarded");
    let reply = fetch(&gw, "caller", std::slice::from_ref(&guarded)).await;
    assert!(reply.contains(&format!("{guarded} -> error:")) && reply.contains(&metadata), "{reply}");
    assert!(reply.contains("agents.entries.caller.http.credentials[0].oauth"), "names the credential: {reply}");
    assert_eq!(auth.issued.load(Ordering::SeqCst), 2, "the first token and one retry, no more");
    gw.wait_for_log("the refusal", |l| l.contains("refused a fresh OAuth token") && l.contains(&metadata)).await;
    // Without a credential the guest gets the 401 itself; the log names the metadata and the key.
    let reply = fetch(&gw, "plain", std::slice::from_ref(&guarded)).await;
    assert!(reply.contains(&format!("{guarded} -> 401")), "{reply}");
    gw.wait_for_log("the challenge", |l| {
        l.lines().any(|l| {
            l.contains("agent=plain")
                && l.contains(&format!("resource_metadata=\"{metadata}\""))
                && l.contains("agents.entries.plain.http.credentials")
        })
    })
    .await;
    assert_nothing_leaked(&gw, &[reply]).await;
}

#[tokio::test]
async fn bad_oauth_settings_are_errors_naming_their_key() {
    let (addr, auth) = auth_server().await;
    let token_url = format!("http://{addr}/token");
    let http = oauth_http(addr, "/mcp", &token_url);
    let key = "agents.entries.caller.http.credentials[0]";
    let err = gateway(&[("caller", &http)], &ENV[1..]).err().expect("start-up fails without the client id");
    assert!(err.contains(&format!("{key}.oauth.clientIdEnv")) && err.contains("TEST_OAUTH_ID"), "{err}");
    let err = gateway(&[("caller", &http)], &ENV[..1]).err().expect("start-up fails without the secret");
    assert!(err.contains(&format!("{key}.oauth.clientSecretEnv")), "{err}");
    let remote = oauth_http(addr, "/mcp", "http://auth.example.com/token");
    let err = gateway(&[("caller", &remote)], &ENV).err().expect("plain http to a remote token endpoint");
    assert!(err.contains(&format!("{key}.oauth.tokenUrl")) && err.contains("https"), "{err}");
    let both = http.replace("oauth:", r#"valueEnv: "TEST_OAUTH_ID", oauth:"#);
    let err = gateway(&[("caller", &both)], &ENV).err().expect("valueEnv and oauth together");
    assert!(err.contains(key) && err.contains("exactly one of valueEnv and oauth"), "{err}");
    // A secret the token endpoint refuses: the run's request fails naming the key, never the secret.
    let gw = gateway(&[("caller", &http)], &[ENV[0], ("TEST_OAUTH_SECRET", "wrong-secret-0000")]).unwrap();
    let mcp = format!("http://{addr}/mcp");
    let reply = fetch(&gw, "caller", std::slice::from_ref(&mcp)).await;
    assert!(reply.contains(&format!("{mcp} -> error:")) && reply.contains(&format!("{key}.oauth")), "{reply}");
    assert!(reply.contains("401 (invalid_client)"), "{reply}");
    assert!(!reply.contains("wrong-secret-0000") && !gw.log().contains("wrong-secret-0000"), "{reply}");
    assert_eq!(auth.issued.load(Ordering::SeqCst), 0);
}
