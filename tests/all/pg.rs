//! A throwaway PostgreSQL server for black-box tests of cluster mode.
//!
//! `initdb` runs once per machine and PostgreSQL version into a template
//! folder that later runs reuse; each [`Server`] copies it into a fresh temp
//! folder and starts on a free loopback port, so tests that stop and restart
//! their database never disturb one another. PostgreSQL refuses to run as
//! root, so as root (CI) the server runs as the Debian `postgres` user.
//! Without PostgreSQL installed these tests fail rather than skip: CI installs
//! it (`.ci/run`), and a silently skipped cluster suite proves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The superuser the tests connect as.
pub const USER: &str = "wasmclaw";
/// Its password: distinctive, so a test can prove it never reaches the gateway's output.
pub const PASSWORD: &str = "pg-secret-5b9e1c7d2a";

/// How long the gateway and the tests' own clients may take to get a
/// connection (`connect_timeout` in every URL here): several gateways
/// starting at once on a busy 2-core machine can take far longer than the
/// gateway's 2 s default for a SCRAM login.
pub const CONNECT_TIMEOUT_SECS: u32 = 30;

/// A running (or stopped) PostgreSQL server; stopped on drop.
pub struct Server {
    dir: tempfile::TempDir,
    port: u16,
}

/// A server's TLS set-up: its certificate chain and key (PEM), and whether
/// plaintext logins are refused (`hostssl` only in `pg_hba.conf`).
pub struct Tls<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub only: bool,
}

impl Server {
    /// A fresh server on a free loopback port, started and accepting connections.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A fresh server speaking TLS with `tls`'s certificate.
    pub fn start_tls(tls: &Tls) -> Self {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&Tls>) -> Self {
        let template = template();
        let dir = tempfile::Builder::new().prefix("wasmclaw-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let copied = Command::new("cp").arg("-a").arg(template).arg(&data).status().unwrap();
        assert!(copied.success(), "cannot copy the PostgreSQL template {}", template.display());
        let mut ssl_conf = String::new();
        if let Some(tls) = tls {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::write(data.join("server.crt"), tls.cert).unwrap();
            std::fs::write(data.join("server.key"), tls.key).unwrap();
            // The server refuses a key others can read.
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            ssl_conf = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".into();
            if tls.only {
                std::fs::write(data.join("pg_hba.conf"), "hostssl all all 127.0.0.1/32 scram-sha-256\n").unwrap();
            }
        }
        give_to_server_user(dir.path());
        // A port that was free a moment ago; another process may take it
        // meanwhile, so try a few.
        for attempt in 0.. {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let conf = format!(
                "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
                 max_connections = 300\nshared_buffers = 16MB\nfsync = off\nsynchronous_commit = off\n\
                 full_page_writes = off\nlog_min_messages = warning\n{ssl_conf}"
            );
            let path = data.join("postgresql.auto.conf");
            std::fs::write(&path, conf).unwrap();
            give_to_server_user(&path);
            match pg_ctl(dir.path(), &["start", "-w", "-t", "60"], true) {
                Ok(()) => return Self { dir, port },
                Err(log) if attempt < 3 => eprintln!("PostgreSQL did not start on port {port}, retrying: {log}"),
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    /// The superuser URL of database `name` (with the password in it, as operators write it).
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{name}?connect_timeout={CONNECT_TIMEOUT_SECS}", self.port)
    }

    /// The superuser URL of the default database on `host` (which must reach
    /// 127.0.0.1), with `options` (`k=v&…`) after the test's connect timeout.
    pub fn url_with(&self, host: &str, options: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@{host}:{}/postgres?connect_timeout={CONNECT_TIMEOUT_SECS}&{options}",
            self.port
        )
    }

    /// The URL of the server's default database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// A new empty database for one test; returns its URL.
    pub async fn database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&self.url()).await;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        self.url_of(&name)
    }

    /// Fast shutdown: sessions are disconnected, the server is gone on return.
    pub fn stop(&self) {
        pg_ctl(self.dir.path(), &["stop", "-w", "-m", "fast"], false)
            .unwrap_or_else(|log| panic!("pg_ctl stop failed: {log}"));
    }

    /// Start again after [`stop`](Self::stop), on the same data and port.
    pub fn start_again(&self) {
        pg_ctl(self.dir.path(), &["start", "-w", "-t", "60"], true)
            .unwrap_or_else(|log| panic!("PostgreSQL did not start again:\n{log}"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Immediate: nothing here needs a clean shutdown, and drops should be quick.
        let _ = pg_ctl(self.dir.path(), &["stop", "-w", "-m", "immediate"], false);
    }
}

/// `pg_ctl <args> -D <dir>/data [-l <dir>/server.log]` as the server's user;
/// `Err` carries its output and the server's log.
fn pg_ctl(dir: &Path, args: &[&str], with_log: bool) -> Result<(), String> {
    let log = dir.join("server.log");
    let mut cmd = as_server_user(&bin_dir().join("pg_ctl"));
    cmd.args(args).arg("-D").arg(dir.join("data"));
    if with_log {
        cmd.arg("-l").arg(&log);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        return Ok(());
    }
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    Err(format!("{}{}\n{server_log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A client of the database at `url` (its connection runs in a task).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

/// `/usr/lib/postgresql/<newest>/bin`; fails the test when PostgreSQL is not installed.
fn bin_dir() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb. The cluster tests need it; \
                 install the Debian package `postgresql` (.ci/run does)."
            )
        })
    })
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command for `program`, run as `postgres` when we are root.
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Hand `path` (recursively) to the server's user when we are root.
fn give_to_server_user(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown").args(["-R", "postgres:"]).arg(path).status().unwrap();
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

/// The initdb'd template: made once per machine, version and user, then copied.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let version = bin_dir().parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let root = std::env::temp_dir().join(format!("wasmclaw-pg-template-{version}-{uid}-v1"));
        let data = root.join("data");
        if data.join("PG_VERSION").is_file() {
            return data;
        }
        // Built beside it, then renamed into place: test processes racing here
        // never see a half-made template.
        let building = tempfile::Builder::new().prefix("wasmclaw-pg-initdb-").tempdir().unwrap();
        let pwfile = building.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        give_to_server_user(building.path());
        let out = as_server_user(&bin_dir().join("initdb"))
            .arg("-D")
            .arg(building.path().join("data"))
            .args(["-U", USER, "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed:\n{}", String::from_utf8_lossy(&out.stderr));
        std::fs::remove_file(&pwfile).unwrap();
        let building = building.keep();
        if std::fs::rename(&building, &root).is_err() {
            // Another test process finished first: use its template.
            let _ = std::fs::remove_dir_all(&building);
        }
        assert!(data.join("PG_VERSION").is_file(), "no template at {}", data.display());
        data
    })
}
