//! Requests per minute for one token: a generic cell rate algorithm, which
//! allows a burst of a minute's worth and then the steady rate, in O(1) with
//! one timestamp.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate of requests, shared by every connection of one token.
#[derive(Debug)]
pub struct RequestRate {
    /// Time one request "costs".
    interval: Duration,
    /// How far ahead of now the schedule may run: the burst.
    burst: Duration,
    /// When the schedule is next free (theoretical arrival time).
    next_free: Mutex<Instant>,
}

impl RequestRate {
    /// `per_minute` requests a minute (at least 1).
    pub fn per_minute(per_minute: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self { interval, burst: Duration::from_secs(60) - interval, next_free: Mutex::new(Instant::now()) }
    }

    /// Admit one request now, or `Err(seconds to wait)`.
    pub fn admit(&self) -> Result<(), u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), u64> {
        let mut next_free = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let scheduled = (*next_free).max(now);
        let ahead = scheduled - now;
        if ahead > self.burst {
            return Err((ahead - self.burst).as_secs_f64().ceil().max(1.0) as u64);
        }
        *next_free = scheduled + self.interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minutes_worth_then_the_steady_rate() {
        let rate = RequestRate::per_minute(60);
        let start = Instant::now();
        for i in 0..60 {
            assert!(rate.admit_at(start).is_ok(), "request {i} of the burst");
        }
        let wait = rate.admit_at(start).expect_err("the 61st in the same instant waits");
        assert!((1..=2).contains(&wait), "{wait}");
        assert!(rate.admit_at(start + Duration::from_millis(1100)).is_ok(), "one more a second later");
        assert!(rate.admit_at(start + Duration::from_millis(1100)).is_err());
    }
}
