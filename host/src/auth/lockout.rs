//! Failed-auth lock-out per client (an IPv4 address, an IPv6 /64).
//!
//! Two tables: failures counted inside their window, and lock-outs in force.
//! Counts are bounded by evicting the oldest, so a scan from many addresses
//! costs bounded memory; lock-outs are never evicted before they end (a
//! flood of single failures from elsewhere must not free a locked client),
//! and are bounded by their own, larger cap. A success clears nothing: the
//! failures of an address are not any one credential's, so a valid
//! low-privilege token must not wipe the guesses made at another.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client_key;
use crate::config::RateLimitConfig;

/// Clients whose failures are counted at most: past this the oldest count is
/// dropped (that client starts its window again).
const MAX_COUNTING: usize = 10_000;
/// Lock-outs in force at most (~50 bytes each). Past this a new lock-out is
/// refused, with a warning, rather than freeing one that is in force.
const MAX_LOCKED: usize = 100_000;
/// How long a full lock-out table is not swept again after a sweep freed nothing.
const SWEEP_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
    /// Insertion number, to tell a live entry from a stale queue slot.
    seq: u64,
}

/// Both tables and the counting table's insertion order.
#[derive(Default)]
struct Table {
    counting: HashMap<IpAddr, Failures>,
    /// (seq, client), oldest first; slots of removed entries are skipped lazily.
    order: VecDeque<(u64, IpAddr)>,
    next_seq: u64,
    /// Client → end of its lock-out.
    locked: HashMap<IpAddr, Instant>,
    /// No sweep of a full `locked` before this.
    next_sweep: Option<Instant>,
}

impl Table {
    fn count(&mut self, client: IpAddr, now: Instant) -> &mut Failures {
        if !self.counting.contains_key(&client) {
            while self.counting.len() >= MAX_COUNTING {
                let Some((seq, old)) = self.order.pop_front() else { break };
                if self.counting.get(&old).is_some_and(|f| f.seq == seq) {
                    self.counting.remove(&old);
                }
            }
            // Stale slots pile up when counts end in lock-outs; keep the queue in proportion.
            if self.order.len() > 2 * MAX_COUNTING {
                let counting = &self.counting;
                self.order.retain(|(seq, ip)| counting.get(ip).is_some_and(|f| f.seq == *seq));
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.push_back((seq, client));
            self.counting.insert(client, Failures { window_start: now, count: 0, seq });
        }
        self.counting.get_mut(&client).expect("just inserted")
    }

    /// The end of `client`'s lock-out, if one is in force.
    fn locked_until(&self, client: IpAddr, now: Instant) -> Option<Instant> {
        self.locked.get(&client).copied().filter(|until| *until > now)
    }

    /// Lock `client` out until `until` (a lock-out in force is only ever
    /// extended); false when the table is full of lock-outs in force.
    fn lock(&mut self, client: IpAddr, until: Instant, now: Instant) -> bool {
        if let Some(current) = self.locked.get_mut(&client) {
            *current = (*current).max(until);
            return true;
        }
        if self.locked.len() >= MAX_LOCKED && self.next_sweep.is_none_or(|at| at <= now) {
            self.locked.retain(|_, until| *until > now);
            self.next_sweep = (self.locked.len() >= MAX_LOCKED).then_some(now + SWEEP_PAUSE);
        }
        if self.locked.len() >= MAX_LOCKED {
            return false;
        }
        self.locked.insert(client, until);
        true
    }
}

/// Counts failed attempts per client and locks a client out after too many.
pub struct Lockout {
    config: RateLimitConfig,
    table: Mutex<Table>,
}

impl Lockout {
    /// A limiter with `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self { config, table: Mutex::new(Table::default()) }
    }

    fn applies(&self, ip: IpAddr) -> bool {
        !(self.config.exempt_loopback && ip.is_loopback())
    }

