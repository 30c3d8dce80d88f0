//! TLS to PostgreSQL (issue 24, item 15): `database.url` takes libpq's
//! `sslmode` and `sslrootcert`, against real servers that speak TLS with a
//! throwaway CA made here by the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pg;
use crate::sessions::{as_user, sessions_config};
use crate::support::*;

/// A CA, a server certificate it signed for `localhost` only (no IP
/// address, so `127.0.0.1` is the wrong name), and an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
    cert: String,
    key: String,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("wasmclaw-pki-").tempdir().unwrap();
        let ec = "-nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
        for ca in ["ca", "other-ca"] {
            openssl(
                dir.path(),
                &format!(
                    "req -x509 -new {ec} -keyout {ca}.key -out {ca}.crt -days 2 -subj /CN=wasmclaw-test-{ca} \
                     -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
                ),
            );
        }
        openssl(dir.path(), &format!("req -new {ec} -keyout server.key -out server.csr -subj /CN=localhost"));
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            dir.path(),
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
             -extfile server.ext",
        );
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        let (cert, key) = (read("server.crt"), read("server.key"));
        Self { dir, cert, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, only: bool) -> pg::Server {
        pg::Server::start_tls(&pg::Tls { cert: &self.cert, key: &self.key, only })
    }
}

/// `openssl <args>` in `dir` (arguments split on white space).
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace())
        .output()
        .expect("the openssl command is required");
    assert!(out.status.success(), "openssl {args}:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn start(url: &str) -> Result<TestGateway, String> {
    TestGateway::start_with(
        &sessions_config(10, ""),
        &[("OPENCLAW_GATEWAY_TOKEN", TOKEN), ("WASMCLAW_DATABASE_URL", url)],
    )
}

/// Two turns of one stored session: the second sees the first, so the
/// gateway wrote to and read from the database.
async fn assert_sessions_work(gw: &TestGateway) {
    // A new user each time: gateways in one test share the database.
    let user = uuid::Uuid::new_v4().to_string();
    for (text, want) in [("a", "a"), ("b", "[turn 2] b")] {
        let res = gw.chat(as_user("openclaw", &user, text)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(content(&res.json().await.unwrap()), want);
    }
}

/// The start-up error of a gateway that must not connect; never the password.
fn refused(url: &str) -> String {
    let log = start(url).err().unwrap_or_else(|| panic!("the gateway connected with {url}"));
    assert!(!log.contains(pg::PASSWORD), "the password leaked:\n{log}");
    log
}

#[tokio::test]
async fn require_verify_ca_and_verify_full_reach_a_server_that_accepts_only_tls() {
    let pki = Pki::new();
    let db = pki.server(true);
    let ca = pki.path("ca.crt");
    let ca = ca.display();

    let gw = start(&db.url_with("127.0.0.1", "sslmode=require")).unwrap_or_else(|log| panic!("require:\n{log}"));
    assert_sessions_work(&gw).await;
    drop(gw);
    // The certificate names localhost: verify-full checks the name, verify-ca only the chain.
    let full = db.url_with("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let gw = start(&full).unwrap_or_else(|log| panic!("verify-full:\n{log}"));
    assert_sessions_work(&gw).await;
    drop(gw);
    let chain = db.url_with("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    let gw = start(&chain).unwrap_or_else(|log| panic!("verify-ca:\n{log}"));
    assert_sessions_work(&gw).await;
}

#[tokio::test]
async fn a_wrong_root_a_wrong_name_or_no_tls_is_refused_with_the_reason() {
    let pki = Pki::new();
    let db = pki.server(true);
    let (ca, other) = (pki.path("ca.crt"), pki.path("other-ca.crt"));

    let log = refused(&db.url_with("localhost", &format!("sslmode=verify-full&sslrootcert={}", other.display())));
    assert!(log.contains("UnknownIssuer") && log.contains("sslrootcert in database.url"), "{log}");
    let log = refused(&db.url_with("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", ca.display())));
    assert!(log.contains("not valid for name"), "{log}");
    // require with a root checks the chain, as libpq does.
    let log = refused(&db.url_with("localhost", &format!("sslmode=require&sslrootcert={}", other.display())));
    assert!(log.contains("UnknownIssuer"), "{log}");
    let log = refused(&db.url_with("127.0.0.1", "sslmode=disable"));
    assert!(log.contains("no encryption"), "the server's refusal reaches the operator:\n{log}");
    let log = refused(&db.url_with("127.0.0.1", "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"));
    assert!(log.contains("sslrootcert") && log.contains("/nonexistent/ca.pem"), "{log}");
}

#[tokio::test]
async fn prefer_uses_tls_when_the_server_offers_it() {
    let pki = Pki::new();
    // This server also takes plaintext logins, so only pg_stat_ssl tells.
    let db = pki.server(false);
    let gw = start(&db.url_with("127.0.0.1", "sslmode=prefer&application_name=gw-prefer"))
        .unwrap_or_else(|log| panic!("prefer:\n{log}"));
    assert_sessions_work(&gw).await;
    let gw_default = start(&db.url_with("127.0.0.1", "application_name=gw-default"))
        .unwrap_or_else(|log| panic!("no sslmode:\n{log}"));
    assert_sessions_work(&gw_default).await;
    let client = pg::connect(&db.url()).await;
    let rows = client
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name LIKE 'gw-%'",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for app in ["gw-prefer", "gw-default"] {
        // The pool's connections and the control connection.
        assert!(seen.iter().filter(|(a, _)| a == app).count() >= 2, "{app}'s connections: {seen:?}");
    }
    assert!(seen.iter().all(|(_, ssl)| *ssl), "every gateway connection is encrypted: {seen:?}");
}
