//! `memo` (contract 0.2.1): a small cache that outlives a run, so a run can
//! reuse what an earlier run of the same agent version learned (the SDK keeps
//! MCP servers' tool lists here). A cache, not state: entries expire, may be
//! evicted, live in this process only (each gateway instance of a cluster
//! has its own) and are gone after a restart.
//!
//! Every byte a guest makes the host keep is counted (key, value and
//! [`ENTRY_OVERHEAD`]) against two caps: its agent version's share
//! ([`MAX_SHELF_BYTES`]) and the process's ([`MAX_TOTAL_BYTES`]). A `set`
//! past either evicts the oldest entries (of that version first, then of
//! any) rather than failing: a cache that refuses writes helps nobody, and
//! the guest cannot tell an eviction from an expiry anyway. Only a key or a
//! value over its own limit is refused, with the limit named.
//!
//! A shelf belongs to one loaded agent version ([`MemoShelf`], held by its
//! `Capabilities` and by each run of it): another agent, or a new version of
//! this one (a hot swap, a config change), starts with an empty shelf, and a
//! dropped version's entries are freed with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest key.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value.
pub const MAX_VALUE_BYTES: usize = 256 << 10;
/// What one agent version may keep.
pub const MAX_SHELF_BYTES: usize = 1 << 20;
/// What every agent version together may keep.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;
/// Longest life of an entry; a longer `ttl-ms` is cut to this.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Bookkeeping counted per entry besides its key and value, so that many
/// tiny entries cannot hold more memory than the caps say.
pub const ENTRY_OVERHEAD: usize = 64;

/// The process's memo: every shelf under one byte cap. Cheap to clone.
#[derive(Clone)]
pub struct Memo {
    shelves: Arc<Mutex<Shelves>>,
}

impl Default for Memo {
    fn default() -> Self {
        Self::with_caps(MAX_SHELF_BYTES, MAX_TOTAL_BYTES)
    }
}

impl Memo {
    /// A memo with other caps than the defaults (tests).
    pub fn with_caps(shelf_bytes: usize, total_bytes: usize) -> Self {
        let shelves = Shelves { shelf_bytes, total_bytes, ..Shelves::default() };
        Self { shelves: Arc::new(Mutex::new(shelves)) }
    }

    /// A new, empty shelf for one loaded agent version (`agent` names it in logs).
    pub fn shelf(&self, agent: &str) -> MemoShelf {
        let mut shelves = self.lock();
        shelves.next_shelf += 1;
        let id = shelves.next_shelf;
        shelves.shelves.insert(id, Shelf::default());
        MemoShelf(Arc::new(ShelfHandle { memo: self.clone(), id, agent: agent.to_string() }))
    }

    /// Bytes kept now, every shelf together.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shelves> {
        // A panic while holding the lock left the maps consistent (every
        // change is a few map operations): carry on with them.
        self.shelves.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One agent version's entries; each run of it gets a clone. The entries are
/// freed when the last clone is dropped.
#[derive(Clone)]
pub struct MemoShelf(Arc<ShelfHandle>);

struct ShelfHandle {
    memo: Memo,
    id: u64,
    agent: String,
}

impl Drop for ShelfHandle {
    fn drop(&mut self) {
        let mut shelves = self.memo.lock();
        if let Some(shelf) = shelves.shelves.remove(&self.id) {
            shelves.total -= shelf.bytes;
            for seq in shelf.order.keys() {
                shelves.order.remove(seq);
            }
        }
    }
}

impl MemoShelf {
    /// The value under `key` unless it expired.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_at(key, Instant::now())
    }

    /// Keep `value` under `key` for `ttl` (cut to [`MAX_TTL`]; zero removes
    /// it), evicting the oldest entries if the caps require it.
    pub fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> Result<(), String> {
        self.set_at(key, value, ttl, Instant::now())
    }

    /// Forget `key`.
    pub fn remove(&self, key: &str) {
        let mut shelves = self.0.memo.lock();
        shelves.remove(self.0.id, key);
    }

    /// Bytes this shelf keeps now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.0.memo.lock().shelves.get(&self.0.id).map_or(0, |s| s.bytes)
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<Vec<u8>> {
        let mut shelves = self.0.memo.lock();
        let entry = shelves.shelves.get(&self.0.id)?.entries.get(key)?;
        if entry.expires <= now {
            shelves.remove(self.0.id, key);
            return None;
        }
        Some(entry.value.clone())
    }

    fn set_at(&self, key: String, value: Vec<u8>, ttl: Duration, now: Instant) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!("memo key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!("memo value is {} bytes; the limit is {MAX_VALUE_BYTES}", value.len()));
        }
        let mut shelves = self.0.memo.lock();
        let id = self.0.id;
        shelves.remove(id, &key);
        if ttl.is_zero() {
            return Ok(());
        }
        let bytes = key.len() + value.len() + ENTRY_OVERHEAD;
        let evicted = shelves.make_room(id, bytes, now);
        if evicted > 0 {
            tracing::debug!(
                agent = %self.0.agent,
                evicted,
                "memo full: oldest entries evicted ({MAX_SHELF_BYTES} bytes per agent version, {MAX_TOTAL_BYTES} in all)"
            );
        }
        shelves.insert(id, key, value, now + ttl.min(MAX_TTL), bytes);
        Ok(())
    }
}