    /// `Err(seconds)` while `ip`'s client is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if !self.applies(ip) {
            return Ok(());
        }
        let now = Instant::now();
        let mut table = self.table.lock().unwrap();
        let client = client_key(ip);
        match table.locked_until(client, now) {
            Some(until) => Err((until - now).as_secs().max(1)),
            None => {
                // An ended lock-out goes at its owner's next visit (or the next sweep).
                table.locked.remove(&client);
                Ok(())
            }
        }
    }

    /// Count a failure; returns the lock-out length when this one triggered it.
    pub fn fail(&self, ip: IpAddr) -> Option<Duration> {
        if !self.applies(ip) {
            return None;
        }
        let now = Instant::now();
        let window = Duration::from_millis(self.config.window_ms);
        let lockout = Duration::from_millis(self.config.lockout_ms);
        let client = client_key(ip);
        let mut table = self.table.lock().unwrap();
        if table.locked_until(client, now).is_some() {
            return None;
        }
        let f = table.count(client, now);
        if now - f.window_start >= window {
            f.window_start = now;
            f.count = 0;
        }
        f.count += 1;
        if f.count < self.config.max_attempts {
            return None;
        }
        table.counting.remove(&client);
        if !table.lock(client, now + lockout, now) {
            tracing::warn!(
                client = %client,
                max = MAX_LOCKED,
                "client not locked out: the lock-out table is full of lock-outs in force"
            );
            return None;
        }
        Some(lockout)
    }

    /// Lock `ip`'s client out for `length` from now: another instance counted
    /// the failures (cluster mode).
    pub fn lock_for(&self, ip: IpAddr, length: Duration) {
        if !self.applies(ip) {
            return;
        }
        let now = Instant::now();
        let client = client_key(ip);
        let mut table = self.table.lock().unwrap();
        table.counting.remove(&client);
        table.lock(client, now + length, now);
    }

    /// The policy this table enforces.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(exempt_loopback: bool) -> Lockout {
        Lockout::new(RateLimitConfig { max_attempts: 3, window_ms: 60_000, lockout_ms: 50, exempt_loopback })
    }

    #[test]
    fn locks_after_max_attempts_then_releases() {
        let l = limiter(false);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert!(l.fail(ip).is_none() && l.fail(ip).is_none());
        assert!(l.check(ip).is_ok());
        assert!(l.fail(ip).is_some());
        assert!(l.check(ip).is_err());
        assert!(l.check("10.0.0.8".parse().unwrap()).is_ok(), "other addresses are unaffected");
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.check(ip).is_ok());
    }

    #[test]
    fn many_addresses_cost_bounded_memory_and_never_free_a_lockout() {
        let l = Lockout::new(RateLimitConfig { lockout_ms: 600_000, ..limiter(false).config });
        let locked: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            l.fail(locked);
        }
        assert!(l.check(locked).is_err());
        // Three times the bound of single failures, every address within its window.
        for i in 0..(3 * MAX_COUNTING as u32) {
            l.fail(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        let table = l.table.lock().unwrap();
        assert!(table.counting.len() <= MAX_COUNTING, "{} entries", table.counting.len());
        assert!(table.order.len() <= 2 * MAX_COUNTING + 1);
        drop(table);
        assert!(l.check(locked).is_err(), "the flood evicted a lock-out in force");
        let recent: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            l.fail(recent);
        }
        assert!(l.check(recent).is_err(), "the newest lock-out holds");
    }

    #[test]
    fn a_full_lockout_table_refuses_new_lockouts_and_keeps_the_old() {
        let l = Lockout::new(RateLimitConfig { max_attempts: 1, lockout_ms: 600_000, ..limiter(false).config });
        for i in 0..MAX_LOCKED as u32 {
            assert!(l.fail(IpAddr::from((0x0a00_0000 + i).to_be_bytes())).is_some());
        }
        let first: IpAddr = "10.0.0.0".parse().unwrap();
        let late: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(l.fail(late).is_none(), "no room: refused, not evicting");
        assert!(l.check(first).is_err() && l.check(late).is_ok());
        assert_eq!(l.table.lock().unwrap().locked.len(), MAX_LOCKED);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let l = limiter(false);
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
            l.fail(host.parse().unwrap());
        }
        assert!(l.check("2001:db8:1:2:abcd::9".parse().unwrap()).is_err(), "the whole /64 is locked out");
        assert!(l.check("2001:db8:1:3::1".parse().unwrap()).is_ok(), "the next /64 is not");
    }

    #[test]
    fn a_lock_from_another_instance_holds_here() {
        let l = limiter(false);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        l.lock_for(ip, Duration::from_secs(60));
        assert!(l.check(ip).is_err());
    }

    #[test]
    fn loopback_is_exempt_when_configured() {
        let l = limiter(true);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(l.fail(ip).is_none());
        }
        assert!(l.check(ip).is_ok());
    }
}
