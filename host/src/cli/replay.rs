//! `wasmclaw replay`: replay recorded runs on a component, from the store the
//! config names (no running gateway needed), through the same runner as
//! `POST /admin/replay` (`runs::replay`). One run prints its verdict; a batch
//! (`--agent`) prints a table and the counts, or `{"summary", "runs"}` with `--json`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::runs::replay::{self, Batch, ReplaySource};
use crate::sessions::RecordingQuery;
use crate::tape::Verdict;

/// What `wasmclaw replay` was asked.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The recorded run (see `GET /runs`).
    #[arg(required_unless_present = "agent", conflicts_with = "agent")]
    pub run_id: Option<String>,
    /// JSON5 config file (locates the store).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Run this component (default: the version that served the run).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Run the component the registry keeps under this digest (sha256:…).
    #[arg(long, conflicts_with = "plugin")]
    pub digest: Option<String>,
    /// Replay this agent's recorded runs (a batch).
    #[arg(long)]
    pub agent: Option<String>,
    /// With --agent: only runs this recent (24h, 30m, 7d).
    #[arg(long, requires = "agent")]
    pub since: Option<String>,
    /// With --agent: at most this many runs, newest first.
    #[arg(long, default_value_t = 100, requires = "agent")]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Let calls the recording cannot answer go out for real (model, HTTP).
    #[arg(long)]
    pub live: bool,
}

/// Run it; an error says what to change.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let database = match config.database_url() {
        Some(url) => Some(crate::db::Postgres::connect(&url, 2).await.context("database.url")?),
        None => None,
    };
    let sessions = crate::sessions::open(&config, database.clone()).await?;
    let registry = crate::registry::open(&config, database.as_ref())?;
    let runtime = crate::runtime::Runtime::new(&Default::default(), Some(config.state_dir().join("cache")))?;
    let source = match (&args.plugin, &args.digest) {
        (Some(file), _) => ReplaySource::Bytes(Arc::from(
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
        )),
        (None, Some(digest)) => ReplaySource::Digest(digest.clone()),
        (None, None) => ReplaySource::Recorded,
    };
    let providers = crate::providers::Providers::from_config(&config)?;
    let settings = |agent: &str| {
        let entries = config.agent_entries();
        match entries.get(agent) {
            Some(entry) => crate::runs::entry_settings(agent, entry, &providers, &config.agents.limits)
                .map_err(|e| anyhow::anyhow!("{e}")),
            None => Ok(Default::default()),
        }
    };
    let mut out = std::io::stdout().lock();
    match (args.run_id, args.agent) {
        (Some(id), _) => {
            let row =
                sessions.recording(&id).await?.with_context(|| format!("no recorded run {id:?} in this store"))?;
            let rec = replay::parse(&row)?;
            let bytes = replay::component(registry.as_ref(), source, &rec.digest).await?;
            let version = replay::load(&runtime, &rec.agent, bytes, settings(&rec.agent)?).await?;
            let verdict = replay::replay_recording(&version, rec, args.live).await;
            match args.json {
                true => writeln!(out, "{}", serde_json::to_string_pretty(&verdict)?)?,
                false => write!(out, "{}", readable(&verdict))?,
            }
        }
        (None, Some(agent)) => {
            let ReplaySource::Bytes(bytes) = source else {
                anyhow::bail!(
                    "a batch replay needs --plugin FILE.wasm: the component to try on the agent's recorded runs"
                )
            };
            let since = match args.since.as_deref() {
                None => 0,
                Some(text) => {
                    let ago = crate::config::parse_duration(text)
                        .with_context(|| format!("--since {text:?}: use a duration such as 24h, 30m or 7d"))?;
                    crate::sessions::now_ms() as i64 - ago.as_millis() as i64
                }
            };
            let version = replay::load(&runtime, &agent, bytes, settings(&agent)?).await?;
            let query = RecordingQuery { agent: Some(agent), owner: None, since, limit: args.limit };
            let batch = replay::replay_batch(sessions.as_ref(), &version, query, args.live).await?;
            match args.json {
                true => writeln!(out, "{}", serde_json::to_string_pretty(&batch)?)?,
                false => write!(out, "{}", table(&batch))?,
            }
        }
        (None, None) => anyhow::bail!("name a recorded run (RUN_ID) or a batch (--agent ID --plugin FILE.wasm)"),
    }
    Ok(())
}

/// One verdict for a reader: the outcome, then the diff, divergence or error.
fn readable(v: &Verdict) -> String {
    let mut text = format!("{}\t{}\n", v.run_id, v.outcome);
    for line in &v.diff {
        text.push_str(&format!("  {line}\n"));
    }
    if let Some(d) = &v.divergence {
        text.push_str(&format!(
            "  first divergent call: {}\n  recorded: {}\n  new:      {}\n",
            d.call, d.recorded, d.new
        ));
    }
    if let Some(e) = &v.error {
        text.push_str(&format!("  error: {e}\n"));
    }
    text
}

/// A batch as a table: one line per run, then the counts.
fn table(batch: &Batch) -> String {
    let mut text = String::from("RUN                                   OUTCOME    DETAIL\n");
    for v in &batch.runs {
        let detail = match (&v.divergence, &v.error) {
            (Some(d), _) => format!("at {}", d.call),
            (None, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
            (None, None) if v.outcome == "changed" => {
                format!("{} lines differ", v.diff.iter().filter(|l| !l.starts_with(' ')).count())
            }
            (None, None) => String::new(),
        };
        text.push_str(&format!("{:<37} {:<10} {detail}\n", v.run_id, v.outcome));
    }
    let s = &batch.summary;
    text.push_str(&format!(
        "{} identical, {} changed, {} diverged, {} failed, {} skipped (truncated)\n",
        s.identical, s.changed, s.diverged, s.failed, s.skipped
    ));
    text
}
