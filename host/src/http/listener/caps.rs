//! What one gateway port admits: the connection caps (total and per
//! client) sized from the open-file limit, the slots that enforce them, and
//! the rate-limited warnings of refusals.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::client_key;
use crate::config::HttpConfig;
use crate::metrics::{Metrics, Refused};

/// `maxConnections` never defaults above this: past it, the memory of idle
/// connections rather than file descriptors is what runs out first.
const DEFAULT_MAX_CONNECTIONS_CEILING: usize = 65_536;
/// `maxConnections` when the open-file limit cannot be read.
const DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT: usize = 1024;
/// One warning per refusal reason per this long; the rest are only counted.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The connection limits `serve` enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max: usize,
    /// Open connections per client address (IPv6: per /64) at most.
    pub per_client: usize,
    /// Time to send a request head, from connecting or from the previous response.
    pub header_read_timeout: Duration,
    /// Time a connection may sit with no request in progress and no byte arriving.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The configured limits; absent caps are sized from `fd_limit` (the open-file soft limit).
    pub fn from_config(http: &HttpConfig, fd_limit: Option<u64>) -> Self {
        let max = http.max_connections.unwrap_or_else(|| default_max_connections(fd_limit));
        // Most of the slots, not all: one address (a reverse proxy, a test
        // suite on loopback) can use three quarters of them, but a single
        // address alone can never take the last quarter from everyone else.
        let per_client = http.max_connections_per_client.unwrap_or(max - max / 4).min(max).max(1);
        Self {
            max,
            per_client,
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms()),
        }
    }
}

/// Leave a quarter of the descriptors (at least 64, at most 4096) for what
/// else the process opens: outbound model connections, the session database,
/// the component cache, file watchers.
fn default_max_connections(fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else { return DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT };
    let reserve = (limit / 4).clamp(64, 4096);
    usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX).clamp(1, DEFAULT_MAX_CONNECTIONS_CEILING)
}

/// The process's open-file soft limit, if the platform says.
pub fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit_nofile().ok().map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
fn rlimit_nofile() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raise the open-file soft limit to the hard limit (every connection is a
/// descriptor, and the usual soft default of 1024 is a few hundred sockets).
/// Returns the soft limit now in force.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let (soft, hard) = rlimit_nofile()?;
    // Some systems report an unlimited hard limit but refuse to go past a
    // smaller ceiling (Linux: fs.nr_open, macOS: OPEN_MAX); try those next.
    let mut error = None;
    for target in [hard, 1 << 20, 10_240] {
        if target <= soft || target > hard {
            continue;
        }
        let limit = libc::rlimit { rlim_cur: target as libc::rlim_t, rlim_max: hard as libc::rlim_t };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
            return Ok(target);
        }
        error = Some(std::io::Error::last_os_error());
    }
    error.map_or(Ok(soft), Err)
}

/// Not on this platform: the limit stays as it is.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> std::io::Result<u64> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no RLIMIT_NOFILE here"))
}

/// Open connections, in total and per client.
pub(super) struct Slots {
    max: usize,
    per_client: usize,
    metrics: Arc<Metrics>,
    open: Mutex<Open>,
    /// Woken when the last slot is given back.
    none_open: tokio::sync::Notify,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl Slots {
    pub(super) fn new(max: usize, per_client: usize, metrics: Arc<Metrics>) -> Self {
        Self { max, per_client, metrics, open: Mutex::default(), none_open: tokio::sync::Notify::new() }
    }

    /// Resolves once no connection is open.
    pub(super) async fn all_closed(&self) {
        loop {
            // Created before the check, so a release in between still wakes it.
            let released = self.none_open.notified();
            if self.open.lock().unwrap().total == 0 {
                return;
            }
            released.await;
        }
    }

    /// A slot for a connection from `ip`, or why there is none.
    pub(super) fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let client = client_key(ip);
        let mut open = self.open.lock().unwrap();
        if open.total >= self.max {
            return Err(Refused::MaxConnections);
        }
        let mine = open.by_client.entry(client).or_default();
        if *mine >= self.per_client {
            return Err(Refused::MaxConnectionsPerClient);
        }
        *mine += 1;
        open.total += 1;
        self.metrics.connections_open(open.total);
        Ok(Slot { slots: self.clone(), client })
    }
}

