//! A gateway without credentials (auth mode `none`) answers only to loopback
//! host names, and no foreign page may open its WebSocket.

use crate::support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn config() -> String {
    r#"{ gateway: { auth: { mode: "none" }, controlUi: { allowedOrigins: ["https://ops.example.com"] },
                   http: { endpoints: { chatCompletions: { enabled: true } } } } }"#
        .to_string()
}

/// The upgrade's HTTP status with these extra headers (101 when it opened).
async fn upgrade_status(gw: &TestGateway, headers: &[(&'static str, String)]) -> u16 {
    let mut request = gw.base.replace("http://", "ws://").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn only_the_gateways_own_and_listed_origins_open_the_websocket() {
    let gw = TestGateway::start(&config());
    let own = gw.base.clone();
    assert_eq!(upgrade_status(&gw, &[]).await, 101, "clients that are not browsers send no Origin");
    assert_eq!(upgrade_status(&gw, &[("origin", own)]).await, 101);
    assert_eq!(upgrade_status(&gw, &[("origin", "https://ops.example.com".into())]).await, 101);
    assert_eq!(upgrade_status(&gw, &[("origin", "https://evil.example".into())]).await, 403);
    assert_eq!(upgrade_status(&gw, &[("origin", "http://127.0.0.1:1".into())]).await, 403, "another local site");
    gw.wait_for_log("the refusal", |l| l.contains("origin not allowed")).await;
}

#[tokio::test]
async fn a_rebinding_host_name_is_refused_without_credentials() {
    let gw = TestGateway::start(&config());
    let port = gw.base.rsplit(':').next().unwrap().to_string();
    let client = reqwest::Client::new();
    let models = |host: String| client.get(gw.url("/v1/models")).header("host", host).send();
    assert_eq!(models(format!("localhost:{port}")).await.unwrap().status(), 200);
    let res = models(format!("evil.example:{port}")).await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(error_fields(&res.json().await.unwrap()).1.as_deref(), Some("host_not_allowed"));
    let res = client.post(gw.url("/v1/chat/completions")).header("host", "evil.example").json(&ask("openclaw", "hi"));
    assert_eq!(res.send().await.unwrap().status(), 403);
    let origin_and_host = [("origin", format!("http://evil.example:{port}")), ("host", format!("evil.example:{port}"))];
    assert_eq!(upgrade_status(&gw, &origin_and_host).await, 403);
}
