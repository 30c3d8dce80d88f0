//! The `wasmclaw` command line. Each subcommand calls the same code the
//! servers use; this file only parses and prints. The agent author's
//! commands live beside it: `new` (project templates), `plugin` (serving
//! one component file for `agent --plugin` and `dev`) and `dev` (rebuilding
//! a project on save).

mod dev;
mod new;
mod plugin;
mod replay;
mod rollout;
mod sdk;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::chat::{AgentId, Event, Reply, ToolActivity, finish_reason_name};
use crate::config::Config;
use crate::gateway::Gateway;
use crate::runs::{Agents, RunInput};
use crate::sessions;

/// wasmclaw: OpenClaw-compatible gateway running agents as WebAssembly components.
#[derive(Debug, Parser)]
#[command(version = version(), about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (HTTP and WebSocket on one port).
    Gateway {
        /// JSON5 config file; without it the embedded defaults are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on this port instead of `gateway.port` (0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run one agent turn locally and print the reply as it streams.
    Agent {
        /// Agent id (default: `agents.default`; with --plugin, the file's name).
        #[arg(long)]
        agent: Option<String>,
        /// Run this component file instead of a configured agent (no config needed).
        #[arg(long, conflicts_with = "config")]
        plugin: Option<PathBuf>,
        /// With --plugin: a config value the agent reads with `config::get` (repeatable).
        #[arg(long, value_name = "KEY=VALUE", requires = "plugin")]
        set: Vec<String>,
        /// The user message.
        #[arg(long)]
        message: String,
        /// Session key (default: a fresh one).
        #[arg(long)]
        session_key: Option<String>,
        /// Print one JSON object per event instead of plain text.
        #[arg(long)]
        json: bool,
        /// JSON5 config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Serve one agent on loopback (chat endpoint on, no credentials) while
    /// you edit it. With FILE, reload it whenever it changes; without, in an
    /// agent project (Rust, Python or JavaScript), rebuild it after each save
    /// with the project's build. A broken build is refused and the last good
    /// version keeps serving.
    Dev {
        /// The component, e.g. target/wasm32-wasip2/release/my_agent.wasm
        /// (default: build the project in this folder and watch its sources).
        file: Option<PathBuf>,
        /// Agent id (default: `agents.default` of ./gateway.json5, else the file's name).
        #[arg(long)]
        agent: Option<String>,
        /// A config value the agent reads with `config::get` (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Let the agent send HTTP requests here: scheme://host[:port][/path] (repeatable).
        #[arg(long, value_name = "URL")]
        allow: Vec<String>,
        /// Add header HEADER with the value of env ENV to requests matching MATCH;
        /// `Authorization:Bearer ENV` puts a prefix first (repeatable).
        #[arg(long, value_name = "MATCH=HEADER:ENV")]
        credential: Vec<String>,
        /// Listen on this port (0 picks a free one).
        #[arg(long, default_value_t = crate::config::DEFAULT_PORT)]
        port: u16,
    },
    /// Create a project.
    New {
        #[command(subcommand)]
        what: NewAction,
    },
    /// The Rust SDK of this wasmclaw, shared by Rust agent projects.
    Sdk {
        #[command(subcommand)]
        action: SdkAction,
    },
    /// Manage the agents of a running gateway (token from OPENCLAW_GATEWAY_TOKEN or _PASSWORD).
    Agents {
        #[command(subcommand)]
        action: AgentsAction,
        /// The gateway's base URL.
        #[arg(long, global = true, default_value = "http://127.0.0.1:18789")]
        url: String,
    },
    /// Replay recorded runs on a component (reads the session store directly):
    /// one RUN_ID, or a batch with --agent ID --plugin FILE.wasm.
    Replay(replay::ReplayArgs),
    /// Inspect or reset stored sessions (reads the session store directly).
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
        /// JSON5 config file (locates the store).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Compile one component from stdin to stdout: the gateway's own child
    /// process, so the compiler's memory and crashes stay out of the server.
    #[command(name = "compile-worker", hide = true)]
    CompileWorker {
        /// The gateway's engine sizing, so the artifact fits its engine.
        max_instances: u32,
        max_memory_bytes: usize,
    },
}

/// `wasmclaw agents …`: talks to a running gateway's admin API.
#[derive(Debug, Subcommand)]
pub enum AgentsAction {
    /// List agents with their digests and versions.
    List,
    /// Validate and install a component as agent `id` (replacing the current one).
    Install { id: String, file: PathBuf },
    /// Serve the previous version of `id` again.
    Rollback { id: String },
    /// Stop serving `id`.
    Remove { id: String },
    /// Serve FILE beside `id`'s current version to a share of traffic (a canary).
    Rollout {
        id: String,
        file: PathBuf,
        /// Percent of sessions (and stateless requests) the candidate serves.
        #[arg(long)]
        weight: u8,
        /// `session` (a session keeps its version) or `none`.
        #[arg(long, default_value = "session")]
        sticky: String,
    },
}

/// `wasmclaw new …`
#[derive(Debug, Subcommand)]
pub enum NewAction {
    /// A new agent project that builds where it is created: the example
    /// agent, a unit test, a gateway config and a README.
    Agent {
        /// The agent's name (also its id and package name): a-z, 0-9, `-`, `_`.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value_t = new::Lang::Rust)]
        lang: new::Lang,
        /// The folder to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `wasmclaw sdk …`
#[derive(Debug, Subcommand)]
pub enum SdkAction {
    /// Install this wasmclaw's SDK under <stateDir>/sdk/<version>/ and print where.
    Install,
    /// Point a Rust agent project's `wasmclaw-sdk` dependency at this wasmclaw's SDK.
    Update {
        /// The project (default: the current folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

/// `wasmclaw sessions …`
#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// List sessions, most recent first.
    List {
        /// Only this agent's sessions.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Print a session's transcript as JSON.
    Show { key: String },
    /// Forget a session's transcript and plugin state.
    Reset { key: String },
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gateway { config, port } => gateway(config, port).await,
        Command::Agent { agent, plugin: Some(file), set, message, session_key, json, .. } => {
            let scratch = plugin::Scratch::new()?;
            plugin::share_compile_cache(&scratch);
            let args = plugin::PluginArgs { agent: agent.as_deref(), set: &set, ..plugin::PluginArgs::new(&file) };
            let (config, id) = plugin::config(&scratch, &args)?;
            agent_turn(config, Some(id.to_string()), message, session_key, json).await
        }
        Command::Agent { agent, plugin: None, message, session_key, json, config, .. } => {
            agent_turn(Config::load(config.as_deref())?, agent, message, session_key, json).await
        }
        Command::Dev { file, agent, set, allow, credential, port } => {
            dev::dev(dev::DevArgs { file, agent, set, allow, credentials: credential, port }).await
        }
        Command::New { what: NewAction::Agent { name, lang, dir } } => new::agent(&name, lang, dir.as_deref()),
        Command::Sdk { action: SdkAction::Install } => sdk::install_command(&Config::default().state_dir()),
        Command::Sdk { action: SdkAction::Update { dir } } => sdk::update(&Config::default().state_dir(), &dir),
        Command::Sessions { action, config } => sessions(config, action).await,
        Command::Agents { action, url } => agents_admin(&url, action).await,
        Command::Replay(args) => replay::replay(args).await,
        Command::CompileWorker { max_instances, max_memory_bytes } => {
            crate::runtime::serve_compile_worker(max_instances, max_memory_bytes)
        }
    }
}

async fn agents_admin(url: &str, action: AgentsAction) -> anyhow::Result<()> {
    let secret =
        std::env::var(crate::auth::TOKEN_ENV).or_else(|_| std::env::var(crate::auth::PASSWORD_ENV)).map_err(|_| {
            anyhow::anyhow!("set {} (or {}) to the gateway's secret", crate::auth::TOKEN_ENV, crate::auth::PASSWORD_ENV)
        })?;
    let base = format!("{}/admin/agents", url.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let request = match &action {
        AgentsAction::List => client.get(&base),
        AgentsAction::Install { id, file } => {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            client.put(format!("{base}/{id}")).header(crate::http::DIGEST_HEADER, digest).body(bytes)
        }
        AgentsAction::Rollback { id } => client.post(format!("{base}/{id}/rollback")),
        AgentsAction::Remove { id } => client.delete(format!("{base}/{id}")),
        AgentsAction::Rollout { id, file, weight, sticky } => {
            rollout::request(&client, &base, id, file, *weight, sticky)?
        }
    };
    let response = request.bearer_auth(secret).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{status}: {}", body["error"]["message"].as_str().unwrap_or("request failed"));
    let mut out = std::io::stdout().lock();
    let line = |v: &serde_json::Value| {
        format!(
            "{}\t{} {}\t{}\t{}",
            v["id"].as_str().unwrap_or_default(),
            v["name"].as_str().unwrap_or_default(),
            v["version"].as_str().unwrap_or_default(),
            &v["digest"].as_str().unwrap_or_default().chars().take(12).collect::<String>(),
            v["source"].as_str().unwrap_or_default()
        )
    };
    match action {
        AgentsAction::List => {
            for agent in body["agents"].as_array().into_iter().flatten() {
                writeln!(out, "{}", line(agent))?;
            }
        }
        AgentsAction::Remove { id } => writeln!(out, "removed {id}")?,
        AgentsAction::Rollout { .. } => writeln!(out, "{}", rollout::line(&body))?,
        _ => writeln!(out, "{}", line(&body))?,
    }
    Ok(())
}

async fn sessions(config_path: Option<PathBuf>, action: SessionsAction) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let database = match config.database_url() {
        Some(url) => Some(crate::db::Postgres::connect(&url, 2).await.context("database.url")?),
        None => None,
    };
    let store = sessions::open(&config, database).await?;
    let mut out = std::io::stdout().lock();
    match action {
        SessionsAction::List { agent } => {
            let agent =
                agent.map(|a| AgentId::parse(&a).with_context(|| format!("{a:?} is not an agent id"))).transpose()?;
            let mut query = sessions::SessionQuery::everything(agent.map(|a| a.to_string()));
            loop {
                let page = store.list(query.clone()).await?;
                for s in &page.sessions {
                    writeln!(
                        out,
                        "{}\t{}\t{} messages\tlast activity {}\towner {}",
                        s.key, s.agent, s.message_count, s.last_activity, s.owner
                    )?;
                }
                let Some(next) = page.next else { break };
                query.after = Some(next);
            }
        }
        SessionsAction::Show { key } => {
            let transcript = store.transcript(&key).await?.with_context(|| format!("no session {key:?}"))?;
            writeln!(out, "{:#}", crate::http::transcript_json(&transcript))?;
        }
        SessionsAction::Reset { key } => {
            let session = store.owner(&key).await?.with_context(|| format!("no session {key:?}"))?;
            anyhow::ensure!(store.delete(&key, &session.owner).await?, "no session {key:?}");
            writeln!(out, "session {key} reset")?;
        }
    }
    Ok(())
}

async fn gateway(config_path: Option<PathBuf>, port: Option<u16>) -> anyhow::Result<()> {
    let mut config = Config::load(config_path.as_deref())?;
    if let Some(port) = port {
        config.gateway.port = port;
    }
    let how = "choose another port with --port N (0 picks a free one) or gateway.port in the config";
    let listener = bind(&config.gateway.bind, config.gateway.port, how)?;
    crate::runtime::compile_in_worker_processes();
    serve(config, listener, |_, _| ()).await
}

/// `wasmclaw --version`: the binary's version and the agent contracts it serves.
fn version() -> &'static str {
    static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{} (agent contracts: {})", env!("CARGO_PKG_VERSION"), crate::runtime::WORLDS.join(", "))
    });
    &TEXT
}

/// Listen on `bind:port` before anything slow starts; a port in use says
/// `how` to pick another.
fn bind(bind: &str, port: u16, how: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let ip =
        bind.parse::<std::net::IpAddr>().with_context(|| format!("gateway.bind: {bind:?} is not an IP address"))?;
    let addr = std::net::SocketAddr::new(ip, port);
    // What `TcpListener::bind` does (address reuse, a backlog of 1024), with the error kept apart.
    let socket = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr).and_then(|()| socket.listen(1024)).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            anyhow::anyhow!("cannot listen on {addr}: the port is in use (another gateway or `wasmclaw dev`?); {how}")
        }
        _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
    })
}

