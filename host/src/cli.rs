//! The `wasmclaw` command line. Each subcommand calls the same code the
//! servers use; this file only parses and prints. The agent author's
//! commands live beside it: `new` (project templates) and `plugin` (serving
//! one component file for `agent --plugin` and `dev`).

mod new;
mod plugin;
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
#[command(version, about)]
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
    /// Serve one component file on loopback (chat endpoint on, no credentials),
    /// reloading it whenever the file changes; a broken build is refused and
    /// the last good one keeps serving.
    Dev {
        /// The component, e.g. target/wasm32-wasip2/release/my_agent.wasm.
        file: PathBuf,
        /// Agent id (default: the file's name).
        #[arg(long)]
        agent: Option<String>,
        /// A config value the agent reads with `config::get` (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
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
    /// Inspect or reset stored sessions (reads the session store directly).
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
        /// JSON5 config file (locates the store).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
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
            let args = plugin::PluginArgs { file: &file, agent: agent.as_deref(), set: &set, port: 0 };
            let (config, id) = plugin::config(&scratch, &args)?;
            agent_turn(config, Some(id.to_string()), message, session_key, json).await
        }
        Command::Agent { agent, plugin: None, message, session_key, json, config, .. } => {
            agent_turn(Config::load(config.as_deref())?, agent, message, session_key, json).await
        }
        Command::Dev { file, agent, set, port } => dev(&file, agent.as_deref(), &set, port).await,
        Command::New { what: NewAction::Agent { name, lang, dir } } => new::agent(&name, lang, dir.as_deref()),
        Command::Sdk { action: SdkAction::Install } => sdk::install_command(&Config::default().state_dir()),
        Command::Sdk { action: SdkAction::Update { dir } } => sdk::update(&Config::default().state_dir(), &dir),
        Command::Sessions { action, config } => sessions(config, action).await,
        Command::Agents { action, url } => agents_admin(&url, action).await,
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
            for s in store.list(agent.as_ref().map(AgentId::as_str)).await? {
                writeln!(
                    out,
                    "{}\t{}\t{} messages\tlast activity {}",
                    s.key, s.agent, s.message_count, s.last_activity
                )?;
            }
        }
        SessionsAction::Show { key } => {
            let transcript = store.transcript(&key).await?.with_context(|| format!("no session {key:?}"))?;
            writeln!(out, "{:#}", crate::http::transcript_json(&transcript))?;
        }
        SessionsAction::Reset { key } => {
            anyhow::ensure!(store.delete(&key).await?, "no session {key:?}");
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
    serve(config, |_, _| ()).await
}

/// `wasmclaw dev`: the gateway with one agent from a file, reloaded on change
/// by the config watcher (which installs only content that changed).
async fn dev(file: &std::path::Path, agent: Option<&str>, set: &[String], port: u16) -> anyhow::Result<()> {
    let scratch = plugin::Scratch::new()?;
    plugin::share_compile_cache(&scratch);
    let (config, id) = plugin::config(&scratch, &plugin::PluginArgs { file, agent, set, port })?;
    let file = config.resolve_path(&config.agent_entries()[id.as_str()].plugin);
    serve(config, move |gw, base| {
        let mut changes = gw.agents.subscribe();
        println!(
            "serving {} as agent {:?}; rebuild it and new requests get the new version",
            file.display(),
            id.as_str()
        );
        println!(
            "try: curl -sS {base}/v1/chat/completions -H 'Content-Type: application/json' \\\n  \
             -d '{{\"model\":\"openclaw\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
        );
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                let digest = change.digest.as_deref().map_or("", |d| &d[..12]);
                println!("agent {:?} {} {digest}", change.id, change.action);
            }
        });
    })
    .await
}

/// Listen, print the address (tests and scripts read it), call `ready`, serve until a signal.
async fn serve(config: Config, ready: impl FnOnce(&std::sync::Arc<Gateway>, &str)) -> anyhow::Result<()> {
    // Every connection is a descriptor; the connection caps are sized from this limit.
    if let Err(e) = crate::http::raise_fd_limit() {
        tracing::warn!(error = %e, fd_limit = crate::http::fd_limit(), "cannot raise the open-file limit");
    }
    let addr = (config.gateway.bind.parse::<std::net::IpAddr>()?, config.gateway.port);
    let gw = Gateway::start(config).await?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {}:{}", addr.0, addr.1))?;
    let local = listener.local_addr()?;
    let chat = if gw.config.gateway.http.endpoints.chat_completions.enabled { "enabled" } else { "disabled" };
    let allocation = format!("{:?}", gw.agents.runtime().allocation()).to_lowercase();
    tracing::info!(%local, chat_completions = chat, agents = gw.agents.registry().list().len(), allocation = %allocation, "gateway ready");
    // Scripts and tests read this line to find the port.
    println!("wasmclaw listening on http://{local}");
    ready(&gw, &format!("http://{local}"));
    std::io::stdout().flush()?;
    crate::http::serve(gw, listener, shutdown_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
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
    let session = sessions::resolve(&agent, session_key.as_deref(), None)?;
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
