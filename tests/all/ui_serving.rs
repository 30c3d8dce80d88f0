//! How the control page is served (issue 19), without a browser: headers,
//! revalidation, the root path shared with the WebSocket, the switch, and the
//! WebSocket additions the page's Agents and Gateway views read.

use std::collections::BTreeSet;

use crate::support::*;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The files a page or script names: `/ui/<file>` in HTML, `./<file>` in imports.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (marker, end) in [("\"/ui/", '"'), ("from \"./", '"')] {
        for piece in text.split(marker).skip(1) {
            found.insert(piece.split(end).next().unwrap().to_string());
        }
    }
    found
}

#[tokio::test]
async fn ui_page_and_every_file_it_loads_are_served_with_a_strict_policy_and_etags() {
    let gw = TestGateway::start(&chat_config());
    let client = reqwest::Client::new();
    let res = client.get(gw.url("/ui")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[CACHE_CONTROL], "no-cache");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    let host = gw.base.trim_start_matches("http://");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        &format!("connect-src 'self' ws://{host} wss://{host}"),
        "frame-ancestors 'none'",
    ] {
        assert!(csp.split(';').any(|d| d.trim() == directive), "{directive:?} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains(" style=\""), "no inline script or style");
    for testid in ["token-input", "connect-button", "nav-chat", "nav-agents", "nav-sessions", "nav-gateway"] {
        assert!(html.contains(&format!("data-testid=\"{testid}\"")), "{testid}");
    }
    // A form submitted without the script (blocked anyway by form-action) could not carry the secret.
    let secret_input = html.split("<input").find(|tag| tag.contains("data-testid=\"token-input\"")).unwrap();
    let secret_input = secret_input.split('>').next().unwrap();
    assert!(!secret_input.contains(" name="), "{secret_input}");
    assert!(csp.split(';').any(|d| d.trim() == "form-action 'none'"), "{csp}");

    // A browser revalidates with the ETag and gets a 304 without a body.
    let etag = headers[ETAG].clone();
    let res = client.get(gw.url("/ui")).header(IF_NONE_MATCH, etag.clone()).send().await.unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()[ETAG], etag);
    assert!(res.bytes().await.unwrap().is_empty());

    // Every file the page loads, and every module those import, is there.
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = references(&html).into_iter().collect();
    while let Some(file) = todo.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let res = client.get(gw.url(&format!("/ui/{file}"))).send().await.unwrap();
        assert_eq!(res.status(), 200, "/ui/{file}");
        let kind = res.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
        assert!(res.headers().contains_key(ETAG) && res.headers().contains_key(CONTENT_SECURITY_POLICY));
        let text = res.text().await.unwrap();
        if file.ends_with(".js") {
            assert!(kind.starts_with("text/javascript"), "{file}: {kind}");
            todo.extend(references(&text));
            // Text goes in as text nodes, and secrets never into lasting storage.
            for banned in
                ["innerHTML =", "outerHTML =", "insertAdjacentHTML", "localStorage.setItem", "document.cookie"]
            {
                assert!(!text.contains(banned), "{file} uses {banned}");
            }
        }
    }
    assert!(seen.len() >= 8, "{seen:?}");
    let res = client.get(gw.url("/ui/missing.js")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(error_fields(&res.json().await.unwrap()).1.as_deref(), Some("not_found"));
}

