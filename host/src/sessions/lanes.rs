//! One run at a time per session key, in the order runs were started.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// key → the tickets in line, the holder first; each waiter keeps the sender
/// that tells it its turn has come.
type Queues = Arc<Mutex<HashMap<String, VecDeque<(u64, Option<oneshot::Sender<()>>)>>>>;

/// Per-key FIFO queues. Taking a ticket is synchronous, so the order of
/// `enter` calls is the order of runs, whatever the scheduler does later.
/// A ticket dropped while it waits leaves the line without letting anyone
/// in: only the holder's drop hands the lane to the next in line.
#[derive(Default)]
pub struct Lanes {
    queues: Queues,
    next: std::sync::atomic::AtomicU64,
}

/// A place in a lane. Hold it for the whole run; dropping it lets the next run in.
pub struct LaneTicket {
    /// Fires when every earlier ticket on the key has been dropped; `None` once it has.
    turn: Option<oneshot::Receiver<()>>,
    key: String,
    number: u64,
    queues: Queues,
}

impl Lanes {
    /// Join the back of `key`'s lane.
    pub fn enter(&self, key: &str) -> LaneTicket {
        let number = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let line = queues.entry(key.to_string()).or_default();
        let turn = if line.is_empty() {
            line.push_back((number, None));
            None
        } else {
            let (tell, told) = oneshot::channel();
            line.push_back((number, Some(tell)));
            Some(told)
        };
        LaneTicket { turn, key: key.to_string(), number, queues: self.queues.clone() }
    }
}

impl LaneTicket {
    /// Wait until every earlier run on this key has ended.
    pub async fn wait(&mut self) {
        if let Some(turn) = self.turn.as_mut() {
            // Err only if the lanes themselves are gone: nobody is left to wait for.
            let _ = turn.await;
            self.turn = None;
        }
    }
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let Some(line) = queues.get_mut(&self.key) else { return };
        let Some(place) = line.iter().position(|(n, _)| *n == self.number) else { return };
        line.remove(place);
        // Only the holder's leaving lets the next one in; a waiter that gives
        // up must not, or it would start while the holder still runs.
        if place == 0
            && let Some((_, tell)) = line.front_mut()
            && let Some(tell) = tell.take()
        {
            let _ = tell.send(());
        }
        if line.is_empty() {
            queues.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_on_one_key_go_in_order_and_keys_are_forgotten() {
        let lanes = Lanes::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let mut ticket = lanes.enter("k");
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                // Later tickets sleep less: without the lane they would finish first.
                tokio::time::sleep(std::time::Duration::from_millis(5 * (5 - i))).await;
                ticket.wait().await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }));
        }
        let mut other = lanes.enter("other");
        other.wait().await; // a different key never waits
        drop(other);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert!(lanes.queues.lock().unwrap().is_empty(), "finished lanes are forgotten");
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_lets_nobody_in_before_the_holder_ends() {
        let lanes = Lanes::default();
        let a = lanes.enter("k");
        let mut b = lanes.enter("k");
        let mut c = lanes.enter("k");
        // B gives up while A still runs, once before and once while waiting.
        assert!(futures::poll!(Box::pin(b.wait())).is_pending());
        drop(b);
        let mut c_turn = Box::pin(async move {
            c.wait().await;
            c
        });
        assert!(futures::poll!(&mut c_turn).is_pending(), "C must wait for A, not for B");
        tokio::task::yield_now().await;
        assert!(futures::poll!(&mut c_turn).is_pending(), "C must still wait for A");
        drop(a);
        let c = tokio::time::timeout(std::time::Duration::from_secs(10), c_turn).await.expect("C runs once A ended");
        // A later ticket waits for C in turn, and the key goes when the line is empty.
        let mut d = lanes.enter("k");
        assert!(futures::poll!(Box::pin(d.wait())).is_pending());
        drop(c);
        tokio::time::timeout(std::time::Duration::from_secs(10), d.wait()).await.expect("D runs once C ended");
        drop(d);
        assert!(lanes.queues.lock().unwrap().is_empty(), "the emptied lane is forgotten");
    }

    #[tokio::test]
    async fn the_last_waiter_leaving_keeps_the_holder_in_place() {
        let lanes = Lanes::default();
        let a = lanes.enter("k");
        let b = lanes.enter("k");
        drop(b);
        let mut c = lanes.enter("k");
        assert!(futures::poll!(Box::pin(c.wait())).is_pending(), "A still holds the lane");
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(10), c.wait()).await.expect("C runs once A ended");
    }
}
