//! One run at a time per session key, in the order runs were started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// key → (ticket number, signal that fires when that ticket's run ends).
type Tails = Arc<Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>>;

/// Per-key FIFO queues. Taking a ticket is synchronous, so the order of
/// `enter` calls is the order of runs, whatever the scheduler does later.
#[derive(Default)]
pub struct Lanes {
    tails: Tails,
    next: std::sync::atomic::AtomicU64,
}

/// A place in a lane. Hold it for the whole run; dropping it lets the next run in.
pub struct LaneTicket {
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
    key: String,
    number: u64,
    tails: Tails,
}

impl Lanes {
    /// Join the back of `key`'s lane.
    pub fn enter(&self, key: &str) -> LaneTicket {
        let number = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (done, after_me) = oneshot::channel();
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        let previous = tails.insert(key.to_string(), (number, after_me)).map(|(_, rx)| rx);
        LaneTicket { previous, _done: done, key: key.to_string(), number, tails: self.tails.clone() }
    }
}

impl LaneTicket {
    /// Wait until every earlier run on this key has ended.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Err just means the earlier run's ticket was dropped: our turn.
            let _ = previous.await;
        }
    }
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        // Last in line: nobody will wait on us, so forget the key.
        if tails.get(&self.key).is_some_and(|(n, _)| *n == self.number) {
            tails.remove(&self.key);
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
        assert!(lanes.tails.lock().unwrap().is_empty(), "finished lanes are forgotten");
    }
}