/// One open connection's place in [`Slots`]; given back on drop.
pub(super) struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap();
        open.total -= 1;
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
        self.slots.metrics.connections_open(open.total);
        if open.total == 0 {
            self.slots.none_open.notify_waiters();
        }
    }
}

/// Rate-limited warnings: a flood of refusals must not become a flood of log lines.
#[derive(Default)]
pub(super) struct Warnings {
    /// Per kind (refusal reasons, then accept errors): when it was last logged, and how often since.
    last: [Option<Instant>; 3],
    quiet: [u64; 3],
}

impl Warnings {
    /// `true` if kind `i` may be logged now; otherwise counts it as suppressed.
    fn due(&mut self, i: usize) -> Option<u64> {
        let now = Instant::now();
        if self.last[i].is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            self.quiet[i] += 1;
            return None;
        }
        self.last[i] = Some(now);
        Some(std::mem::take(&mut self.quiet[i]))
    }

    pub(super) fn refused(&mut self, refused: Refused, ip: IpAddr, limits: &ConnectionLimits) {
        let Some(suppressed) = self.due(refused as usize) else { return };
        let every = WARN_EVERY.as_secs();
        match refused {
            Refused::MaxConnections => tracing::warn!(
                client = %ip,
                limit = limits.max,
                suppressed,
                "connection refused: gateway.http.maxConnections reached; further refusals in the next {every} s \
                 are only counted (wasmclaw_connections_refused_total)"
            ),
            Refused::MaxConnectionsPerClient => tracing::warn!(
                client = %ip,
                limit = limits.per_client,
                suppressed,
                "connection refused: gateway.http.maxConnectionsPerClient reached for this client; further \
                 refusals in the next {every} s are only counted (wasmclaw_connections_refused_total)"
            ),
        }
    }

    pub(super) fn accept_failed(&mut self, error: &std::io::Error) {
        let Some(suppressed) = self.due(2) else { return };
        tracing::warn!(%error, suppressed, "accept failed; retrying (wasmclaw_accept_errors_total counts them)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_leave_descriptors_for_the_rest_of_the_process() {
        let limits = |fds| ConnectionLimits::from_config(&HttpConfig::default(), fds);
        assert_eq!(limits(Some(1024)).max, 768);
        assert_eq!(limits(Some(1024)).per_client, 576);
        assert_eq!(limits(Some(20_000)).max, 20_000 - 4096);
        assert_eq!(limits(Some(1 << 20)).max, DEFAULT_MAX_CONNECTIONS_CEILING);
        assert_eq!(limits(Some(16)).max, 1);
        assert_eq!(limits(None).max, DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT);
        let http = HttpConfig { max_connections: Some(10), ..HttpConfig::default() };
        let explicit = ConnectionLimits::from_config(&http, Some(1 << 20));
        assert_eq!((explicit.max, explicit.per_client), (10, 8));
        assert_eq!(explicit.idle_timeout, Duration::from_secs(5));
        assert_eq!(explicit.header_read_timeout, Duration::from_secs(10));
    }

    #[test]
    fn slots_refuse_over_either_cap_and_come_back_on_drop() {
        let slots = Arc::new(Slots::new(3, 2, Arc::new(Metrics::default())));
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert_eq!(slots.take(a).err(), Some(Refused::MaxConnectionsPerClient));
        let _third = slots.take(b).unwrap();
        assert_eq!(slots.take(b).err(), Some(Refused::MaxConnections));
        drop(first);
        assert!(slots.take(a).is_ok());
        assert_eq!(slots.open.lock().unwrap().by_client.len(), 2);
    }

    #[test]
    fn warnings_are_rate_limited_per_kind() {
        let mut w = Warnings::default();
        assert_eq!(w.due(0), Some(0));
        assert_eq!(w.due(0), None);
        assert_eq!(w.due(0), None);
        assert_eq!(w.due(1), Some(0));
        assert_eq!(w.quiet[0], 2);
    }
}