/// Serve on `listener`: print the address (tests and scripts read it), call
/// `ready`, serve until a signal.
async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    ready: impl FnOnce(&std::sync::Arc<Gateway>, &str),
) -> anyhow::Result<()> {
    // Every connection is a descriptor; the connection caps are sized from this limit.
    if let Err(e) = crate::http::raise_fd_limit() {
        tracing::warn!(error = %e, fd_limit = crate::http::fd_limit(), "cannot raise the open-file limit");
    }
    log_state_dir(&config);
    let gw = Gateway::start(config).await?;
    let local = listener.local_addr()?;
    let chat = if gw.config.gateway.http.endpoints.chat_completions.enabled { "enabled" } else { "disabled" };
    let allocation = format!("{:?}", gw.agents.runtime().allocation()).to_lowercase();
    tracing::info!(%local, chat_completions = chat, agents = gw.agents.registry().list().len(), allocation = %allocation, "gateway ready");
    // Scripts and tests read this line to find the port.
    println!("wasmclaw listening on http://{local}");
    ready(&gw, &format!("http://{local}"));
    std::io::stdout().flush()?;
    crate::http::serve(gw.clone(), listener, shutdown_signal()).await?;
    // Runs are over: their usage rows and recordings may still be waiting.
    gw.agents.flush_writes().await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Say where state lives: by default every checkout and every gateway of
/// one user share `~/.wasmclaw` (sessions, registry, compile cache).
fn log_state_dir(config: &Config) {
    let dir = config.state_dir();
    if config.gateway.state_dir.is_some() || std::env::var_os("WASMCLAW_STATE_DIR").is_some() {
        tracing::info!(state_dir = %dir.display(), "state directory");
    } else {
        tracing::info!(
            state_dir = %dir.display(),
            "state directory (the default, shared by every gateway this user runs; set gateway.stateDir or WASMCLAW_STATE_DIR to keep one apart)"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; finishing open requests");
}

async fn agent_turn(
    config: Config,
    agent: Option<String>,
    message: String,
    session_key: Option<String>,
    json_lines: bool,
) -> anyhow::Result<()> {
    let agents = Agents::from_config(&config).await?;
    let agent = match agent {
        Some(raw) => AgentId::parse(&raw).with_context(|| format!("{raw:?} is not a valid agent id"))?,
        None => agents.default_agent().clone(),
    };
    let session = sessions::resolve(&agent, session_key.as_deref(), None, sessions::MAIN_SECRET_OWNER)?;
    // Whoever can read the config file holds the main secret: the operator.
    let input = RunInput::user_message(crate::auth::Principal::operator(), agent, session, message);
    let mut handle = agents.start(input)?;
    let mut out = std::io::stdout().lock();
    let mut reply = Reply::default();
    while let Some(event) = handle.next().await {
        reply.push(&event);
        if json_lines {
            writeln!(out, "{}", event_json(&event))?;
        } else if let Event::Text(text) = &event {
            write!(out, "{text}")?;
        }
        out.flush()?;
    }
    let session_key = handle.session.key.clone();
    match handle.finish().await {
        Ok(()) if json_lines => {
            let finish = finish_reason_name(reply.finish_reason());
            writeln!(out, "{}", json!({"type": "done", "finishReason": finish, "sessionKey": session_key}))?;
            Ok(())
        }
        Ok(()) => {
            writeln!(out)?;
            Ok(())
        }
        Err(e) => {
            if json_lines {
                writeln!(out, "{}", json!({"type": "error", "message": e.to_string()}))?;
            }
            Err(e.into())
        }
    }
}

fn event_json(event: &Event) -> serde_json::Value {
    match event {
        Event::Text(t) => json!({"type": "text", "text": t}),
        Event::Reasoning(t) => json!({"type": "reasoning", "text": t}),
        Event::ToolCall(c) => {
            json!({"type": "tool_call", "index": c.index, "id": c.id, "name": c.name, "arguments": c.arguments})
        }
        Event::Usage(u) => {
            json!({"type": "usage", "promptTokens": u.prompt_tokens, "completionTokens": u.completion_tokens})
        }
        Event::Finish(f) => json!({"type": "finish", "reason": finish_reason_name(*f)}),
        Event::ServerTool(ToolActivity::Called(c)) => {
            json!({"type": "server_tool_call", "id": c.id, "name": c.name, "arguments": c.arguments})
        }
        Event::ServerTool(ToolActivity::Returned(r)) => {
            json!({"type": "server_tool_result", "id": r.call_id, "output": r.output, "isError": r.is_error})
        }
    }
}
