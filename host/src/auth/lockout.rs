//! Failed-auth rate limiting per client IP.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// Addresses tracked at most: past this the oldest entry is evicted, so a
/// scan from many addresses costs bounded memory and O(1) per failure.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
    locked_until: Option<Instant>,
    /// Insertion number, to tell a live entry from a stale queue slot.
    seq: u64,
}

/// The table and its insertion order.
#[derive(Default)]
struct Table {
    entries: HashMap<IpAddr, Failures>,
    /// (seq, address), oldest first; slots of removed entries are skipped lazily.
    order: VecDeque<(u64, IpAddr)>,
    next_seq: u64,
}

impl Table {
    fn insert(&mut self, ip: IpAddr, now: Instant) -> &mut Failures {
        while self.entries.len() >= MAX_ENTRIES {
            let Some((seq, old)) = self.order.pop_front() else { break };
            if self.entries.get(&old).is_some_and(|f| f.seq == seq) {
                self.entries.remove(&old);
            }
        }
        // Stale slots pile up when entries are cleared by success; keep the queue in proportion.
        if self.order.len() > 2 * MAX_ENTRIES {
            let entries = &self.entries;
            self.order.retain(|(seq, ip)| entries.get(ip).is_some_and(|f| f.seq == *seq));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.push_back((seq, ip));
        self.entries.insert(ip, Failures { window_start: now, count: 0, locked_until: None, seq });
        self.entries.get_mut(&ip).expect("just inserted")
    }
}

/// Counts failed attempts per IP and locks an IP out after too many.
pub struct Lockout {
    config: RateLimitConfig,
    failures: Mutex<Table>,
}

impl Lockout {
    /// A limiter with `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self { config, failures: Mutex::new(Table::default()) }
    }

    fn applies(&self, ip: IpAddr) -> bool {
        !(self.config.exempt_loopback && ip.is_loopback())
    }

    /// `Err(seconds)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if !self.applies(ip) {
            return Ok(());
        }
        let now = Instant::now();
        match self.failures.lock().unwrap().entries.get(&ip).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err((until - now).as_secs().max(1)),
            _ => Ok(()),
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
        let mut table = self.failures.lock().unwrap();
        let f = match table.entries.get_mut(&ip) {
            Some(f) => f,
            None => table.insert(ip, now),
        };
        if now - f.window_start >= window {
            f.window_start = now;
            f.count = 0;
        }
        f.count += 1;
        if f.count >= self.config.max_attempts {
            f.locked_until = Some(now + lockout);
            f.count = 0;
            f.window_start = now;
            return Some(lockout);
        }
        None
    }

    /// A successful attempt clears the count.
    pub fn succeed(&self, ip: IpAddr) {
        if self.applies(ip) {
            self.failures.lock().unwrap().entries.remove(&ip);
        }
    }

    /// Lock `ip` out for `length` from now: another instance counted the
    /// failures (cluster mode).
    pub fn lock_for(&self, ip: IpAddr, length: Duration) {
        if !self.applies(ip) {
            return;
        }
        let now = Instant::now();
        let mut table = self.failures.lock().unwrap();
        let f = match table.entries.get_mut(&ip) {
            Some(f) => f,
            None => table.insert(ip, now),
        };
        f.locked_until = Some(now + length);
        f.count = 0;
        f.window_start = now;
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
    fn many_addresses_cost_bounded_memory_and_recent_lockouts_hold() {
        let l = Lockout::new(RateLimitConfig { lockout_ms: 600_000, ..limiter(false).config });
        // Three times the bound, every address within its window.
        for i in 0..(3 * MAX_ENTRIES as u32) {
            l.fail(IpAddr::from(i.to_be_bytes()));
        }
        let table = l.failures.lock().unwrap();
        assert!(table.entries.len() <= MAX_ENTRIES, "{} entries", table.entries.len());
        assert!(table.order.len() <= 2 * MAX_ENTRIES + 1);
        drop(table);
        let recent: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            l.fail(recent);
        }
        assert!(l.check(recent).is_err(), "the newest lock-out holds");
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
