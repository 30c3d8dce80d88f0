//! Cluster mode: the same mixed session workload against
//! (a) one gateway on SQLite, (b) one gateway on PostgreSQL, (b″) the same
//! with `synchronous_commit = off` (SQLite's WAL + `synchronous=NORMAL` does
//! not wait for the disk either), (b′) one gateway on PostgreSQL behind
//! HAProxy, and (c) three gateways on one PostgreSQL behind HAProxy; every
//! figure also as a ratio against (a).
//!
//! The workload: each client worker plays users one after another; a user
//! takes `TURNS` stored-session turns with the echo agent (OpenAI `user` field)
//! and, after every second turn, sends one session-less request. Every reply is
//! checked: echo answers turn N of a session with `[turn N] …`, so a turn that
//! saw the wrong history (another instance's stale view, a lost write, two
//! turns of one session at once) counts as wrong. Behind HAProxy consecutive
//! turns of one user land on different gateways.
//!
//! Gateways are the release binary started like every other scenario's
//! ([`ServerProcess::wasmclaw`]); PostgreSQL and HAProxy are started by
//! `scripts/cluster.sh postgres|haproxy`, the same code that starts a local
//! cluster by hand. Everything runs on this machine's two cores: the client,
//! HAProxy, PostgreSQL and every gateway share them, so (c) measures that
//! sharing, not what three machines would do.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::load::percentiles;
use crate::process::ServerProcess;

/// Stored-session turns per user.
const TURNS: usize = 4;
/// Client workers (connections) per cell.
const LEVELS: [usize; 2] = [1, 32];

/// The gateway config of every row; the PostgreSQL rows add `database.url`.
/// Behind a proxy one client address uses every connection slot, and the
/// gateway keeps idle connections longer than HAProxy does (as
/// `scripts/cluster.sh` and `deploy/gateway.json5` configure it).
fn config(database_url: Option<&str>) -> String {
    let database = database_url.map(|url| format!("database: {{ url: {} }},", json!(url))).unwrap_or_default();
    format!(
        r#"{{
  gateway: {{ http: {{ endpoints: {{ chatCompletions: {{ enabled: true }} }},
    maxConnectionsPerClient: 65536, headerReadTimeoutMs: 65000, idleTimeoutMs: 60000 }} }},
  {database}
  agents: {{ entries: {{ main: {{ plugin: "echo" }} }} }},
}}"#
    )
}

/// A folder of `scripts/cluster.sh` parts (PostgreSQL, HAProxy); `down` on drop.
struct ClusterParts {
    dir: tempfile::TempDir,
}

impl ClusterParts {
    fn new() -> anyhow::Result<Self> {
        Ok(Self { dir: tempfile::Builder::new().prefix("wasmclaw-bench-cluster").tempdir()? })
    }

    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh")
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("bash").arg(Self::script()).args(args).arg("--dir").arg(self.dir.path()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "scripts/cluster.sh {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn env(&self, key: &str) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.env"))?;
        text.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .next_back()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("scripts/cluster.sh wrote no {key}"))
    }

    /// A fresh PostgreSQL on a free loopback port; its URL.
    fn postgres(&self) -> anyhow::Result<String> {
        self.run(&["postgres", "--pg-port", "0"])?;
        self.env("WASMCLAW_DATABASE_URL")
    }

    /// One statement through `psql`; its output.
    fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new("psql").arg(url).args(["-v", "ON_ERROR_STOP=1", "-tAc", sql]).output()?;
        anyhow::ensure!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Tables in the database at `url`: none means the gateway did not use it.
    fn tables(url: &str) -> anyhow::Result<usize> {
        Ok(Self::psql(url, "select count(*) from information_schema.tables where table_schema = 'public'")?.parse()?)
    }

    /// PostgreSQL's postmaster and HAProxy, where started.
    fn pids(&self) -> Vec<u32> {
        let first_line =
            |path: PathBuf| -> Option<u32> { std::fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok() };
        let pgdata = std::fs::read_to_string(self.dir.path().join("pgdata.path")).unwrap_or_default();
        [
            first_line(PathBuf::from(pgdata.trim()).join("postmaster.pid")),
            first_line(self.dir.path().join("haproxy.pid")),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// HAProxy on a free port in front of `gateways`; its base URL.
    fn haproxy(&self, gateways: &[ServerProcess]) -> anyhow::Result<String> {
        let addrs: Vec<String> = gateways.iter().map(|g| g.base.trim_start_matches("http://").to_string()).collect();
        let mut args = vec!["haproxy", "--port", "0"];
        args.extend(addrs.iter().map(String::as_str));
        self.run(&args)?;
        self.env("WASMCLAW_URL")
    }
}

impl Drop for ClusterParts {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["down"]) {
            eprintln!("  stopping the cluster parts in {}: {e:#}", self.dir.path().display());
        }
    }
}

