//! Prometheus metrics: what an operator watches. Counters and fixed-bucket
//! histograms behind one mutex each; recording is a map lookup and an add.
//! A run's own metrics go through its agent's [`AgentMeter`], resolved once
//! when the run starts.

mod agent;
mod llm;
mod recent;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use agent::Histogram;
pub use agent::{AgentMeter, FirstEvent};
pub use recent::{BUCKET as RECENT_BUCKET, Series};

/// The value under `key`, made on first use: the label is copied once, not on every count.
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    slot_with(map, key, V::default)
}

/// [`slot`] with `make` for a new value.
fn slot_with<'m, V>(map: &'m mut BTreeMap<String, V>, key: &str, make: impl FnOnce() -> V) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), make());
    }
    map.get_mut(key).expect("inserted above")
}

/// Outcomes of an authenticated request, as `wasmclaw_token_requests_total` labels them.
const TOKEN_OUTCOMES: [&str; 3] = ["allowed", "forbidden", "rate_limited"];

/// (agent, allow rule origin or none, outcome): one outbound request counter.
type AgentHttpKey = (String, Option<String>, String);

/// Every metric of one gateway.
#[derive(Default)]
pub struct Metrics {
    /// route → status → responses.
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    /// Each agent's run metrics; written under the lock only for a new agent.
    agents: RwLock<BTreeMap<String, Arc<AgentMeter>>>,
    /// Numbers the buckets of every agent's recent runs.
    clock: recent::Clock,
    auth_failures: AtomicU64,
    ws_handshakes_refused: AtomicU64,
    swaps: Mutex<BTreeMap<&'static str, u64>>,
    /// credential name → requests by outcome (see [`TOKEN_OUTCOMES`]).
    token_requests: Mutex<BTreeMap<String, [u64; 3]>>,
    connections_open: AtomicU64,
    connections_max: AtomicU64,
    connections_max_per_client: AtomicU64,
    connections_refused: [AtomicU64; Refused::ALL.len()],
    connections_closed: [AtomicU64; Closed::ALL.len()],
    accept_errors: AtomicU64,
    run_results_dropped: AtomicU64,
    /// (agent, allow rule's origin, outcome) → outbound requests agents sent;
    /// no origin for denied ones, so a guest cannot add labels.
    agent_http: Mutex<BTreeMap<AgentHttpKey, u64>>,
    agent_http_seconds: Mutex<BTreeMap<String, Histogram>>,
    /// Model tokens and cost.
    llm: Mutex<llm::LlmCounters>,
}

/// Why the listener closed a new connection without serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `gateway.http.maxConnections` connections were open.
    MaxConnections,
    /// The client's address had `gateway.http.maxConnectionsPerClient` open.
    MaxConnectionsPerClient,
}

impl Refused {
    const ALL: [Self; 2] = [Self::MaxConnections, Self::MaxConnectionsPerClient];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerClient => "max_connections_per_client",
        }
    }
}

/// Why the gateway closed a connection it was serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A request head did not arrive within `gateway.http.headerReadTimeoutMs`.
    HeaderTimeout,
    /// No request and no byte for `gateway.http.idleTimeoutMs`.
    IdleTimeout,
}

impl Closed {
    const ALL: [Self; 2] = [Self::HeaderTimeout, Self::IdleTimeout];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
        }
    }
}

/// Which lines of the exposition a caller gets: an agent-restricted
/// credential sees the lines of its agents and its own name only.
pub struct View<'a> {
    /// `None`: every agent.
    agents: Option<&'a dyn Fn(&str) -> bool>,
    /// `None`: every credential name; otherwise only this one.
    token: Option<&'a str>,
}

impl<'a> View<'a> {
    /// Everything (the main secret, an unrestricted admin, a loopback scraper).
    pub fn all() -> Self {
        Self { agents: None, token: None }
    }

    /// Lines of agents `agents` accepts, and of the credential `token` only.
    pub fn restricted(agents: &'a dyn Fn(&str) -> bool, token: &'a str) -> Self {
        Self { agents: Some(agents), token: Some(token) }
    }

    fn agent(&self, agent: &str) -> bool {
        self.agents.is_none_or(|may| may(agent))
    }

    fn token(&self, name: &str) -> bool {
        self.token.is_none_or(|own| own == name)
    }
}

/// Point-in-time values the registry does not own.
pub struct Gauges {
    pub active_runs: usize,
    pub max_runs: usize,
    /// Component instances live in the pool, when the pooling allocator is in use.
    pub pool_instances: Option<u64>,
}

impl Metrics {
    /// One HTTP response for `route` (the matched pattern, not the raw path).
    pub fn request(&self, route: &str, status: u16) {
        *slot(&mut self.requests.lock().unwrap(), route).entry(status).or_default() += 1;
    }

