//! Budgets on SQLite. One process owns the file, so the reservations of runs
//! in flight live in memory here: a process that dies takes its holds with
//! it, which is what a dead run's reservation must do. Only what was spent
//! is written, in the ledger's own transaction (`record_usage`), so reserving
//! and settling cost no write of their own (they were two transactions per
//! run on the one connection: BENCHMARKS.md, "Traces (and metering)"). A
//! window's spent figure is read from the file once, at its first reservation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::super::usage;
use super::{SqliteStore, StoreFuture};
use crate::usage::{BudgetSlot, Charge, Cost, Hold};

/// A budget's window: (budget name, window start).
pub(super) type WindowKey = (String, i64);

/// The budget windows this process has used, and what it spent but has not written yet.
#[derive(Default)]
pub(super) struct Budgets {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    windows: HashMap<WindowKey, Window>,
    /// Settled spending waiting for the ledger's next transaction, by window.
    unsaved: HashMap<WindowKey, [i64; 2]>,
}

/// One window: its spent figure (the file's plus what settled since) and its live holds.
struct Window {
    spent: [i64; 2],
    /// run id → (tokens, picos, expires at).
    holds: HashMap<String, ([i64; 2], i64)>,
    /// The sum of `holds`.
    held: [i64; 2],
    /// The earliest expiry among `holds`: before it, none need looking at.
    next_expiry: i64,
}

fn figures(charge: &Charge) -> [i64; 2] {
    [usage::signed(charge.tokens), usage::signed(charge.cost.picos())]
}

fn add(a: &mut [i64; 2], b: [i64; 2]) {
    a[0] = a[0].saturating_add(b[0]);
    a[1] = a[1].saturating_add(b[1]);
}

fn key(slot: &BudgetSlot) -> WindowKey {
    (slot.budget.clone(), slot.window_start)
}

impl Window {
    /// Drop holds past their expiry (runs that never settled); how many.
    fn expire(&mut self, now: i64) -> u64 {
        if now < self.next_expiry {
            return 0;
        }
        let before = self.holds.len();
        self.holds.retain(|_, (_, expires_at)| *expires_at > now);
        self.held = [0, 0];
        self.next_expiry = i64::MAX;
        for (figures, expires_at) in self.holds.values() {
            add(&mut self.held, *figures);
            self.next_expiry = self.next_expiry.min(*expires_at);
        }
        (before - self.holds.len()) as u64
    }
}

impl Budgets {
    /// Reserve `hold` on `slot` (see `SessionStore::reserve_budget`);
    /// `None` when the window is not in memory and `read` (its spent figure
    /// in the file) was not given.
    fn reserve(&self, slot: &BudgetSlot, hold: &Hold, now: i64, read: Option<[i64; 2]>) -> Option<bool> {
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        let key = key(slot);
        if !state.windows.contains_key(&key) {
            let mut spent = read?;
            add(&mut spent, state.unsaved.get(&key).copied().unwrap_or_default());
            // Earlier windows of this budget are done with once idle.
            state.windows.retain(|(budget, _), w| *budget != slot.budget || !w.holds.is_empty());
            let window = Window { spent, holds: HashMap::new(), held: [0, 0], next_expiry: i64::MAX };
            state.windows.insert(key.clone(), window);
        }
        let window = state.windows.get_mut(&key).expect("inserted above");
        usage::log_expired(slot, window.expire(now));
        let taken = usage::room(slot, window.spent, window.held);
        if taken && !window.holds.contains_key(&hold.run_id) {
            let charge = figures(&hold.charge);
            window.holds.insert(hold.run_id.clone(), (charge, hold.expires_at));
            add(&mut window.held, charge);
            window.next_expiry = window.next_expiry.min(hold.expires_at);
        }
        Some(taken)
    }

    /// Drop run `run_id`'s hold on `slot` and count `spent` instead.
    fn settle(&self, slot: &BudgetSlot, run_id: &str, spent: &Charge) {
        let spent = figures(spent);
        let mut state = self.state.lock().unwrap();
        let key = key(slot);
        if let Some(window) = state.windows.get_mut(&key) {
            if let Some((charge, _)) = window.holds.remove(run_id) {
                add(&mut window.held, charge.map(|n| -n));
            }
            add(&mut window.spent, spent);
        }
        if spent != [0, 0] {
            add(state.unsaved.entry(key).or_default(), spent);
        }
    }

    /// (spent, held now) of `slot`, when its window is in memory.
    fn counters(&self, slot: &BudgetSlot, now: i64) -> Option<(Charge, Charge)> {
        let mut state = self.state.lock().unwrap();
        let window = state.windows.get_mut(&key(slot))?;
        usage::log_expired(slot, window.expire(now));
        let charge = |[tokens, picos]: [i64; 2]| Charge {
            tokens: tokens.max(0) as u64,
            cost: Cost::from_picos(picos.max(0) as u64),
        };
        Some((charge(window.spent), charge(window.held)))
    }

    /// The spending to write now; called with the connection held, so a
    /// window read from the file meanwhile sees it either written or here.
    pub(super) fn take_unsaved(&self) -> Vec<(WindowKey, [i64; 2])> {
        self.state.lock().unwrap().unsaved.drain().collect()
    }