/// One setup under test: where to send requests, and what keeps it running.
struct Setup {
    label: &'static str,
    key: &'static str,
    url: String,
    /// Processes whose CPU time counts: this one (the client, and the gateways
    /// as its children), PostgreSQL's postmaster and HAProxy.
    roots: Vec<u32>,
    _gateways: Vec<ServerProcess>,
    _parts: Option<ClusterParts>,
}

fn gateways(n: usize, database_url: Option<&str>) -> anyhow::Result<Vec<ServerProcess>> {
    (0..n).map(|_| ServerProcess::wasmclaw(&config(database_url))).collect()
}

async fn start(key: &'static str) -> anyhow::Result<Setup> {
    let (label, gateways, parts, url) = match key {
        "a" => {
            let gws = gateways(1, None)?;
            let url = gws[0].base.clone();
            ("(a) 1 gateway, SQLite", gws, None, url)
        }
        "b" => {
            let parts = ClusterParts::new()?;
            let gws = gateways(1, Some(&parts.postgres()?))?;
            let url = gws[0].base.clone();
            ("(b) 1 gateway, PostgreSQL", gws, Some(parts), url)
        }
        "b-async" => {
            let parts = ClusterParts::new()?;
            let url = parts.postgres()?;
            // SQLite runs with synchronous=NORMAL in WAL mode: a commit does not
            // wait for the disk. This is PostgreSQL's equivalent.
            ClusterParts::psql(&url, "ALTER DATABASE wasmclaw SET synchronous_commit = off")?;
            let gws = gateways(1, Some(&url))?;
            let url = gws[0].base.clone();
            ("(b″) as (b), synchronous_commit off", gws, Some(parts), url)
        }
        "b+" => {
            let parts = ClusterParts::new()?;
            let gws = gateways(1, Some(&parts.postgres()?))?;
            let url = parts.haproxy(&gws)?;
            ("(b′) 1 gateway, PostgreSQL, HAProxy", gws, Some(parts), url)
        }
        "c" => {
            let parts = ClusterParts::new()?;
            let gws = gateways(3, Some(&parts.postgres()?))?;
            let url = parts.haproxy(&gws)?;
            ("(c) 3 gateways, PostgreSQL, HAProxy", gws, Some(parts), url)
        }
        _ => unreachable!("setup {key}"),
    };
    let client = reqwest::Client::new();
    for target in gateways.iter().map(|g| g.base.as_str()).chain([url.as_str()]) {
        wait_ready(&client, target).await?;
    }
    if let Some(parts) = &parts {
        let url = parts.env("WASMCLAW_DATABASE_URL")?;
        anyhow::ensure!(
            ClusterParts::tables(&url)? > 0,
            "the gateways left PostgreSQL empty: this build ignores database.url (no cluster mode yet?)"
        );
    }
    // Gateways are this process's children; PostgreSQL and HAProxy run detached.
    let mut roots = vec![std::process::id()];
    if let Some(parts) = &parts {
        roots.extend(parts.pids());
    }
    Ok(Setup { label, key, url, roots, _gateways: gateways, _parts: parts })
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(format!("{base}/ready")).send().await
            && res.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{base}/ready did not answer 200 within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One worker's connection: kept alive, reopened if the server closed it.
struct Conn {
    addr: std::net::SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(base: &str) -> anyhow::Result<Self> {
        let host = base.trim_start_matches("http://").trim_end_matches('/').to_string();
        Ok(Self { addr: host.parse()?, host, sender: None })
    }

    /// POST a chat request; the reply's text.
    async fn chat(&mut self, body: &Value) -> anyhow::Result<String> {
        // A kept-alive connection the server has closed is replaced.
        let open = match self.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match open {
            Some(s) => s,
            None => {
                let stream = tokio::net::TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                let (s, connection) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                s
            }
        };
        let request = hyper::Request::post("/v1/chat/completions")
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", crate::TOKEN))
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        self.sender = Some(sender);
        anyhow::ensure!(status.is_success(), "status {status}: {}", String::from_utf8_lossy(&bytes));
        let v: Value = serde_json::from_slice(&bytes)?;
        Ok(v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string())
    }
}

/// What one cell measured.
#[derive(Default)]
struct Tally {
    turns: Vec<Duration>,
    plain: Vec<Duration>,
    errors: usize,
    wrong: usize,
    users: usize,
    first_problem: Option<String>,
}

impl Tally {
    fn problem(&mut self, text: String) {
        self.first_problem.get_or_insert(text);
    }

    fn merge(&mut self, other: Tally) {
        self.turns.extend(other.turns);
        self.plain.extend(other.plain);
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.users += other.users;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }
}

/// One worker: users one after another until `deadline`.
async fn worker(base: String, tag: String, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn = match Conn::new(&base) {
        Ok(c) => c,
        Err(e) => {
            tally.errors += 1;
            tally.problem(format!("{e:#}"));
            return tally;
        }
    };
    let mut user = 0usize;
    while Instant::now() < deadline {
        user += 1;
        tally.users += 1;
        let name = format!("{tag}-u{user}");
        for turn in 1..=TURNS {
            let text = format!("hello {turn} from {name}");
            let body = json!({"model": "openclaw", "user": name,
                              "messages": [{"role": "user", "content": text}]});
            let expected = if turn == 1 { text.clone() } else { format!("[turn {turn}] {text}") };
            let sent = Instant::now();
            match conn.chat(&body).await {
                Ok(reply) if reply == expected => tally.turns.push(sent.elapsed()),
                Ok(reply) => {
                    tally.wrong += 1;
                    tally.problem(format!("{name} turn {turn}: expected {expected:?}, got {reply:?}"));
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.problem(format!("{name} turn {turn}: {e:#}"));
                }
            }
            if turn % 2 == 0 {
                let text = format!("no session {turn} for {name}");
                let body = json!({"model": "openclaw", "messages": [{"role": "user", "content": text}]});
                let sent = Instant::now();
                match conn.chat(&body).await {
                    Ok(reply) if reply == text => tally.plain.push(sent.elapsed()),
                    Ok(reply) => {
                        tally.wrong += 1;
                        tally.problem(format!("session-less: expected {text:?}, got {reply:?}"));
                    }
                    Err(e) => {
                        tally.errors += 1;
                        tally.problem(format!("session-less: {e:#}"));
                    }
                }
            }
        }
    }
    tally
}

/// CPU time (utime + stime, in clock ticks of 10 ms) of `roots` and all their
/// descendants: the processes under test only, whatever else the machine runs.
fn tree_ticks(roots: &[u32]) -> u64 {
    let mut procs: Vec<(u32, u32, u64)> = Vec::new(); // pid, parent, ticks
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the command name, which may contain spaces: state, ppid, …, utime (12th), stime.
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        procs.push((pid, num(1) as u32, num(11) + num(12)));
    }
    let mut inside: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < inside.len() {
        let parent = inside[i];
        inside
            .extend(procs.iter().filter(|p| p.1 == parent && !inside.contains(&p.0)).map(|p| p.0).collect::<Vec<_>>());
        i += 1;
    }
    procs.iter().filter(|p| inside.contains(&p.0)).map(|p| p.2).sum()
}

