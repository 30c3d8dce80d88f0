//! OpenClaw's own Control UI (issue 27), pinned: the `openclaw` npm package's
//! built static files, installed into `target/openclaw` on first use and
//! served here from another loopback port, driven in Debian's Chromium by
//! Playwright (`tests/ui/openclaw_check.py`). Beside it, WebSocket-level
//! checks: every method the UI bundle calls that wasmclaw serves answers,
//! the start and chat methods are among them, and device proofs that are
//! forged or answer another challenge are refused.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::*;

/// The pinned package; its Control UI is what WIRE.md says was checked.
const OPENCLAW: &str = "openclaw@2026.9.6";

/// Methods the 2026.9.6 UI calls when it starts, in its chat view and on its
/// other first pages (recorded from the wire by the browser check, which
/// fails on any it calls that is not here); each must be served.
const START_AND_CHAT: &[&str] = &[
    "agent.identity.get",
    "agents.list",
    "channels.status",
    "chat.history",
    "chat.metadata",
    "chat.send",
    "chat.startup",
    "config.get",
    "cron.list",
    "cron.runs",
    "cron.status",
    "environments.list",
    "exec.approval.list",
    "models.authStatus",
    "models.list",
    "node.list",
    "openclaw.approval.list",
    "plugin.approval.list",
    "plugins.list",
    "progressCard.get",
    "question.list",
    "sessions.branches.list",
    "sessions.companion.state",
    "sessions.describe",
    "sessions.list",
    "sessions.messages.subscribe",
    "sessions.observer.visibility",
    "sessions.subscribe",
    "system.info",
    "talk.catalog",
    "tasks.list",
    "update.status",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The UI's static files; the first test to ask installs the package. Its
/// install script refuses Node < 24, and only the built files are needed,
/// so scripts are not run.
fn control_ui() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target/openclaw");
        let ui = dir.join("node_modules/openclaw/dist/control-ui");
        let wanted = OPENCLAW.rsplit_once('@').unwrap().1;
        let manifest = std::fs::read_to_string(dir.join("node_modules/openclaw/package.json")).unwrap_or_default();
        if !manifest.contains(&format!("\"version\": \"{wanted}\"")) || !ui.join("index.html").exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("package.json"), r#"{"private": true}"#).unwrap();
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--save-exact", "--ignore-scripts", "--prefix"])
                .arg(&dir)
                .arg(OPENCLAW)
                .status()
                .expect("npm is required");
            assert!(status.success(), "npm install {OPENCLAW} failed (needs the npm registry)");
        }
        ui
    })
    .clone()
}

/// The UI's scripts, concatenated.
fn bundle() -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(control_ui().join("assets")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "js") {
            all.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    all
}