    /// Spending whose write failed, kept for the next one.
    pub(super) fn restore(&self, spends: Vec<(WindowKey, [i64; 2])>) {
        let mut state = self.state.lock().unwrap();
        for (key, spent) in spends {
            add(state.unsaved.entry(key).or_default(), spent);
        }
    }
}

impl SqliteStore {
    pub(super) fn reserve_in_memory(&self, slot: BudgetSlot, hold: Hold) -> StoreFuture<bool> {
        let now = super::now_ms() as i64;
        if let Some(taken) = self.budgets.reserve(&slot, &hold, now, None) {
            return Box::pin(std::future::ready(Ok(taken)));
        }
        let budgets = self.budgets.clone();
        self.blocking(move |db| {
            // Read and put in memory under the connection, as `take_unsaved` is.
            db.with(|conn| {
                let spent = usage::sqlite_spent(conn, &slot)?;
                Ok(budgets.reserve(&slot, &hold, now, Some(spent)).unwrap_or(false))
            })
        })
    }

    pub(super) fn settle_in_memory(&self, slot: BudgetSlot, run_id: String, spent: Charge) -> StoreFuture<()> {
        self.budgets.settle(&slot, &run_id, &spent);
        Box::pin(std::future::ready(Ok(())))
    }

    pub(super) fn counters_in_memory(&self, slot: BudgetSlot) -> StoreFuture<(Charge, Charge)> {
        let now = super::now_ms() as i64;
        if let Some(counters) = self.budgets.counters(&slot, now) {
            return Box::pin(std::future::ready(Ok(counters)));
        }
        let budgets = self.budgets.clone();
        self.blocking(move |db| {
            db.with(|conn| {
                let mut spent = usage::sqlite_spent(conn, &slot)?;
                let unsaved = budgets.state.lock().unwrap().unsaved.get(&key(&slot)).copied();
                add(&mut spent, unsaved.unwrap_or_default());
                Ok(usage::counters(Some(spent), [0, 0]))
            })
        })
    }

    /// Usage rows and the spending settled since the last write, in one transaction.
    pub(super) fn record_with_spending(&self, rows: Vec<crate::usage::UsageRow>) -> StoreFuture<()> {
        let budgets: Arc<Budgets> = self.budgets.clone();
        self.blocking(move |db| {
            db.with(|conn| {
                let spends = budgets.take_unsaved();
                let written = usage::sqlite_record(conn, &rows, &spends);
                if written.is_err() {
                    budgets.restore(spends);
                }
                written
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(max_tokens: u64) -> BudgetSlot {
        BudgetSlot { budget: "token:ci".into(), window_start: 0, max_tokens: Some(max_tokens), max_cost: None }
    }

    fn hold(run: &str, tokens: u64, expires_at: i64) -> Hold {
        Hold { run_id: run.into(), charge: Charge { tokens, cost: Cost::default() }, expires_at }
    }

    #[test]
    fn holds_count_until_settled_or_expired_and_spending_waits_for_the_ledger() {
        let b = Budgets::default();
        let s = slot(20);
        assert_eq!(b.reserve(&s, &hold("r1", 8, 100), 0, None), None, "unknown window: read it first");
        assert_eq!(b.reserve(&s, &hold("r1", 8, 100), 0, Some([4, 0])), Some(true));
        assert_eq!(b.reserve(&s, &hold("r2", 8, 100), 0, None), Some(true), "4 + 8 < 20");
        assert_eq!(b.reserve(&s, &hold("r3", 8, 100), 0, None), Some(false), "4 + 16 reached 20");
        b.settle(&s, "r1", &Charge { tokens: 3, cost: Cost::default() });
        assert_eq!(b.counters(&s, 0).unwrap().0.tokens, 7);
        assert_eq!(b.counters(&s, 0).unwrap().1.tokens, 8);
        assert_eq!(b.reserve(&s, &hold("r3", 8, 100), 0, None), Some(true), "7 + 8 < 20");
        // Past their expiry, r2's and r3's holds stop counting.
        assert_eq!(b.counters(&s, 100).unwrap().1.tokens, 0);
        assert_eq!(b.take_unsaved(), vec![(("token:ci".to_string(), 0), [3, 0])]);
        assert!(b.take_unsaved().is_empty(), "taken once");
    }

    #[test]
    fn a_window_read_later_adds_what_is_not_written_yet() {
        let b = Budgets::default();
        let (s, next) = (slot(20), BudgetSlot { window_start: 1, ..slot(20) });
        b.reserve(&s, &hold("r1", 5, 100), 0, Some([0, 0]));
        b.reserve(&next, &hold("r2", 5, 100), 0, Some([0, 0]));
        // r1 settles on its window although a later one is in use.
        b.settle(&s, "r1", &Charge { tokens: 6, cost: Cost::default() });
        b.settle(&next, "r2", &Charge { tokens: 1, cost: Cost::default() });
        assert!(b.counters(&s, 0).is_some(), "kept while it had a hold");
        let fresh = Budgets::default();
        fresh.restore(b.take_unsaved());
        assert_eq!(fresh.reserve(&s, &hold("r3", 1, 100), 0, Some([10, 0])), Some(true));
        assert_eq!(fresh.counters(&s, 0).unwrap().0.tokens, 16, "the file's 10 plus the unwritten 6");
    }
}