/// `workers` workers for `seconds` against `base`, on one client thread with
/// its own runtime (the client's CPU stays small and the same for every row).
async fn cell(base: &str, tag: &str, workers: usize, seconds: f64, roots: &[u32]) -> (Tally, f64, f64) {
    let (base, tag, roots) = (base.to_string(), tag.to_string(), roots.to_vec());
    let run = move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
        runtime.block_on(async move {
            let cpu_before = tree_ticks(&roots);
            let started = Instant::now();
            let deadline = started + Duration::from_secs_f64(seconds);
            let tasks: Vec<_> =
                (0..workers).map(|w| tokio::spawn(worker(base.clone(), format!("{tag}-w{w}"), deadline))).collect();
            let mut tally = Tally::default();
            for t in tasks {
                tally.merge(t.await.expect("worker task"));
            }
            let elapsed = started.elapsed().as_secs_f64();
            // Seconds of CPU (ticks are 10 ms on Linux unless built otherwise).
            let cpu = tree_ticks(&roots).saturating_sub(cpu_before) as f64 / 100.0;
            (tally, elapsed, cpu)
        })
    };
    tokio::task::spawn_blocking(run).await.expect("client thread")
}

/// Whether PostgreSQL's server and HAProxy are installed (Debian: `apt-get
/// install postgresql haproxy`); `scripts/cluster.sh` says what is missing.
pub fn available() -> bool {
    let found = |cmd: &str, arg: &str| Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success());
    let initdb =
        std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some()) || found("initdb", "--version");
    initdb && found("haproxy", "-v") && found("psql", "--version")
}