/// Every method name the UI's scripts pass to `request(…)` literally.
fn bundle_methods(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    {
        for piece in text.split("request(`").skip(1) {
            let name: String =
                piece.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_').collect();
            if piece[name.len()..].starts_with('`') && !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// A client of the main secret that asked for `operator.admin`.
pub(crate) async fn admin(gw: &TestGateway) -> Client {
    let (mut c, _) = Client::open(gw).await;
    let mut params = connect_params(TOKEN);
    params["scopes"] = json!(["operator.admin"]);
    let hello = c.call("connect", params).await;
    assert_eq!(hello["ok"], true, "{hello}");
    c
}

/// Serve `dir` on a loopback port, as any static web server would.
async fn serve_static(dir: PathBuf) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let dir = dir.clone();
        async move {
            let path = uri.path().trim_start_matches('/');
            let file = if path.is_empty() || path.contains("..") { dir.join("index.html") } else { dir.join(path) };
            let file = if file.is_file() { file } else { dir.join("index.html") };
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("svg") => "image/svg+xml",
                Some("json" | "webmanifest") => "application/json",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            ([(axum::http::header::CONTENT_TYPE, kind)], std::fs::read(file).unwrap())
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Start `tests/ui/<script>` against `gw`, with the UI served from `statics`.
fn ui_check(python: &Path, script: &str, gw: &TestGateway, statics: &str) -> std::process::Child {
    Command::new(python)
        .arg(root().join("tests/ui").join(script))
        .current_dir(root().join("tests/ui"))
        .env("WASMCLAW_UI_URL", &gw.base)
        .env("WASMCLAW_UI_TOKEN", TOKEN)
        .env("OPENCLAW_UI_STATIC", statics)
        .env("WASMCLAW_UI_SCREENSHOTS", root().join("target/ui-screenshots"))
        .env("OPENCLAW_UI_GATEWAY_WS", gw.base.replace("http://", "ws://"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn openclaw_control_ui_chats_opens_a_second_tab_and_a_revoked_device_is_refused() {
    let ui = control_ui();
    let python = crate::ui::python_with_playwright();
    let statics = serve_static(ui).await;
    let config = format!(r#"{{ gateway: {{ controlUi: {{ allowedOrigins: ["{statics}"] }} }} }}"#);
    let gw = TestGateway::start(&config);
    let mut child = ui_check(&python, "openclaw_check.py", &gw, &statics);
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut device = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(id) = line.strip_prefix("DEVICE ") {
            device = Some(id.to_string());
            break;
        }
    }
    let Some(device) = device else {
        let out = child.wait_with_output().unwrap();
        panic!("{seen}\nstderr:\n{}\ngateway log:\n{}", String::from_utf8_lossy(&out.stderr), gw.log());
    };
    // The admin revokes the device over the gateway's protocol, as another client.
    let mut admin = admin(&gw).await;
    let listed = admin.call("device.pair.list", json!({})).await;
    assert!(listed["payload"]["paired"].as_array().unwrap().iter().any(|d| d["deviceId"] == device), "{listed}");
    assert!(!listed.to_string().contains("token_digest") && !listed.to_string().contains("tokenDigest"));
    let revoked = admin.call("device.token.revoke", json!({"deviceId": device})).await;
    assert_eq!(revoked["payload"]["revoked"], true, "{revoked}");
    writeln!(child.stdin.as_mut().unwrap(), "revoked").unwrap();
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && seen.contains("all checks passed"),
        "{seen}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    // What the UI called at start and in the chat view is what START_AND_CHAT names.
    let called: std::collections::BTreeSet<&str> =
        seen.lines().filter_map(|l| l.strip_prefix("METHODS ")).flat_map(|l| l.split(' ')).collect();
    let missing: Vec<&&str> = called.iter().filter(|m| **m != "connect" && !START_AND_CHAT.contains(m)).collect();
    assert!(missing.is_empty(), "the UI called methods START_AND_CHAT does not list: {missing:?}");
    let log = gw.log();
    assert!(!log.contains(TOKEN), "the secret reached the gateway's log");
}

/// Issue 27: after a send and its reply the UI shows each once, nothing
/// pending, in the sending tab and in a second one.
#[tokio::test(flavor = "multi_thread")]
async fn openclaw_control_ui_shows_a_sent_message_and_its_reply_once_with_nothing_pending() {
    let ui = control_ui();
    let python = crate::ui::python_with_playwright();
    let statics = serve_static(ui).await;
    let config = format!(r#"{{ gateway: {{ controlUi: {{ allowedOrigins: ["{statics}"] }} }} }}"#);
    let gw = TestGateway::start(&config);
    let out = ui_check(&python, "openclaw_once_check.py", &gw, &statics).wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && seen.contains("all checks passed"),
        "{seen}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
}

/// Issue 27 on PostgreSQL: history read on another instance marks the user's
/// message with the sender's key and the reply as the `final` event does;
/// a message stored before step 10 keeps only its place.
#[tokio::test]
async fn on_postgres_history_marks_a_runs_messages_for_the_control_ui_and_older_ones_by_place() {
    let server = crate::pg::Server::start();
    let url = server.database().await;
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", url.as_str())];
    let start = || TestGateway::start_with("{}", &env).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    let (a, b) = (start(), start());
    // A message as an earlier version stored it: no run.
    let db = crate::pg::connect(&url).await;
    db.batch_execute(
        "INSERT INTO sessions (key, agent_id, owner, created_at, updated_at) VALUES ('main', 'main', 'operator', 1, 1);
         INSERT INTO messages (session_key, role, content, created_at) VALUES ('main', 'user', 'older', 1);",
    )
    .await
    .unwrap();
    let mut c = Client::connect(&a).await;
    let sent =
        c.call("chat.send", json!({"sessionKey": "main", "message": "marked", "idempotencyKey": "ui-key-1"})).await;
    let run_id = sent["payload"]["runId"].as_str().unwrap().to_string();
    let last = c.until(|f| f["event"] == "chat" && f["payload"]["state"] == "final").await;
    let reply_meta = &last["payload"]["message"]["__openclaw"];
    assert_eq!(*reply_meta, json!({"runId": run_id, "idempotencyKey": format!("{run_id}:assistant")}), "{last}");
    let history = Client::connect(&b).await.call("chat.history", json!({"sessionKey": "main"})).await;
    let metas: Vec<&Value> =
        history["payload"]["messages"].as_array().unwrap().iter().map(|m| &m["__openclaw"]).collect();
    assert_eq!(metas.len(), 3, "{history}");
    assert_eq!(*metas[0], json!({"id": "msg-1", "seq": 1}));
    assert_eq!(*metas[1], json!({"id": "msg-2", "seq": 2, "runId": run_id, "idempotencyKey": "ui-key-1:user"}));
    assert_eq!(metas[2]["idempotencyKey"], reply_meta["idempotencyKey"]);
    assert_eq!((metas[2]["seq"].as_u64(), metas[2]["runTerminal"].as_bool()), (Some(3), Some(true)));
}

/// A connect of the Control UI's shape, with a device proof signed by `key`
/// over `nonce` (and `signed_nonce` inside the payload).
pub(crate) fn ui_connect(key: &Ed25519KeyPair, nonce: &str, signed_nonce: &str, auth: Value) -> Value {
    let raw = key.public_key().as_ref();
    let id = hex::encode(sha2::Sha256::digest(raw));
    let scopes = ["operator.admin", "operator.read", "operator.write"];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let token = auth["token"].as_str().or_else(|| auth["deviceToken"].as_str()).unwrap_or_default();
    let payload =
        format!("v2|{id}|openclaw-control-ui|webchat|operator|{}|{now}|{token}|{signed_nonce}", scopes.join(","));
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "openclaw-control-ui", "version": "2026.9.6", "platform": "Linux x86_64", "mode": "webchat"},
        "role": "operator", "scopes": scopes, "auth": auth,
        "device": {"id": id, "publicKey": b64(raw), "signature": b64(key.sign(payload.as_bytes()).as_ref()),
                   "signedAt": now, "nonce": nonce},
    })
}

pub(crate) fn key(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

async fn connect_with(gw: &TestGateway, make: impl FnOnce(&str) -> Value) -> Value {
    let (mut c, challenge) = Client::open(gw).await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_string();
    c.call("connect", make(&nonce)).await
}

#[tokio::test]
async fn device_proofs_are_checked_tokens_are_bound_to_their_device_and_revocation_holds() {
    let gw = TestGateway::start("{}");
    let k = key(7);
    let hello = connect_with(&gw, |n| ui_connect(&k, n, n, json!({"token": TOKEN}))).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let device_token = hello["payload"]["auth"]["deviceToken"].as_str().unwrap().to_string();

    // Another tab: the device token alone, on a fresh challenge.
    let again = connect_with(&gw, |n| ui_connect(&k, n, n, json!({"deviceToken": device_token}))).await;
    assert_eq!(again["ok"], true, "{again}");
    assert!(again["payload"]["auth"]["deviceToken"].is_null(), "a device-token connect is not paired again");

    // The proof must answer this connection's challenge.
    let stale = connect_with(&gw, |_| ui_connect(&k, "an-old-nonce", "an-old-nonce", json!({"token": TOKEN}))).await;
    assert_eq!(stale["error"]["details"]["code"], "DEVICE_AUTH_NONCE_MISMATCH", "{stale}");
    let rewritten = connect_with(&gw, |n| ui_connect(&k, n, "an-old-nonce", json!({"token": TOKEN}))).await;
    assert_eq!(rewritten["error"]["details"]["code"], "DEVICE_AUTH_SIGNATURE_INVALID", "{rewritten}");
    // Another key cannot use this device's token, even with a valid proof of its own.
    let thief = key(8);
    let stolen = connect_with(&gw, |n| ui_connect(&thief, n, n, json!({"deviceToken": device_token}))).await;
    assert_eq!(stolen["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH", "{stolen}");
    // Nor can this device's key sign for someone claiming its id with another key.
    let forged = connect_with(&gw, |n| {
        let mut c = ui_connect(&thief, n, n, json!({"deviceToken": device_token}));
        c["device"]["id"] = json!(hex::encode(sha2::Sha256::digest(k.public_key().as_ref())));
        c
    })
    .await;
    assert_eq!(forged["error"]["details"]["code"], "DEVICE_AUTH_DEVICE_ID_MISMATCH", "{forged}");

    // Revoked: refused at once.
    let mut admin = admin(&gw).await;
    let id = hex::encode(sha2::Sha256::digest(k.public_key().as_ref()));
    assert_eq!(admin.call("device.token.revoke", json!({"deviceId": id})).await["payload"]["revoked"], true);
    let after = connect_with(&gw, |n| ui_connect(&k, n, n, json!({"deviceToken": device_token}))).await;
    assert_eq!(after["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH", "{after}");
    let log = gw.log();
    assert!(!log.contains(&device_token), "a device token reached the log");
}

#[tokio::test]
async fn every_method_of_the_control_ui_bundle_that_wasmclaw_serves_answers() {
    let text = bundle();
    let bundle = bundle_methods(&text);
    // The bundle is the one the start-and-chat list was taken from: it names
    // each (some are chosen at run time, e.g. `chat.startup` or `chat.history`).
    let absent: Vec<&&str> = START_AND_CHAT.iter().filter(|m| !text.contains(&format!("`{m}`"))).collect();
    assert!(absent.is_empty(), "the pinned UI no longer calls {absent:?}: record the list again");
    let gw = TestGateway::start("{}");
    let (mut c, _) = Client::open(&gw).await;
    let hello = c.call("connect", connect_params(TOKEN)).await;
    let served: Vec<String> = hello["payload"]["features"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().into())
        .collect();
    for method in START_AND_CHAT {
        assert!(served.iter().any(|s| s == method), "{method} is not served");
    }
    // The UI's question for sub-agent sessions (none here), with its limit of 10000.
    let spawned = c.call("sessions.list", json!({"spawnedBy": "agent:main:main", "limit": 10000})).await;
    assert_eq!(spawned["payload"]["sessions"], json!([]), "{spawned}");
    // The config the UI shows holds no secret.
    let config = c.call("config.get", json!({})).await;
    assert_eq!(config["ok"], true, "{config}");
    assert!(!config.to_string().contains(TOKEN), "config.get showed the token: {config}");
    for method in bundle.iter().filter(|m| served.contains(m)) {
        // Empty params: some answer, and never "unknown method".
        let answer = c.call(method, json!({"sessionKey": "main", "key": "main", "agentId": "main"})).await;
        assert!(!answer.to_string().contains("unknown method"), "{method}: {answer}");
    }
}

#[tokio::test]
async fn on_postgres_a_device_paired_on_one_instance_works_on_another_until_revoked_on_either() {
    let server = crate::pg::Server::start();
    let url = server.database().await;
    let env = [("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", url.as_str())];
    let start = || TestGateway::start_with("{}", &env).unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    let (a, b) = (start(), start());
    let k = key(9);
    let hello = connect_with(&a, |n| ui_connect(&k, n, n, json!({"token": TOKEN}))).await;
    let device_token = hello["payload"]["auth"]["deviceToken"].as_str().unwrap().to_string();
    let on_b = connect_with(&b, |n| ui_connect(&k, n, n, json!({"deviceToken": device_token}))).await;
    assert_eq!(on_b["ok"], true, "{on_b}");
    // Only the digest is stored.
    let db = crate::pg::connect(&url).await;
    let stored: String = db.query_one("SELECT token_digest FROM devices", &[]).await.unwrap().get(0);
    assert_ne!(stored, device_token);
    let id = hex::encode(sha2::Sha256::digest(k.public_key().as_ref()));
    assert_eq!(admin(&a).await.call("device.token.revoke", json!({"deviceId": id})).await["payload"]["revoked"], true);
    let after = connect_with(&b, |n| ui_connect(&k, n, n, json!({"deviceToken": device_token}))).await;
    assert_eq!(after["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH", "{after}");
}

#[tokio::test]
async fn a_device_token_is_no_wider_than_the_token_that_paired_it() {
    let config = r#"{ gateway: { auth: { tokens: [{ name: "reader", tokenEnv: "READER_TOKEN", scopes: ["operator.read"] }] } } }"#;
    let gw = TestGateway::start_with(config, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("READER_TOKEN", "reader-secret-1")])
        .unwrap_or_else(|log| panic!("gateway failed to start:\n{log}"));
    let k = key(11);
    // The UI asks for admin, read and write; the reader's token holds read only.
    let hello = connect_with(&gw, |n| ui_connect(&k, n, n, json!({"token": "reader-secret-1"}))).await;
    assert_eq!(hello["payload"]["auth"]["scopes"], json!(["operator.read"]), "{hello}");
    let device_token = hello["payload"]["auth"]["deviceToken"].as_str().unwrap().to_string();
    let (mut c, challenge) = Client::open(&gw).await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_string();
    let again = c.call("connect", ui_connect(&k, &nonce, &nonce, json!({"deviceToken": device_token}))).await;
    assert_eq!(again["payload"]["auth"]["scopes"], json!(["operator.read"]), "{again}");
    let listed = c.call("device.pair.list", json!({})).await;
    assert_eq!(listed["ok"], false, "a reader's device may not list devices: {listed}");
    let sent = c.call("chat.send", json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k1"})).await;
    assert_eq!(sent["ok"], false, "a reader's device may not run: {sent}");
    // The device acts as the reader: its admin list shows who paired it.
    let mut admin = admin(&gw).await;
    let paired = admin.call("device.pair.list", json!({})).await;
    assert_eq!(paired["payload"]["paired"][0]["principal"], "reader", "{paired}");
}

#[tokio::test]
async fn a_credential_pairs_at_most_256_devices_and_removing_one_makes_room() {
    let gw = TestGateway::start("{}");
    for seed in 0..=255u8 {
        let mut bytes = [7u8; 32];
        bytes[0] = seed;
        let k = Ed25519KeyPair::from_seed_unchecked(&bytes).unwrap();
        let hello = connect_with(&gw, |n| ui_connect(&k, n, n, json!({"token": TOKEN}))).await;
        assert!(hello["payload"]["auth"]["deviceToken"].is_string(), "device {seed}: {hello}");
    }
    let one_more = key(200);
    let hello = connect_with(&gw, |n| ui_connect(&one_more, n, n, json!({"token": TOKEN}))).await;
    assert_eq!(hello["ok"], true, "the credential still connects: {hello}");
    assert!(hello["payload"]["auth"]["deviceToken"].is_null(), "a 257th device was paired: {hello}");
    gw.wait_for_log("the limit named", |log| log.contains("forget old ones with device.pair.remove")).await;
    let mut admin = admin(&gw).await;
    let listed = admin.call("device.pair.list", json!({})).await;
    let first = listed["payload"]["paired"][0]["deviceId"].clone();
    assert_eq!(listed["payload"]["paired"].as_array().unwrap().len(), 256);
    assert_eq!(admin.call("device.pair.remove", json!({"deviceId": first})).await["payload"]["removed"], true);
    let hello = connect_with(&gw, |n| ui_connect(&one_more, n, n, json!({"token": TOKEN}))).await;
    assert!(hello["payload"]["auth"]["deviceToken"].is_string(), "{hello}");
}

/// [`connect_with`], keeping the connection: the client and its `hello-ok` (or refusal).
pub(crate) async fn open_with(gw: &TestGateway, make: impl FnOnce(&str) -> Value) -> (Client, Value) {
    let (mut c, challenge) = Client::open(gw).await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_string();
    let hello = c.call("connect", make(&nonce)).await;
    (c, hello)
}

#[tokio::test]
async fn revoking_or_removing_a_device_closes_its_open_connections_as_openclaw_does() {
    let gw = TestGateway::start("{}");
    let (k1, k2) = (key(21), key(22));
    let id = |k: &Ed25519KeyPair| hex::encode(sha2::Sha256::digest(k.public_key().as_ref()));
    // Device 1: paired with the secret, and a second tab on its device token. Device 2: paired.
    let (mut paired1, hello) = open_with(&gw, |n| ui_connect(&k1, n, n, json!({"token": TOKEN}))).await;
    let token1 = hello["payload"]["auth"]["deviceToken"].as_str().unwrap().to_string();
    let (mut tab1, hello) = open_with(&gw, |n| ui_connect(&k1, n, n, json!({"deviceToken": token1}))).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let (mut paired2, hello) = open_with(&gw, |n| ui_connect(&k2, n, n, json!({"token": TOKEN}))).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let mut admin = admin(&gw).await;

    let revoked = admin.call("device.token.revoke", json!({"deviceId": id(&k1)})).await;
    assert_eq!(revoked["payload"]["revoked"], true, "{revoked}");
    // OpenClaw's close for a revoked or removed device: 4001 "device removed".
    assert_eq!(tab1.closed().await, (4001, "device removed".to_string()));
    assert_eq!(paired1.closed().await, (4001, "device removed".to_string()));
    // Another device and a client without one are left alone.
    assert_eq!(paired2.call("health", json!({})).await["ok"], true);

    let removed = admin.call("device.pair.remove", json!({"deviceId": id(&k2)})).await;
    assert_eq!(removed["payload"]["removed"], true, "{removed}");
    assert_eq!(paired2.closed().await, (4001, "device removed".to_string()));
    assert_eq!(admin.call("health", json!({})).await["ok"], true, "the admin's own connection stays open");
    gw.wait_for_log("the close logged", |log| log.contains("the device was revoked or removed")).await;
}