struct Entry {
    value: Vec<u8>,
    expires: Instant,
    /// When it was set, in the memo's order of writes.
    seq: u64,
    bytes: usize,
}

#[derive(Default)]
struct Shelf {
    entries: HashMap<String, Entry>,
    /// Write order → key, oldest first.
    order: BTreeMap<u64, String>,
    bytes: usize,
}

#[derive(Default)]
struct Shelves {
    shelves: HashMap<u64, Shelf>,
    /// Write order → shelf, across shelves, oldest first.
    order: BTreeMap<u64, u64>,
    total: usize,
    shelf_bytes: usize,
    total_bytes: usize,
    next_shelf: u64,
    next_seq: u64,
}

impl Shelves {
    fn remove(&mut self, shelf: u64, key: &str) {
        let Some(s) = self.shelves.get_mut(&shelf) else { return };
        if let Some(entry) = s.entries.remove(key) {
            s.order.remove(&entry.seq);
            s.bytes -= entry.bytes;
            self.order.remove(&entry.seq);
            self.total -= entry.bytes;
        }
    }

    fn insert(&mut self, shelf: u64, key: String, value: Vec<u8>, expires: Instant, bytes: usize) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let Some(s) = self.shelves.get_mut(&shelf) else { return };
        s.order.insert(seq, key.clone());
        s.entries.insert(key, Entry { value, expires, seq, bytes });
        s.bytes += bytes;
        self.order.insert(seq, shelf);
        self.total += bytes;
    }

    /// Evict until `bytes` more fit in `shelf` and in the total: the expired
    /// entries of `shelf` first, then its oldest, then the oldest of any
    /// shelf. How many entries went.
    fn make_room(&mut self, shelf: u64, bytes: usize, now: Instant) -> usize {
        let mut evicted = 0;
        if self.shelf_used(shelf) + bytes > self.shelf_bytes {
            let expired: Vec<String> =
                self.shelves[&shelf].entries.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| k.clone()).collect();
            for key in expired {
                self.remove(shelf, &key);
                evicted += 1;
            }
        }
        while self.shelf_used(shelf) + bytes > self.shelf_bytes {
            let Some(key) = self.shelves[&shelf].order.values().next().cloned() else { break };
            self.remove(shelf, &key);
            evicted += 1;
        }
        while self.total + bytes > self.total_bytes {
            let Some((&seq, &owner)) = self.order.iter().next() else { break };
            let Some(key) = self.shelves.get(&owner).and_then(|s| s.order.get(&seq)).cloned() else { break };
            self.remove(owner, &key);
            evicted += 1;
        }
        evicted
    }

    fn shelf_used(&self, shelf: u64) -> usize {
        self.shelves.get(&shelf).map_or(0, |s| s.bytes)
    }
}

/// One run's view of its agent version's shelf.
pub struct MemoState {
    shelf: MemoShelf,
    tape: crate::tape::Tape,
}

impl MemoState {
    /// For one run of the version owning `shelf`.
    pub fn new(shelf: MemoShelf, tape: crate::tape::Tape) -> Self {
        Self { shelf, tape }
    }