    /// `agent`'s run metrics: a run holds them from its start to its end.
    pub fn agent(&self, agent: &str) -> Arc<AgentMeter> {
        if let Some(meter) = self.agents.read().unwrap().get(agent) {
            return meter.clone();
        }
        let mut agents = self.agents.write().unwrap();
        slot_with(&mut agents, agent, || Arc::new(AgentMeter::new(self.clock))).clone()
    }

    /// A run ended after `took` (through its agent's [`AgentMeter`] on the hot path).
    pub fn run_finished(&self, agent: &str, took: Duration, failure: Option<&'static str>) {
        self.agent(agent).run_finished(took, failure);
    }

    /// Runs and failures per agent in [`RECENT_BUCKET`]s over the last ten
    /// minutes, oldest first; agents without a run in that time are left out.
    pub fn recent(&self) -> Vec<Series> {
        let now = Instant::now();
        self.agents.read().unwrap().iter().filter_map(|(agent, meter)| meter.series(agent, now)).collect()
    }

    /// A run produced its first event after `took`.
    pub fn first_event(&self, agent: &str, took: Duration) {
        self.agent(agent).first_event(took);
    }

    /// Someone presented wrong or no credentials.
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// One authenticated request (HTTP) or method call (WebSocket) by the
    /// credential `name`: `allowed`, `forbidden` (scope) or `rate_limited`.
    pub fn token_request(&self, name: &str, outcome: &'static str) {
        let slot = TOKEN_OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        let mut counts = self.token_requests.lock().unwrap();
        // Look up by &str first: no allocation per request once the name is known.
        match counts.get_mut(name) {
            Some(c) => c[slot] += 1,
            None => counts.entry(name.to_string()).or_default()[slot] += 1,
        }
    }

