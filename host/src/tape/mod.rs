//! Recording and replay of runs. Every side effect of a run crosses the host
//! through a capability (`runtime::capabilities`); each crossing consults the
//! run's [`Tape`] in one place: off costs nothing, recording keeps the call
//! and its answer ([`Recording`], within `record.maxBytes`), replay answers
//! from a recording and notes the first call it cannot answer. [`judge`]
//! turns a replay into `identical` / `changed` / `diverged` / `failed`.

mod compare;
mod recording;
mod reel;

pub use compare::{Verdict, judge, line_diff, render};
pub use recording::{
    Blob, Clocks, FORMAT, Failure, HttpCall, HttpResponse, LlmCall, LlmRequest, MemoRead, Recording, header_pairs,
};
pub use reel::{Crossing, Divergence, Player, Tape};

use std::time::Duration;

/// Most bytes one recording keeps unless `record.maxBytes` says otherwise.
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

/// A random seed for a recorded run's guest generators, hex.
pub fn new_seed() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The WASI random generator a taped run's guest reads: the same bytes for the same seed.
pub fn seeded_random(seed: [u8; 32]) -> impl rand::Rng + Send + 'static {
    <rand::rngs::StdRng as rand::SeedableRng>::from_seed(seed)
}

/// `wasi:clocks/wall-clock` through the tape.
pub struct WallClock(pub Tape);

/// `wasi:clocks/monotonic-clock` through the tape.
pub struct MonotonicClock(pub Tape, pub std::time::Instant);

impl wasmtime_wasi::HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let live = || {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
        };
        Duration::from_nanos(self.0.clock(true, live))
    }
}

impl wasmtime_wasi::HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.clock(false, || u64::try_from(self.1.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}