/// The status of a hand-written upgrade on `/` carrying a browser's `Accept`.
async fn upgrade_with_accept(gw: &TestGateway) -> u16 {
    let mut request = gw.base.replace("http://", "ws://").into_client_request().unwrap();
    request.headers_mut().insert("accept", BROWSER_ACCEPT.parse().unwrap());
    request.headers_mut().insert("origin", gw.base.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn ui_root_gives_browsers_the_page_and_everyone_else_what_they_had() {
    let gw = TestGateway::start(&chat_config());
    let client = reqwest::Client::new();
    let page = client.get(gw.url("/")).header(ACCEPT, BROWSER_ACCEPT).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let ui = client.get(gw.url("/ui")).send().await.unwrap();
    assert_eq!(page.headers()[ETAG], ui.headers()[ETAG], "the same page");
    assert!(page.headers().contains_key(CONTENT_SECURITY_POLICY));
    // curl and probes on `/` are not browsers: the WebSocket's answer, as before.
    assert_eq!(client.get(gw.url("/")).send().await.unwrap().status(), 400);
    assert_eq!(client.get(gw.url("/")).header(ACCEPT, "*/*").send().await.unwrap().status(), 400);
    assert_eq!(client.post(gw.url("/")).header(ACCEPT, BROWSER_ACCEPT).send().await.unwrap().status(), 405);
    // A browser's WebSocket upgrade also accepts HTML; it is still an upgrade.
    assert_eq!(upgrade_with_accept(&gw).await, 101);
    let mut ws = Client::connect(&gw).await;
    assert_eq!(ws.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn ui_is_gone_when_turned_off_and_the_root_is_the_websocket_alone() {
    let gw = TestGateway::start(r#"{ gateway: { controlUi: { enabled: false } } }"#);
    let client = reqwest::Client::new();
    for path in ["/ui", "/ui/", "/ui/app.js"] {
        let res = client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    assert_eq!(client.get(gw.url("/")).header(ACCEPT, BROWSER_ACCEPT).send().await.unwrap().status(), 400);
    assert_eq!(upgrade_with_accept(&gw).await, 101);
}

#[tokio::test]
async fn ui_views_read_uptime_runs_rollback_targets_and_recent_counts_over_the_websocket() {
    let gw = TestGateway::start(&faults_config(&["trap"]));
    assert_eq!(gw.chat(ask("openclaw", "one")).send().await.unwrap().status(), 200);
    assert_eq!(gw.chat(ask("openclaw", "two")).send().await.unwrap().status(), 200);
    assert_eq!(gw.chat(ask("openclaw:fault-trap", "boom")).send().await.unwrap().status(), 500);
    let mut ws = Client::connect(&gw).await;

    let status = ws.call("status", json!({})).await;
    let payload = &status["payload"];
    assert!(payload["uptimeMs"].as_u64().is_some(), "{status}");
    assert_eq!(payload["runs"]["active"], 0, "{status}");
    assert_eq!(payload["runs"]["max"], 500, "{status}");

    let list = ws.call("agents.list", json!({})).await;
    let main = list["payload"]["agents"].as_array().unwrap().iter().find(|a| a["id"] == "main").unwrap().clone();
    assert!(main["loadedAt"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{main}");
    assert_eq!(main["inFlight"], 0);
    assert_eq!(main["previous"], serde_json::Value::Null);

    // A run's counts reach the series when it ends, a moment after its response.
    let recent = eventually("both agents' runs in metrics.recent", async || {
        let recent = ws.call("metrics.recent", json!({})).await;
        let agents = recent["payload"]["agents"].as_array().unwrap().clone();
        let total = |id: &str, field: &str| -> u64 {
            agents
                .iter()
                .filter(|a| a["agentId"] == id)
                .flat_map(|a| a[field].as_array().unwrap().clone())
                .map(|n| n.as_u64().unwrap())
                .sum()
        };
        (total("main", "runs") == 2 && total("fault-trap", "failures") == 1).then_some(recent)
    })
    .await;
    assert_eq!(recent["payload"]["bucketMs"], 10_000);
    let main =
        &recent["payload"]["agents"].as_array().unwrap().iter().find(|a| a["agentId"] == "main").unwrap().clone();
    assert_eq!(main["runs"].as_array().unwrap().len(), 60, "ten minutes of 10 s buckets");
    assert_eq!(main["failures"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum::<u64>(), 0);
}

#[tokio::test]
async fn ui_recent_counts_show_only_the_agents_a_token_may_use() {
    let config = r#"{
  gateway: { auth: { mode: "token", tokens: [
    { name: "main-only", tokenEnv: "MAIN_ONLY_TOKEN", scopes: ["operator.read"], agents: ["main"] } ] },
    http: { endpoints: { chatCompletions: { enabled: true } } } },
  agents: { entries: { main: { plugin: "echo" }, beta: { plugin: "echo" } } },
}"#;
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("MAIN_ONLY_TOKEN", "main-only-secret-41c9")];
    let gw = TestGateway::start_with(config, &env).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    for model in ["openclaw:main", "openclaw:beta"] {
        assert_eq!(gw.chat(ask(model, "hi")).send().await.unwrap().status(), 200);
    }
    let ids = async |c: &mut Client| -> Vec<String> {
        let recent = c.call("metrics.recent", json!({})).await;
        recent["payload"]["agents"].as_array().unwrap().iter().map(|a| a["agentId"].as_str().unwrap().into()).collect()
    };
    let mut operator = Client::connect(&gw).await;
    eventually("both runs counted", async || (ids(&mut operator).await == ["beta", "main"]).then_some(())).await;
    let (mut reader, _) = Client::open(&gw).await;
    let mut params = connect_params("main-only-secret-41c9");
    params["scopes"] = json!(["operator.read"]);
    let hello = reader.call("connect", params).await;
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(ids(&mut reader).await, ["main"]);
}
