//! Failed-auth rate limiting per client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// Entries kept before expired ones are swept, so a scan cannot grow memory.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

/// Counts failed attempts per IP and locks an IP out after too many.
pub struct Lockout {
    config: RateLimitConfig,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Lockout {
    /// A limiter with `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self { config, failures: Mutex::new(HashMap::new()) }
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
        match self.failures.lock().unwrap().get(&ip).and_then(|f| f.locked_until) {
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
        let mut failures = self.failures.lock().unwrap();
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, f| now - f.window_start < window || f.locked_until.is_some_and(|u| u > now));
        }
        let f = failures.entry(ip).or_insert(Failures { window_start: now, count: 0, locked_until: None });
        if now - f.window_start >= window {
            *f = Failures { window_start: now, count: 0, locked_until: None };
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
            self.failures.lock().unwrap().remove(&ip);
        }
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
    fn loopback_is_exempt_when_configured() {
        let l = limiter(true);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(l.fail(ip).is_none());
        }
        assert!(l.check(ip).is_ok());
    }
}