/// Run the scenario and print its table.
pub async fn run(seconds: u64) -> anyhow::Result<Value> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\ncluster: {TURNS} stored-session turns per user (echo) + a session-less request every 2nd turn, \
         {seconds} s per cell; client, gateways, PostgreSQL and HAProxy all on these {cores} cores"
    );
    let pg_version = Command::new("psql")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let haproxy_version = Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string));
    println!("  {}; {}", pg_version.as_deref().unwrap_or("psql ?"), haproxy_version.as_deref().unwrap_or("haproxy ?"));
    println!(
        "  {:<38} {:>5} {:>8} {:>6} {:>9} {:>9} {:>6} {:>6} {:>9} {:>9} {:>5} {:>8} {:>6}",
        "setup",
        "conns",
        "req/s",
        "vs a",
        "turn p50",
        "turn p99",
        "p50/a",
        "p99/a",
        "plain p50",
        "plain p99",
        "cores",
        "CPU/req",
        "errors"
    );
    let mut rows: Vec<Value> = Vec::new();
    let mut reference: Vec<(f64, f64, f64)> = Vec::new(); // (a)'s req/s, turn p50, turn p99 per level
    for key in ["a", "b", "b-async", "b+", "c"] {
        let setup = start(key).await?;
        // Warm-up: connections, pools, compiled code paths, the database's caches.
        let _ = cell(&setup.url, &format!("{}-warm", setup.key), 4, 1.0, &setup.roots).await;
        for (i, &workers) in LEVELS.iter().enumerate() {
            let tag = format!("{}-c{workers}", setup.key);
            let (mut tally, elapsed, cpu) = cell(&setup.url, &tag, workers, seconds as f64, &setup.roots).await;
            let requests = tally.turns.len() + tally.plain.len();
            let rps = requests as f64 / elapsed;
            let (turn_p50, turn_p99) = percentiles(&mut tally.turns);
            let (plain_p50, plain_p99) = percentiles(&mut tally.plain);
            if key == "a" {
                reference.push((rps, turn_p50, turn_p99));
            }
            let (ref_rps, ref_p50, ref_p99) = reference[i];
            println!(
                "  {:<38} {workers:>5} {rps:>8.0} {:>5.0}% {turn_p50:>7.3}ms {turn_p99:>7.3}ms {:>5.2}× {:>5.2}× \
                 {plain_p50:>7.3}ms {plain_p99:>7.3}ms {:>5.2} {:>6.3}ms {:>6}",
                setup.label,
                100.0 * rps / ref_rps,
                turn_p50 / ref_p50,
                turn_p99 / ref_p99,
                cpu / elapsed,
                1000.0 * cpu / requests.max(1) as f64,
                tally.errors + tally.wrong
            );
            if let Some(problem) = &tally.first_problem {
                println!("    first problem: {problem}");
            }
            rows.push(json!({
                "setup": setup.key, "label": setup.label, "connections": workers,
                "requests": requests, "users": tally.users, "rps": rps, "rps_vs_a": rps / ref_rps,
                "turn_p50_ms": turn_p50, "turn_p99_ms": turn_p99,
                "turn_p50_vs_a": turn_p50 / ref_p50, "turn_p99_vs_a": turn_p99 / ref_p99,
                "plain_p50_ms": plain_p50, "plain_p99_ms": plain_p99,
                "cpu_seconds": cpu, "cores_busy": cpu / elapsed, "cpu_ms_per_request": 1000.0 * cpu / requests.max(1) as f64,
                "errors": tally.errors, "wrong_replies": tally.wrong,
            }));
        }
    }
    let failures: u64 =
        rows.iter().map(|r| r["errors"].as_u64().unwrap_or(0) + r["wrong_replies"].as_u64().unwrap_or(0)).sum();
    println!(
        "  cores, CPU/req: CPU time of the processes under test (client, gateways, PostgreSQL, HAProxy), \
         per second and per request; other programs on the machine are not counted"
    );
    anyhow::ensure!(failures == 0, "{failures} requests failed or got a wrong reply (first problems above)");
    Ok(json!({"turns_per_user": TURNS, "seconds_per_cell": seconds, "cores": cores,
              "postgres": pg_version, "haproxy": haproxy_version, "rows": rows}))
}