    /// The run board dropped a finished run's reply (or the run) to stay within its byte caps.
    pub fn run_result_dropped(&self) {
        self.run_results_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket upgrade was refused: too many handshakes in progress.
    pub fn ws_handshake_refused(&self) {
        self.ws_handshakes_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// An agent was installed, rolled back or removed.
    pub fn swap(&self, action: &'static str) {
        *self.swaps.lock().unwrap().entry(action).or_default() += 1;
    }

    /// The connection caps in force, for the gauges.
    pub fn connection_limits(&self, max: usize, per_client: usize) {
        self.connections_max.store(max as u64, Ordering::Relaxed);
        self.connections_max_per_client.store(per_client as u64, Ordering::Relaxed);
    }

    /// Connections open now (HTTP and WebSocket).
    pub fn connections_open(&self, open: usize) {
        self.connections_open.store(open as u64, Ordering::Relaxed);
    }

    /// A new connection was closed unserved.
    pub fn connection_refused(&self, reason: Refused) {
        self.connections_refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The gateway closed a connection on its own.
    pub fn connection_closed(&self, reason: Closed) {
        self.connections_closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An agent's outbound request ended with `outcome` (a status code,
    /// `denied`, `limited`, `timeout`, …) after `took` (`None`: never sent).
    /// `origin`: the allow rule's, `None` when no rule allowed it.
    pub fn agent_http(&self, agent: &str, origin: Option<&str>, outcome: &str, took: Option<Duration>) {
        let key = (agent.to_string(), origin.map(str::to_string), outcome.to_string());
        *self.agent_http.lock().unwrap().entry(key).or_default() += 1;
        if let Some(took) = took {
            slot(&mut self.agent_http_seconds.lock().unwrap(), agent).observe(took);
        }
    }

    /// A model call of `agent` on `model` at `provider`, for the principal
    /// `token`, used `tokens` costing `picos` pico-dollars.
    pub fn llm_usage(
        &self,
        agent: &str,
        model: &str,
        provider: &str,
        token: &str,
        tokens: &crate::usage::Tokens,
        picos: u64,
    ) {
        self.llm.lock().unwrap().used((agent, model, provider, token), tokens, picos);
    }

    /// A model call ended without its provider reporting usage.
    pub fn llm_unmetered(&self, agent: &str, model: &str, provider: &str, token: &str) {
        self.llm.lock().unwrap().unmetered((agent, model, provider, token));
    }

    /// `accept` failed (e.g. out of file descriptors).
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, every line.
    pub fn render(&self, gauges: &Gauges) -> String {
        self.render_for(gauges, &View::all())
    }

    /// The Prometheus text exposition as `view` may see it.
    pub fn render_for(&self, gauges: &Gauges, view: &View) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "wasmclaw_http_requests_total", "counter", "HTTP responses by route and status.");
        for (route, statuses) in self.requests.lock().unwrap().iter() {
            for (status, n) in statuses {
                let _ = writeln!(out, "wasmclaw_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let agents = self.agents.read().unwrap();
        let visible = || agents.iter().filter(|(a, _)| view.agent(a));
        head(&mut out, "wasmclaw_run_duration_seconds", "histogram", "Agent run duration.");
        for (agent, meter) in visible() {
            meter.run_seconds.render(&mut out, "wasmclaw_run_duration_seconds", agent);
        }
        head(&mut out, "wasmclaw_run_first_event_seconds", "histogram", "Time from run start to its first event.");
        for (agent, meter) in visible() {
            meter.first_event_seconds.render(&mut out, "wasmclaw_run_first_event_seconds", agent);
        }
        head(
            &mut out,
            "wasmclaw_run_failures_total",
            "counter",
            "Runs that did not complete, by kind (trap, timeout, …).",
        );
        for (agent, meter) in visible() {
            for (kind, n) in meter.failures.lock().unwrap().iter() {
                let _ = writeln!(out, "wasmclaw_run_failures_total{{agent=\"{agent}\",kind=\"{kind}\"}} {n}");
            }
        }
        drop(agents);
        head(&mut out, "wasmclaw_runs_active", "gauge", "Runs in flight.");
        let _ = writeln!(out, "wasmclaw_runs_active {}", gauges.active_runs);
        head(&mut out, "wasmclaw_runs_max", "gauge", "agents.maxConcurrentRuns.");
        let _ = writeln!(out, "wasmclaw_runs_max {}", gauges.max_runs);
        if let Some(n) = gauges.pool_instances {
            head(
                &mut out,
                "wasmclaw_pool_component_instances",
                "gauge",
                "Component instances live in the pooling allocator.",
            );
            let _ = writeln!(out, "wasmclaw_pool_component_instances {n}");
        }
        head(
            &mut out,
            "wasmclaw_auth_failures_total",
            "counter",
            "Requests and connects with wrong or missing credentials.",
        );
        let _ = writeln!(out, "wasmclaw_auth_failures_total {}", self.auth_failures.load(Ordering::Relaxed));
        head(
            &mut out,
            "wasmclaw_token_requests_total",
            "counter",
            "Authenticated requests by credential name and outcome (allowed, forbidden, rate_limited).",
        );
        for (token, counts) in self.token_requests.lock().unwrap().iter().filter(|(t, _)| view.token(t)) {
            for (outcome, n) in TOKEN_OUTCOMES.iter().zip(counts).filter(|(_, n)| **n > 0) {
                let _ = writeln!(out, "wasmclaw_token_requests_total{{token=\"{token}\",outcome=\"{outcome}\"}} {n}");
            }
        }
        head(
            &mut out,
            "wasmclaw_ws_handshakes_refused_total",
            "counter",
            "WebSocket upgrades refused: gateway.ws.maxPendingHandshakes (or …PerClient) were in progress.",
        );
        let _ = writeln!(
            out,
            "wasmclaw_ws_handshakes_refused_total {}",
            self.ws_handshakes_refused.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "wasmclaw_agent_http_requests_total",
            "counter",
            "Outbound requests agents sent, by allow rule origin and outcome (status code, denied, limited, timeout, …).",
        );
        for ((agent, origin, outcome), n) in self.agent_http.lock().unwrap().iter().filter(|((a, ..), _)| view.agent(a))
        {
            let origin = origin.as_ref().map(|o| format!(",origin=\"{o}\"")).unwrap_or_default();
            let _ = writeln!(
                out,
                "wasmclaw_agent_http_requests_total{{agent=\"{agent}\"{origin},outcome=\"{outcome}\"}} {n}"
            );
        }
        head(
            &mut out,
            "wasmclaw_agent_http_duration_seconds",
            "histogram",
            "Outbound request duration, whole body read.",
        );
        for (agent, h) in self.agent_http_seconds.lock().unwrap().iter().filter(|(a, _)| view.agent(a)) {
            h.render(&mut out, "wasmclaw_agent_http_duration_seconds", agent);
        }
        head(&mut out, "wasmclaw_agent_changes_total", "counter", "Agent installs, rollbacks and removals.");
        for (action, n) in self.swaps.lock().unwrap().iter() {
            let _ = writeln!(out, "wasmclaw_agent_changes_total{{action=\"{action}\"}} {n}");
        }
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        head(&mut out, "wasmclaw_connections_open", "gauge", "Client connections open (HTTP and WebSocket).");
        let _ = writeln!(out, "wasmclaw_connections_open {}", load(&self.connections_open));
        head(&mut out, "wasmclaw_connections_max", "gauge", "gateway.http.maxConnections in force.");
        let _ = writeln!(out, "wasmclaw_connections_max {}", load(&self.connections_max));
        head(
            &mut out,
            "wasmclaw_connections_max_per_client",
            "gauge",
            "gateway.http.maxConnectionsPerClient in force.",
        );
        let _ = writeln!(out, "wasmclaw_connections_max_per_client {}", load(&self.connections_max_per_client));
        head(&mut out, "wasmclaw_connections_refused_total", "counter", "New connections closed unserved, by cap.");
        for reason in Refused::ALL {
            let n = load(&self.connections_refused[reason as usize]);
            let _ = writeln!(out, "wasmclaw_connections_refused_total{{reason=\"{}\"}} {n}", reason.label());
        }
        head(&mut out, "wasmclaw_connections_closed_total", "counter", "Connections the gateway timed out, by reason.");
        for reason in Closed::ALL {
            let n = load(&self.connections_closed[reason as usize]);
            let _ = writeln!(out, "wasmclaw_connections_closed_total{{reason=\"{}\"}} {n}", reason.label());
        }
        head(&mut out, "wasmclaw_accept_errors_total", "counter", "Failed accepts (e.g. out of file descriptors).");
        let _ = writeln!(out, "wasmclaw_accept_errors_total {}", load(&self.accept_errors));
        head(
            &mut out,
            "wasmclaw_ws_run_results_dropped_total",
            "counter",
            "Finished runs' replies dropped early by gateway.ws.maxResultBytes(PerPrincipal).",
        );
        let _ = writeln!(out, "wasmclaw_ws_run_results_dropped_total {}", load(&self.run_results_dropped));
        self.llm.lock().unwrap().render(&mut out, view);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_add_up() {
        let m = Metrics::default();
        m.run_finished("main", Duration::from_millis(3), None);
        m.run_finished("main", Duration::from_millis(300), Some("trap"));
        m.request("/v1/chat/completions", 200);
        m.request("/v1/chat/completions", 200);
        let text = m.render(&Gauges { active_runs: 1, max_runs: 5, pool_instances: Some(2) });
        assert!(text.contains("wasmclaw_run_duration_seconds_bucket{agent=\"main\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("wasmclaw_run_duration_seconds_bucket{agent=\"main\",le=\"0.5\"} 2"));
        assert!(text.contains("wasmclaw_run_duration_seconds_count{agent=\"main\"} 2"));
        assert!(text.contains("wasmclaw_run_failures_total{agent=\"main\",kind=\"trap\"} 1"));
        assert!(text.contains("wasmclaw_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"));
        assert!(text.contains("wasmclaw_runs_active 1"));
    }

    #[test]
    fn a_restricted_view_sees_its_agents_and_its_own_name_only() {
        let m = Metrics::default();
        for agent in ["main", "secret-agent"] {
            m.run_finished(agent, Duration::from_millis(3), Some("trap"));
            m.first_event(agent, Duration::from_millis(1));
            m.agent_http(agent, Some("https://example.com"), "200", Some(Duration::from_millis(2)));
        }
        m.token_request("web-app", "allowed");
        m.token_request("other-app", "allowed");
        let gauges = Gauges { active_runs: 0, max_runs: 5, pool_instances: None };
        let only_main = |agent: &str| agent == "main";
        let text = m.render_for(&gauges, &View::restricted(&only_main, "web-app"));
        assert!(text.contains("wasmclaw_run_failures_total{agent=\"main\",kind=\"trap\"} 1"), "{text}");
        assert!(text.contains("token=\"web-app\""), "{text}");
        assert!(!text.contains("secret-agent") && !text.contains("other-app"), "{text}");
        let all = m.render(&gauges);
        assert!(all.contains("secret-agent") && all.contains("other-app"), "{all}");
    }

    #[test]
    fn connection_counters_start_at_zero_and_count_by_reason() {
        let m = Metrics::default();
        m.connection_limits(100, 75);
        m.connections_open(3);
        m.connection_refused(Refused::MaxConnectionsPerClient);
        m.connection_refused(Refused::MaxConnectionsPerClient);
        m.connection_closed(Closed::IdleTimeout);
        let text = m.render(&Gauges { active_runs: 0, max_runs: 5, pool_instances: None });
        for line in [
            "wasmclaw_connections_open 3",
            "wasmclaw_connections_max 100",
            "wasmclaw_connections_max_per_client 75",
            "wasmclaw_connections_refused_total{reason=\"max_connections\"} 0",
            "wasmclaw_connections_refused_total{reason=\"max_connections_per_client\"} 2",
            "wasmclaw_connections_closed_total{reason=\"header_timeout\"} 0",
            "wasmclaw_connections_closed_total{reason=\"idle_timeout\"} 1",
            "wasmclaw_accept_errors_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
