//! Token and password auth, from config and from the environment.

use crate::support::*;

fn config(auth: &str) -> String {
    format!(r#"{{ gateway: {{ auth: {auth}, http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }} }} }} }}"#)
}

async fn status_with(gw: &TestGateway, authorization: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().post(gw.url("/v1/chat/completions")).json(&ask("openclaw", "hi"));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    if status == 401 {
        assert!(res.headers().contains_key("x-request-id"));
        let (kind, code, _) = error_fields(&res.json().await.unwrap());
        assert_eq!((kind.as_str(), code.as_deref()), ("invalid_request_error", Some("invalid_api_key")));
    }
    status
}

async fn assert_only(gw: &TestGateway, secret: &str) {
    assert_eq!(status_with(gw, None).await, 401, "missing");
    assert_eq!(status_with(gw, Some("Bearer wrong")).await, 401, "wrong");
    assert_eq!(status_with(gw, Some(&format!("Basic {secret}"))).await, 401, "wrong scheme");
    assert_eq!(status_with(gw, Some(secret)).await, 401, "no scheme");
    assert_eq!(status_with(gw, Some(&format!("Bearer {secret}x"))).await, 401, "prefix of the secret");
    assert_eq!(status_with(gw, Some(&format!("Bearer {secret}"))).await, 200, "right");
    assert_eq!(status_with(gw, Some(&format!("bearer {secret}"))).await, 200, "scheme case-insensitive");
}

#[tokio::test]
async fn token_from_config() {
    let gw = TestGateway::start_with(&config(r#"{ mode: "token", token: "cfg-secret-1" }"#), &[]).unwrap();
    assert_only(&gw, "cfg-secret-1").await;
}

#[tokio::test]
async fn token_from_env() {
    let gw = TestGateway::start_with(&config(r#"{ mode: "token" }"#), &[("OPENCLAW_GATEWAY_TOKEN", "env-secret-2")])
        .unwrap();
    assert_only(&gw, "env-secret-2").await;
}

#[tokio::test]
async fn password_from_config_and_token_does_not_count() {
    let gw = TestGateway::start_with(
        &config(r#"{ mode: "password", password: "pw-secret-3", token: "tok-secret-3" }"#),
        &[("OPENCLAW_GATEWAY_TOKEN", "env-token-3")],
    )
    .unwrap();
    assert_only(&gw, "pw-secret-3").await;
    assert_eq!(status_with(&gw, Some("Bearer tok-secret-3")).await, 401);
    assert_eq!(status_with(&gw, Some("Bearer env-token-3")).await, 401);
}

#[tokio::test]
async fn password_from_env() {
    let gw = TestGateway::start_with(&config(r#"{ mode: "password" }"#), &[("OPENCLAW_GATEWAY_PASSWORD", "env-pw-4")])
        .unwrap();
    assert_only(&gw, "env-pw-4").await;
}

#[tokio::test]
async fn no_secret_refuses_to_start_and_says_how() {
    let log = TestGateway::start_with(&config(r#"{ mode: "token" }"#), &[]).err().expect("must not start");
    assert!(log.contains("gateway.auth.token") && log.contains("OPENCLAW_GATEWAY_TOKEN"), "{log}");
    let log = TestGateway::start_with(&config(r#"{ mode: "password" }"#), &[("OPENCLAW_GATEWAY_TOKEN", "x")])
        .err()
        .expect("must not start");
    assert!(log.contains("gateway.auth.password") && log.contains("OPENCLAW_GATEWAY_PASSWORD"), "{log}");
}

#[tokio::test]
async fn secrets_never_reach_logs_or_error_bodies() {
    let secret = "very-secret-token-5";
    let gw = TestGateway::start_with(&config(&format!(r#"{{ mode: "token", token: "{secret}" }}"#)), &[]).unwrap();
    let client = reqwest::Client::new();
    let mut bodies = String::new();
    for auth in [format!("Bearer {secret}"), format!("Bearer {secret}-wrong"), "Bearer nope".into()] {
        for path in ["/v1/chat/completions", "/v1/models", "/nope"] {
            let res = client.post(gw.url(path)).header("authorization", &auth).body("{bad").send().await.unwrap();
            bodies.push_str(&res.text().await.unwrap());
        }
    }
    assert!(!bodies.contains(secret), "{bodies}");
    // Everything logged for those nine requests is in the settled log.
    let log = gw.settled_log().await;
    let answered = log.matches("finished processing request").count();
    assert!(answered >= 9, "tracing logged the requests, so an absent secret means something: {log}");
    assert!(!log.contains(secret), "{log}");
}

#[tokio::test]
async fn repeated_failures_lock_a_client_out_for_a_while() {
    let gw = TestGateway::start_with(
        &config(r#"{ mode: "token", token: "lock-secret", rateLimit: { maxAttempts: 3, lockoutMs: 1500, exemptLoopback: false } }"#),
        &[],
    )
    .unwrap();
    assert_eq!(status_with(&gw, Some("Bearer wrong")).await, 401);
    assert_eq!(status_with(&gw, Some("Bearer wrong")).await, 401);
    // The lock-out starts at the third failure, no earlier than now.
    let before_lockout = std::time::Instant::now();
    assert_eq!(status_with(&gw, Some("Bearer wrong")).await, 401);
    let res = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("lock-secret")
        .json(&ask("openclaw", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "even the right secret waits out the lock-out");
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let (kind, code, _) = error_fields(&res.json().await.unwrap());
    assert_eq!((kind.as_str(), code.as_deref()), ("rate_limit_error", Some("auth_rate_limited")));
    gw.wait_for_log("the lock-out", |log| log.contains("client locked out after repeated auth failures")).await;
    // The right secret works again once lockoutMs has passed, and not before.
    let let_in = async || (status_with(&gw, Some("Bearer lock-secret")).await == 200).then_some(());
    eventually("the lock-out to end", let_in).await;
    let locked_for = before_lockout.elapsed();
    assert!(locked_for >= std::time::Duration::from_millis(1500), "lifted after {locked_for:?}");
}

#[tokio::test]
async fn loopback_clients_are_exempt_by_default() {
    let gw = TestGateway::start_with(&config(r#"{ mode: "token", token: "loop-secret" }"#), &[]).unwrap();
    for _ in 0..15 {
        assert_eq!(status_with(&gw, Some("Bearer wrong")).await, 401);
    }
    assert_eq!(status_with(&gw, Some("Bearer loop-secret")).await, 200);
}

#[tokio::test]
async fn mode_none_needs_no_credentials_and_only_binds_loopback() {
    let gw = TestGateway::start_with(&config(r#"{ mode: "none" }"#), &[]).unwrap();
    assert_eq!(status_with(&gw, None).await, 200);
    let open = r#"{ gateway: { bind: "0.0.0.0", auth: { mode: "none" } } }"#;
    let log = TestGateway::start_with(open, &[]).err().expect("must not start open on every interface");
    assert!(log.contains("gateway.auth.mode") && log.contains("loopback"), "{log}");
}

#[tokio::test]
async fn a_valid_low_privilege_token_does_not_wipe_guesses_at_another() {
    let gw = TestGateway::start_with(
        &config(
            r#"{ mode: "token", token: "operator-secret-11", tokens: [{ name: "reader", token: "reader-secret-11", scopes: ["operator.read"] }],
                 rateLimit: { maxAttempts: 5, windowMs: 60000, lockoutMs: 60000, exemptLoopback: false } }"#,
        ),
        &[],
    )
    .unwrap();
    let read = async || {
        let res =
            reqwest::Client::new().get(gw.url("/v1/models")).bearer_auth("reader-secret-11").send().await.unwrap();
        res.status().as_u16()
    };
    // Guesses at the operator secret, each followed by a valid read request.
    for guess in 0..4 {
        assert_eq!(status_with(&gw, Some(&format!("Bearer operator-guess-{guess}"))).await, 401);
        assert_eq!(read().await, 200, "reads pass while the client is not locked out");
    }
    assert_eq!(status_with(&gw, Some("Bearer operator-guess-4")).await, 401);
    // The fifth guess locked the client out, whatever valid token it holds, and it stays out.
    for _ in 0..3 {
        assert_eq!(read().await, 429, "the reader's successes cleared the guesses");
        assert_eq!(status_with(&gw, Some("Bearer operator-secret-11")).await, 429);
    }
}