    /// `memo.get`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.tape.is_on() {
            true => self.tape.memo(key, || self.shelf.get(key)),
            false => self.shelf.get(key),
        }
    }

    /// `memo.set`; a replay keeps nothing for later runs.
    pub fn set(&self, key: String, value: Vec<u8>, ttl_ms: u64) -> Result<(), String> {
        if self.tape.is_replay() {
            return Ok(());
        }
        self.shelf.set(key, value, Duration::from_millis(ttl_ms))
    }

    /// `memo.remove`.
    pub fn remove(&self, key: &str) {
        if self.tape.is_replay() {
            return;
        }
        self.shelf.remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_entry_lives_until_its_ttl_and_is_gone_after() {
        let memo = Memo::default();
        let shelf = memo.shelf("a");
        let now = Instant::now();
        shelf.set_at("k".into(), b"v".to_vec(), Duration::from_secs(60), now).unwrap();
        assert_eq!(shelf.get_at("k", now + Duration::from_secs(59)), Some(b"v".to_vec()));
        assert_eq!(shelf.get_at("k", now + Duration::from_secs(60)), None, "expired");
        assert_eq!(memo.bytes(), 0, "an expired entry read is freed");
        shelf.set_at("k".into(), b"v".to_vec(), Duration::from_secs(10 * 24 * 3600), now).unwrap();
        assert_eq!(shelf.get_at("k", now + MAX_TTL - Duration::from_secs(1)), Some(b"v".to_vec()));
        assert_eq!(shelf.get_at("k", now + MAX_TTL), None, "a longer ttl is cut to a day");
        shelf.set_at("k".into(), b"v".to_vec(), HOUR, now).unwrap();
        shelf.set_at("k".into(), b"w".to_vec(), Duration::ZERO, now).unwrap();
        assert_eq!((shelf.get_at("k", now), memo.bytes()), (None, 0), "ttl 0 removes");
    }

    #[test]
    fn shelves_never_see_each_other_and_a_dropped_one_frees_its_bytes() {
        let memo = Memo::default();
        let (a, b) = (memo.shelf("a"), memo.shelf("b"));
        a.set("k".into(), b"from a".to_vec(), HOUR).unwrap();
        assert_eq!(b.get("k"), None);
        b.set("k".into(), b"from b".to_vec(), HOUR).unwrap();
        assert_eq!(a.get("k"), Some(b"from a".to_vec()));
        let run_of_a = a.clone();
        drop(a);
        assert_eq!(run_of_a.get("k"), Some(b"from a".to_vec()), "a run still holds its version's shelf");
        drop(run_of_a);
        assert_eq!(memo.bytes(), b.bytes(), "only b's entry is left");
        b.remove("k");
        assert_eq!(memo.bytes(), 0);
    }

    #[test]
    fn keys_and_values_over_their_limits_are_refused_naming_the_limit() {
        let shelf = Memo::default().shelf("a");
        let e = shelf.set("k".repeat(MAX_KEY_BYTES + 1), vec![], HOUR).unwrap_err();
        assert!(e.contains("256"), "{e}");
        let e = shelf.set("k".into(), vec![0; MAX_VALUE_BYTES + 1], HOUR).unwrap_err();
        assert!(e.contains(&MAX_VALUE_BYTES.to_string()), "{e}");
        assert_eq!(shelf.bytes(), 0);
    }

    /// A guest that sets without end keeps at most its share, oldest out first.
    #[test]
    fn a_shelf_keeps_its_share_evicting_its_oldest() {
        let memo = Memo::default();
        let (greedy, other) = (memo.shelf("greedy"), memo.shelf("other"));
        other.set("mine".into(), vec![1; 1000], HOUR).unwrap();
        let value = vec![7; 10_000];
        for i in 0..1000 {
            greedy.set(format!("k{i}"), value.clone(), HOUR).unwrap();
            assert!(greedy.bytes() <= MAX_SHELF_BYTES, "after {i} sets: {}", greedy.bytes());
        }
        assert!(greedy.bytes() > MAX_SHELF_BYTES - 2 * value.len(), "the share is used, not wasted");
        assert_eq!(greedy.get("k999"), Some(value), "the newest stays");
        assert_eq!(greedy.get("k0"), None, "the oldest went");
        assert_eq!(other.get("mine"), Some(vec![1; 1000]), "another version's entry is untouched");
        assert_eq!(memo.bytes(), greedy.bytes() + other.bytes(), "every byte counted once");
    }

    #[test]
    fn expired_entries_go_before_live_ones_when_a_shelf_is_full() {
        let memo = Memo::with_caps(3 * (1 + 100 + ENTRY_OVERHEAD), 1 << 20);
        let shelf = memo.shelf("a");
        let now = Instant::now();
        shelf.set_at("a".into(), vec![0; 100], HOUR, now).unwrap();
        shelf.set_at("b".into(), vec![0; 100], Duration::from_secs(1), now).unwrap();
        shelf.set_at("c".into(), vec![0; 100], HOUR, now).unwrap();
        shelf.set_at("d".into(), vec![0; 100], HOUR, now + Duration::from_secs(2)).unwrap();
        let later = now + Duration::from_secs(3);
        assert!(shelf.get_at("a", later).is_some(), "the oldest live entry stays while an expired one can go");
        assert!(shelf.get_at("c", later).is_some() && shelf.get_at("d", later).is_some());
    }

    #[test]
    fn the_process_cap_holds_across_shelves() {
        let entry = 2 + 1000 + ENTRY_OVERHEAD;
        let memo = Memo::with_caps(10 * entry, 15 * entry);
        let shelves: Vec<MemoShelf> = (0..4).map(|i| memo.shelf(&format!("s{i}"))).collect();
        for round in 0..10 {
            for shelf in &shelves {
                shelf.set(format!("{round:02}"), vec![0; 1000], HOUR).unwrap();
                assert!(memo.bytes() <= 15 * entry, "{}", memo.bytes());
            }
        }
        assert_eq!(memo.bytes(), 15 * entry, "full, and no more");
        assert_eq!(shelves.iter().map(MemoShelf::bytes).sum::<usize>(), memo.bytes());
        assert!(shelves.iter().all(|s| s.get("09").is_some()), "the newest of each shelf stays");
    }
}
